/*
 * virtio-blk (read-only) behind the real virtio-mmio transport, over a fake
 * guest memory and a temporary image file: the test plays the driver,
 * writing descriptors and the avail ring, and checks the used ring, the
 * status bytes, the data against the file, and that the file never changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/mmio.h"
#include "helpers/virtio_driver.h"
#include "machine/guest_memory.h"

#define MEM_SIZE     (4u << 20)
#define DESC_GPA     0x1000
#define AVAIL_GPA    0x2000
#define USED_GPA     0x3000
#define INDIRECT_GPA 0x4000
#define HDR_GPA      0x8000
#define STATUS_GPA   0x9000
#define DATA_GPA     0x10000
#define QSIZE        256
#define SECTORS      512
#define TAIL_BYTES   100   /* a partial sector after the last whole one: invisible */
#define IMAGE_BYTES  (SECTORS * 512 + TAIL_BYTES)
#define SERIAL       "sm-test-disk-0001"

enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11 };
enum { ST_OK = 0, ST_IOERR = 1, ST_UNSUPP = 2, ST_UNTOUCHED = 0xee };

struct fixture {
    uint8_t *ram;
    struct guest_memory mem;
    struct drv_irq irq;
    struct virtio_mmio *t;
    struct drv_queue q;
    char path[64];
    uint16_t next_desc;   /* the first free descriptor: chains are laid out in turn */
};

/* One buffer of a chain, as the driver lays it out. */
struct seg {
    uint64_t gpa;
    uint32_t len;
    bool writable;
};

/* The byte the image holds at offset off: differs from sector to sector and within one. */
static uint8_t image_byte(uint64_t off) { return (uint8_t)((off >> 9) * 37 + (off & 511) * 3 + 1); }

static void write_image(const char *path)
{
    uint8_t *buf = malloc(IMAGE_BYTES);
    for (uint64_t i = 0; i < IMAGE_BYTES; i++)
        buf[i] = image_byte(i);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, IMAGE_BYTES), IMAGE_BYTES);
    close(fd);
    free(buf);
}

static bool image_unchanged(const char *path)
{
    uint8_t *buf = malloc(IMAGE_BYTES + 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, IMAGE_BYTES + 1) : -1;
    bool same = n == IMAGE_BYTES;
    for (uint64_t i = 0; same && i < IMAGE_BYTES; i++)
        same = buf[i] == image_byte(i);
    if (fd >= 0)
        close(fd);
    free(buf);
    return same;
}

static int open_image(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->path, sizeof f->path, "/tmp/sm-test-blk-XXXXXX");
    int tmp = mkstemp(f->path);
    assert_true(tmp >= 0);
    close(tmp);
    write_image(f->path);
    f->ram = drv_ram_create(&f->mem, MEM_SIZE);
    drv_queue_init(&f->q, f->ram, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
    drv_irq_init(&f->irq);
    struct virtio_device *dev = virtio_blk_create(open_image(f->path), SERIAL);
    assert_non_null(dev);
    f->t = virtio_mmio_create(dev, &f->mem, &f->irq.line);
    assert_non_null(f->t);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    virtio_mmio_destroy(f->t);
    unlink(f->path);
    free(f->ram);
    free(f);
    return 0;
}

/* --- the driver's side ---------------------------------------------------------------- */

