/*
 * virtio-mmio transport, version 2. The register table is in mmio.h.
 *
 * State machine (Status register, virtio 1.1 section 3.1):
 *   0 written            -> full reset (device, queues, features, interrupts)
 *   FEATURES_OK set      -> kept only if the driver accepted VERSION_1 and
 *                           nothing we did not offer; otherwise it reads back
 *                           clear, which tells the driver to give up
 *   DRIVER_OK set        -> needs FEATURES_OK; the device's activate() runs
 *                           once, then every ready queue is kicked so buffers
 *                           queued before DRIVER_OK are not lost
 *   bits are only added by the driver; only a reset clears them;
 *   DEVICE_NEEDS_RESET is the device's own bit: set when the driver broke a
 *   queue or a rule, after which no queue is processed until reset.
 *
 * Snapshots (virtio_mmio_save/restore, layout in mmio.h): restore accepts
 * only a state this machine could have reached through the registers (the
 * rules above, plus vq_validate for every ready queue), then resets the
 * device and installs it; a live state goes through activate() like a
 * DRIVER_OK write, so posted buffers are served at once.
 */
#include "devices/virtio/mmio.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

enum mmio_reg {
    REG_MAGIC = 0x000,
    REG_VERSION = 0x004,
    REG_DEVICE_ID = 0x008,
    REG_VENDOR_ID = 0x00c,
    REG_DEVICE_FEATURES = 0x010,
    REG_DEVICE_FEATURES_SEL = 0x014,
    REG_DRIVER_FEATURES = 0x020,
    REG_DRIVER_FEATURES_SEL = 0x024,
    REG_QUEUE_SEL = 0x030,
    REG_QUEUE_NUM_MAX = 0x034,
    REG_QUEUE_NUM = 0x038,
    REG_QUEUE_READY = 0x044,
    REG_QUEUE_NOTIFY = VIRTIO_MMIO_QUEUE_NOTIFY_OFFSET,
    REG_INTERRUPT_STATUS = 0x060,
    REG_INTERRUPT_ACK = 0x064,
    REG_STATUS = 0x070,
    REG_QUEUE_DESC_LOW = 0x080,
    REG_QUEUE_DESC_HIGH = 0x084,
    REG_QUEUE_DRIVER_LOW = 0x090,
    REG_QUEUE_DRIVER_HIGH = 0x094,
    REG_QUEUE_DEVICE_LOW = 0x0a0,
    REG_QUEUE_DEVICE_HIGH = 0x0a4,
    REG_SHM_SEL = 0x0ac,
    REG_SHM_LEN_LOW = 0x0b0,
    REG_SHM_LEN_HIGH = 0x0b4,
    REG_SHM_BASE_LOW = 0x0b8,
    REG_SHM_BASE_HIGH = 0x0bc,
    REG_QUEUE_RESET = 0x0c0,
    REG_CONFIG_GENERATION = 0x0fc,
};

/* Feature bits 24..40 belong to the transport; a device's own bits there are dropped. */
#define TRANSPORT_FEATURE_MASK (((1ull << 41) - 1) & ~((1ull << 24) - 1))
#define TRANSPORT_FEATURES ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_RING_INDIRECT_DESC))
#define DRIVER_STATUS_BITS                                                                        \
    (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |               \
     VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FAILED)
#define MAX_QUEUES VIRTIO_MMIO_MAX_SAVED_QUEUES   /* every device's queues fit in a saved state */
#define SAVED_STATUS_BITS (DRIVER_STATUS_BITS | VIRTIO_STATUS_DEVICE_NEEDS_RESET)
#define INTERRUPT_BITS (VIRTIO_INT_USED_BUFFER | VIRTIO_INT_CONFIG_CHANGE)

struct virtio_mmio {
    pthread_mutex_t lock;
    struct virtio_device *dev;
    const struct guest_memory *mem;
    struct irq_line *irq;
    struct virtqueue *queues;
    uint16_t num_queues;
    uint64_t device_features;       /* what we offer */
    uint32_t device_features_sel;
    uint32_t driver_features_sel;
    uint32_t queue_sel;
    uint32_t status;
    bool activated;
    uint32_t interrupt_status;      /* atomic: devices raise it under the lock, ACK clears it */
    uint32_t config_generation;     /* atomic */
};

