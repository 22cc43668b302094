/*
 * libFuzzer target: hostile virtqueues and a hostile virtio-mmio driver.
 *
 * The input is a script against one fake guest memory (64 KiB at GPA 0):
 *
 *   off  size   meaning
 *   0    1      flags: bit 0 = indirect descriptors allowed on the direct queue
 *   1    1      log2 of the direct queue's size (mod 9: 1..256 entries)
 *   2    2      descriptor table GPA  (le16; both queues use these three areas)
 *   4    2      avail ring GPA
 *   6    2      used ring GPA
 *   8    1      number of operations N (at most 64)
 *   9    7*N    operations: kind (1), arg (le16), val (le32)
 *   ...  rest   initial guest memory contents (the rest is zero)
 *
 *   kind % 8   operation
 *   0          MMIO write, 4 bytes, offset arg % 0x200
 *   1          MMIO write, 1/2/4/8 bytes (val & 3), offset arg % 0x200
 *   2          MMIO read, 1/2/4/8 bytes (val & 3), offset arg % 0x200
 *   3          virtio_mmio_queue_notify(arg)
 *   4          store le32 val into guest memory at arg (clipped)
 *   5          vq_pop on the direct queue; every buffer is checked and written
 *   6          vq_push(head = arg, written = val) on the direct queue
 *   7          a whole driver bring-up of the rng transport (features from
 *              val bit 0, queue size 1 << (val >> 8) % 8), then a kick
 *
 * Oracle: no crash, no sanitizer report, no hang, and every buffer vq_pop
 * hands out lies inside guest memory with readable buffers first.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/mmio.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/virtqueue.h"
#include "machine/guest_memory.h"

#define RAM_SIZE 65536
#define HEADER 9
#define OP_SIZE 7
#define MAX_OPS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t ram[RAM_SIZE] __attribute__((aligned(4096)));
static struct vq_chain chain;

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void check_chain(const struct vq_chain *c)
{
    if (c->nbufs > VQ_MAX_CHAIN_BUFS || c->nreadable > c->nbufs)
        __builtin_trap();
    for (uint16_t i = 0; i < c->nbufs; i++) {
        const struct vq_buf *b = &c->bufs[i];
        if (b->host < ram || b->host > ram + RAM_SIZE || b->len > (size_t)(ram + RAM_SIZE - b->host))
            __builtin_trap();
        if (b->writable != (i >= c->nreadable))
            __builtin_trap();
        if (b->writable)
            memset(b->host, 0x5c, b->len); /* ASan would catch a buffer outside ram */
    }
}

static void mmio_wr(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
    virtio_mmio_bus_ops.write(t, off, (const uint8_t *)&v, 4);
}

static void bring_up(struct virtio_mmio *t, uint64_t desc, uint64_t avail, uint64_t used, uint32_t val)
{
    mmio_wr(t, 0x070, 0);
    mmio_wr(t, 0x070, 1);
    mmio_wr(t, 0x070, 3);
    mmio_wr(t, 0x024, 0);
    mmio_wr(t, 0x020, (val & 1) ? 1u << 28 : 0);
    mmio_wr(t, 0x024, 1);
    mmio_wr(t, 0x020, 1);
    mmio_wr(t, 0x070, 11);
    mmio_wr(t, 0x030, 0);
    mmio_wr(t, 0x038, 1u << ((val >> 8) % 8));
    mmio_wr(t, 0x080, (uint32_t)desc);
    mmio_wr(t, 0x084, 0);
    mmio_wr(t, 0x090, (uint32_t)avail);
    mmio_wr(t, 0x094, 0);
    mmio_wr(t, 0x0a0, (uint32_t)used);
    mmio_wr(t, 0x0a4, 0);
    mmio_wr(t, 0x044, 1);
    mmio_wr(t, 0x070, 15);
    mmio_wr(t, 0x050, 0);
}

static uint32_t access_len(uint32_t val) { return 1u << (val & 3); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER)
        return 0;
    size_t nops = data[8] % (MAX_OPS + 1);
    if (size < HEADER + nops * OP_SIZE)
        return 0;
    const uint8_t *ops = data + HEADER;
    const uint8_t *image = ops + nops * OP_SIZE;
    size_t image_len = size - HEADER - nops * OP_SIZE;
    memset(ram, 0, sizeof ram);
    memcpy(ram, image, image_len < RAM_SIZE ? image_len : RAM_SIZE);

    struct guest_memory mem;
    gm_init_buffer(&mem, ram, RAM_SIZE);
    uint64_t desc = le16(data + 2), avail = le16(data + 4), used = le16(data + 6);

    struct virtqueue vq;
    vq_reset(&vq, 256);
    vq.size = (uint16_t)(1u << (data[1] % 9));
    vq.desc_addr = desc;
    vq.avail_addr = avail;
    vq.used_addr = used;
    vq.indirect_ok = data[0] & 1;
    vq.ready = vq_validate(&vq, &mem) == 0;

    struct virtio_mmio *t = virtio_mmio_create(virtio_rng_create(), &mem, NULL);
    if (!t)
        return 0;

    for (size_t i = 0; i < nops; i++) {
        const uint8_t *op = ops + i * OP_SIZE;
        uint16_t arg = le16(op + 1);
        uint32_t val = le32(op + 3);
        uint8_t buf[8];
        memcpy(buf, op + 3, 4);
        memcpy(buf + 4, op + 3, 4);
        switch (op[0] % 8) {
        case 0: virtio_mmio_bus_ops.write(t, arg % VIRTIO_MMIO_WINDOW, buf, 4); break;
        case 1: virtio_mmio_bus_ops.write(t, arg % VIRTIO_MMIO_WINDOW, buf, access_len(val)); break;
        case 2: virtio_mmio_bus_ops.read(t, arg % VIRTIO_MMIO_WINDOW, buf, access_len(val)); break;
        case 3: virtio_mmio_queue_notify(t, arg); break;
        case 4: memcpy(ram + (arg > RAM_SIZE - 4 ? RAM_SIZE - 4 : arg), &val, 4); break;
        case 5:
            if (vq_pop(&vq, &mem, &chain) == 1)
                check_chain(&chain);
            break;
        case 6: vq_push(&vq, &mem, arg, val); break;
        case 7: bring_up(t, desc, avail, used, val); break;
        }
    }
    virtio_mmio_destroy(t);
    return 0;
}