/* Accepts everything offered, as Linux would (it knows every bit we offer). */
static void bring_up(struct fixture *f)
{
    drv_negotiate(f->t, drv_device_features(f->t));
    drv_setup_queue(f->t, 0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
    drv_driver_ok(f->t);
    assert_int_equal(drv_read(f->t, REG_STATUS), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

/* Lays segs out as a direct descriptor chain and publishes it; returns its head. */
static uint16_t post_chain(struct fixture *f, const struct seg *segs, int n)
{
    uint16_t head = f->next_desc;
    for (int i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % QSIZE);
        uint16_t flags = (uint16_t)((segs[i].writable ? 2 : 0) | (i + 1 < n ? 1 : 0));
        drv_queue_put_desc(&f->q, idx, segs[i].gpa, segs[i].len, flags, (uint16_t)((idx + 1) % QSIZE));
    }
    f->next_desc = (uint16_t)((head + n) % QSIZE);
    drv_publish(&f->q, head);
    return head;
}

/* The same chain through one indirect table at INDIRECT_GPA (as Linux sends requests). */
static uint16_t post_indirect(struct fixture *f, const struct seg *segs, int n)
{
    for (int i = 0; i < n; i++) {
        uint16_t flags = (uint16_t)((segs[i].writable ? 2 : 0) | (i + 1 < n ? 1 : 0));
        drv_put_desc(f->ram + INDIRECT_GPA, (uint16_t)i, segs[i].gpa, segs[i].len, flags, (uint16_t)(i + 1));
    }
    uint16_t head = f->next_desc;
    drv_queue_put_desc(&f->q, head, INDIRECT_GPA, 16u * (uint32_t)n, DRV_DESC_INDIRECT, 0);
    f->next_desc = (uint16_t)((head + 1) % QSIZE);
    drv_publish(&f->q, head);
    return head;
}

static void kick(struct fixture *f) { drv_kick(f->t, 0); }

/* The next used element must be {head, len}. */
static void expect_used(struct fixture *f, uint16_t head, uint32_t len)
{
    uint32_t id, got_len;
    assert_true(drv_next_used(&f->q, &id, &got_len));
    assert_int_equal(id, head);
    assert_int_equal(got_len, len);
}

static void expect_nothing_more_used(struct fixture *f)
{
    assert_int_equal(drv_used_idx(&f->q), f->q.used_seen);
}

static void put_header(struct fixture *f, uint64_t gpa, uint32_t type, uint64_t sector)
{
    uint32_t reserved = 0;
    memcpy(f->ram + gpa, &type, 4);
    memcpy(f->ram + gpa + 4, &reserved, 4);
    memcpy(f->ram + gpa + 8, &sector, 8);
}

static uint8_t status_at(struct fixture *f, uint64_t gpa) { return f->ram[gpa]; }

/* Whether guest bytes [gpa, gpa+len) hold the image from byte offset `off`. */
static bool holds_image(struct fixture *f, uint64_t gpa, uint32_t len, uint64_t off)
{
    for (uint32_t i = 0; i < len; i++)
        if (f->ram[gpa + i] != image_byte(off + i))
            return false;
    return true;
}

static bool all_bytes_are(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return false;
    return true;
}

/* A fresh request area: header cleared, data and status filled with markers. */
static void clear_buffers(struct fixture *f)
{
    memset(f->ram + HDR_GPA, 0, 0x1000);
    memset(f->ram + STATUS_GPA, ST_UNTOUCHED, 0x1000);
    memset(f->ram + DATA_GPA, 0xaa, MEM_SIZE - DATA_GPA);
}

/* header (16, readable) + one data buffer + a 1-byte status: the usual shape. */
static uint16_t post_simple(struct fixture *f, uint32_t type, uint64_t sector, uint32_t data_len, bool data_writable)
{
    clear_buffers(f);
    put_header(f, HDR_GPA, type, sector);
    struct seg segs[] = {
        { HDR_GPA, 16, false },
        { DATA_GPA, data_len, data_writable },
        { STATUS_GPA, 1, true },
    };
    if (data_len == 0) {
        segs[1] = segs[2];
        return post_chain(f, segs, 2);
    }
    return post_chain(f, segs, 3);
}

/* --- identification and config ---------------------------------------------------------- */

static void test_identity_and_features(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(drv_read(f->t, REG_DEVICE_ID), 2);
    assert_int_equal(virtio_mmio_num_queues(f->t), 1);
    assert_int_equal(drv_read(f->t, REG_QUEUE_NUM_MAX), VIRTIO_BLK_QUEUE_SIZE);
    uint64_t feat = drv_device_features(f->t);
    assert_true(feat & (1ull << 5));   /* RO */
    assert_true(feat & (1ull << 2));   /* SEG_MAX */
    assert_true(feat & (1ull << 6));   /* BLK_SIZE */
    assert_false(feat & (1ull << 9));  /* FLUSH: nothing to flush */
    assert_false(feat & (1ull << 1));  /* SIZE_MAX */
    assert_false(feat & (1ull << 12)); /* MQ */
    assert_false(feat & (1ull << 13)); /* DISCARD */
    assert_false(feat & (1ull << 14)); /* WRITE_ZEROES */
    assert_true(feat & (1ull << 32));  /* VERSION_1, from the transport */
}

static void test_config_space(void **state)
{
    struct fixture *f = *state;
    uint64_t capacity = 0;
    virtio_mmio_bus_ops.read(f->t, REG_CONFIG + 0, (uint8_t *)&capacity, 8);
    assert_int_equal(capacity, SECTORS); /* the partial tail sector is not counted */
    assert_int_equal(drv_read(f->t, REG_CONFIG + 0), SECTORS);
    assert_int_equal(drv_read(f->t, REG_CONFIG + 4), 0);
    assert_int_equal(drv_read(f->t, REG_CONFIG + 8), 0);                     /* size_max: not offered */
    assert_int_equal(drv_read(f->t, REG_CONFIG + 12), VQ_MAX_CHAIN_BUFS - 2); /* seg_max */
    assert_int_equal(drv_read(f->t, REG_CONFIG + 16), 0);                    /* geometry */
    assert_int_equal(drv_read(f->t, REG_CONFIG + 20), 512);                  /* blk_size */
    for (uint32_t off = 24; off < 60; off += 4)
        assert_int_equal(drv_read(f->t, REG_CONFIG + off), 0);
    /* Past the 60-byte config: the transport refuses, the read gives 0. */
    uint32_t v = 0x12345678;
    virtio_mmio_bus_ops.read(f->t, REG_CONFIG + 60, (uint8_t *)&v, 4);
    assert_int_equal(v, 0);
    /* Config is read-only. */
    drv_write(f->t, REG_CONFIG + 0, 7);
    assert_int_equal(drv_read(f->t, REG_CONFIG + 0), SECTORS);
    assert_int_equal(virtio_blk_capacity(virtio_mmio_device(f->t)), SECTORS);
}

/* --- reads -------------------------------------------------------------------------------- */

static void test_read_sector_0(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_simple(f, T_IN, 0, 512, true);
    kick(f);
    expect_used(f, head, 513);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
    assert_true(holds_image(f, DATA_GPA, 512, 0));
    assert_true(f->irq.pulses >= 1);
    assert_int_equal(drv_read(f->t, REG_STATUS) & S_NEEDS_RESET, 0);
}

/* Sectors 20-21 across two data buffers of odd sizes, the status sharing the second one. */
static void test_read_middle_across_buffers(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    clear_buffers(f);
    put_header(f, HDR_GPA, T_IN, 20);
    uint64_t second = DATA_GPA + 0x4000;
    struct seg segs[] = {
        { HDR_GPA, 16, false },
        { DATA_GPA, 300, true },
        { second, 724 + 1, true }, /* 724 data bytes, then the status */
    };
    uint16_t head = post_chain(f, segs, 3);
    kick(f);
    expect_used(f, head, 1025);
    assert_int_equal(status_at(f, second + 724), ST_OK);
    assert_true(holds_image(f, DATA_GPA, 300, 20 * 512));
    assert_true(holds_image(f, second, 724, 20 * 512 + 300));
    assert_int_equal(f->ram[DATA_GPA + 300], 0xaa); /* nothing past the first buffer */
}

static void test_read_last_sector(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_simple(f, T_IN, SECTORS - 2, 1024, true);
    kick(f);
    expect_used(f, head, 1025);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
    assert_true(holds_image(f, DATA_GPA, 1024, (SECTORS - 2) * 512));
}

/* Reads that reach past the capacity fail whole: nothing is read, not even the tail bytes. */
static void test_read_past_end_is_ioerr(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    const struct { uint64_t sector; uint32_t len; } bad[] = {
        { SECTORS - 1, 1024 },           /* starts inside, ends one sector past */
        { SECTORS, 512 },                /* the partial tail sector */
        { SECTORS + 1000, 512 },         /* far past */
        { UINT64_MAX / 512 + 1, 512 },   /* sector * 512 overflows */
        { UINT64_MAX, 512 },             /* sector + count overflows */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint16_t head = post_simple(f, T_IN, bad[i].sector, bad[i].len, true);
        kick(f);
        expect_used(f, head, 1);
        assert_int_equal(status_at(f, STATUS_GPA), ST_IOERR);
        assert_true(all_bytes_are(f->ram + DATA_GPA, bad[i].len, 0xaa));
    }
    assert_int_equal(drv_read(f->t, REG_STATUS) & S_NEEDS_RESET, 0);
}

static void test_read_not_whole_sectors_is_ioerr(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_simple(f, T_IN, 0, 511, true);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_IOERR);
    assert_true(all_bytes_are(f->ram + DATA_GPA, 511, 0xaa));
}

/* A read of no sectors at all (header + status) is a valid empty read. */
static void test_read_of_nothing(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_simple(f, T_IN, 3, 0, true);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
}

/* The shape Linux uses: an indirect table, here with the most data segments we advertise. */
static void test_read_seg_max_segments_indirect(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    clear_buffers(f);
    enum { NSEG = VIRTIO_BLK_SEG_MAX, FIRST = 7 };
    struct seg segs[NSEG + 2];
    put_header(f, HDR_GPA, T_IN, FIRST);
    segs[0] = (struct seg){ HDR_GPA, 16, false };
    /* One sector per segment, scattered 1 KiB apart. */
    for (int i = 0; i < NSEG; i++)
        segs[1 + i] = (struct seg){ DATA_GPA + 1024u * (uint32_t)i, 512, true };
    segs[NSEG + 1] = (struct seg){ STATUS_GPA, 1, true };
    uint16_t head = post_indirect(f, segs, NSEG + 2);
    kick(f);
    expect_used(f, head, NSEG * 512 + 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
    for (int i = 0; i < NSEG; i++) {
        assert_true(holds_image(f, DATA_GPA + 1024u * (uint32_t)i, 512, 512u * (FIRST + (uint32_t)i)));
        assert_int_equal(f->ram[DATA_GPA + 1024u * (uint32_t)i + 512], 0xaa); /* the gaps stay */
    }
}

/* The full 256-buffer chain Linux may build (seg_max + header + status) is accepted. */
static void test_chain_of_seg_max_plus_two_is_served(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    clear_buffers(f);
    enum { NSEG = VIRTIO_BLK_SEG_MAX };
    struct seg segs[NSEG + 2];
    put_header(f, HDR_GPA, T_IN, 1);
    segs[0] = (struct seg){ HDR_GPA, 16, false };
    /* Two sectors spread over 254 data segments: 253 of 4 bytes, then the remaining 12. */
    uint32_t total = 0;
    for (int i = 0; i < NSEG; i++) {
        uint32_t len = i < NSEG - 1 ? 4 : 1024 - 4 * (NSEG - 1);
        segs[1 + i] = (struct seg){ DATA_GPA + 64u * (uint32_t)i, len, true };
        total += len;
    }
    assert_int_equal(total, 1024);
    segs[NSEG + 1] = (struct seg){ STATUS_GPA, 1, true };
    uint16_t head = post_indirect(f, segs, NSEG + 2);
    kick(f);
    expect_used(f, head, 1025);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
    uint64_t off = 512;
    for (int i = 0; i < NSEG; i++) {
        assert_true(holds_image(f, segs[1 + i].gpa, segs[1 + i].len, off));
        off += segs[1 + i].len;
    }
}

/* Many requests in one kick are all served, in order. */
static void test_many_requests_one_kick(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    clear_buffers(f);
    enum { N = 40 };
    uint16_t heads[N];
    for (int i = 0; i < N; i++) {
        uint64_t hdr = HDR_GPA + 16u * (uint32_t)i;
        put_header(f, hdr, T_IN, (uint64_t)i);
        struct seg segs[] = {
            { hdr, 16, false },
            { DATA_GPA + 512u * (uint32_t)i, 512, true },
            { STATUS_GPA + (uint32_t)i, 1, true },
        };
        heads[i] = post_chain(f, segs, 3);
    }
    int pulses = f->irq.pulses;
    kick(f);
    assert_int_equal(f->irq.pulses, pulses + 1); /* one interrupt for the batch */
    for (int i = 0; i < N; i++) {
        expect_used(f, heads[i], 513);
        assert_int_equal(status_at(f, STATUS_GPA + (uint32_t)i), ST_OK);
        assert_true(holds_image(f, DATA_GPA + 512u * (uint32_t)i, 512, 512u * (uint32_t)i));
    }
    expect_nothing_more_used(f);
}

/* A driver that asked for no interrupts (avail flags NO_INTERRUPT) gets none, but its requests are served. */
static void test_no_interrupt_flag_is_honoured(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    drv_set_avail_flags(&f->q, DRV_AVAIL_NO_INTERRUPT);
    int pulses = f->irq.pulses;
    uint16_t head = post_simple(f, T_IN, 0, 512, true);
    kick(f);
    expect_used(f, head, 513);
    assert_int_equal(f->irq.pulses, pulses);
}

/* Requests served before the driver broke the ring stay served and are signalled; then reset is asked. */
static void test_served_requests_survive_a_broken_ring(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_simple(f, T_IN, 8, 512, true);
    drv_publish(&f->q, QSIZE + 1); /* a head out of range */
    int pulses = f->irq.pulses;
    kick(f);
    expect_used(f, head, 513);
    expect_nothing_more_used(f);
    assert_true(holds_image(f, DATA_GPA, 512, 8 * 512));
    assert_true(drv_read(f->t, REG_STATUS) & S_NEEDS_RESET);
    assert_true(drv_read(f->t, REG_INT_STATUS) & 1); /* InterruptStatus: used buffer */
    assert_true(f->irq.pulses > pulses);
}

/* --- the other request types ------------------------------------------------------------- */

static void test_write_is_refused_and_file_unchanged(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    clear_buffers(f);
    put_header(f, HDR_GPA, T_OUT, 2);
    memset(f->ram + DATA_GPA, 0x55, 1024);
    struct seg segs[] = {
        { HDR_GPA, 16, false },
        { DATA_GPA, 1024, false },
        { STATUS_GPA, 1, true },
    };
    uint16_t head = post_chain(f, segs, 3);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_IOERR);
    /* A write whose data the driver wrongly marked writable is refused too, and not overwritten. */
    head = post_simple(f, T_OUT, 0, 512, true);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_IOERR);
    assert_true(all_bytes_are(f->ram + DATA_GPA, 512, 0xaa));
    assert_true(image_unchanged(f->path));
}

