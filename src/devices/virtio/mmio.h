/*
 * virtio over MMIO, version 2 ("modern") only (virtio 1.1 section 4.2).
 *
 * A 0x200-byte window; the registers (32-bit, aligned accesses only; others
 * read 0 and are ignored) and the device config space from 0x100:
 *
 *   off    dir  name
 *   0x000  R    MagicValue 0x74726976 ("virt")
 *   0x004  R    Version 2
 *   0x008  R    DeviceID
 *   0x00c  R    VendorID
 *   0x010  R    DeviceFeatures (32 bits selected by DeviceFeaturesSel)
 *   0x014  W    DeviceFeaturesSel
 *   0x020  W    DriverFeatures (32 bits selected by DriverFeaturesSel)
 *   0x024  W    DriverFeaturesSel
 *   0x030  W    QueueSel
 *   0x034  R    QueueNumMax (0: no such queue)
 *   0x038  W    QueueNum
 *   0x044  RW   QueueReady
 *   0x050  W    QueueNotify (the queue index)
 *   0x060  R    InterruptStatus (1: used buffer, 2: config change)
 *   0x064  W    InterruptACK
 *   0x070  RW   Status (0 resets the device)
 *   0x080  W    QueueDescLow / 0x084 QueueDescHigh
 *   0x090  W    QueueDriverLow / 0x094 QueueDriverHigh
 *   0x0a0  W    QueueDeviceLow / 0x0a4 QueueDeviceHigh
 *   0x0ac  W    SHMSel
 *   0x0b0  R    SHMLenLow / 0x0b4 SHMLenHigh (no regions: all ones)
 *   0x0b8  R    SHMBaseLow / 0x0bc SHMBaseHigh (no regions: all ones)
 *   0x0c0  RW   QueueReset (VIRTIO_F_RING_RESET is not offered: reads 0)
 *   0x0fc  R    ConfigGeneration
 *   0x100+ RW   device config space (1, 2, 4 or 8-byte accesses)
 *
 * Guest-visible Linux command line for a device at BASE with IRQ:
 *   virtio_mmio.device=0x200@0xBASE:IRQ
 *
 * Thread-safety: one mutex per transport covers the registers, the queues
 * and every device op. The interrupt status is atomic so a device may raise
 * interrupts while the lock is held.
 */
#ifndef SM_DEVICES_VIRTIO_MMIO_H
#define SM_DEVICES_VIRTIO_MMIO_H

#include <stdint.h>

#include "supermachine.h"
#include "devices/bus.h"
#include "devices/device_state.h"
#include "devices/irq.h"
#include "devices/virtio/virtio.h"
#include "machine/guest_memory.h"

#define VIRTIO_MMIO_WINDOW              0x200
#define VIRTIO_MMIO_CONFIG_OFFSET       0x100
#define VIRTIO_MMIO_QUEUE_NOTIFY_OFFSET 0x50
#define VIRTIO_MMIO_MAGIC               0x74726976u
#define VIRTIO_MMIO_VERSION             2
#define VIRTIO_MMIO_VENDOR_ID           0x4d564d53u   /* "SMVM" */
/* Most queues a device on this transport may have (create refuses more), so every state fits. */
#define VIRTIO_MMIO_MAX_SAVED_QUEUES    16

struct virtio_mmio;

/*
 * Takes ownership of dev (virtio_mmio_destroy destroys it, and so does a
 * failed create). mem and irq must outlive the transport. NULL on failure
 * (out of memory, or the device's ops are inconsistent).
 */
struct virtio_mmio *virtio_mmio_create(struct virtio_device *dev, const struct guest_memory *mem,
                                       struct irq_line *irq);
void virtio_mmio_destroy(struct virtio_mmio *t);

/* opaque = struct virtio_mmio *; the window is VIRTIO_MMIO_WINDOW bytes. */
extern const struct bus_device_ops virtio_mmio_bus_ops;

/* A slot with no device behind it (opaque unused): MagicValue and Version
 * as a transport's, DeviceID 0, every other register 0, writes ignored.
 * Linux's driver takes DeviceID 0 for "nothing here" and skips the slot
 * without a word, so a slot may be named on the command line before a
 * device is there (a VM's volume slots, bound later by the agent). */
extern const struct bus_device_ops virtio_mmio_empty_slot_bus_ops;

/*
 * The driver kicked queue queue_index (an ioeventfd fired, or a write of the
 * QueueNotify register reached the bus). Ignored unless the device is live
 * and the queue ready. Any thread.
 */
