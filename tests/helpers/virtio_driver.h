/*
 * The guest driver's side of a virtio device, as the unit tests play it:
 * guest RAM in a host buffer, an interrupt line that counts its pulses, the
 * virtio-mmio registers read and written through the transport's bus ops,
 * and split virtqueues laid out by hand (descriptors, avail ring, used ring).
 *
 * Plain data and small functions, no assertions: what a test expects stays
 * in the test, and the fuzz targets (no cmocka) could use it too. Offsets
 * and flags are spelled out here rather than taken from the device's
 * headers, so that the tests check the layout the device implements.
 */
#ifndef SM_TESTS_HELPERS_VIRTIO_DRIVER_H
#define SM_TESTS_HELPERS_VIRTIO_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/irq.h"
#include "devices/virtio/mmio.h"
#include "machine/guest_memory.h"

/* virtio-mmio registers (virtio 1.2, 4.2.2). */
enum {
    REG_MAGIC = 0x000, REG_VERSION = 0x004, REG_DEVICE_ID = 0x008, REG_VENDOR_ID = 0x00c,
    REG_DEV_FEATURES = 0x010, REG_DEV_FEATURES_SEL = 0x014,
    REG_DRV_FEATURES = 0x020, REG_DRV_FEATURES_SEL = 0x024,
    REG_QUEUE_SEL = 0x030, REG_QUEUE_NUM_MAX = 0x034, REG_QUEUE_NUM = 0x038, REG_QUEUE_READY = 0x044,
    REG_QUEUE_NOTIFY = 0x050, REG_INT_STATUS = 0x060, REG_INT_ACK = 0x064, REG_STATUS = 0x070,
    REG_DESC_LO = 0x080, REG_DESC_HI = 0x084, REG_DRIVER_LO = 0x090, REG_DRIVER_HI = 0x094,
    REG_DEVICE_LO = 0x0a0, REG_DEVICE_HI = 0x0a4,
    REG_SHM_SEL = 0x0ac, REG_SHM_LEN_LO = 0x0b0, REG_SHM_LEN_HI = 0x0b4,
    REG_QUEUE_RESET = 0x0c0, REG_CONFIG_GEN = 0x0fc, REG_CONFIG = 0x100,
};

/* Device status bits (virtio 1.2, 2.1). */
enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8, S_NEEDS_RESET = 64 };

/* VIRTIO_F_VERSION_1: the only transport feature every test driver accepts. */
#define DRV_F_VERSION_1 (1ull << 32)

/* --- guest RAM and the interrupt line ------------------------------------------------ */

/* size bytes of zeroed, page-aligned RAM, described by *mem; free() it after the device. */
uint8_t *drv_ram_create(struct guest_memory *mem, size_t size);

/* An edge interrupt line that counts its pulses (the used-buffer and config interrupts). */
struct drv_irq {
    struct irq_line line;
    int pulses;
};

void drv_irq_init(struct drv_irq *irq);

/* --- the virtio-mmio registers ----------------------------------------------------------- */

/* A 32-bit register read through the bus; 0xdeadbeef shows a read that wrote nothing. */
uint32_t drv_read(struct virtio_mmio *t, uint64_t off);
void drv_write(struct virtio_mmio *t, uint64_t off, uint32_t v);
/* The 64 feature bits the device offers (both DeviceFeatures words). */
uint64_t drv_device_features(struct virtio_mmio *t);
/* ACKNOWLEDGE, DRIVER, the driver's features, FEATURES_OK: whether the
 * device kept FEATURES_OK is for the caller to check. */
void drv_negotiate(struct virtio_mmio *t, uint64_t features);
/* Selects queue `index`, sets its size and the three ring addresses, QueueReady 1. */
void drv_setup_queue(struct virtio_mmio *t, uint32_t index, uint32_t size, uint64_t desc, uint64_t avail,
                     uint64_t used);
/* Status with DRIVER_OK added to the negotiated bits: the device goes live. */
void drv_driver_ok(struct virtio_mmio *t);
/* The notification a kick delivers, as the event loop hands it to the transport. */
void drv_kick(struct virtio_mmio *t, uint16_t queue);

/* --- split virtqueues in guest RAM --------------------------------------------------------- */

/* One queue as the driver laid it out: where its parts are, and the driver's counters. */
struct drv_queue {
    uint8_t *ram;                 /* the guest RAM the addresses below are in */
    uint64_t desc, avail, used;   /* guest-physical addresses of the three parts */
    uint16_t size;
    uint16_t avail_idx;           /* the driver's copy of avail->idx */
    uint16_t used_seen;           /* used elements taken by drv_next_used */
};

/* Descriptor flags (virtio 1.2, 2.7.5) and avail ring flags. */
enum { DRV_DESC_NEXT = 1, DRV_DESC_WRITE = 2, DRV_DESC_INDIRECT = 4 };
enum { DRV_AVAIL_NO_INTERRUPT = 1 };

void drv_queue_init(struct drv_queue *q, uint8_t *ram, uint16_t size, uint64_t desc, uint64_t avail,
                    uint64_t used);
/* Descriptor i of the table at host address `table` (a queue's, or an indirect one). */
void drv_put_desc(uint8_t *table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
/* Descriptor i of the queue's own table. */
void drv_queue_put_desc(struct drv_queue *q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                        uint16_t next);
/* One head into the next avail slot, then avail->idx: the device may take it. */
void drv_publish(struct drv_queue *q, uint16_t head);
/* avail->idx set outright (and the driver's copy with it), as a confused driver might. */
void drv_set_avail_idx(struct drv_queue *q, uint16_t idx);
void drv_set_avail_flags(struct drv_queue *q, uint16_t flags);
/* used->idx as the device last wrote it. */
uint16_t drv_used_idx(const struct drv_queue *q);
/* Used ring element `slot` (not reduced modulo the size: the caller says which). */
void drv_used_elem(const struct drv_queue *q, uint16_t slot, uint32_t *id, uint32_t *len);
/* The next used element not yet taken, if the device has returned one. */
bool drv_next_used(struct drv_queue *q, uint32_t *id, uint32_t *len);

#endif
