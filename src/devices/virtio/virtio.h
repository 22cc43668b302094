/*
 * The one interface every virtio device implements (rng now; vsock, blk,
 * net later), independent of the transport that carries it.
 *
 * A device fills a const struct virtio_device_ops with designated
 * initialisers and a struct virtio_device with its ops and private state;
 * a transport (virtio-mmio) owns the queues and the status state machine and
 * calls the ops:
 *
 *   read_config/write_config  driver access to the device-specific config
 *                             space; off + len <= config_size is checked by
 *                             the transport.
 *   activate                  the driver set DRIVER_OK; queues are ready and
 *                             driver_features final. Non-zero = failure: the
 *                             transport sets DEVICE_NEEDS_RESET. Also called
 *                             when a snapshot is restored (virtio_mmio_restore),
 *                             right after reset, on queues that are mid-stream:
 *                             last_avail_idx/used_idx come from the snapshot
 *                             and buffers the driver posted earlier are still
 *                             available. A device must not assume fresh rings
 *                             here; one that cannot resume returns non-zero.
 *   queue_notify              the driver added buffers to queue q (only
 *                             called after a successful activate, for a
 *                             ready queue).
 *   reset                     the driver wrote 0 to status: forget all
 *                             in-flight work (queues are reset by the
 *                             transport).
 *   destroy                   free the device (priv and the struct itself).
 *   restore_begin/restore_end optional snapshot hooks, called WITHOUT the
 *                             transport lock (take it with virtio_device_lock):
 *                             restore_begin before the transport's saved state
 *                             is installed (whose activate may serve queues),
 *                             restore_end once the whole VM is restored. The
 *                             transport's state (mmio.h) is all a snapshot
 *                             keeps; a device with guest-visible state of its
 *                             own would add it to the VMM's device table.
 *
 * Locking: the transport calls every op but the snapshot hooks with its lock held. A device that
 * completes work from another thread (a socket callback, say) must wrap its
 * queue use in virtio_device_lock/unlock.
 */
#ifndef SM_DEVICES_VIRTIO_VIRTIO_H
#define SM_DEVICES_VIRTIO_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/virtqueue.h"
#include "machine/guest_memory.h"

/* Device IDs (virtio 1.1 section 5). */
#define VIRTIO_ID_NET    1
#define VIRTIO_ID_BLOCK  2
#define VIRTIO_ID_RNG    4
#define VIRTIO_ID_VSOCK  19

/* Device status bits (section 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE        1
#define VIRTIO_STATUS_DRIVER             2
#define VIRTIO_STATUS_DRIVER_OK          4
#define VIRTIO_STATUS_FEATURES_OK        8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED             128

/* Transport-level feature bits (section 6). */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX     29   /* not implemented: never offered */
#define VIRTIO_F_VERSION_1          32

/* InterruptStatus bits. */
#define VIRTIO_INT_USED_BUFFER   1
#define VIRTIO_INT_CONFIG_CHANGE 2

struct virtio_device;

struct virtio_device_ops {
    const char *name;            /* "rng", "vsock", ...: for messages */
    uint32_t device_id;
    uint16_t num_queues;
    uint16_t queue_max_size;     /* a power of two, <= VIRTQ_MAX_SIZE */
    uint64_t features;           /* device-specific bits; the transport adds its own */
    uint32_t config_size;        /* bytes of config space (<= 0x100 on mmio) */
    void (*read_config)(struct virtio_device *dev, uint32_t off, void *data, uint32_t len);
    void (*write_config)(struct virtio_device *dev, uint32_t off, const void *data, uint32_t len);
    int (*activate)(struct virtio_device *dev);
    void (*queue_notify)(struct virtio_device *dev, uint16_t q);
    void (*reset)(struct virtio_device *dev);
    void (*destroy)(struct virtio_device *dev);
    void (*restore_begin)(struct virtio_device *dev);
    void (*restore_end)(struct virtio_device *dev);
};

/* What a transport offers the device it carries. */
struct virtio_transport_ops {
    void (*notify_used)(void *transport);
    void (*notify_config)(void *transport);
    void (*set_needs_reset)(void *transport);
    void (*lock)(void *transport);
    void (*unlock)(void *transport);
};

struct virtio_device {
    const struct virtio_device_ops *ops;
    void *priv;                       /* the device's own state */
    /* Filled by the transport when it takes the device: */
    struct virtqueue *queues;         /* ops->num_queues entries */
    const struct guest_memory *mem;
    uint64_t driver_features;         /* what the driver accepted */
    const struct virtio_transport_ops *transport_ops;
    void *transport;
};

/* Raise the used-buffer interrupt (InterruptStatus bit 0 + an irq pulse). */
void virtio_device_notify_used(struct virtio_device *dev);
/* The device changed its config space: bump ConfigGeneration, interrupt bit 1. */
void virtio_device_notify_config(struct virtio_device *dev);
/* The device cannot go on (e.g. a broken queue): DEVICE_NEEDS_RESET + config interrupt. */
void virtio_device_set_needs_reset(struct virtio_device *dev);
/* Take/release the transport's lock (only from threads the transport did not call in on). */
void virtio_device_lock(struct virtio_device *dev);
void virtio_device_unlock(struct virtio_device *dev);

/* Whether the driver accepted feature bit `bit` (0..63). */
bool virtio_device_has_feature(const struct virtio_device *dev, unsigned bit);

/*
 * Pushes a finished chain to queue q and raises the used-buffer interrupt
 * unless the driver suppressed it. On a broken queue it sets
 * DEVICE_NEEDS_RESET instead. Returns what vq_push returned.
 */
int virtio_device_complete(struct virtio_device *dev, uint16_t q, uint16_t head, uint32_t written);

/* Destroys dev through its ops (NULL-safe). */
void virtio_device_destroy(struct virtio_device *dev);

#endif
