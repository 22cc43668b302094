/*
 * virtio-net behind the real virtio-mmio transport, over a fake guest memory:
 * the test plays the driver (descriptors, avail rings, kicks) and the back
 * end (a recorder of the frames the guest sent, and virtio_net_receive for
 * frames to the guest), and checks the used rings, the bytes on both sides,
 * the counters and the interrupts.
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

#include "devices/virtio/mmio.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "helpers/virtio_driver.h"
#include "machine/guest_memory.h"

#define MEM_SIZE     (4u << 20)
#define RX_DESC      0x1000
#define RX_AVAIL     0x2000
#define RX_USED      0x3000
#define TX_DESC      0x4000
#define TX_AVAIL     0x5000
#define TX_USED      0x6000
#define INDIRECT_GPA 0x7000
#define BUF_GPA      0x10000   /* buffers from here, 0x1000 apart */
#define QSIZE        256
#define HDR          12
#define MAX_FRAME    1514
#define RX_BUF_LEN   (HDR + 1518) /* what Linux posts in small-buffer mode */
#define RECORDED     8
#define UNTOUCHED    0xee

static const uint8_t MAC[6] = { 0x02, 0x53, 0x4d, 0x00, 0x00, 0x2a };

/* The back end: every frame the device sent, the first RECORDED kept whole. */
struct recorder {
    int frames;
    size_t len[RECORDED];
    uint8_t data[RECORDED][MAX_FRAME + 1];
};

struct fixture {
    uint8_t *ram;
    struct guest_memory mem;
    struct drv_irq irq;
    struct virtio_mmio *t;
    struct drv_queue rx, tx;
    uint16_t rx_next, tx_next;   /* the first free descriptor of each queue */
    struct recorder rec;
};

/* One buffer of a chain, as the driver lays it out. */
struct seg {
    uint64_t gpa;
    uint32_t len;
    bool writable;
};

static void record(void *ctx, const uint8_t *frame, size_t len)
{
    struct recorder *r = ctx;
    if (r->frames < RECORDED) {
        r->len[r->frames] = len;
        memcpy(r->data[r->frames], frame, len <= MAX_FRAME ? len : MAX_FRAME + 1);
    }
    r->frames++;
}

static struct virtio_device *create_net(struct fixture *f)
{
    struct net_backend backend = { .send = record, .ctx = &f->rec };
    struct virtio_device *dev = virtio_net_create(MAC, &backend);
    assert_non_null(dev);
    return dev;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->ram = drv_ram_create(&f->mem, MEM_SIZE);
    drv_queue_init(&f->rx, f->ram, QSIZE, RX_DESC, RX_AVAIL, RX_USED);
    drv_queue_init(&f->tx, f->ram, QSIZE, TX_DESC, TX_AVAIL, TX_USED);
    drv_irq_init(&f->irq);
    f->t = virtio_mmio_create(create_net(f), &f->mem, &f->irq.line);
    assert_non_null(f->t);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    virtio_mmio_destroy(f->t);
    free(f->ram);
    free(f);
    return 0;
}

/* --- the driver's side ---------------------------------------------------------------- */

static struct virtio_device *net_dev(struct fixture *f) { return virtio_mmio_device(f->t); }

