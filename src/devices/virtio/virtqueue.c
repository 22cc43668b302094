/*
 * The split virtqueue, device side. Layout tables are in virtqueue.h.
 *
 * Rules this file enforces on the driver (each violation marks the queue
 * broken, so the device can ask for a reset; nothing here trusts a value it
 * read from guest memory):
 *   - avail->idx may run ahead of what we consumed by at most `size`;
 *   - a head and every NEXT index lie inside their table;
 *   - a chain visits at most as many descriptors as its table has (so a
 *     loop ends as an error) and yields at most VQ_MAX_CHAIN_BUFS buffers;
 *   - every buffer [addr, addr+len) lies wholly in guest RAM (gm_ptr);
 *   - an indirect table only when negotiated, never nested, never with
 *     NEXT, a whole number of 16-byte descriptors;
 *   - device-writable buffers come after all device-readable ones.
 */
#include "devices/virtio/virtqueue.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

/* Virtio is little-endian; this file reads the rings in host order. */
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "virtqueue.c assumes a little-endian host");

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
static_assert(sizeof(struct vring_desc) == 16, "descriptor is 16 bytes");

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
};
static_assert(sizeof(struct vring_used_elem) == 8, "used element is 8 bytes");

#define AVAIL_FLAGS_OFF 0
#define AVAIL_IDX_OFF   2
#define AVAIL_RING_OFF  4
#define USED_IDX_OFF    2
#define USED_RING_OFF   4

uint64_t vq_desc_bytes(uint16_t size) { return 16ull * size; }
uint64_t vq_avail_bytes(uint16_t size) { return 6ull + 2ull * size; }
uint64_t vq_used_bytes(uint16_t size) { return 6ull + 8ull * size; }

void vq_reset(struct virtqueue *vq, uint16_t max_size)
{
    memset(vq, 0, sizeof *vq);
    vq->max_size = max_size;
    vq->size = max_size;
}

static bool is_power_of_two(uint32_t v) { return v && (v & (v - 1)) == 0; }

/* Guest area -> host pointer, checking the guest address and the host pointer are aligned. */
static void *area_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len, uint64_t align)
{
    if (gpa % align)
        return NULL;
    void *p = gm_ptr(mem, gpa, len);
    if (!p || (uintptr_t)p % align)
        return NULL;
    return p;
}

int vq_validate(const struct virtqueue *vq, const struct guest_memory *mem)
{
    if (!is_power_of_two(vq->size) || vq->size > vq->max_size || vq->size > VIRTQ_MAX_SIZE)
        return -1;
    if (!area_ptr(mem, vq->desc_addr, vq_desc_bytes(vq->size), 16))
        return -1;
    if (!area_ptr(mem, vq->avail_addr, vq_avail_bytes(vq->size), 2))
        return -1;
    if (!area_ptr(mem, vq->used_addr, vq_used_bytes(vq->size), 4))
        return -1;
    return 0;
}

static int mark_broken(struct virtqueue *vq)
{
    vq->broken = true;
    return -1;
}

static uint16_t *avail_field(const struct virtqueue *vq, const struct guest_memory *mem, uint64_t off)
{
    return area_ptr(mem, vq->avail_addr + off, 2, 2);
}

static int chain_append(struct vq_chain *out, uint8_t *host, uint32_t len, bool writable)
{
    if (out->nbufs >= VQ_MAX_CHAIN_BUFS)
        return -1;
    if (!writable && out->nbufs > out->nreadable)
        return -1; /* a readable buffer after a writable one */
    out->bufs[out->nbufs++] = (struct vq_buf){ .host = host, .len = len, .writable = writable };
    if (writable) {
        out->writable_bytes += len;
    } else {
        out->nreadable++;
        out->readable_bytes += len;
    }
    return 0;
}

/* The table a chain is currently walking: the queue's own or one indirect table. */
struct desc_table {
    uint64_t gpa;
    uint32_t count;
    bool indirect;
};

static int enter_indirect(const struct virtqueue *vq, const struct guest_memory *mem,
                          const struct vring_desc *d, struct desc_table *table)
{
    if (!vq->indirect_ok || table->indirect || (d->flags & VIRTQ_DESC_F_NEXT))
        return -1;
    if (d->len == 0 || d->len % sizeof(struct vring_desc))
        return -1;
    uint32_t count = d->len / sizeof(struct vring_desc);
    if (count > VQ_MAX_CHAIN_BUFS || !gm_ptr(mem, d->addr, d->len))
        return -1;
    *table = (struct desc_table){ .gpa = d->addr, .count = count, .indirect = true };
    return 0;
}

static int walk_chain(const struct virtqueue *vq, const struct guest_memory *mem, uint16_t head,
                      struct vq_chain *out)
{
    struct desc_table table = { .gpa = vq->desc_addr, .count = vq->size, .indirect = false };
    uint32_t idx = head;
    uint32_t visited = 0;

    out->head = head;
    out->nbufs = out->nreadable = 0;
    out->readable_bytes = out->writable_bytes = 0;