static void test_flush_succeeds(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_simple(f, T_FLUSH, 0, 0, true);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
}

/* --- the writable kind (a volume) ------------------------------------------------------- */

/* The fixture's device swapped for a writable one over the same image. */
static void make_writable(struct fixture *f)
{
    virtio_mmio_destroy(f->t);
    int fd = open(f->path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    struct virtio_device *dev = virtio_blk_create_writable(fd, SERIAL);
    assert_non_null(dev);
    f->t = virtio_mmio_create(dev, &f->mem, &f->irq.line);
    assert_non_null(f->t);
}

static uint8_t file_byte(const char *path, uint64_t off)
{
    uint8_t b = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    close(fd);
    return b;
}

static void test_writable_offers_flush_not_ro(void **state)
{
    struct fixture *f = *state;
    make_writable(f);
    uint64_t features = drv_device_features(f->t);
    assert_true(features & (1ull << VIRTIO_BLK_F_FLUSH));
    assert_false(features & (1ull << VIRTIO_BLK_F_RO));
    /* A read-write fd is refused by the read-only kind, and the other way round. */
    int fd = open(f->path, O_RDWR | O_CLOEXEC);
    errno = 0;
    assert_null(virtio_blk_create(fd, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(virtio_blk_create_writable(open_image(f->path), NULL));
    assert_int_equal(errno, EINVAL);
}

/* A write split over two buffers lands at its sector, and only there. */
static void test_writable_write_lands(void **state)
{
    struct fixture *f = *state;
    make_writable(f);
    bring_up(f);
    clear_buffers(f);
    put_header(f, HDR_GPA, T_OUT, 3);
    memset(f->ram + DATA_GPA, 0x55, 512);
    memset(f->ram + DATA_GPA + 0x1000, 0x66, 512);
    struct seg segs[] = {
        { HDR_GPA, 16, false },
        { DATA_GPA, 512, false },
        { DATA_GPA + 0x1000, 512, false },
        { STATUS_GPA, 1, true },
    };
    uint16_t head = post_chain(f, segs, 4);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
    assert_int_equal(file_byte(f->path, 3 * 512), 0x55);
    assert_int_equal(file_byte(f->path, 4 * 512 + 511), 0x66);
    assert_int_equal(file_byte(f->path, 3 * 512 - 1), image_byte(3 * 512 - 1));
    assert_int_equal(file_byte(f->path, 5 * 512), image_byte(5 * 512));
    /* read back through the device */
    head = post_simple(f, T_IN, 4, 512, true);
    kick(f);
    expect_used(f, head, 513);
    assert_true(all_bytes_are(f->ram + DATA_GPA, 512, 0x66));
    head = post_simple(f, T_FLUSH, 0, 0, true);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
}

/* Past the capacity, not whole sectors, or a sector number that would wrap:
 * IOERR, and the file neither grows nor changes. */
static void test_writable_bounds(void **state)
{
    struct fixture *f = *state;
    make_writable(f);
    bring_up(f);
    const struct { uint64_t sector; uint32_t len; } bad[] = {
        { SECTORS - 1, 1024 }, { SECTORS, 512 }, { 0, 100 }, { UINT64_MAX / 512, 512 }, { UINT64_MAX, 512 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint16_t head = post_simple(f, T_OUT, bad[i].sector, bad[i].len, false);
        memset(f->ram + DATA_GPA, 0x77, bad[i].len);
        kick(f);
        expect_used(f, head, 1);
        assert_int_equal(status_at(f, STATUS_GPA), ST_IOERR);
    }
    assert_true(image_unchanged(f->path));
}

static void test_get_id(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_simple(f, T_GET_ID, 0, 20, true);
    kick(f);
    expect_used(f, head, 21);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
    char want[20] = SERIAL; /* NUL-padded to 20 */
    assert_memory_equal(f->ram + DATA_GPA, want, 20);
    /* A bigger buffer gets 20 bytes and no more. */
    head = post_simple(f, T_GET_ID, 0, 64, true);
    kick(f);
    expect_used(f, head, 21);
    assert_memory_equal(f->ram + DATA_GPA, want, 20);
    assert_true(all_bytes_are(f->ram + DATA_GPA + 20, 44, 0xaa));
    /* A smaller one gets the ID cut short. */
    head = post_simple(f, T_GET_ID, 0, 4, true);
    kick(f);
    expect_used(f, head, 5);
    assert_memory_equal(f->ram + DATA_GPA, SERIAL, 4);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
}

static void test_unknown_types_are_unsupported(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    const uint32_t types[] = { T_DISCARD, 13 /* WRITE_ZEROES */, 2 /* SCSI */, 0x80000000u, 0xffffffffu };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        uint16_t head = post_simple(f, types[i], 0, 512, true);
        kick(f);
        expect_used(f, head, 1);
        assert_int_equal(status_at(f, STATUS_GPA), ST_UNSUPP);
        assert_true(all_bytes_are(f->ram + DATA_GPA, 512, 0xaa));
    }
}

/* --- malformed chains ------------------------------------------------------------------- */

static void test_short_header_is_ioerr(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    clear_buffers(f);
    put_header(f, HDR_GPA, T_IN, 0);
    struct seg segs[] = {
        { HDR_GPA, 15, false },
        { DATA_GPA, 512, true },
        { STATUS_GPA, 1, true },
    };
    uint16_t head = post_chain(f, segs, 3);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_IOERR);
    assert_true(all_bytes_are(f->ram + DATA_GPA, 512, 0xaa));
    /* No readable part at all. */
    struct seg only_writable[] = { { DATA_GPA, 512, true }, { STATUS_GPA, 1, true } };
    clear_buffers(f);
    head = post_chain(f, only_writable, 2);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_IOERR);
    assert_true(all_bytes_are(f->ram + DATA_GPA, 512, 0xaa));
}

/* The header in three pieces (and an empty one) reads the same as in one. */
static void test_header_split_over_buffers(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    clear_buffers(f);
    uint8_t hdr[16];
    uint32_t type = T_IN, reserved = 0;
    uint64_t sector = 33;
    memcpy(hdr, &type, 4);
    memcpy(hdr + 4, &reserved, 4);
    memcpy(hdr + 8, &sector, 8);
    memcpy(f->ram + HDR_GPA, hdr, 5);
    memcpy(f->ram + HDR_GPA + 0x100, hdr + 5, 6);
    memcpy(f->ram + HDR_GPA + 0x200, hdr + 11, 5);
    struct seg segs[] = {
        { HDR_GPA, 5, false },
        { HDR_GPA + 0x300, 0, false },
        { HDR_GPA + 0x100, 6, false },
        { HDR_GPA + 0x200, 5, false },
        { DATA_GPA, 512, true },
        { STATUS_GPA, 1, true },
    };
    uint16_t head = post_chain(f, segs, 6);
    kick(f);
    expect_used(f, head, 513);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
    assert_true(holds_image(f, DATA_GPA, 512, 33 * 512));
}

/* No writable byte: nowhere to put a status, so the chain comes back with length 0. */
static void test_missing_status_returns_chain_unanswered(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    clear_buffers(f);
    put_header(f, HDR_GPA, T_IN, 0);
    struct seg segs[] = { { HDR_GPA, 16, false }, { DATA_GPA, 512, false } };
    uint16_t head = post_chain(f, segs, 2);
    kick(f);
    expect_used(f, head, 0);
    assert_true(all_bytes_are(f->ram + DATA_GPA, 512, 0xaa));
    /* Writable buffers of length 0 only: the same. */
    struct seg empty_writable[] = { { HDR_GPA, 16, false }, { STATUS_GPA, 0, true } };
    head = post_chain(f, empty_writable, 2);
    kick(f);
    expect_used(f, head, 0);
    assert_int_equal(status_at(f, STATUS_GPA), ST_UNTOUCHED);
    /* And the queue goes on working. */
    head = post_simple(f, T_IN, 1, 512, true);
    kick(f);
    expect_used(f, head, 513);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
    assert_int_equal(drv_read(f->t, REG_STATUS) & S_NEEDS_RESET, 0);
}

/* A trailing empty writable buffer does not move the status: it is the last writable byte. */
static void test_status_is_last_writable_byte(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    clear_buffers(f);
    put_header(f, HDR_GPA, T_IN, 5);
    struct seg segs[] = {
        { HDR_GPA, 16, false },
        { DATA_GPA, 512, true },
        { STATUS_GPA, 1, true },
        { STATUS_GPA + 0x10, 0, true },
    };
    uint16_t head = post_chain(f, segs, 4);
    kick(f);
    expect_used(f, head, 513);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
    assert_true(holds_image(f, DATA_GPA, 512, 5 * 512));
}

/* A huge sector number with a status: IOERR, nothing read (covered for overflow above too). */
static void test_huge_sector_is_ioerr(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_simple(f, T_IN, 1ull << 60, 512, true);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_IOERR);
    assert_true(all_bytes_are(f->ram + DATA_GPA, 512, 0xaa));
}