/* --- what the device sees of us ------------------------------------------ */

static void raise_interrupt(struct virtio_mmio *t, uint32_t bits)
{
    __atomic_fetch_or(&t->interrupt_status, bits, __ATOMIC_SEQ_CST);
    irq_pulse(t->irq);
}

static void tp_notify_used(void *opaque) { raise_interrupt(opaque, VIRTIO_INT_USED_BUFFER); }

static void tp_notify_config(void *opaque)
{
    struct virtio_mmio *t = opaque;
    __atomic_fetch_add(&t->config_generation, 1, __ATOMIC_SEQ_CST);
    raise_interrupt(t, VIRTIO_INT_CONFIG_CHANGE);
}

/* Called with the lock held (from a device op, or by the transport itself). */
static void tp_set_needs_reset(void *opaque)
{
    struct virtio_mmio *t = opaque;
    if (t->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
        return;
    t->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    raise_interrupt(t, VIRTIO_INT_CONFIG_CHANGE);
}

static void tp_lock(void *opaque) { pthread_mutex_lock(&((struct virtio_mmio *)opaque)->lock); }
static void tp_unlock(void *opaque) { pthread_mutex_unlock(&((struct virtio_mmio *)opaque)->lock); }

static const struct virtio_transport_ops mmio_transport_ops = {
    .notify_used = tp_notify_used,
    .notify_config = tp_notify_config,
    .set_needs_reset = tp_set_needs_reset,
    .lock = tp_lock,
    .unlock = tp_unlock,
};

/* --- lifecycle ---------------------------------------------------------------- */

static bool ops_are_sane(const struct virtio_device_ops *ops)
{
    uint32_t qmax = ops->queue_max_size;
    return ops->num_queues >= 1 && ops->num_queues <= MAX_QUEUES && qmax && (qmax & (qmax - 1)) == 0 &&
           qmax <= VIRTQ_MAX_SIZE && ops->config_size <= VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG_OFFSET &&
           ops->queue_notify;
}

static void reset_queues(struct virtio_mmio *t)
{
    for (uint16_t i = 0; i < t->num_queues; i++)
        vq_reset(&t->queues[i], t->dev->ops->queue_max_size);
}

struct virtio_mmio *virtio_mmio_create(struct virtio_device *dev, const struct guest_memory *mem,
                                       struct irq_line *irq)
{
    if (!dev || !dev->ops || !mem || !ops_are_sane(dev->ops)) {
        virtio_device_destroy(dev);
        return NULL;
    }
    struct virtio_mmio *t = calloc(1, sizeof *t);
    struct virtqueue *queues = calloc(dev->ops->num_queues, sizeof *queues);
    if (!t || !queues || pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        free(queues);
        virtio_device_destroy(dev);
        return NULL;
    }
    t->dev = dev;
    t->mem = mem;
    t->irq = irq;
    t->queues = queues;
    t->num_queues = dev->ops->num_queues;
    t->device_features = (dev->ops->features & ~TRANSPORT_FEATURE_MASK) | TRANSPORT_FEATURES;
    reset_queues(t);
    dev->queues = queues;
    dev->mem = mem;
    dev->driver_features = 0;
    dev->transport_ops = &mmio_transport_ops;
    dev->transport = t;
    return t;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
    if (!t)
        return;
    virtio_device_destroy(t->dev);
    free(t->queues);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

uint16_t virtio_mmio_num_queues(const struct virtio_mmio *t) { return t->num_queues; }
struct virtio_device *virtio_mmio_device(const struct virtio_mmio *t) { return t->dev; }

uint32_t virtio_mmio_status(struct virtio_mmio *t)
{
    pthread_mutex_lock(&t->lock);
    uint32_t s = t->status;
    pthread_mutex_unlock(&t->lock);
    return s;
}

/* Status 0: back to the state after create. The config generation keeps counting. */
static void device_reset(struct virtio_mmio *t)
{
    if (t->dev->ops->reset)
        t->dev->ops->reset(t->dev);
    reset_queues(t);
    t->dev->driver_features = 0;
    t->device_features_sel = 0;
    t->driver_features_sel = 0;
    t->queue_sel = 0;
    t->status = 0;
    t->activated = false;
    __atomic_store_n(&t->interrupt_status, 0, __ATOMIC_SEQ_CST);
}

/* --- queues ------------------------------------------------------------------- */

static bool device_live(const struct virtio_mmio *t)
{
    return t->activated && !(t->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

static void notify_locked(struct virtio_mmio *t, uint32_t queue_index)
{
    if (!device_live(t) || queue_index >= t->num_queues || !t->queues[queue_index].ready)
        return;
    if (t->queues[queue_index].broken) {
        tp_set_needs_reset(t);
        return;
    }
    t->dev->ops->queue_notify(t->dev, (uint16_t)queue_index);
}

void virtio_mmio_queue_notify(struct virtio_mmio *t, uint16_t queue_index)
{
    pthread_mutex_lock(&t->lock);
    notify_locked(t, queue_index);
    pthread_mutex_unlock(&t->lock);
}

/* The queue QueueSel points at, or NULL when it names no queue. */
static struct virtqueue *selected_queue(struct virtio_mmio *t)
{
    return t->queue_sel < t->num_queues ? &t->queues[t->queue_sel] : NULL;
}

static void set_queue_ready(struct virtio_mmio *t, struct virtqueue *vq, uint32_t value)
{
    if (value == 0) {
        /* The driver takes the queue down (Linux does before freeing it); indices restart. */
        uint16_t size = vq->size;
        vq_reset(vq, vq->max_size);
        vq->size = size;
        return;
    }
    if (vq->ready)
        return;
    if (vq_validate(vq, t->mem) < 0) {
        /* Bad size or areas: the queue stays down and the device asks for a reset. */
        tp_set_needs_reset(t);
        return;
    }
    vq->indirect_ok = (t->dev->driver_features >> VIRTIO_F_RING_INDIRECT_DESC) & 1;
    vq->last_avail_idx = 0;
    vq->used_idx = 0;
    vq->broken = false;
    vq->ready = true;
}

static void set_half(uint64_t *field, uint32_t value, bool high)
{
    if (high)
        *field = (*field & 0xffffffffull) | ((uint64_t)value << 32);
    else
        *field = (*field & ~0xffffffffull) | value;
}

/* QueueNum and the area addresses: only while the selected queue is down. */
static void write_queue_reg(struct virtio_mmio *t, uint64_t reg, uint32_t value)
{
    struct virtqueue *vq = selected_queue(t);
    if (!vq)
        return;
    if (reg == REG_QUEUE_READY) {
        set_queue_ready(t, vq, value);
        return;
    }
    if (vq->ready)
        return;
    switch (reg) {
    case REG_QUEUE_NUM: vq->size = value > 0xffff ? 0 : (uint16_t)value; break; /* validated at ready */
    case REG_QUEUE_DESC_LOW: set_half(&vq->desc_addr, value, false); break;
    case REG_QUEUE_DESC_HIGH: set_half(&vq->desc_addr, value, true); break;
    case REG_QUEUE_DRIVER_LOW: set_half(&vq->avail_addr, value, false); break;
    case REG_QUEUE_DRIVER_HIGH: set_half(&vq->avail_addr, value, true); break;
    case REG_QUEUE_DEVICE_LOW: set_half(&vq->used_addr, value, false); break;
    case REG_QUEUE_DEVICE_HIGH: set_half(&vq->used_addr, value, true); break;
    default: break;
    }
}

/* --- status and features ------------------------------------------------------- */

static bool features_acceptable(const struct virtio_mmio *t)
{
    uint64_t f = t->dev->driver_features;
    return (f >> VIRTIO_F_VERSION_1) & 1 && !(f & ~t->device_features);
}

static void activate(struct virtio_mmio *t)
{
    for (uint16_t i = 0; i < t->num_queues; i++)
        t->queues[i].indirect_ok = (t->dev->driver_features >> VIRTIO_F_RING_INDIRECT_DESC) & 1;
    if (t->dev->ops->activate && t->dev->ops->activate(t->dev) != 0) {
        tp_set_needs_reset(t);
        return;
    }
    t->activated = true;
    for (uint16_t i = 0; i < t->num_queues; i++)
        notify_locked(t, i);
}

static void write_status(struct virtio_mmio *t, uint32_t value)
{
    if (value == 0) {
        device_reset(t);
        return;
    }
    uint32_t added = value & DRIVER_STATUS_BITS & ~t->status;
    if ((added & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(t))
        added &= ~VIRTIO_STATUS_FEATURES_OK; /* reads back clear: the driver must give up */
    t->status |= added & ~VIRTIO_STATUS_DRIVER_OK;
    if (added & VIRTIO_STATUS_DRIVER_OK) {
        /* No features agreed, or the driver already broke a rule: never activate. */
        if (!(t->status & VIRTIO_STATUS_FEATURES_OK) || (t->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)) {
            tp_set_needs_reset(t);
            return;
        }
        t->status |= VIRTIO_STATUS_DRIVER_OK;
        activate(t);
    }
}

static void write_driver_features(struct virtio_mmio *t, uint32_t value)
{
    /* Final once FEATURES_OK is set; a selector past 1 names no bits. */
    if (t->status & VIRTIO_STATUS_FEATURES_OK || t->driver_features_sel > 1)
        return;
    uint64_t f = t->dev->driver_features;
    set_half(&f, value, t->driver_features_sel == 1);
    t->dev->driver_features = f;
}

/* --- register access --------------------------------------------------------------- */

static uint32_t read_reg(struct virtio_mmio *t, uint64_t reg)
{
    const struct virtio_device_ops *ops = t->dev->ops;
    struct virtqueue *vq = selected_queue(t);
    switch (reg) {
    case REG_MAGIC: return VIRTIO_MMIO_MAGIC;
    case REG_VERSION: return VIRTIO_MMIO_VERSION;
    case REG_DEVICE_ID: return ops->device_id;
    case REG_VENDOR_ID: return VIRTIO_MMIO_VENDOR_ID;
    case REG_DEVICE_FEATURES:
        return t->device_features_sel > 1 ? 0 : (uint32_t)(t->device_features >> (32 * t->device_features_sel));
    case REG_QUEUE_NUM_MAX: return vq ? vq->max_size : 0;
    case REG_QUEUE_READY: return vq ? vq->ready : 0;
    case REG_INTERRUPT_STATUS: return __atomic_load_n(&t->interrupt_status, __ATOMIC_SEQ_CST);
    case REG_STATUS: return t->status;
    case REG_SHM_LEN_LOW:
    case REG_SHM_LEN_HIGH:
    case REG_SHM_BASE_LOW:
    case REG_SHM_BASE_HIGH: return 0xffffffffu; /* no shared memory regions: length -1 */
    case REG_CONFIG_GENERATION: return __atomic_load_n(&t->config_generation, __ATOMIC_SEQ_CST);
    default: return 0; /* write-only, reserved (incl. QueueReset) or unknown */
    }
}

static void write_reg(struct virtio_mmio *t, uint64_t reg, uint32_t value)
{
    switch (reg) {
    case REG_DEVICE_FEATURES_SEL: t->device_features_sel = value; break;
    case REG_DRIVER_FEATURES: write_driver_features(t, value); break;
    case REG_DRIVER_FEATURES_SEL: t->driver_features_sel = value; break;
    case REG_QUEUE_SEL: t->queue_sel = value; break;
    case REG_QUEUE_NUM:
    case REG_QUEUE_READY:
    case REG_QUEUE_DESC_LOW:
    case REG_QUEUE_DESC_HIGH:
    case REG_QUEUE_DRIVER_LOW:
    case REG_QUEUE_DRIVER_HIGH:
    case REG_QUEUE_DEVICE_LOW:
    case REG_QUEUE_DEVICE_HIGH: write_queue_reg(t, reg, value); break;
    case REG_QUEUE_NOTIFY: notify_locked(t, value); break;
    case REG_INTERRUPT_ACK: __atomic_fetch_and(&t->interrupt_status, ~value, __ATOMIC_SEQ_CST); break;
    case REG_STATUS: write_status(t, value); break;
    default: break; /* read-only, SHMSel (no regions), QueueReset (not offered), unknown */
    }
}

static bool config_access_ok(const struct virtio_mmio *t, uint64_t off, uint32_t len)
{
    return (len == 1 || len == 2 || len == 4 || len == 8) && off <= t->dev->ops->config_size &&
           len <= t->dev->ops->config_size - off;
}

static void mmio_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct virtio_mmio *t = opaque;
    memset(data, 0, len);
    pthread_mutex_lock(&t->lock);
    if (offset >= VIRTIO_MMIO_CONFIG_OFFSET) {
        uint64_t off = offset - VIRTIO_MMIO_CONFIG_OFFSET;
        if (config_access_ok(t, off, len) && t->dev->ops->read_config)
            t->dev->ops->read_config(t->dev, (uint32_t)off, data, len);
    } else if (len == 4 && offset % 4 == 0) {
        uint32_t v = read_reg(t, offset);
        memcpy(data, &v, 4);
    }
    pthread_mutex_unlock(&t->lock);
}

static void mmio_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct virtio_mmio *t = opaque;
    pthread_mutex_lock(&t->lock);
    if (offset >= VIRTIO_MMIO_CONFIG_OFFSET) {
        uint64_t off = offset - VIRTIO_MMIO_CONFIG_OFFSET;
        if (config_access_ok(t, off, len) && t->dev->ops->write_config)
            t->dev->ops->write_config(t->dev, (uint32_t)off, data, len);
    } else if (len == 4 && offset % 4 == 0) {
        uint32_t v;
        memcpy(&v, data, 4);
        write_reg(t, offset, v);
    }
    pthread_mutex_unlock(&t->lock);
}

const struct bus_device_ops virtio_mmio_bus_ops = {
    .read = mmio_read,
    .write = mmio_write,
};

static void empty_slot_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    (void)opaque;
    uint32_t v = offset == REG_MAGIC ? VIRTIO_MMIO_MAGIC : offset == REG_VERSION ? VIRTIO_MMIO_VERSION : 0;
    memset(data, 0, len);
    if (len == 4)
        memcpy(data, &v, 4);
}

static void empty_slot_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    (void)opaque, (void)offset, (void)data, (void)len;
}

const struct bus_device_ops virtio_mmio_empty_slot_bus_ops = {
    .read = empty_slot_read,
    .write = empty_slot_write,
};

/* --- snapshots (layout and rules in mmio.h) ------------------------------------------ */

static void save_queue(const struct virtqueue *vq, struct virtio_queue_state *out)
{
    out->size = vq->size;
    out->max_size = vq->max_size;
    out->ready = vq->ready;
    out->broken = vq->broken;
    out->desc_addr = vq->desc_addr;
    out->avail_addr = vq->avail_addr;
    out->used_addr = vq->used_addr;
    out->last_avail_idx = vq->last_avail_idx;
    out->used_idx = vq->used_idx;
}

void virtio_mmio_save(struct virtio_mmio *t, struct virtio_mmio_state *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&t->lock);
    out->device_id = t->dev->ops->device_id;
    out->status = t->status;
    out->device_features_sel = t->device_features_sel;
    out->driver_features_sel = t->driver_features_sel;
    out->queue_sel = t->queue_sel;
    out->interrupt_status = __atomic_load_n(&t->interrupt_status, __ATOMIC_SEQ_CST);
    out->config_generation = __atomic_load_n(&t->config_generation, __ATOMIC_SEQ_CST);
    out->device_features = t->device_features;
    out->driver_features = t->dev->driver_features;
    out->nqueues = t->num_queues;
    for (uint16_t i = 0; i < t->num_queues; i++)
        save_queue(&t->queues[i], &out->queues[i]);
    pthread_mutex_unlock(&t->lock);
}