/* Accepts everything offered, as Linux would; both queues, then DRIVER_OK. */
static void bring_up(struct fixture *f)
{
    drv_negotiate(f->t, drv_device_features(f->t));
    drv_setup_queue(f->t, 0, QSIZE, RX_DESC, RX_AVAIL, RX_USED);
    drv_setup_queue(f->t, 1, QSIZE, TX_DESC, TX_AVAIL, TX_USED);
    drv_driver_ok(f->t);
    assert_int_equal(drv_read(f->t, REG_STATUS), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

/* Lays segs out as a direct chain in q's table from *next on and publishes it; returns its head. */
static uint16_t post_chain(struct drv_queue *q, uint16_t *next, const struct seg *segs, int n)
{
    uint16_t head = *next;
    for (int i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % QSIZE);
        uint16_t flags = (uint16_t)((segs[i].writable ? DRV_DESC_WRITE : 0) | (i + 1 < n ? DRV_DESC_NEXT : 0));
        drv_queue_put_desc(q, idx, segs[i].gpa, segs[i].len, flags, (uint16_t)((idx + 1) % QSIZE));
    }
    *next = (uint16_t)((head + n) % QSIZE);
    drv_publish(q, head);
    return head;
}

static uint16_t post_tx(struct fixture *f, const struct seg *segs, int n) { return post_chain(&f->tx, &f->tx_next, segs, n); }
static uint16_t post_rx(struct fixture *f, const struct seg *segs, int n) { return post_chain(&f->rx, &f->rx_next, segs, n); }

/* The same chain through one indirect table at INDIRECT_GPA (as Linux sends scattered frames). */
static uint16_t post_tx_indirect(struct fixture *f, const struct seg *segs, int n)
{
    for (int i = 0; i < n; i++) {
        uint16_t flags = (uint16_t)((segs[i].writable ? DRV_DESC_WRITE : 0) | (i + 1 < n ? DRV_DESC_NEXT : 0));
        drv_put_desc(f->ram + INDIRECT_GPA, (uint16_t)i, segs[i].gpa, segs[i].len, flags, (uint16_t)(i + 1));
    }
    uint16_t head = f->tx_next;
    drv_queue_put_desc(&f->tx, head, INDIRECT_GPA, 16u * (uint32_t)n, DRV_DESC_INDIRECT, 0);
    f->tx_next = (uint16_t)((head + 1) % QSIZE);
    drv_publish(&f->tx, head);
    return head;
}

static void kick_tx(struct fixture *f) { drv_kick(f->t, 1); }

static void expect_used(struct drv_queue *q, uint16_t head, uint32_t len)
{
    uint32_t id, got_len;
    assert_true(drv_next_used(q, &id, &got_len));
    assert_int_equal(id, head);
    assert_int_equal(got_len, len);
}

static void expect_nothing_more_used(const struct drv_queue *q) { assert_int_equal(drv_used_idx(q), q->used_seen); }

static struct virtio_net_stats stats(struct fixture *f)
{
    struct virtio_net_stats s;
    virtio_net_stats(net_dev(f), &s);
    return s;
}

static bool needs_reset(struct fixture *f) { return drv_read(f->t, REG_STATUS) & S_NEEDS_RESET; }

/* A frame whose bytes differ with seed and position: dst MAC, src MAC, ethertype, payload. */
static void make_frame(uint8_t *p, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed * 31 + i * 7 + 1);
}

/* A transmit header: all zero (no offloads), but for the given flags and gso_type. */
static void put_tx_header(struct fixture *f, uint64_t gpa, uint8_t flags, uint8_t gso_type)
{
    memset(f->ram + gpa, 0, HDR);
    f->ram[gpa] = flags;
    f->ram[gpa + 1] = gso_type;
}

/* Header + frame in one readable buffer at BUF_GPA; the frame's bytes come from make_frame(seed). */
static uint16_t post_tx_frame(struct fixture *f, size_t len, uint8_t seed)
{
    put_tx_header(f, BUF_GPA, 0, 0);
    make_frame(f->ram + BUF_GPA + HDR, len, seed);
    struct seg seg = { BUF_GPA, (uint32_t)(HDR + len), false };
    return post_tx(f, &seg, 1);
}

/* Whether the recorder's frame i is len bytes of make_frame(seed). */
static bool recorded_frame_is(const struct fixture *f, int i, size_t len, uint8_t seed)
{
    uint8_t want[MAX_FRAME];
    make_frame(want, len, seed);
    return f->rec.len[i] == len && memcmp(f->rec.data[i], want, len) == 0;
}

static bool all_bytes_are(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return false;
    return true;
}