    for (;;) {
        /* More steps than the table has entries means the chain loops. */
        if (idx >= table.count || visited++ >= table.count)
            return -1;
        struct vring_desc d;
        /* A private copy: the guest may rewrite the descriptor while we look at it. */
        if (!gm_read(mem, table.gpa + (uint64_t)idx * sizeof d, &d, sizeof d))
            return -1;
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (enter_indirect(vq, mem, &d, &table) < 0)
                return -1;
            idx = 0;
            visited = 0;
            continue;
        }
        uint8_t *host = gm_ptr(mem, d.addr, d.len);
        if (!host || chain_append(out, host, d.len, d.flags & VIRTQ_DESC_F_WRITE) < 0)
            return -1;
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            return 0;
        idx = d.next;
    }
}

int vq_pop(struct virtqueue *vq, const struct guest_memory *mem, struct vq_chain *out)
{
    if (vq->broken)
        return -1;
    if (!vq->ready)
        return 0;
    uint16_t *avail_idx = avail_field(vq, mem, AVAIL_IDX_OFF);
    if (!avail_idx)
        return mark_broken(vq);
    /* Acquire: the ring entries the driver wrote before bumping idx are visible below. */
    uint16_t idx = __atomic_load_n(avail_idx, __ATOMIC_ACQUIRE);
    uint16_t pending = (uint16_t)(idx - vq->last_avail_idx);
    if (pending == 0)
        return 0;
    if (pending > vq->size)
        return mark_broken(vq);

    uint16_t slot = vq->last_avail_idx & (uint16_t)(vq->size - 1);
    uint16_t *entry = avail_field(vq, mem, AVAIL_RING_OFF + 2ull * slot);
    if (!entry)
        return mark_broken(vq);
    uint16_t head = __atomic_load_n(entry, __ATOMIC_RELAXED);
    if (head >= vq->size || walk_chain(vq, mem, head, out) < 0)
        return mark_broken(vq);
    vq->last_avail_idx++;
    return 1;
}

int vq_push(struct virtqueue *vq, const struct guest_memory *mem, uint16_t head, uint32_t written)
{
    if (!vq->ready || vq->broken || head >= vq->size)
        return -1;
    uint16_t slot = vq->used_idx & (uint16_t)(vq->size - 1);
    struct vring_used_elem elem = { .id = head, .len = written };
    uint16_t *used_idx = area_ptr(mem, vq->used_addr + USED_IDX_OFF, 2, 2);
    if (!used_idx || !gm_write(mem, vq->used_addr + USED_RING_OFF + 8ull * slot, &elem, sizeof elem))
        return mark_broken(vq);
    vq->used_idx++;
    /* Release: the element is visible before the index that publishes it. */
    __atomic_store_n(used_idx, vq->used_idx, __ATOMIC_RELEASE);
    return 0;
}

bool vq_should_interrupt(const struct virtqueue *vq, const struct guest_memory *mem)
{
    /* Full fence: our used idx store is ordered before reading the driver's flags. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t *flags = avail_field(vq, mem, AVAIL_FLAGS_OFF);
    if (!flags)
        return true;
    return !(__atomic_load_n(flags, __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

/* --- a chain's bytes --------------------------------------------------------------- */

/* The chain's buffers of one direction: readable ones come first (chain_append enforces it). */
static void side_range(const struct vq_chain *c, bool writable, uint16_t *first, uint16_t *end)
{
    *first = writable ? c->nreadable : 0;
    *end = writable ? c->nbufs : c->nreadable;
}

int vq_chain_iov(const struct vq_chain *c, bool writable, uint64_t off, uint64_t len, struct iovec *iov, int max,
                 uint64_t *covered)
{
    uint16_t i, end;
    int n = 0;
    uint64_t got = 0;
    side_range(c, writable, &i, &end);
    for (; i < end && n < max && got < len; i++) {
        const struct vq_buf *b = &c->bufs[i];
        if (off >= b->len) {
            off -= b->len;
            continue;
        }
        uint64_t take = b->len - off;
        if (take > len - got)
            take = len - got;
        iov[n++] = (struct iovec){ .iov_base = b->host + off, .iov_len = (size_t)take };
        got += take;
        off = 0;
    }
    *covered = got;
    return n;
}

uint64_t vq_chain_read(const struct vq_chain *c, uint64_t off, void *dst, uint64_t len)
{
    struct iovec iov[VQ_MAX_CHAIN_BUFS];
    uint64_t covered;
    int n = vq_chain_iov(c, false, off, len, iov, VQ_MAX_CHAIN_BUFS, &covered);
    uint8_t *p = dst;
    for (int i = 0; i < n; i++) {
        memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    return covered;
}

uint64_t vq_chain_write(const struct vq_chain *c, uint64_t off, const void *src, uint64_t len)
{
    struct iovec iov[VQ_MAX_CHAIN_BUFS];
    uint64_t covered;
    int n = vq_chain_iov(c, true, off, len, iov, VQ_MAX_CHAIN_BUFS, &covered);
    const uint8_t *p = src;
    for (int i = 0; i < n; i++) {
        memcpy(iov[i].iov_base, p, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    return covered;
}