void virtio_mmio_queue_notify(struct virtio_mmio *t, uint16_t queue_index);

uint16_t virtio_mmio_num_queues(const struct virtio_mmio *t);

/* The device the transport carries (for its owner's bookkeeping). */
struct virtio_device *virtio_mmio_device(const struct virtio_mmio *t);

/* The Status register as the driver sees it (tests, diagnostics). */
uint32_t virtio_mmio_status(struct virtio_mmio *t);

/*
 * Saved state (snapshots): plain data, written raw and read back as hostile
 * input. Only the transport's state; a device's own state (if any) is the
 * device's business. Reserved bytes are 0 on save and must be 0 on restore.
 *
 * One queue, struct virtio_queue_state (40 bytes):
 *   off  size  field           rule on restore
 *   0    2     size            ready: a power of two <= max_size (vq_validate)
 *   2    2     max_size        the device's QueueNumMax
 *   4    1     ready           0/1
 *   5    1     broken          0/1; only on a ready queue
 *   6    2     reserved        0
 *   8    8     desc_addr       ready: the whole table in guest RAM, aligned (vq_validate)
 *   16   8     avail_addr      ready: likewise
 *   24   8     used_addr       ready: likewise
 *   32   2     last_avail_idx  ready: last_avail_idx - used_idx (mod 2^16) <= size; else 0
 *   34   2     used_idx        not ready: 0
 *   36   4     reserved        0
 *
 * The transport, struct virtio_mmio_state (696 bytes):
 *   0    4     device_id            the device's ID (virtio 1.1 section 5)
 *   4    4     status               only driver bits + DEVICE_NEEDS_RESET; DRIVER_OK needs
 *                                   FEATURES_OK; FEATURES_OK needs VERSION_1 accepted
 *   8    4     device_features_sel  any
 *   12   4     driver_features_sel  any
 *   16   4     queue_sel            any
 *   20   4     interrupt_status     bits 0-1 only
 *   24   4     config_generation    any
 *   28   4     reserved             0
 *   32   8     device_features      what was offered; must equal this device's offer
 *   40   8     driver_features      a subset of device_features
 *   48   2     nqueues              the device's queue count (<= VIRTIO_MMIO_MAX_SAVED_QUEUES)
 *   50   6     reserved             0
 *   56   640   queues[16]           the first nqueues used; the rest all 0
 */
struct virtio_queue_state {
    uint16_t size, max_size;
    uint8_t ready, broken;
    uint8_t reserved0[2];
    uint64_t desc_addr, avail_addr, used_addr;
    uint16_t last_avail_idx, used_idx;
    uint8_t reserved1[4];
};
_Static_assert(sizeof(struct virtio_queue_state) == 40, "virtio_queue_state is a fixed 40-byte layout");

struct virtio_mmio_state {
    uint32_t device_id;
    uint32_t status, device_features_sel, driver_features_sel, queue_sel, interrupt_status, config_generation;
    uint32_t reserved0;
    uint64_t device_features;
    uint64_t driver_features;
    uint16_t nqueues;
    uint8_t reserved1[6];
    struct virtio_queue_state queues[VIRTIO_MMIO_MAX_SAVED_QUEUES];
};
_Static_assert(sizeof(struct virtio_mmio_state) == 696, "virtio_mmio_state is a fixed 696-byte layout");

/* Fills *out (every byte, padding included). Takes the transport lock. */
void virtio_mmio_save(struct virtio_mmio *t, struct virtio_mmio_state *out);

/*
 * Checks every field against the rules above and the device this transport
 * carries, with guest memory already mapped. On a violation: SM_E_INVALID,
 * a message naming the device and field, the transport untouched.
 * Otherwise resets the device (its reset op), installs the state and, when
 * DRIVER_OK is set without DEVICE_NEEDS_RESET, calls the device's activate
 * op and kicks every ready queue (buffers the driver posted and the device
 * had not consumed are served now; this may write guest memory and pulse the
 * IRQ line). If activate fails the device cannot resume: the transport is
 * left reset (status 0) and SM_E_GUEST names the device.
 * Takes the transport lock: not from inside a device op.
 */
sm_code virtio_mmio_restore(struct virtio_mmio *t, const struct virtio_mmio_state *in, sm_error *err);

/*
 * virtio_mmio_save and virtio_mmio_restore for the VMM's device table; dev =
 * struct virtio_mmio *. Its restore_begin and restore_end call the carried
 * device's own snapshot hooks (virtio.h), if it has them.
 */
extern const struct device_state_ops virtio_mmio_state_ops;

#endif