static bool all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i])
            return false;
    return true;
}

/* The live queue a saved one describes (not yet installed anywhere). */
static struct virtqueue queue_from_state(const struct virtio_queue_state *q)
{
    return (struct virtqueue){
        .size = q->size,
        .max_size = q->max_size,
        .ready = q->ready,
        .desc_addr = q->desc_addr,
        .avail_addr = q->avail_addr,
        .used_addr = q->used_addr,
        .last_avail_idx = q->last_avail_idx,
        .used_idx = q->used_idx,
        .broken = q->broken,
    };
}

static sm_code check_queue(const struct virtio_mmio *t, const struct virtio_queue_state *q, unsigned i,
                           sm_error *err)
{
    const char *name = t->dev->ops->name;
    if (!all_zero(q->reserved0, sizeof q->reserved0) || !all_zero(q->reserved1, sizeof q->reserved1))
        return error_set(err, SM_E_INVALID, "virtio-mmio %s state: queue %u: reserved bytes are not 0", name, i);
    if (q->max_size != t->dev->ops->queue_max_size)
        return error_set(err, SM_E_INVALID, "virtio-mmio %s state: queue %u: max size %u, but the device's is %u",
                       name, i, q->max_size, t->dev->ops->queue_max_size);
    if (q->ready > 1 || q->broken > 1)
        return error_set(err, SM_E_INVALID, "virtio-mmio %s state: queue %u: ready %u / broken %u are not 0 or 1",
                       name, i, q->ready, q->broken);
    if (!q->ready) {
        /* A queue taken down restarts its indices; only a ready queue can break. */
        if (q->broken || q->last_avail_idx || q->used_idx)
            return error_set(err, SM_E_INVALID,
                           "virtio-mmio %s state: queue %u is not ready but has indices %u/%u or is broken", name, i,
                           q->last_avail_idx, q->used_idx);
        return SM_OK;
    }
    struct virtqueue vq = queue_from_state(q);
    if (vq_validate(&vq, t->mem) < 0)
        return error_set(err, SM_E_INVALID,
                       "virtio-mmio %s state: queue %u (size %u, desc 0x%llx, avail 0x%llx, used 0x%llx): size not a "
                       "power of two <= %u, or a ring misaligned or outside guest memory",
                       name, i, q->size, (unsigned long long)q->desc_addr, (unsigned long long)q->avail_addr,
                       (unsigned long long)q->used_addr, q->max_size);
    /* The device never has more chains in hand than the ring holds. */
    uint16_t in_flight = (uint16_t)(q->last_avail_idx - q->used_idx);
    if (in_flight > q->size)
        return error_set(err, SM_E_INVALID,
                       "virtio-mmio %s state: queue %u: %u chains taken (avail %u, used %u) but the ring holds %u", name,
                       i, in_flight, q->last_avail_idx, q->used_idx, q->size);
    return SM_OK;
}

