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

#include "devices/bus.h"
#include "devices/irq.h"
#include "devices/virtio/virtio.h"
#include "vmm/memory.h"

#define VIRTIO_MMIO_WINDOW              0x200
#define VIRTIO_MMIO_CONFIG_OFFSET       0x100
#define VIRTIO_MMIO_QUEUE_NOTIFY_OFFSET 0x50
#define VIRTIO_MMIO_MAGIC               0x74726976u
#define VIRTIO_MMIO_VERSION             2
#define VIRTIO_MMIO_VENDOR_ID           0x4d564d53u   /* "SMVM" */

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

#endif