/* A receive header as the device must write it: zero but num_buffers = 1. */
static bool is_rx_header(const uint8_t *p)
{
    static const uint8_t want[HDR] = { [10] = 1 };
    return memcmp(p, want, HDR) == 0;
}

/* One writable buffer of Linux's small-buffer size at gpa, filled with markers. */
static uint16_t post_rx_buffer(struct fixture *f, uint64_t gpa, uint32_t len)
{
    memset(f->ram + gpa, UNTOUCHED, len);
    struct seg seg = { gpa, len, true };
    return post_rx(f, &seg, 1);
}

static bool receive(struct fixture *f, size_t len, uint8_t seed)
{
    uint8_t frame[MAX_FRAME + 8];
    make_frame(frame, len, seed);
    return virtio_net_receive(net_dev(f), frame, len);
}

static bool holds_frame(const uint8_t *p, size_t len, uint8_t seed)
{
    uint8_t want[MAX_FRAME];
    make_frame(want, len, seed);
    return memcmp(p, want, len) == 0;
}

/* --- identity, features, config ----------------------------------------------------------- */

static void test_identity_and_features(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(drv_read(f->t, REG_DEVICE_ID), 1);
    assert_int_equal(virtio_mmio_num_queues(f->t), 2);
    for (uint32_t q = 0; q < 2; q++) {
        drv_write(f->t, REG_QUEUE_SEL, q);
        assert_int_equal(drv_read(f->t, REG_QUEUE_NUM_MAX), VIRTIO_NET_QUEUE_SIZE);
    }
    drv_write(f->t, REG_QUEUE_SEL, 2);
    assert_int_equal(drv_read(f->t, REG_QUEUE_NUM_MAX), 0);
    uint64_t feat = drv_device_features(f->t);
    assert_true(feat & (1ull << 5));   /* MAC */
    assert_true(feat & (1ull << 32));  /* VERSION_1, from the transport */
    /* Nothing else of virtio-net's (bits 0-23 and 41-63): no offloads, no control queue. */
    assert_int_equal(feat & 0xffffffull, 1ull << 5);
    assert_int_equal(feat >> 41, 0);
}

static void test_config_is_the_mac(void **state)
{
    struct fixture *f = *state;
    uint8_t mac[6];
    for (uint32_t i = 0; i < 6; i++)
        virtio_mmio_bus_ops.read(f->t, REG_CONFIG + i, &mac[i], 1);
    assert_memory_equal(mac, MAC, 6);
    uint32_t word = drv_read(f->t, REG_CONFIG);
    assert_memory_equal(&word, MAC, 4);
    uint16_t tail = 0;
    virtio_mmio_bus_ops.read(f->t, REG_CONFIG + 4, (uint8_t *)&tail, 2);
    assert_memory_equal(&tail, MAC + 4, 2);
    /* No status field (VIRTIO_NET_F_STATUS is not offered): past 6 bytes the transport refuses. */
    uint16_t status = 0x1234;
    virtio_mmio_bus_ops.read(f->t, REG_CONFIG + 6, (uint8_t *)&status, 2);
    assert_int_equal(status, 0);
    /* The MAC is read-only. */
    drv_write(f->t, REG_CONFIG, 0);
    assert_int_equal(drv_read(f->t, REG_CONFIG), word);
}