/* Features and status: what the driver could have reached through the registers. */
static sm_code check_negotiation(const struct virtio_mmio *t, const struct virtio_mmio_state *in, sm_error *err)
{
    const char *name = t->dev->ops->name;
    if (in->device_features != t->device_features)
        return error_set(err, SM_E_INVALID,
                       "virtio-mmio %s state: the saved device offered features 0x%llx, this one offers 0x%llx", name,
                       (unsigned long long)in->device_features, (unsigned long long)t->device_features);
    if (in->driver_features & ~t->device_features)
        return error_set(err, SM_E_INVALID,
                       "virtio-mmio %s state: driver features 0x%llx include 0x%llx, which the device never offered",
                       name, (unsigned long long)in->driver_features,
                       (unsigned long long)(in->driver_features & ~t->device_features));
    if (in->status & ~SAVED_STATUS_BITS)
        return error_set(err, SM_E_INVALID, "virtio-mmio %s state: status 0x%x has unknown bits 0x%x", name, in->status,
                       in->status & ~SAVED_STATUS_BITS);
    if ((in->status & VIRTIO_STATUS_DRIVER_OK) && !(in->status & VIRTIO_STATUS_FEATURES_OK))
        return error_set(err, SM_E_INVALID, "virtio-mmio %s state: status 0x%x has DRIVER_OK without FEATURES_OK", name,
                       in->status);
    if ((in->status & VIRTIO_STATUS_FEATURES_OK) && !((in->driver_features >> VIRTIO_F_VERSION_1) & 1))
        return error_set(err, SM_E_INVALID, "virtio-mmio %s state: FEATURES_OK without VERSION_1 accepted", name);
    if (in->interrupt_status & ~INTERRUPT_BITS)
        return error_set(err, SM_E_INVALID, "virtio-mmio %s state: interrupt status 0x%x has unknown bits", name,
                       in->interrupt_status);
    return SM_OK;
}

