/*
 * The virtio-mmio transport carrying virtio-rng, driven through its bus ops
 * the way a driver would, over a fake guest memory: identification,
 * feature negotiation, the status state machine, queue setup, and a request
 * processed end to end (descriptors and avail ring written here, used ring
 * and interrupt checked here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>

#include "devices/virtio/mmio.h"
#include "devices/virtio/rng.h"
#include "vmm/memory.h"

#define MEM_SIZE  (1u << 20)
#define DESC_GPA  0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA  0x3000
#define BUF_GPA   0x10000
#define QSIZE     16

/* Register offsets, spelled out here rather than shared, so the test checks the layout. */
enum {
    MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, VENDOR_ID = 0x00c,
    DEV_FEATURES = 0x010, DEV_FEATURES_SEL = 0x014, DRV_FEATURES = 0x020, DRV_FEATURES_SEL = 0x024,
    QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044,
    QUEUE_NOTIFY = 0x050, INT_STATUS = 0x060, INT_ACK = 0x064, STATUS = 0x070,
    DESC_LO = 0x080, DESC_HI = 0x084, DRIVER_LO = 0x090, DRIVER_HI = 0x094,
    DEVICE_LO = 0x0a0, DEVICE_HI = 0x0a4, SHM_SEL = 0x0ac, SHM_LEN_LO = 0x0b0, SHM_LEN_HI = 0x0b4,
    QUEUE_RESET = 0x0c0, CONFIG_GEN = 0x0fc,
};

enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8, S_NEEDS_RESET = 64 };

struct fake_irq {
    struct irq_line line;
    int pulses;
};

static void count_pulse(struct irq_line *line) { ((struct fake_irq *)line->ctx)->pulses++; }

