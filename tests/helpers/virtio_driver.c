/* The test driver of tests/helpers/virtio_driver.h. Guest RAM is written
 * with memcpy: ring fields sit at any offset a test chooses, aligned or not. */
#include "virtio_driver.h"

#include <stdlib.h>
#include <string.h>

uint8_t *drv_ram_create(struct guest_memory *mem, size_t size)
{
    uint8_t *ram = aligned_alloc(4096, size);
    if (!ram)
        abort(); /* a test cannot go on without its RAM */
    memset(ram, 0, size);
    gm_init_buffer(mem, ram, size);
    return ram;
}

static void count_pulse(struct irq_line *line) { ((struct drv_irq *)line->ctx)->pulses++; }

void drv_irq_init(struct drv_irq *irq)
{
    *irq = (struct drv_irq){ .line = { .pulse = count_pulse, .fd = -1, .ctx = irq } };
}

/* --- registers ------------------------------------------------------------------------ */

uint32_t drv_read(struct virtio_mmio *t, uint64_t off)
{
    uint32_t v = 0xdeadbeef;
    virtio_mmio_bus_ops.read(t, off, (uint8_t *)&v, 4);
    return v;
}

void drv_write(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
    virtio_mmio_bus_ops.write(t, off, (const uint8_t *)&v, 4);
}

uint64_t drv_device_features(struct virtio_mmio *t)
{
    drv_write(t, REG_DEV_FEATURES_SEL, 0);
    uint64_t lo = drv_read(t, REG_DEV_FEATURES);
    drv_write(t, REG_DEV_FEATURES_SEL, 1);
    return lo | (uint64_t)drv_read(t, REG_DEV_FEATURES) << 32;
}

void drv_negotiate(struct virtio_mmio *t, uint64_t features)
{
    drv_write(t, REG_STATUS, S_ACK);
    drv_write(t, REG_STATUS, S_ACK | S_DRIVER);
    drv_write(t, REG_DRV_FEATURES_SEL, 0);
    drv_write(t, REG_DRV_FEATURES, (uint32_t)features);
    drv_write(t, REG_DRV_FEATURES_SEL, 1);
    drv_write(t, REG_DRV_FEATURES, (uint32_t)(features >> 32));
    drv_write(t, REG_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
}

void drv_setup_queue(struct virtio_mmio *t, uint32_t index, uint32_t size, uint64_t desc, uint64_t avail,
                     uint64_t used)
{
    drv_write(t, REG_QUEUE_SEL, index);
    drv_write(t, REG_QUEUE_NUM, size);
    drv_write(t, REG_DESC_LO, (uint32_t)desc);
    drv_write(t, REG_DESC_HI, (uint32_t)(desc >> 32));
    drv_write(t, REG_DRIVER_LO, (uint32_t)avail);
    drv_write(t, REG_DRIVER_HI, (uint32_t)(avail >> 32));
    drv_write(t, REG_DEVICE_LO, (uint32_t)used);
    drv_write(t, REG_DEVICE_HI, (uint32_t)(used >> 32));
    drv_write(t, REG_QUEUE_READY, 1);
}

void drv_driver_ok(struct virtio_mmio *t)
{
    drv_write(t, REG_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

void drv_kick(struct virtio_mmio *t, uint16_t queue) { virtio_mmio_queue_notify(t, queue); }

/* --- virtqueues ------------------------------------------------------------------------ */

void drv_queue_init(struct drv_queue *q, uint8_t *ram, uint16_t size, uint64_t desc, uint64_t avail,
                    uint64_t used)
{
    *q = (struct drv_queue){ .ram = ram, .desc = desc, .avail = avail, .used = used, .size = size };
}

void drv_put_desc(uint8_t *table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    uint8_t *d = table + 16u * i;
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

void drv_queue_put_desc(struct drv_queue *q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                        uint16_t next)
{
    drv_put_desc(q->ram + q->desc, i, addr, len, flags, next);
}

static void put16(uint8_t *ram, uint64_t gpa, uint16_t v) { memcpy(ram + gpa, &v, 2); }

void drv_publish(struct drv_queue *q, uint16_t head)
{
    put16(q->ram, q->avail + 4 + 2ull * (q->avail_idx % q->size), head);
    q->avail_idx++;
    put16(q->ram, q->avail + 2, q->avail_idx);
}

void drv_set_avail_idx(struct drv_queue *q, uint16_t idx)
{
    q->avail_idx = idx;
    put16(q->ram, q->avail + 2, idx);
}

void drv_set_avail_flags(struct drv_queue *q, uint16_t flags) { put16(q->ram, q->avail, flags); }

uint16_t drv_used_idx(const struct drv_queue *q)
{
    uint16_t v;
    memcpy(&v, q->ram + q->used + 2, 2);
    return v;
}

void drv_used_elem(const struct drv_queue *q, uint16_t slot, uint32_t *id, uint32_t *len)
{
    memcpy(id, q->ram + q->used + 4 + 8ull * slot, 4);
    memcpy(len, q->ram + q->used + 8 + 8ull * slot, 4);
}

bool drv_next_used(struct drv_queue *q, uint32_t *id, uint32_t *len)
{
    if (drv_used_idx(q) == q->used_seen)
        return false;
    drv_used_elem(q, q->used_seen % q->size, id, len);
    q->used_seen++;
    return true;
}