static sm_code check_state(const struct virtio_mmio *t, const struct virtio_mmio_state *in, sm_error *err)
{
    const char *name = t->dev->ops->name;
    if (in->device_id != t->dev->ops->device_id)
        return error_set(err, SM_E_INVALID, "virtio-mmio %s state: saved device id %u, but this device's id is %u",
                       name, in->device_id, t->dev->ops->device_id);
    if (in->nqueues != t->num_queues)
        return error_set(err, SM_E_INVALID, "virtio-mmio %s state: %u queues saved, but the device has %u", name,
                       in->nqueues, t->num_queues);
    if (in->reserved0 || !all_zero(in->reserved1, sizeof in->reserved1))
        return error_set(err, SM_E_INVALID, "virtio-mmio %s state: reserved bytes are not 0", name);
    sm_code rc = check_negotiation(t, in, err);
    for (unsigned i = 0; rc == SM_OK && i < in->nqueues; i++)
        rc = check_queue(t, &in->queues[i], i, err);
    if (rc != SM_OK)
        return rc;
    for (unsigned i = in->nqueues; i < VIRTIO_MMIO_MAX_SAVED_QUEUES; i++)
        if (!all_zero(&in->queues[i], sizeof in->queues[i]))
            return error_set(err, SM_E_INVALID, "virtio-mmio %s state: queue slot %u is past the %u queues and not 0",
                           name, i, in->nqueues);
    return SM_OK;
}