struct fixture {
    uint8_t *ram;
    struct guest_memory mem;
    struct fake_irq irq;
    struct virtio_mmio *t;
    uint16_t avail_idx;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->ram = aligned_alloc(4096, MEM_SIZE);
    memset(f->ram, 0, MEM_SIZE);
    gm_init_buffer(&f->mem, f->ram, MEM_SIZE);
    f->irq.line = (struct irq_line){ .pulse = count_pulse, .fd = -1, .ctx = &f->irq };
    f->t = virtio_mmio_create(virtio_rng_create(), &f->mem, &f->irq.line);
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

static uint32_t rd(struct fixture *f, uint64_t off)
{
    uint32_t v = 0xdeadbeef;
    virtio_mmio_bus_ops.read(f->t, off, (uint8_t *)&v, 4);
    return v;
}

static void wr(struct fixture *f, uint64_t off, uint32_t v)
{
    virtio_mmio_bus_ops.write(f->t, off, (const uint8_t *)&v, 4);
}

static void negotiate(struct fixture *f, uint64_t features)
{
    wr(f, STATUS, S_ACK);
    wr(f, STATUS, S_ACK | S_DRIVER);
    wr(f, DRV_FEATURES_SEL, 0);
    wr(f, DRV_FEATURES, (uint32_t)features);
    wr(f, DRV_FEATURES_SEL, 1);
    wr(f, DRV_FEATURES, (uint32_t)(features >> 32));
    wr(f, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
}

static void setup_queue(struct fixture *f, uint32_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
    wr(f, QUEUE_SEL, 0);
    wr(f, QUEUE_NUM, size);
    wr(f, DESC_LO, (uint32_t)desc);
    wr(f, DESC_HI, (uint32_t)(desc >> 32));
    wr(f, DRIVER_LO, (uint32_t)avail);
    wr(f, DRIVER_HI, (uint32_t)(avail >> 32));
    wr(f, DEVICE_LO, (uint32_t)used);
    wr(f, DEVICE_HI, (uint32_t)(used >> 32));
    wr(f, QUEUE_READY, 1);
}

/* The whole driver bring-up with VERSION_1 only. */
static void bring_up(struct fixture *f)
{
    negotiate(f, 1ull << 32);
    assert_int_equal(rd(f, STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
    setup_queue(f, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
    assert_int_equal(rd(f, QUEUE_READY), 1);
    wr(f, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    assert_int_equal(rd(f, STATUS), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

/* Driver side: one device-writable buffer of len bytes as descriptor `head`, published. */
static void post_buffer(struct fixture *f, uint16_t head, uint64_t gpa, uint32_t len)
{
    uint8_t *d = f->ram + DESC_GPA + 16u * head;
    uint16_t flags = 2 /* WRITE */, next = 0;
    memcpy(d, &gpa, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
    memcpy(f->ram + AVAIL_GPA + 4 + 2 * (f->avail_idx % QSIZE), &head, 2);
    f->avail_idx++;
    memcpy(f->ram + AVAIL_GPA + 2, &f->avail_idx, 2);
}

static uint16_t used_idx(const struct fixture *f)
{
    uint16_t v;
    memcpy(&v, f->ram + USED_GPA + 2, 2);
    return v;
}

static void used_elem(const struct fixture *f, uint16_t slot, uint32_t *id, uint32_t *len)
{
    memcpy(id, f->ram + USED_GPA + 4 + 8 * slot, 4);
    memcpy(len, f->ram + USED_GPA + 8 + 8 * slot, 4);
}

static bool all_bytes_are(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return false;
    return true;
}

/* --- identification --------------------------------------------------------- */

static void test_identification_registers(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f, MAGIC), 0x74726976);
    assert_int_equal(rd(f, VERSION), 2);
    assert_int_equal(rd(f, DEVICE_ID), 4);
    assert_int_equal(rd(f, VENDOR_ID), VIRTIO_MMIO_VENDOR_ID);
    assert_int_equal(virtio_mmio_num_queues(f->t), 1);
    assert_int_equal(rd(f, QUEUE_NUM_MAX), VIRTIO_RNG_QUEUE_SIZE);
    wr(f, QUEUE_SEL, 1);
    assert_int_equal(rd(f, QUEUE_NUM_MAX), 0); /* no queue 1 */
    assert_int_equal(rd(f, QUEUE_READY), 0);
}

static void test_odd_accesses_read_zero(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f, 0x0e8), 0);          /* reserved */
    assert_int_equal(rd(f, QUEUE_RESET), 0);    /* RING_RESET not offered */
    assert_int_equal(rd(f, CONFIG_GEN), 0);
    assert_int_equal(rd(f, SHM_LEN_LO), 0xffffffffu);
    assert_int_equal(rd(f, SHM_LEN_HI), 0xffffffffu);
    uint16_t half = 0xbeef;
    virtio_mmio_bus_ops.read(f->t, MAGIC, (uint8_t *)&half, 2); /* 16-bit register access */
    assert_int_equal(half, 0);
    uint32_t v = 0xdeadbeef;
    virtio_mmio_bus_ops.read(f->t, MAGIC + 1, (uint8_t *)&v, 4); /* unaligned */
    assert_int_equal(v, 0);
    /* rng has no config space: every config read is 0, writes are ignored. */
    v = 0xdeadbeef;
    virtio_mmio_bus_ops.read(f->t, VIRTIO_MMIO_CONFIG_OFFSET, (uint8_t *)&v, 4);
    assert_int_equal(v, 0);
    wr(f, VIRTIO_MMIO_CONFIG_OFFSET, 0x12345678);
    wr(f, MAGIC, 0); /* read-only */
    assert_int_equal(rd(f, MAGIC), 0x74726976);
}

static void test_device_features(void **state)
{
    struct fixture *f = *state;
    wr(f, DEV_FEATURES_SEL, 0);
    uint32_t lo = rd(f, DEV_FEATURES);
    assert_true(lo & (1u << 28));            /* INDIRECT_DESC: implemented, so offered */
    assert_false(lo & (1u << 29));           /* EVENT_IDX: not implemented, never offered */
    wr(f, DEV_FEATURES_SEL, 1);
    assert_int_equal(rd(f, DEV_FEATURES), 1); /* VERSION_1, nothing else above 32 */
    wr(f, DEV_FEATURES_SEL, 2);
    assert_int_equal(rd(f, DEV_FEATURES), 0);
}

/* --- negotiation and status ----------------------------------------------------- */

static void test_features_ok_needs_version_1(void **state)
{
    struct fixture *f = *state;
    negotiate(f, 0); /* a legacy driver */
    assert_int_equal(rd(f, STATUS) & S_FEATURES_OK, 0);
}

static void test_features_ok_refuses_bits_not_offered(void **state)
{
    struct fixture *f = *state;
    negotiate(f, (1ull << 32) | (1ull << 29) /* EVENT_IDX */);
    assert_int_equal(rd(f, STATUS) & S_FEATURES_OK, 0);
    wr(f, STATUS, 0);
    negotiate(f, (1ull << 32) | 1 /* a device bit rng does not have */);
    assert_int_equal(rd(f, STATUS) & S_FEATURES_OK, 0);
    wr(f, STATUS, 0);
    negotiate(f, (1ull << 32) | (1ull << 28));
    assert_int_equal(rd(f, STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
    assert_int_equal(virtio_mmio_device(f->t)->driver_features, (1ull << 32) | (1ull << 28));
}

static void test_driver_features_frozen_after_features_ok(void **state)
{
    struct fixture *f = *state;
    negotiate(f, 1ull << 32);
    wr(f, DRV_FEATURES_SEL, 1);
    wr(f, DRV_FEATURES, 0);
    assert_int_equal(virtio_mmio_device(f->t)->driver_features, 1ull << 32);
}

static void test_driver_ok_without_features_ok_needs_reset(void **state)
{
    struct fixture *f = *state;
    wr(f, STATUS, S_ACK | S_DRIVER);
    wr(f, STATUS, S_ACK | S_DRIVER | S_DRIVER_OK);
    uint32_t st = rd(f, STATUS);
    assert_int_equal(st & S_DRIVER_OK, 0);
    assert_true(st & S_NEEDS_RESET);
    assert_true(rd(f, INT_STATUS) & 2);
    assert_int_equal(f->irq.pulses, 1);
}

static void test_reset_clears_everything(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    wr(f, STATUS, 0);
    assert_int_equal(rd(f, STATUS), 0);
    assert_int_equal(rd(f, QUEUE_READY), 0);
    assert_int_equal(rd(f, INT_STATUS), 0);
    assert_int_equal(virtio_mmio_device(f->t)->driver_features, 0);
    /* And it comes up again from scratch. */
    memset(f->ram + USED_GPA, 0, 4096);
    f->avail_idx = 0;
    memset(f->ram + AVAIL_GPA, 0, 4096);
    bring_up(f);
}

/* --- queues ------------------------------------------------------------------------- */

static void test_invalid_queue_is_not_activated(void **state)
{
    struct fixture *f = *state;
    const struct { uint32_t size; uint64_t desc, avail, used; } bad[] = {
        { 12, DESC_GPA, AVAIL_GPA, USED_GPA },                   /* not a power of two */
        { 2 * VIRTIO_RNG_QUEUE_SIZE, DESC_GPA, AVAIL_GPA, USED_GPA }, /* above QueueNumMax */
        { 0x10010, DESC_GPA, AVAIL_GPA, USED_GPA },              /* past 16 bits */
        { QSIZE, MEM_SIZE, AVAIL_GPA, USED_GPA },                /* desc outside RAM */
        { QSIZE, DESC_GPA, AVAIL_GPA, 0x100000000ull + USED_GPA }, /* used above RAM */
        { QSIZE, DESC_GPA + 4, AVAIL_GPA, USED_GPA },            /* misaligned */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wr(f, STATUS, 0);
        negotiate(f, 1ull << 32);
        setup_queue(f, bad[i].size, bad[i].desc, bad[i].avail, bad[i].used);
        assert_int_equal(rd(f, QUEUE_READY), 0);
        assert_true(rd(f, STATUS) & S_NEEDS_RESET);
    }
}

static int activations;
static int count_activate(struct virtio_device *dev)
{
    (void)dev;
    activations++;
    return 0;
}
static void ignore_notify(struct virtio_device *dev, uint16_t q)
{
    (void)dev;
    (void)q;
}

/* A device whose queue setup failed is never activated, even if the driver goes on. */
static void test_no_activation_after_needs_reset(void **state)
{
    (void)state;
    static const struct virtio_device_ops probe_ops = {
        .name = "probe", .device_id = 99, .num_queues = 1, .queue_max_size = 16,
        .activate = count_activate, .queue_notify = ignore_notify,
    };
    struct fixture f2 = { 0 };
    f2.ram = aligned_alloc(4096, MEM_SIZE);
    memset(f2.ram, 0, MEM_SIZE);
    gm_init_buffer(&f2.mem, f2.ram, MEM_SIZE);
    struct virtio_device dev = { .ops = &probe_ops };
    f2.t = virtio_mmio_create(&dev, &f2.mem, NULL);
    assert_non_null(f2.t);
    activations = 0;
    negotiate(&f2, 1ull << 32);
    setup_queue(&f2, 3, DESC_GPA, AVAIL_GPA, USED_GPA); /* bad size */
    wr(&f2, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    assert_int_equal(activations, 0);
    assert_int_equal(rd(&f2, STATUS) & S_DRIVER_OK, 0);
    wr(&f2, STATUS, 0);
    bring_up(&f2);
    assert_int_equal(activations, 1);
    virtio_mmio_destroy(f2.t); /* no destroy op: dev stays ours, on the stack */
    free(f2.ram);
}

static void test_queue_registers_frozen_while_ready(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    wr(f, QUEUE_NUM, 4);
    wr(f, DESC_LO, 0x50000);
    assert_int_equal(virtio_mmio_device(f->t)->queues[0].size, QSIZE);
    assert_int_equal(virtio_mmio_device(f->t)->queues[0].desc_addr, DESC_GPA);
    /* QueueReady 0 takes it down (Linux does before freeing the rings). */
    wr(f, QUEUE_READY, 0);
    assert_int_equal(rd(f, QUEUE_READY), 0);
}

static void test_rng_request_end_to_end(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    memset(f->ram + BUF_GPA, 0xaa, 64);
    post_buffer(f, 5, BUF_GPA, 64);
    assert_int_equal(f->irq.pulses, 0);
    wr(f, QUEUE_NOTIFY, 0);     /* the kick, reaching the bus */

    assert_int_equal(used_idx(f), 1);
    uint32_t id, len;
    used_elem(f, 0, &id, &len);
    assert_int_equal(id, 5);
    assert_int_equal(len, 64);
    /* 64 random bytes all equal to 0xaa: probability 2^-512. */
    assert_false(all_bytes_are(f->ram + BUF_GPA, 64, 0xaa));
    assert_int_equal(f->irq.pulses, 1);
    assert_int_equal(rd(f, INT_STATUS), 1);
    wr(f, INT_ACK, 1);
    assert_int_equal(rd(f, INT_STATUS), 0);

    /* The same through the event-loop entry point. */
    post_buffer(f, 6, BUF_GPA + 64, 8);
    virtio_mmio_queue_notify(f->t, 0);
    assert_int_equal(used_idx(f), 2);
    used_elem(f, 1, &id, &len);
    assert_int_equal(id, 6);
    assert_int_equal(len, 8);
    assert_int_equal(f->irq.pulses, 2);
}

static void test_rng_fills_at_most_the_per_request_bound(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    const uint32_t big = 3 * VIRTIO_RNG_MAX_REQUEST;
    memset(f->ram + BUF_GPA, 0xaa, big);
    post_buffer(f, 0, BUF_GPA, big);
    virtio_mmio_queue_notify(f->t, 0);
    uint32_t id, len;
    used_elem(f, 0, &id, &len);
    assert_int_equal(len, VIRTIO_RNG_MAX_REQUEST);
    assert_true(all_bytes_are(f->ram + BUF_GPA + VIRTIO_RNG_MAX_REQUEST, big - VIRTIO_RNG_MAX_REQUEST, 0xaa));
}

static void test_notify_before_driver_ok_waits_for_it(void **state)
{
    struct fixture *f = *state;
    negotiate(f, 1ull << 32);
    setup_queue(f, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
    post_buffer(f, 1, BUF_GPA, 16);
    wr(f, QUEUE_NOTIFY, 0);
    assert_int_equal(used_idx(f), 0);   /* not live yet: nothing consumed */
    wr(f, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    assert_int_equal(used_idx(f), 1);   /* picked up at DRIVER_OK */
}

static void test_notify_of_missing_queue_is_ignored(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    post_buffer(f, 1, BUF_GPA, 16);
    wr(f, QUEUE_NOTIFY, 7);
    virtio_mmio_queue_notify(f->t, 0xffff);
    assert_int_equal(used_idx(f), 0);
}

static void test_broken_ring_sets_needs_reset(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t jump = QSIZE + 3;
    memcpy(f->ram + AVAIL_GPA + 2, &jump, 2);
    wr(f, QUEUE_NOTIFY, 0);
    assert_true(rd(f, STATUS) & S_NEEDS_RESET);
    assert_true(rd(f, INT_STATUS) & 2);
    assert_int_equal(used_idx(f), 0);
    /* Further kicks do nothing until the driver resets the device. */
    virtio_mmio_queue_notify(f->t, 0);
    assert_int_equal(used_idx(f), 0);
    wr(f, STATUS, 0);
    assert_int_equal(rd(f, STATUS), 0);
}

/* A vCPU thread reading and acknowledging while the event loop processes kicks. */
static bool stop_hammer; /* atomic */

static void *hammer_registers(void *arg)
{
    struct fixture *f = arg;
    while (!__atomic_load_n(&stop_hammer, __ATOMIC_RELAXED)) {
        uint32_t st = rd(f, INT_STATUS);
        if (st)
            wr(f, INT_ACK, st);
        (void)rd(f, STATUS);
        (void)rd(f, QUEUE_READY);
    }
    return NULL;
}

static void test_registers_and_kicks_from_two_threads(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    __atomic_store_n(&stop_hammer, false, __ATOMIC_RELAXED);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hammer_registers, f), 0);
    for (uint16_t i = 0; i < 200; i++) {
        post_buffer(f, (uint16_t)(i % QSIZE), BUF_GPA + 16u * (i % QSIZE), 16);
        virtio_mmio_queue_notify(f->t, 0);
    }
    __atomic_store_n(&stop_hammer, true, __ATOMIC_RELAXED);
    pthread_join(th, NULL);
    assert_int_equal(used_idx(f), 200);
    assert_int_equal(f->irq.pulses, 200);
    assert_int_equal(rd(f, STATUS) & S_NEEDS_RESET, 0);
}

static void test_create_refuses_nonsense(void **state)
{
    (void)state;
    assert_null(virtio_mmio_create(NULL, NULL, NULL));
    static const struct virtio_device_ops no_queues = { .name = "bad", .num_queues = 0, .queue_max_size = 8 };
    struct virtio_device *dev = calloc(1, sizeof *dev); /* no destroy op: freed here */
    dev->ops = &no_queues;
    struct guest_memory mem;
    uint8_t buf[64];
    gm_init_buffer(&mem, buf, sizeof buf);
    assert_null(virtio_mmio_create(dev, &mem, NULL));
    free(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_identification_registers),
        T(test_odd_accesses_read_zero),
        T(test_device_features),
        T(test_features_ok_needs_version_1),
        T(test_features_ok_refuses_bits_not_offered),
        T(test_driver_features_frozen_after_features_ok),
        T(test_driver_ok_without_features_ok_needs_reset),
        T(test_reset_clears_everything),
        T(test_invalid_queue_is_not_activated),
        T(test_queue_registers_frozen_while_ready),
        cmocka_unit_test(test_no_activation_after_needs_reset),
        T(test_rng_request_end_to_end),
        T(test_rng_fills_at_most_the_per_request_bound),
        T(test_notify_before_driver_ok_waits_for_it),
        T(test_notify_of_missing_queue_is_ignored),
        T(test_broken_ring_sets_needs_reset),
        T(test_registers_and_kicks_from_two_threads),
        cmocka_unit_test(test_create_refuses_nonsense),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
