/*
 * libFuzzer target: a hostile guest driver against the read-only virtio-blk.
 *
 * The device sits behind the real virtio-mmio transport over a 1 MiB fake
 * guest memory, backed by a 64-sector (+ a 100-byte tail) image whose bytes
 * are a known function of their offset. Each input is a script of commands:
 *
 *   byte  operands                         command (opcode % 8)
 *   0     feat(1) qlog(1)                  driver bring-up: status 0, then
 *                                          ACK..DRIVER_OK accepting the
 *                                          offered bits masked by feat (bit 0
 *                                          INDIRECT, bits 1-3 RO/SEG_MAX/
 *                                          BLK_SIZE), queue size 1 << (qlog % 9)
 *   1     idx(2) addr(4) len(4) flags(2)   a raw descriptor anywhere: addresses
 *         next(2)                          and lengths unchecked by us
 *   2     head(2)                          publish a raw head and kick
 *   3     see well_formed_request()        a request built like a driver would,
 *                                          with hostile fields; checked (below)
 *   4     off(2) val(4)                    MMIO write, 4 bytes, off % 0x200
 *   5     off(2) lenlog(1)                 MMIO read, 1/2/4/8 bytes
 *   6     gpa(4) val(4)                    store into guest memory (clipped)
 *   7     q(2)                             kick queue q (any value)
 *
 * A short read of operands ends the script.
 *
 * Oracle: no crash, sanitizer report or hang; and for each request built by
 * command 3 that the device answered: the used length is at most the chain's
 * writable bytes, the status is OK/IOERR/UNSUPP, a T_OUT is never OK, and an
 * OK T_IN filled its data buffers with exactly the image's bytes from
 * sector * 512 (so nothing past the capacity was read).
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/mmio.h"
#include "machine/guest_memory.h"
#include "script.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE     (1u << 20)
#define DESC_GPA     0x0000u
#define AVAIL_GPA    0x1000u
#define USED_GPA     0x2000u
#define INDIRECT_GPA 0x3000u
#define BUF_AREA     0x10000u
#define SECTORS      64u
#define IMAGE_BYTES  (SECTORS * 512u + 100u)
#define MAX_SEGS     8
#define MAX_SEG_LEN  4096u

static uint8_t ram[RAM_SIZE] __attribute__((aligned(4096)));
static int image_fd = -1;

struct fuzz_state {
    struct guest_memory mem;
    struct virtio_mmio *t;
    uint16_t qsize;
    uint16_t avail_idx;
    uint16_t used_seen;
    uint16_t next_desc;
    bool indirect;
};

static uint8_t image_byte(uint64_t off) { return (uint8_t)((off >> 9) * 37 + (off & 511) * 3 + 1); }

/* The image, once per process: written to a temp file, opened read-only, unlinked. */
static int open_image_once(void)
{
    if (image_fd >= 0)
        return 0;
    char path[] = "/tmp/sm-fuzz-blk-XXXXXX";
    int w = mkstemp(path);
    if (w < 0)
        return -1;
    static uint8_t bytes[IMAGE_BYTES];
    for (uint32_t i = 0; i < IMAGE_BYTES; i++)
        bytes[i] = image_byte(i);
    bool ok = write(w, bytes, IMAGE_BYTES) == (ssize_t)IMAGE_BYTES;
    close(w);
    image_fd = ok ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    unlink(path);
    return image_fd >= 0 ? 0 : -1;
}

static void reg_write(struct fuzz_state *s, uint32_t off, uint32_t v)
{
    virtio_mmio_bus_ops.write(s->t, off, (const uint8_t *)&v, 4);
}