/* A ring the driver broke (a head out of range) asks for a reset; nothing crashes. */
static void test_broken_ring_needs_reset(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    drv_publish(&f->q, QSIZE + 3); /* a head out of range */
    kick(f);
    assert_true(drv_read(f->t, REG_STATUS) & S_NEEDS_RESET);
    expect_nothing_more_used(f);
}

/* --- creation ----------------------------------------------------------------------------- */

static void test_create_checks_its_inputs(void **state)
{
    struct fixture *f = *state;
    /* A writable fd is refused (and closed: create owns it). */
    int fd = open(f->path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    errno = 0;
    assert_null(virtio_blk_create(fd, NULL));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    /* Not an open fd. */
    errno = 0;
    assert_null(virtio_blk_create(-1, NULL));
    assert_int_equal(errno, EBADF);
    /* A directory is not an image. */
    fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    errno = 0;
    assert_null(virtio_blk_create(fd, NULL));
    assert_int_equal(errno, EINVAL);
    /* A serial longer than 20 bytes. */
    fd = open_image(f->path);
    errno = 0;
    assert_null(virtio_blk_create(fd, "123456789012345678901"));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    /* 20 bytes exactly is fine, and NULL too. */
    struct virtio_device *dev = virtio_blk_create(open_image(f->path), "12345678901234567890");
    assert_non_null(dev);
    virtio_device_destroy(dev);
    dev = virtio_blk_create(open_image(f->path), NULL);
    assert_non_null(dev);
    assert_int_equal(virtio_blk_capacity(dev), SECTORS);
    virtio_device_destroy(dev);
}

/* GET_ID with no serial gives 20 zero bytes; an empty image has capacity 0 and refuses reads. */
static void test_empty_image_and_no_serial(void **state)
{
    struct fixture *f = *state;
    virtio_mmio_destroy(f->t);
    int fd = open(f->path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "short", 5), 5); /* less than one sector */
    close(fd);
    f->t = virtio_mmio_create(virtio_blk_create(open_image(f->path), NULL), &f->mem, &f->irq.line);
    assert_non_null(f->t);
    assert_int_equal(drv_read(f->t, REG_CONFIG), 0);
    bring_up(f);
    uint16_t head = post_simple(f, T_GET_ID, 0, 20, true);
    kick(f);
    expect_used(f, head, 21);
    assert_true(all_bytes_are(f->ram + DATA_GPA, 20, 0));
    head = post_simple(f, T_IN, 0, 512, true);
    kick(f);
    expect_used(f, head, 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_IOERR);
    assert_true(all_bytes_are(f->ram + DATA_GPA, 512, 0xaa));
}