/* Called with the lock held, on a reset transport, with a checked state. */
static void install_state(struct virtio_mmio *t, const struct virtio_mmio_state *in)
{
    /* indirect_ok stays clear: only a live queue reads it, and activate() sets it from the features. */
    for (uint16_t i = 0; i < t->num_queues; i++)
        t->queues[i] = queue_from_state(&in->queues[i]);
    t->dev->driver_features = in->driver_features;
    t->device_features_sel = in->device_features_sel;
    t->driver_features_sel = in->driver_features_sel;
    t->queue_sel = in->queue_sel;
    t->status = in->status;
    __atomic_store_n(&t->interrupt_status, in->interrupt_status, __ATOMIC_SEQ_CST);
    __atomic_store_n(&t->config_generation, in->config_generation, __ATOMIC_SEQ_CST);
}

sm_code virtio_mmio_restore(struct virtio_mmio *t, const struct virtio_mmio_state *in, sm_error *err)
{
    /* The ops, the queue count, the offer and guest memory never change: no lock needed to check. */
    sm_code rc = check_state(t, in, err);
    if (rc != SM_OK)
        return rc;
    pthread_mutex_lock(&t->lock);
    device_reset(t);
    install_state(t, in);
    bool live = (in->status & VIRTIO_STATUS_DRIVER_OK) && !(in->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    if (live) {
        activate(t);
        if (!t->activated) {
            device_reset(t);
            rc = error_set(err, SM_E_GUEST,
                         "virtio-mmio %s: the device cannot resume from a snapshot (its activate failed); "
                         "the transport was reset",
                         t->dev->ops->name);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

static void save_state(void *dev, void *state) { virtio_mmio_save(dev, state); }
static sm_code restore_state(void *dev, const void *state, sm_error *err) { return virtio_mmio_restore(dev, state, err); }

static void restore_begin(void *transport)
{
    struct virtio_device *dev = virtio_mmio_device(transport);
    if (dev->ops->restore_begin)
        dev->ops->restore_begin(dev);
}

static void restore_end(void *transport)
{
    struct virtio_device *dev = virtio_mmio_device(transport);
    if (dev->ops->restore_end)
        dev->ops->restore_end(dev);
}

const struct device_state_ops virtio_mmio_state_ops = {
    .name = "virtio-mmio",
    .state_size = sizeof(struct virtio_mmio_state),
    .save = save_state,
    .restore = restore_state,
    .restore_begin = restore_begin,
    .restore_end = restore_end,
};