static void test_create_checks_its_inputs(void **state)
{
    (void)state;
    struct net_backend no_send = { 0 };
    struct net_backend ok = { .send = record };
    errno = 0;
    assert_null(virtio_net_create(NULL, &ok));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(virtio_net_create(MAC, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(virtio_net_create(MAC, &no_send));
    assert_int_equal(errno, EINVAL);
}

/* The entry points refuse a device that is not virtio-net rather than misread it. */
static void test_other_device_is_refused(void **state)
{
    (void)state;
    struct virtio_device *rng = virtio_rng_create();
    assert_non_null(rng);
    uint8_t frame[64] = { 0 };
    assert_false(virtio_net_receive(rng, frame, sizeof frame));
    assert_false(virtio_net_receive(NULL, frame, sizeof frame));
    struct virtio_net_stats s = { .tx_frames = 9 };
    virtio_net_stats(rng, &s);
    assert_int_equal(s.tx_frames, 0);
    virtio_device_destroy(rng);
}

/* --- transmit ------------------------------------------------------------------------------- */

static void test_tx_one_descriptor(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    int pulses = f->irq.pulses;
    uint16_t head = post_tx_frame(f, 60, 1);
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    assert_int_equal(f->rec.frames, 1);
    assert_true(recorded_frame_is(f, 0, 60, 1));
    assert_int_equal(f->irq.pulses, pulses + 1);
    assert_int_equal(stats(f).tx_frames, 1);
    assert_int_equal(stats(f).tx_dropped, 0);
}

/* The header alone in one buffer, the frame in the next: Linux without room in front of the skb. */
static void test_tx_header_and_frame_split(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    put_tx_header(f, BUF_GPA, 0, 0);
    make_frame(f->ram + BUF_GPA + 0x1000, MAX_FRAME, 2);
    struct seg segs[] = { { BUF_GPA, HDR, false }, { BUF_GPA + 0x1000, MAX_FRAME, false } };
    uint16_t head = post_tx(f, segs, 2);
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    assert_int_equal(f->rec.frames, 1);
    assert_true(recorded_frame_is(f, 0, MAX_FRAME, 2));
}

/* A frame in many pieces, split inside the header and the frame at odd places, with an empty buffer. */
static void test_tx_many_descriptors(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint8_t whole[HDR + 300] = { 0 };
    make_frame(whole + HDR, 300, 3);
    const uint32_t cuts[] = { 5, 0, 7, 1, 99, 100, 100 }; /* sums to 312 */
    struct seg segs[7];
    uint32_t at = 0;
    for (int i = 0; i < 7; i++) {
        uint64_t gpa = BUF_GPA + 0x1000u * (uint32_t)i;
        memcpy(f->ram + gpa, whole + at, cuts[i]);
        segs[i] = (struct seg){ gpa, cuts[i], false };
        at += cuts[i];
    }
    assert_int_equal(at, sizeof whole);
    uint16_t head = post_tx(f, segs, 7);
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    /* And the same through an indirect table. */
    head = post_tx_indirect(f, segs, 7);
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    assert_int_equal(f->rec.frames, 2);
    assert_true(recorded_frame_is(f, 0, 300, 3));
    assert_true(recorded_frame_is(f, 1, 300, 3));
}

/* Many frames in one kick: all sent, in order, one interrupt for the batch. */
static void test_tx_many_frames_one_kick(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    enum { N = 6 };
    uint16_t heads[N];
    for (int i = 0; i < N; i++) {
        uint64_t gpa = BUF_GPA + 0x1000u * (uint32_t)i;
        put_tx_header(f, gpa, 0, 0);
        make_frame(f->ram + gpa + HDR, 100u + (uint32_t)i, (uint8_t)i);
        struct seg seg = { gpa, HDR + 100u + (uint32_t)i, false };
        heads[i] = post_tx(f, &seg, 1);
    }
    int pulses = f->irq.pulses;
    kick_tx(f);
    assert_int_equal(f->irq.pulses, pulses + 1);
    for (int i = 0; i < N; i++) {
        expect_used(&f->tx, heads[i], 0);
        assert_true(recorded_frame_is(f, i, 100u + (uint32_t)i, (uint8_t)i));
    }
    expect_nothing_more_used(&f->tx);
}

static void test_tx_no_interrupt_flag_is_honoured(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    drv_set_avail_flags(&f->tx, DRV_AVAIL_NO_INTERRUPT);
    int pulses = f->irq.pulses;
    uint16_t head = post_tx_frame(f, 60, 4);
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    assert_int_equal(f->rec.frames, 1);
    assert_int_equal(f->irq.pulses, pulses);
}

/* Every malformed transmit chain of net.c's table: returned, counted, not sent; then traffic goes on. */
static void test_tx_malformed_chains_are_dropped(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint64_t a = BUF_GPA, b = BUF_GPA + 0x1000;
    put_tx_header(f, a, 0, 0);
    make_frame(f->ram + a + HDR, 2000, 5);
    put_tx_header(f, BUF_GPA + 0x2000, 1 /* NEEDS_CSUM */, 0);
    put_tx_header(f, BUF_GPA + 0x3000, 0, 1 /* GSO_TCPV4 */);
    put_tx_header(f, BUF_GPA + 0x4000, 0, 0x80 /* GSO_ECN */);
    const struct {
        struct seg segs[2];
        int n;
    } bad[] = {
        { { { a, HDR + 60, true } }, 1 },                          /* writable only */
        { { { a, HDR + 60, false }, { b, 100, true } }, 2 },       /* a frame, then a writable buffer */
        { { { a, HDR + 60, false }, { b, 0, true } }, 2 },         /* an empty writable buffer */
        { { { a, HDR - 1, false } }, 1 },                          /* no whole header */
        { { { a, 0, false } }, 1 },                                /* nothing at all */
        { { { a, HDR, false } }, 1 },                              /* a header, no frame */
        { { { a, HDR + 13, false } }, 1 },                         /* less than an Ethernet header */
        { { { a, HDR + MAX_FRAME + 1, false } }, 1 },              /* one byte too long */
        { { { a, HDR + 1000, false }, { b, 1000, false } }, 2 },   /* too long over two buffers */
        { { { BUF_GPA + 0x2000, HDR + 60, false } }, 1 },          /* checksum offload asked */
        { { { BUF_GPA + 0x3000, HDR + 60, false } }, 1 },          /* segmentation asked */
        { { { BUF_GPA + 0x4000, HDR + 60, false } }, 1 },          /* ECN bit alone */
    };
    size_t nbad = sizeof bad / sizeof bad[0];
    for (size_t i = 0; i < nbad; i++) {
        uint16_t head = post_tx(f, bad[i].segs, bad[i].n);
        kick_tx(f);
        expect_used(&f->tx, head, 0);
        assert_int_equal(f->rec.frames, 0);
        assert_false(needs_reset(f));
    }
    assert_int_equal(stats(f).tx_dropped, nbad);
    /* The longest frame still goes through, and so does the shortest. */
    uint16_t head = post_tx_frame(f, MAX_FRAME, 6);
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    head = post_tx_frame(f, 14, 7);
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    assert_int_equal(f->rec.frames, 2);
    assert_true(recorded_frame_is(f, 0, MAX_FRAME, 6));
    assert_true(recorded_frame_is(f, 1, 14, 7));
    assert_int_equal(stats(f).tx_frames, 2);
    assert_int_equal(stats(f).tx_dropped, nbad);
}

/* Header fields other than flags and gso_type mean nothing without offloads: ignored. */
static void test_tx_ignores_other_header_fields(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_tx_frame(f, 64, 8);
    memset(f->ram + BUF_GPA + 2, 0xff, HDR - 2); /* hdr_len .. num_buffers */
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    assert_int_equal(f->rec.frames, 1);
    assert_true(recorded_frame_is(f, 0, 64, 8));
}

/* A broken ring: frames before it are sent and returned, then DEVICE_NEEDS_RESET; receive stops too. */
static void test_tx_broken_ring_needs_reset(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    post_rx_buffer(f, BUF_GPA + 0x8000, RX_BUF_LEN);
    uint16_t head = post_tx_frame(f, 60, 9);
    drv_publish(&f->tx, QSIZE + 1); /* a head out of range */
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    expect_nothing_more_used(&f->tx);
    assert_int_equal(f->rec.frames, 1);
    assert_true(needs_reset(f));
    assert_false(receive(f, 60, 1));
    expect_nothing_more_used(&f->rx);
    assert_int_equal(stats(f).rx_dropped, 1);
}

/* A descriptor reaching past guest RAM breaks the ring (the walker's rule), without a crash. */
static void test_tx_buffer_outside_ram_needs_reset(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    struct seg seg = { MEM_SIZE - 8, 64, false };
    post_tx(f, &seg, 1);
    kick_tx(f);
    assert_true(needs_reset(f));
    expect_nothing_more_used(&f->tx);
    assert_int_equal(f->rec.frames, 0);
}

/* --- receive --------------------------------------------------------------------------------- */

static void test_rx_one_descriptor(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint64_t buf = BUF_GPA;
    uint16_t head = post_rx_buffer(f, buf, RX_BUF_LEN);
    int pulses = f->irq.pulses;
    assert_true(receive(f, 60, 10));
    expect_used(&f->rx, head, HDR + 60);
    assert_true(is_rx_header(f->ram + buf));
    assert_true(holds_frame(f->ram + buf + HDR, 60, 10));
    assert_true(all_bytes_are(f->ram + buf + HDR + 60, RX_BUF_LEN - HDR - 60, UNTOUCHED));
    assert_int_equal(f->irq.pulses, pulses + 1);
    assert_int_equal(stats(f).rx_frames, 1);
}

/* Header and data as two buffers of one chain (older Linux small-buffer mode), the longest frame. */
static void test_rx_split_header_and_data(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint64_t hdr = BUF_GPA, data = BUF_GPA + 0x1000;
    memset(f->ram + hdr, UNTOUCHED, HDR);
    memset(f->ram + data, UNTOUCHED, 1518);
    struct seg segs[] = { { hdr, HDR, true }, { data, 1518, true } };
    uint16_t head = post_rx(f, segs, 2);
    assert_true(receive(f, MAX_FRAME, 11));
    expect_used(&f->rx, head, HDR + MAX_FRAME);
    assert_true(is_rx_header(f->ram + hdr));
    assert_true(holds_frame(f->ram + data, MAX_FRAME, 11));
    assert_true(all_bytes_are(f->ram + data + MAX_FRAME, 1518 - MAX_FRAME, UNTOUCHED));
}

/* Frames take the posted buffers in order, one each. */
static void test_rx_frames_fill_buffers_in_order(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t h0 = post_rx_buffer(f, BUF_GPA, RX_BUF_LEN);
    uint16_t h1 = post_rx_buffer(f, BUF_GPA + 0x1000, RX_BUF_LEN);
    assert_true(receive(f, 100, 12));
    assert_true(receive(f, 200, 13));
    expect_used(&f->rx, h0, HDR + 100);
    expect_used(&f->rx, h1, HDR + 200);
    assert_true(holds_frame(f->ram + BUF_GPA + HDR, 100, 12));
    assert_true(holds_frame(f->ram + BUF_GPA + 0x1000 + HDR, 200, 13));
    assert_false(receive(f, 60, 14)); /* the third has nowhere to go */
    assert_int_equal(stats(f).rx_frames, 2);
    assert_int_equal(stats(f).rx_dropped, 1);
}

static void test_rx_without_buffer_is_dropped(void **state)
{
    struct fixture *f = *state;
    /* Before the driver is done: the queue may be set up, but DRIVER_OK is not set yet. */
    drv_negotiate(f->t, drv_device_features(f->t));
    drv_setup_queue(f->t, 0, QSIZE, RX_DESC, RX_AVAIL, RX_USED);
    post_rx_buffer(f, BUF_GPA, RX_BUF_LEN);
    assert_false(receive(f, 60, 15));
    expect_nothing_more_used(&f->rx);
    drv_setup_queue(f->t, 1, QSIZE, TX_DESC, TX_AVAIL, TX_USED);
    drv_driver_ok(f->t);
    /* Live: the buffer posted earlier is used, then there is none. */
    assert_true(receive(f, 60, 16));
    int pulses = f->irq.pulses;
    assert_false(receive(f, 60, 17));
    assert_int_equal(f->irq.pulses, pulses);
    assert_int_equal(stats(f).rx_dropped, 2);
    assert_int_equal(stats(f).rx_frames, 1);
    assert_false(needs_reset(f));
}

static void test_rx_no_interrupt_flag_is_honoured(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    drv_set_avail_flags(&f->rx, DRV_AVAIL_NO_INTERRUPT);
    uint16_t head = post_rx_buffer(f, BUF_GPA, RX_BUF_LEN);
    int pulses = f->irq.pulses;
    assert_true(receive(f, 60, 18));
    expect_used(&f->rx, head, HDR + 60);
    assert_int_equal(f->irq.pulses, pulses);
}

/* Frames the device refuses before taking a buffer: too long, too short, none. */
static void test_rx_bad_frames_keep_the_buffer(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_rx_buffer(f, BUF_GPA, RX_BUF_LEN + 100);
    assert_false(receive(f, MAX_FRAME + 1, 19));
    assert_false(receive(f, 13, 20));
    assert_false(receive(f, 0, 21));
    assert_false(virtio_net_receive(net_dev(f), NULL, 60));
    expect_nothing_more_used(&f->rx);
    assert_true(all_bytes_are(f->ram + BUF_GPA, RX_BUF_LEN + 100, UNTOUCHED));
    assert_int_equal(stats(f).rx_dropped, 4);
    assert_true(receive(f, 14, 22));
    expect_used(&f->rx, head, HDR + 14);
}

/* Chains the device cannot use: returned with used length 0, untouched; the frame is dropped. */
static void test_rx_malformed_chains_are_returned_empty(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint64_t a = BUF_GPA, b = BUF_GPA + 0x1000;
    memset(f->ram + a, UNTOUCHED, 0x2000);
    const struct {
        struct seg segs[2];
        int n;
    } bad[] = {
        { { { a, RX_BUF_LEN, false } }, 1 },                      /* readable only */
        { { { a, HDR, false }, { b, 1518, true } }, 2 },          /* a readable header buffer */
        { { { a, HDR + 59, true } }, 1 },                         /* one byte short of this frame */
        { { { a, HDR - 1, true } }, 1 },                          /* not even the header */
        { { { a, 0, true } }, 1 },                                /* empty */
        { { { a, 6, true }, { b, 6 + 59, true } }, 2 },           /* short, split */
    };
    size_t n = sizeof bad / sizeof bad[0];
    for (size_t i = 0; i < n; i++) {
        uint16_t head = post_rx(f, bad[i].segs, bad[i].n);
        int pulses = f->irq.pulses;
        assert_false(receive(f, 60, 23));
        expect_used(&f->rx, head, 0);
        assert_int_equal(f->irq.pulses, pulses + 1); /* the driver gets its buffer back */
        assert_true(all_bytes_are(f->ram + a, 0x2000, UNTOUCHED));
    }
    assert_int_equal(stats(f).rx_dropped, n);
    assert_false(needs_reset(f));
    /* A buffer smaller than the spec's 1526 bytes that holds this frame is used. */
    uint16_t head = post_rx_buffer(f, a, HDR + 60);
    assert_true(receive(f, 60, 24));
    expect_used(&f->rx, head, HDR + 60);
    assert_true(holds_frame(f->ram + a + HDR, 60, 24));
    /* And transmit was never disturbed. */
    head = post_tx_frame(f, 60, 25);
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    assert_int_equal(f->rec.frames, 1);
}

static void test_rx_broken_ring_needs_reset(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    drv_set_avail_idx(&f->rx, QSIZE + 1); /* more heads than the ring has */
    assert_false(receive(f, 60, 26));
    assert_true(needs_reset(f));
    expect_nothing_more_used(&f->rx);
    /* The device stays quiet until the driver resets it, then works again. */
    assert_false(receive(f, 60, 27));
    drv_write(f->t, REG_STATUS, 0);
    assert_false(receive(f, 60, 28)); /* reset: not live */
    drv_queue_init(&f->rx, f->ram, QSIZE, RX_DESC, RX_AVAIL, RX_USED);
    memset(f->ram + RX_AVAIL, 0, 0x1000);
    memset(f->ram + RX_USED, 0, 0x1000);
    f->rx_next = 0;
    bring_up(f);
    uint16_t head = post_rx_buffer(f, BUF_GPA, RX_BUF_LEN);
    assert_true(receive(f, 60, 29));
    expect_used(&f->rx, head, HDR + 60);
}

/* A descriptor loop in the receive ring breaks it rather than hanging. */
static void test_rx_descriptor_loop_needs_reset(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    drv_queue_put_desc(&f->rx, 0, BUF_GPA, 100, DRV_DESC_WRITE | DRV_DESC_NEXT, 1);
    drv_queue_put_desc(&f->rx, 1, BUF_GPA + 100, 100, DRV_DESC_WRITE | DRV_DESC_NEXT, 0);
    drv_publish(&f->rx, 0);
    assert_false(receive(f, 60, 30));
    assert_true(needs_reset(f));
}

/* --- snapshots ------------------------------------------------------------------------------- */

/*
 * The transport's state saved with a frame posted for transmit but not
 * kicked and a receive buffer posted, then restored onto a fresh device
 * (what a restored VM does): the frame goes out, the buffer takes the next
 * frame, and both queues go on from where they were.
 */
static void test_restore_resumes_mid_stream(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t head = post_tx_frame(f, 70, 31);
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    uint16_t rx_head = post_rx_buffer(f, BUF_GPA + 0x8000, RX_BUF_LEN);
    assert_true(receive(f, 80, 32));
    expect_used(&f->rx, rx_head, HDR + 80);
    rx_head = post_rx_buffer(f, BUF_GPA + 0x9000, RX_BUF_LEN);
    head = post_tx_frame(f, 90, 33); /* posted, not kicked */
    struct virtio_mmio_state saved;
    virtio_mmio_save(f->t, &saved);
    virtio_mmio_destroy(f->t);

    f->rec.frames = 0;
    f->t = virtio_mmio_create(create_net(f), &f->mem, &f->irq.line);
    assert_non_null(f->t);
    sm_error err = { 0 };
    assert_int_equal(virtio_mmio_restore(f->t, &saved, &err), SM_OK);
    expect_used(&f->tx, head, 0);
    assert_int_equal(f->rec.frames, 1);
    assert_true(recorded_frame_is(f, 0, 90, 33));
    assert_true(receive(f, 100, 34));
    expect_used(&f->rx, rx_head, HDR + 100);
    assert_true(holds_frame(f->ram + BUF_GPA + 0x9000 + HDR, 100, 34));
    head = post_tx_frame(f, 110, 35);
    kick_tx(f);
    expect_used(&f->tx, head, 0);
    assert_true(recorded_frame_is(f, 1, 110, 35));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_identity_and_features),
        T(test_config_is_the_mac),
        T(test_create_checks_its_inputs),
        T(test_other_device_is_refused),
        T(test_tx_one_descriptor),
        T(test_tx_header_and_frame_split),
        T(test_tx_many_descriptors),
        T(test_tx_many_frames_one_kick),
        T(test_tx_no_interrupt_flag_is_honoured),
        T(test_tx_malformed_chains_are_dropped),
        T(test_tx_ignores_other_header_fields),
        T(test_tx_broken_ring_needs_reset),
        T(test_tx_buffer_outside_ram_needs_reset),
        T(test_rx_one_descriptor),
        T(test_rx_split_header_and_data),
        T(test_rx_frames_fill_buffers_in_order),
        T(test_rx_without_buffer_is_dropped),
        T(test_rx_no_interrupt_flag_is_honoured),
        T(test_rx_bad_frames_keep_the_buffer),
        T(test_rx_malformed_chains_are_returned_empty),
        T(test_rx_broken_ring_needs_reset),
        T(test_rx_descriptor_loop_needs_reset),
        T(test_restore_resumes_mid_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