/* The image shrank under us (it must not, but): the read comes up short, IOERR, partial length. */
static void test_image_shrunk_after_create(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    assert_int_equal(truncate(f->path, 10 * 512 + 100), 0);
    uint16_t head = post_simple(f, T_IN, 9, 1024, true);
    kick(f);
    expect_used(f, head, 512 + 100 + 1);
    assert_int_equal(status_at(f, STATUS_GPA), ST_IOERR);
    assert_true(holds_image(f, DATA_GPA, 612, 9 * 512));
}

/*
 * Snapshots: the transport's state saved with a request posted but not yet
 * kicked, then restored onto a fresh device over the same image (what a
 * restored VM does). The restore serves the pending request, and the queue
 * goes on from where it was.
 */
static void test_restore_onto_fresh_device(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_simple(f, T_IN, 4, 512, true);
    kick(f);
    expect_used(f, head, 513);
    head = post_simple(f, T_IN, 6, 1024, true); /* posted, not kicked */
    struct virtio_mmio_state saved;
    virtio_mmio_save(f->t, &saved);
    virtio_mmio_destroy(f->t);

    f->t = virtio_mmio_create(virtio_blk_create(open_image(f->path), SERIAL), &f->mem, &f->irq.line);
    assert_non_null(f->t);
    sm_error err = { 0 };
    assert_int_equal(virtio_mmio_restore(f->t, &saved, &err), SM_OK);
    expect_used(f, head, 1025);
    assert_int_equal(status_at(f, STATUS_GPA), ST_OK);
    assert_true(holds_image(f, DATA_GPA, 1024, 6 * 512));
    head = post_simple(f, T_GET_ID, 0, 20, true);
    kick(f);
    expect_used(f, head, 21);
    assert_memory_equal(f->ram + DATA_GPA, SERIAL, sizeof SERIAL);
}