static void bring_up(struct fuzz_state *s, uint8_t feat, uint8_t qlog)
{
    uint64_t accept = (1ull << VIRTIO_F_VERSION_1);
    if (feat & 1)
        accept |= 1ull << VIRTIO_F_RING_INDIRECT_DESC;
    if (feat & 2)
        accept |= 1ull << VIRTIO_BLK_F_RO;
    if (feat & 4)
        accept |= 1ull << VIRTIO_BLK_F_SEG_MAX;
    if (feat & 8)
        accept |= 1ull << VIRTIO_BLK_F_BLK_SIZE;
    s->qsize = (uint16_t)(1u << (qlog % 9));
    s->avail_idx = s->used_seen = s->next_desc = 0;
    s->indirect = feat & 1;
    memset(ram, 0, BUF_AREA);
    reg_write(s, 0x070, 0);
    reg_write(s, 0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    reg_write(s, 0x024, 0);
    reg_write(s, 0x020, (uint32_t)accept);
    reg_write(s, 0x024, 1);
    reg_write(s, 0x020, (uint32_t)(accept >> 32));
    reg_write(s, 0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    reg_write(s, 0x030, 0);
    reg_write(s, 0x038, s->qsize);
    reg_write(s, 0x080, DESC_GPA);
    reg_write(s, 0x084, 0);
    reg_write(s, 0x090, AVAIL_GPA);
    reg_write(s, 0x094, 0);
    reg_write(s, 0x0a0, USED_GPA);
    reg_write(s, 0x0a4, 0);
    reg_write(s, 0x044, 1);
    reg_write(s, 0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                            VIRTIO_STATUS_DRIVER_OK);
}

static void put_desc(uint64_t table, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    uint64_t at = table + 16ull * i;
    if (at + 16 > RAM_SIZE)
        return;
    memcpy(ram + at, &addr, 8);
    memcpy(ram + at + 8, &len, 4);
    memcpy(ram + at + 12, &flags, 2);
    memcpy(ram + at + 14, &next, 2);
}

static void publish_and_kick(struct fuzz_state *s, uint16_t head)
{
    uint16_t slot = (uint16_t)(s->avail_idx % s->qsize);
    memcpy(ram + AVAIL_GPA + 4 + 2u * slot, &head, 2);
    s->avail_idx++;
    memcpy(ram + AVAIL_GPA + 2, &s->avail_idx, 2);
    virtio_mmio_queue_notify(s->t, 0);
}

/* The used element for our request, if the device returned exactly one new chain with our head. */
static bool answered(struct fuzz_state *s, uint16_t head, uint32_t *len)
{
    uint16_t idx;
    memcpy(&idx, ram + USED_GPA + 2, 2);
    if ((uint16_t)(idx - s->used_seen) != 1) {
        s->used_seen = idx;
        return false;
    }
    uint32_t id;
    uint16_t slot = (uint16_t)(s->used_seen % s->qsize);
    memcpy(&id, ram + USED_GPA + 4 + 8u * slot, 4);
    memcpy(len, ram + USED_GPA + 8 + 8u * slot, 4);
    s->used_seen = idx;
    return id == head;
}

struct seg {
    uint32_t gpa, len;
    bool writable;
};

/*
 * Command 3 operands: type_sel(1) sector(8) nseg(1) split(1) shape(1), then
 * nseg lengths (le16 each). type_sel % 6: IN, OUT, FLUSH, GET_ID, DISCARD, or
 * the low byte of sector as a raw type. shape: bit 0 = sector taken raw (else
 * sector % (capacity + 4)), bit 1 = no status byte, bit 2 = status shares the
 * last data buffer, bit 3 = indirect table, bit 4 = data readable. The header
 * is split in two buffers at split % 17 bytes (a 0-length part allowed); an
 * odd split also cuts it short by one byte.
 */
static void well_formed_request(struct fuzz_state *s, struct fuzz_script *c)
{
    uint8_t type_sel, nseg, split, shape;
    uint64_t sector;
    if (!script_take(c, &type_sel, 1) || !script_take(c, &sector, 8) || !script_take(c, &nseg, 1) || !script_take(c, &split, 1) ||
        !script_take(c, &shape, 1))
        return;
    static const uint32_t types[] = { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH,
                                      VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_DISCARD };
    uint32_t type = type_sel % 6 < 5 ? types[type_sel % 6] : (uint32_t)(sector & 0xff);
    if (!(shape & 1))
        sector %= SECTORS + 4;
    nseg %= MAX_SEGS + 1;
    bool no_status = shape & 2, shared_status = (shape & 4) && nseg, data_readable = shape & 16;
    bool use_indirect = shape & 8;

    /* Header at BUF_AREA, in two pieces 0x100 apart. */
    uint8_t hdr[16] = { 0 };
    memcpy(hdr, &type, 4);
    memcpy(hdr + 8, &sector, 8);
    uint32_t first = split % 17, total = (split & 1) ? 15 : 16;
    if (first > total)
        first = total;
    memcpy(ram + BUF_AREA, hdr, first);
    memcpy(ram + BUF_AREA + 0x100, hdr + first, total - first);
    struct seg segs[MAX_SEGS + 3];
    int n = 0;
    segs[n++] = (struct seg){ BUF_AREA, first, false };
    segs[n++] = (struct seg){ BUF_AREA + 0x100, total - first, false };
    uint32_t at = BUF_AREA + 0x1000, data_len = 0;
    int first_data = n;
    for (int i = 0; i < nseg; i++) {
        uint16_t len;
        if (!script_take(c, &len, 2))
            return;
        len = (uint16_t)(len % (MAX_SEG_LEN + 1));
        segs[n++] = (struct seg){ at, len, !data_readable };
        memset(ram + at, 0xa5, len + 1u);
        at += MAX_SEG_LEN + 16;
        data_len += len;
    }
    uint32_t status_gpa = at;
    if (shared_status && !data_readable) {
        segs[n - 1].len++;
        status_gpa = segs[n - 1].gpa + segs[n - 1].len - 1;
    } else if (!no_status) {
        segs[n++] = (struct seg){ at, 1, true };
    } else {
        status_gpa = 0;
    }
    if (status_gpa)
        ram[status_gpa] = 0xee;

    /* Only what the device returns for this request counts: forget earlier (raw) completions. */
    memcpy(&s->used_seen, ram + USED_GPA + 2, 2);
    uint16_t head = (uint16_t)(s->next_desc % s->qsize);
    if (use_indirect) {
        for (int i = 0; i < n; i++)
            put_desc(INDIRECT_GPA, (uint32_t)i, segs[i].gpa, segs[i].len,
                     (uint16_t)((segs[i].writable ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                     (uint16_t)(i + 1));
        put_desc(DESC_GPA, head, INDIRECT_GPA, 16u * (uint32_t)n, VIRTQ_DESC_F_INDIRECT, 0);
        s->next_desc = (uint16_t)(head + 1);
    } else {
        for (int i = 0; i < n; i++) {
            uint16_t idx = (uint16_t)((head + i) % s->qsize);
            put_desc(DESC_GPA, idx, segs[i].gpa, segs[i].len,
                     (uint16_t)((segs[i].writable ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                     (uint16_t)((idx + 1) % s->qsize));
        }
        s->next_desc = (uint16_t)(head + n);
    }
    publish_and_kick(s, head);

    uint32_t used_len;
    if (!answered(s, head, &used_len))
        return; /* not served (queue not live, broken, or the chain was refused): nothing to check */
    uint64_t writable = 0;
    for (int i = 0; i < n; i++)
        writable += segs[i].writable ? segs[i].len : 0;
    if (used_len > writable)
        __builtin_trap();
    if (!status_gpa)
        return;
    uint8_t status = ram[status_gpa];
    if (status > VIRTIO_BLK_S_UNSUPP)
        __builtin_trap();
    if (type == VIRTIO_BLK_T_OUT && status == VIRTIO_BLK_S_OK)
        __builtin_trap();
    if (type != VIRTIO_BLK_T_IN || status != VIRTIO_BLK_S_OK || data_readable)
        return;
    /* An OK read: whole sectors inside the capacity, data equal to the image. */
    if (data_len % 512 || sector > SECTORS || data_len / 512 > SECTORS - sector || used_len != data_len + 1)
        __builtin_trap();
    uint64_t off = sector * 512;
    for (int i = first_data; i < first_data + nseg; i++) {
        uint32_t len = segs[i].len - (segs[i].gpa + segs[i].len - 1 == status_gpa ? 1 : 0);
        for (uint32_t k = 0; k < len; k++)
            if (ram[segs[i].gpa + k] != image_byte(off + k))
                __builtin_trap();
        off += len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (open_image_once() < 0)
        return 0;
    memset(ram, 0, sizeof ram);
    struct fuzz_state s = { .qsize = 1 };
    gm_init_buffer(&s.mem, ram, RAM_SIZE);
    int fd = dup(image_fd);
    s.t = virtio_mmio_create(virtio_blk_create(fd, "fuzz"), &s.mem, NULL);
    if (!s.t)
        return 0;
    struct fuzz_script c = { data, size };
    uint8_t op;
    while (script_take(&c, &op, 1)) {
        switch (op % 8) {
        case 0: {
            uint8_t feat, qlog;
            if (!script_take(&c, &feat, 1) || !script_take(&c, &qlog, 1))
                goto done;
            bring_up(&s, feat, qlog);
            break;
        }
        case 1: {
            uint16_t idx, flags, next;
            uint32_t addr, len;
            if (!script_take(&c, &idx, 2) || !script_take(&c, &addr, 4) || !script_take(&c, &len, 4) || !script_take(&c, &flags, 2) ||
                !script_take(&c, &next, 2))
                goto done;
            put_desc(idx & 1 ? INDIRECT_GPA : DESC_GPA, (idx >> 1) % 256, addr, len, flags, next);
            break;
        }
        case 2: {
            uint16_t head;
            if (!script_take(&c, &head, 2))
                goto done;
            publish_and_kick(&s, head);
            break;
        }
        case 3: well_formed_request(&s, &c); break;
        case 4: {
            uint16_t off;
            uint32_t val;
            if (!script_take(&c, &off, 2) || !script_take(&c, &val, 4))
                goto done;
            reg_write(&s, off % VIRTIO_MMIO_WINDOW, val);
            break;
        }
        case 5: {
            uint16_t off;
            uint8_t lenlog, buf[8];
            if (!script_take(&c, &off, 2) || !script_take(&c, &lenlog, 1))
                goto done;
            virtio_mmio_bus_ops.read(s.t, off % VIRTIO_MMIO_WINDOW, buf, 1u << (lenlog % 4));
            break;
        }
        case 6: {
            uint32_t gpa, val;
            if (!script_take(&c, &gpa, 4) || !script_take(&c, &val, 4))
                goto done;
            gpa %= RAM_SIZE - 3;
            memcpy(ram + gpa, &val, 4);
            break;
        }
        case 7: {
            uint16_t q;
            if (!script_take(&c, &q, 2))
                goto done;
            virtio_mmio_queue_notify(s.t, q);
            break;
        }
        }
    }
done:
    virtio_mmio_destroy(s.t);
    return 0;
}