/* A state saved from another kind of device does not restore onto blk, and the message names blk. */
static void test_restore_refuses_other_device(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    struct virtio_mmio_state saved;
    virtio_mmio_save(f->t, &saved);
    assert_int_equal(saved.device_id, 2);
    saved.device_id = 4; /* rng */
    sm_error err = { 0 };
    assert_int_equal(virtio_mmio_restore(f->t, &saved, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "blk"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_identity_and_features),
        T(test_config_space),
        T(test_read_sector_0),
        T(test_read_middle_across_buffers),
        T(test_read_last_sector),
        T(test_read_past_end_is_ioerr),
        T(test_read_not_whole_sectors_is_ioerr),
        T(test_read_of_nothing),
        T(test_read_seg_max_segments_indirect),
        T(test_chain_of_seg_max_plus_two_is_served),
        T(test_many_requests_one_kick),
        T(test_no_interrupt_flag_is_honoured),
        T(test_served_requests_survive_a_broken_ring),
        T(test_write_is_refused_and_file_unchanged),
        T(test_flush_succeeds),
        T(test_writable_offers_flush_not_ro),
        T(test_writable_write_lands),
        T(test_writable_bounds),
        T(test_get_id),
        T(test_unknown_types_are_unsupported),
        T(test_short_header_is_ioerr),
        T(test_header_split_over_buffers),
        T(test_missing_status_returns_chain_unanswered),
        T(test_status_is_last_writable_byte),
        T(test_huge_sector_is_ioerr),
        T(test_broken_ring_needs_reset),
        T(test_create_checks_its_inputs),
        T(test_empty_image_and_no_serial),
        T(test_image_shrunk_after_create),
        T(test_restore_onto_fresh_device),
        T(test_restore_refuses_other_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
