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
#include "helpers/virtio_driver.h"
#include "machine/guest_memory.h"

#define MEM_SIZE  (1u << 20)
#define DESC_GPA  0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA  0x3000
#define BUF_GPA   0x10000
#define QSIZE     16

struct fixture {
    uint8_t *ram;
    struct guest_memory mem;
    struct drv_irq irq;
    struct virtio_mmio *t;
    struct drv_queue q;
};

/* Guest RAM, its rings where bring_up puts them, and an rng transport over them. */
static void fixture_init(struct fixture *f)
{
    f->ram = drv_ram_create(&f->mem, MEM_SIZE);
    drv_queue_init(&f->q, f->ram, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
    drv_irq_init(&f->irq);
    f->t = virtio_mmio_create(virtio_rng_create(), &f->mem, &f->irq.line);
    assert_non_null(f->t);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    fixture_init(f);
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

/* The whole driver bring-up with VERSION_1 only. */
static void bring_up(struct fixture *f)
{
    drv_negotiate(f->t, 1ull << 32);
    assert_int_equal(drv_read(f->t, REG_STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
    drv_setup_queue(f->t, 0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
    assert_int_equal(drv_read(f->t, REG_QUEUE_READY), 1);
    drv_driver_ok(f->t);
    assert_int_equal(drv_read(f->t, REG_STATUS), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

/* Driver side: one device-writable buffer of len bytes as descriptor `head`, published. */
static void post_buffer(struct fixture *f, uint16_t head, uint64_t gpa, uint32_t len)
{
    drv_queue_put_desc(&f->q, head, gpa, len, DRV_DESC_WRITE, 0);
    drv_publish(&f->q, head);
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
    assert_int_equal(drv_read(f->t, REG_MAGIC), 0x74726976);
    assert_int_equal(drv_read(f->t, REG_VERSION), 2);
    assert_int_equal(drv_read(f->t, REG_DEVICE_ID), 4);
    assert_int_equal(drv_read(f->t, REG_VENDOR_ID), VIRTIO_MMIO_VENDOR_ID);
    assert_int_equal(virtio_mmio_num_queues(f->t), 1);
    assert_int_equal(drv_read(f->t, REG_QUEUE_NUM_MAX), VIRTIO_RNG_QUEUE_SIZE);
    drv_write(f->t, REG_QUEUE_SEL, 1);
    assert_int_equal(drv_read(f->t, REG_QUEUE_NUM_MAX), 0); /* no queue 1 */
    assert_int_equal(drv_read(f->t, REG_QUEUE_READY), 0);
}

static void test_odd_accesses_read_zero(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(drv_read(f->t, 0x0e8), 0);          /* reserved */
    assert_int_equal(drv_read(f->t, REG_QUEUE_RESET), 0);    /* RING_RESET not offered */
    assert_int_equal(drv_read(f->t, REG_CONFIG_GEN), 0);
    assert_int_equal(drv_read(f->t, REG_SHM_LEN_LO), 0xffffffffu);
    assert_int_equal(drv_read(f->t, REG_SHM_LEN_HI), 0xffffffffu);
    uint16_t half = 0xbeef;
    virtio_mmio_bus_ops.read(f->t, REG_MAGIC, (uint8_t *)&half, 2); /* 16-bit register access */
    assert_int_equal(half, 0);
    uint32_t v = 0xdeadbeef;
    virtio_mmio_bus_ops.read(f->t, REG_MAGIC + 1, (uint8_t *)&v, 4); /* unaligned */
    assert_int_equal(v, 0);
    /* rng has no config space: every config read is 0, writes are ignored. */
    v = 0xdeadbeef;
    virtio_mmio_bus_ops.read(f->t, VIRTIO_MMIO_CONFIG_OFFSET, (uint8_t *)&v, 4);
    assert_int_equal(v, 0);
    drv_write(f->t, VIRTIO_MMIO_CONFIG_OFFSET, 0x12345678);
    drv_write(f->t, REG_MAGIC, 0); /* read-only */
    assert_int_equal(drv_read(f->t, REG_MAGIC), 0x74726976);
}

static void test_device_features(void **state)
{
    struct fixture *f = *state;
    drv_write(f->t, REG_DEV_FEATURES_SEL, 0);
    uint32_t lo = drv_read(f->t, REG_DEV_FEATURES);
    assert_true(lo & (1u << 28));            /* INDIRECT_DESC: implemented, so offered */
    assert_false(lo & (1u << 29));           /* EVENT_IDX: not implemented, never offered */
    drv_write(f->t, REG_DEV_FEATURES_SEL, 1);
    assert_int_equal(drv_read(f->t, REG_DEV_FEATURES), 1); /* VERSION_1, nothing else above 32 */
    drv_write(f->t, REG_DEV_FEATURES_SEL, 2);
    assert_int_equal(drv_read(f->t, REG_DEV_FEATURES), 0);
}

/* --- negotiation and status ----------------------------------------------------- */

static void test_features_ok_needs_version_1(void **state)
{
    struct fixture *f = *state;
    drv_negotiate(f->t, 0); /* a legacy driver */
    assert_int_equal(drv_read(f->t, REG_STATUS) & S_FEATURES_OK, 0);
}

static void test_features_ok_refuses_bits_not_offered(void **state)
{
    struct fixture *f = *state;
    drv_negotiate(f->t, (1ull << 32) | (1ull << 29) /* EVENT_IDX */);
    assert_int_equal(drv_read(f->t, REG_STATUS) & S_FEATURES_OK, 0);
    drv_write(f->t, REG_STATUS, 0);
    drv_negotiate(f->t, (1ull << 32) | 1 /* a device bit rng does not have */);
    assert_int_equal(drv_read(f->t, REG_STATUS) & S_FEATURES_OK, 0);
    drv_write(f->t, REG_STATUS, 0);
    drv_negotiate(f->t, (1ull << 32) | (1ull << 28));
    assert_int_equal(drv_read(f->t, REG_STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
    assert_int_equal(virtio_mmio_device(f->t)->driver_features, (1ull << 32) | (1ull << 28));
}

static void test_driver_features_frozen_after_features_ok(void **state)
{
    struct fixture *f = *state;
    drv_negotiate(f->t, 1ull << 32);
    drv_write(f->t, REG_DRV_FEATURES_SEL, 1);
    drv_write(f->t, REG_DRV_FEATURES, 0);
    assert_int_equal(virtio_mmio_device(f->t)->driver_features, 1ull << 32);
}

static void test_driver_ok_without_features_ok_needs_reset(void **state)
{
    struct fixture *f = *state;
    drv_write(f->t, REG_STATUS, S_ACK | S_DRIVER);
    drv_write(f->t, REG_STATUS, S_ACK | S_DRIVER | S_DRIVER_OK);
    uint32_t st = drv_read(f->t, REG_STATUS);
    assert_int_equal(st & S_DRIVER_OK, 0);
    assert_true(st & S_NEEDS_RESET);
    assert_true(drv_read(f->t, REG_INT_STATUS) & 2);
    assert_int_equal(f->irq.pulses, 1);
}

static void test_reset_clears_everything(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    drv_write(f->t, REG_STATUS, 0);
    assert_int_equal(drv_read(f->t, REG_STATUS), 0);
    assert_int_equal(drv_read(f->t, REG_QUEUE_READY), 0);
    assert_int_equal(drv_read(f->t, REG_INT_STATUS), 0);
    assert_int_equal(virtio_mmio_device(f->t)->driver_features, 0);
    /* And it comes up again from scratch. */
    memset(f->ram + USED_GPA, 0, 4096);
    f->q.avail_idx = 0;
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
        drv_write(f->t, REG_STATUS, 0);
        drv_negotiate(f->t, 1ull << 32);
        drv_setup_queue(f->t, 0, bad[i].size, bad[i].desc, bad[i].avail, bad[i].used);
        assert_int_equal(drv_read(f->t, REG_QUEUE_READY), 0);
        assert_true(drv_read(f->t, REG_STATUS) & S_NEEDS_RESET);
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
    f2.ram = drv_ram_create(&f2.mem, MEM_SIZE);
    struct virtio_device dev = { .ops = &probe_ops };
    f2.t = virtio_mmio_create(&dev, &f2.mem, NULL);
    assert_non_null(f2.t);
    activations = 0;
    drv_negotiate(f2.t, 1ull << 32);
    drv_setup_queue(f2.t, 0, 3, DESC_GPA, AVAIL_GPA, USED_GPA); /* bad size */
    drv_driver_ok(f2.t);
    assert_int_equal(activations, 0);
    assert_int_equal(drv_read(f2.t, REG_STATUS) & S_DRIVER_OK, 0);
    drv_write(f2.t, REG_STATUS, 0);
    bring_up(&f2);
    assert_int_equal(activations, 1);
    virtio_mmio_destroy(f2.t); /* no destroy op: dev stays ours, on the stack */
    free(f2.ram);
}

static void test_queue_registers_frozen_while_ready(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    drv_write(f->t, REG_QUEUE_NUM, 4);
    drv_write(f->t, REG_DESC_LO, 0x50000);
    assert_int_equal(virtio_mmio_device(f->t)->queues[0].size, QSIZE);
    assert_int_equal(virtio_mmio_device(f->t)->queues[0].desc_addr, DESC_GPA);
    /* QueueReady 0 takes it down (Linux does before freeing the rings). */
    drv_write(f->t, REG_QUEUE_READY, 0);
    assert_int_equal(drv_read(f->t, REG_QUEUE_READY), 0);
}

static void test_rng_request_end_to_end(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    memset(f->ram + BUF_GPA, 0xaa, 64);
    post_buffer(f, 5, BUF_GPA, 64);
    assert_int_equal(f->irq.pulses, 0);
    drv_write(f->t, REG_QUEUE_NOTIFY, 0);     /* the kick, reaching the bus */

    assert_int_equal(drv_used_idx(&f->q), 1);
    uint32_t id, len;
    drv_used_elem(&f->q, 0, &id, &len);
    assert_int_equal(id, 5);
    assert_int_equal(len, 64);
    /* 64 random bytes all equal to 0xaa: probability 2^-512. */
    assert_false(all_bytes_are(f->ram + BUF_GPA, 64, 0xaa));
    assert_int_equal(f->irq.pulses, 1);
    assert_int_equal(drv_read(f->t, REG_INT_STATUS), 1);
    drv_write(f->t, REG_INT_ACK, 1);
    assert_int_equal(drv_read(f->t, REG_INT_STATUS), 0);

    /* The same through the event-loop entry point. */
    post_buffer(f, 6, BUF_GPA + 64, 8);
    virtio_mmio_queue_notify(f->t, 0);
    assert_int_equal(drv_used_idx(&f->q), 2);
    drv_used_elem(&f->q, 1, &id, &len);
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
    drv_used_elem(&f->q, 0, &id, &len);
    assert_int_equal(len, VIRTIO_RNG_MAX_REQUEST);
    assert_true(all_bytes_are(f->ram + BUF_GPA + VIRTIO_RNG_MAX_REQUEST, big - VIRTIO_RNG_MAX_REQUEST, 0xaa));
}

static void test_notify_before_driver_ok_waits_for_it(void **state)
{
    struct fixture *f = *state;
    drv_negotiate(f->t, 1ull << 32);
    drv_setup_queue(f->t, 0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
    post_buffer(f, 1, BUF_GPA, 16);
    drv_write(f->t, REG_QUEUE_NOTIFY, 0);
    assert_int_equal(drv_used_idx(&f->q), 0);   /* not live yet: nothing consumed */
    drv_driver_ok(f->t);
    assert_int_equal(drv_used_idx(&f->q), 1);   /* picked up at DRIVER_OK */
}

static void test_notify_of_missing_queue_is_ignored(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    post_buffer(f, 1, BUF_GPA, 16);
    drv_write(f->t, REG_QUEUE_NOTIFY, 7);
    virtio_mmio_queue_notify(f->t, 0xffff);
    assert_int_equal(drv_used_idx(&f->q), 0);
}

static void test_broken_ring_sets_needs_reset(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    uint16_t jump = QSIZE + 3;
    memcpy(f->ram + AVAIL_GPA + 2, &jump, 2);
    drv_write(f->t, REG_QUEUE_NOTIFY, 0);
    assert_true(drv_read(f->t, REG_STATUS) & S_NEEDS_RESET);
    assert_true(drv_read(f->t, REG_INT_STATUS) & 2);
    assert_int_equal(drv_used_idx(&f->q), 0);
    /* Further kicks do nothing until the driver resets the device. */
    virtio_mmio_queue_notify(f->t, 0);
    assert_int_equal(drv_used_idx(&f->q), 0);
    drv_write(f->t, REG_STATUS, 0);
    assert_int_equal(drv_read(f->t, REG_STATUS), 0);
}

/* A vCPU thread reading and acknowledging while the event loop processes kicks. */
static bool stop_hammer; /* atomic */

static void *hammer_registers(void *arg)
{
    struct fixture *f = arg;
    while (!__atomic_load_n(&stop_hammer, __ATOMIC_RELAXED)) {
        uint32_t st = drv_read(f->t, REG_INT_STATUS);
        if (st)
            drv_write(f->t, REG_INT_ACK, st);
        (void)drv_read(f->t, REG_STATUS);
        (void)drv_read(f->t, REG_QUEUE_READY);
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
    assert_int_equal(drv_used_idx(&f->q), 200);
    assert_int_equal(f->irq.pulses, 200);
    assert_int_equal(drv_read(f->t, REG_STATUS) & S_NEEDS_RESET, 0);
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


/* --- snapshots ------------------------------------------------------------------- */

/* A second "VM": a copy of f's guest memory (what the snapshot's memory file holds) and a fresh rng transport. */
static struct fixture *clone_memory(const struct fixture *f)
{
    struct fixture *g = calloc(1, sizeof *g);
    g->ram = drv_ram_create(&g->mem, MEM_SIZE);
    memcpy(g->ram, f->ram, MEM_SIZE);
    drv_irq_init(&g->irq);
    g->t = virtio_mmio_create(virtio_rng_create(), &g->mem, &g->irq.line);
    assert_non_null(g->t);
    g->q = f->q;
    g->q.ram = g->ram; /* the driver's counters as f's, over g's copy of the RAM */
    return g;
}

static void free_clone(struct fixture *g)
{
    void *gs = g;
    teardown(&gs);
}

/* Driver set up, three requests served, a config change, interrupts not yet acknowledged, odd selector values. */
static void use_rng(struct fixture *f)
{
    bring_up(f);
    for (uint16_t i = 0; i < 3; i++)
        post_buffer(f, i, BUF_GPA + 64u * i, 32);
    drv_write(f->t, REG_QUEUE_NOTIFY, 0);
    assert_int_equal(drv_used_idx(&f->q), 3);
    drv_write(f->t, REG_DEV_FEATURES_SEL, 1);
    drv_write(f->t, REG_DRV_FEATURES_SEL, 1);
    drv_write(f->t, REG_QUEUE_SEL, 5);
    virtio_device_notify_config(virtio_mmio_device(f->t)); /* as a device whose config changed would */
}

static void expect_same_registers(struct fixture *a, struct fixture *b)
{
    static const uint64_t regs[] = { REG_MAGIC, REG_VERSION, REG_DEVICE_ID, REG_VENDOR_ID, REG_DEV_FEATURES, REG_QUEUE_NUM_MAX,
                                     REG_QUEUE_READY, REG_INT_STATUS, REG_STATUS, REG_CONFIG_GEN };
    for (size_t i = 0; i < sizeof regs / sizeof regs[0]; i++)
        assert_int_equal(drv_read(a->t, regs[i]), drv_read(b->t, regs[i]));
    for (uint32_t sel = 0; sel < 3; sel++) {
        drv_write(a->t, REG_QUEUE_SEL, sel);
        drv_write(b->t, REG_QUEUE_SEL, sel);
        drv_write(a->t, REG_DEV_FEATURES_SEL, sel);
        drv_write(b->t, REG_DEV_FEATURES_SEL, sel);
        assert_int_equal(drv_read(a->t, REG_QUEUE_NUM_MAX), drv_read(b->t, REG_QUEUE_NUM_MAX));
        assert_int_equal(drv_read(a->t, REG_QUEUE_READY), drv_read(b->t, REG_QUEUE_READY));
        assert_int_equal(drv_read(a->t, REG_DEV_FEATURES), drv_read(b->t, REG_DEV_FEATURES));
    }
}

static void test_snapshot_state_contents(void **state)
{
    struct fixture *f = *state;
    use_rng(f);
    struct virtio_mmio_state st, again;
    memset(&st, 0xaa, sizeof st);
    memset(&again, 0x55, sizeof again);
    virtio_mmio_save(f->t, &st);
    virtio_mmio_save(f->t, &again);
    assert_memory_equal(&st, &again, sizeof st); /* every byte written, padding included */
    assert_int_equal(st.device_id, VIRTIO_ID_RNG);
    assert_int_equal(st.status, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    assert_int_equal(st.device_features_sel, 1);
    assert_int_equal(st.queue_sel, 5);
    assert_int_equal(st.interrupt_status, 3);
    assert_int_equal(st.config_generation, 1);
    assert_int_equal(st.driver_features, 1ull << 32);
    assert_int_equal(st.nqueues, 1);
    assert_int_equal(st.queues[0].size, QSIZE);
    assert_int_equal(st.queues[0].max_size, VIRTIO_RNG_QUEUE_SIZE);
    assert_int_equal(st.queues[0].ready, 1);
    assert_int_equal(st.queues[0].desc_addr, DESC_GPA);
    assert_int_equal(st.queues[0].avail_addr, AVAIL_GPA);
    assert_int_equal(st.queues[0].used_addr, USED_GPA);
    assert_int_equal(st.queues[0].last_avail_idx, 3);
    assert_int_equal(st.queues[0].used_idx, 3);
}

/* Saved mid-use, restored into a fresh transport over a copy of the memory: same registers, same rings, still serving. */
static void test_snapshot_rng_keeps_serving(void **state)
{
    struct fixture *f = *state;
    use_rng(f);
    struct virtio_mmio_state st, again;
    virtio_mmio_save(f->t, &st);
    struct fixture *g = clone_memory(f);
    sm_error err = { 0 };
    assert_int_equal(virtio_mmio_restore(g->t, &st, &err), SM_OK);
    virtio_mmio_save(g->t, &again);
    assert_memory_equal(&st, &again, sizeof st);
    assert_int_equal(g->irq.pulses, 0);          /* nothing was pending: no interrupt invented */
    expect_same_registers(f, g);

    /* Both VMs go on: the next request lands in the next used slot in both. */
    for (struct fixture *x = f; x; x = x == f ? g : NULL) {
        memset(x->ram + BUF_GPA + 0x1000, 0xaa, 48);
        post_buffer(x, 7, BUF_GPA + 0x1000, 48);
        drv_write(x->t, REG_QUEUE_NOTIFY, 0);
        assert_int_equal(drv_used_idx(&x->q), 4);
        uint32_t id, len;
        drv_used_elem(&x->q, 3, &id, &len);
        assert_int_equal(id, 7);
        assert_int_equal(len, 48);
        assert_false(all_bytes_are(x->ram + BUF_GPA + 0x1000, 48, 0xaa));
    }
    assert_int_equal(g->irq.pulses, 1);
    virtio_mmio_save(g->t, &again);
    assert_int_equal(again.queues[0].last_avail_idx, 4);
    assert_int_equal(again.queues[0].used_idx, 4);
    free_clone(g);
}

/* A buffer posted before the snapshot whose kick never reached the device is served on restore. */
static void test_snapshot_restore_serves_posted_buffers(void **state)
{
    struct fixture *f = *state;
    use_rng(f);
    post_buffer(f, 9, BUF_GPA + 0x2000, 16);   /* no kick: still available */
    struct virtio_mmio_state st;
    virtio_mmio_save(f->t, &st);
    assert_int_equal(st.queues[0].last_avail_idx, 3);
    struct fixture *g = clone_memory(f);
    assert_int_equal(virtio_mmio_restore(g->t, &st, NULL), SM_OK);
    assert_int_equal(drv_used_idx(&g->q), 4);
    uint32_t id, len;
    drv_used_elem(&g->q, 3, &id, &len);
    assert_int_equal(id, 9);
    assert_int_equal(len, 16);
    assert_int_equal(g->irq.pulses, 1);
    free_clone(g);
}

/* A state with no driver (a VM snapshotted before the driver probed) restores as a reset device. */
static void test_snapshot_of_untouched_device(void **state)
{
    struct fixture *f = *state;
    struct virtio_mmio_state st;
    virtio_mmio_save(f->t, &st);
    struct fixture *g = clone_memory(f);
    assert_int_equal(virtio_mmio_restore(g->t, &st, NULL), SM_OK);
    expect_same_registers(f, g);
    bring_up(g);                                 /* a driver can still probe it */
    post_buffer(g, 0, BUF_GPA, 8);
    drv_write(g->t, REG_QUEUE_NOTIFY, 0);
    assert_int_equal(drv_used_idx(&g->q), 1);
    free_clone(g);
}

struct mmio_mutation {
    const char *what;
    const char *message_has;
    void (*apply)(struct virtio_mmio_state *st);
};

static void wrong_device_id(struct virtio_mmio_state *st) { st->device_id = VIRTIO_ID_VSOCK; }
static void more_queues(struct virtio_mmio_state *st) { st->nqueues = 2; }
static void too_many_queues(struct virtio_mmio_state *st) { st->nqueues = 0xffff; }
static void size_not_power_of_two(struct virtio_mmio_state *st) { st->queues[0].size = 12; }
static void size_zero(struct virtio_mmio_state *st) { st->queues[0].size = 0; }
static void size_over_max(struct virtio_mmio_state *st) { st->queues[0].size = 2 * VIRTIO_RNG_QUEUE_SIZE; }
static void desc_past_memory(struct virtio_mmio_state *st) { st->queues[0].desc_addr = MEM_SIZE - 16; }
static void used_wraps_around(struct virtio_mmio_state *st) { st->queues[0].used_addr = ~0ull - 7; }
static void avail_misaligned(struct virtio_mmio_state *st) { st->queues[0].avail_addr = AVAIL_GPA + 1; }
static void avail_in_the_hole(struct virtio_mmio_state *st) { st->queues[0].avail_addr = 0xd0000000ull; }
static void features_not_offered(struct virtio_mmio_state *st) { st->driver_features |= 1; }
static void offer_differs(struct virtio_mmio_state *st) { st->device_features |= 1ull << 5; }
static void driver_ok_alone(struct virtio_mmio_state *st) { st->status &= ~(uint32_t)S_FEATURES_OK; }
static void status_unknown_bit(struct virtio_mmio_state *st) { st->status |= 16; }
static void features_ok_without_v1(struct virtio_mmio_state *st) { st->driver_features = 0; }
static void interrupt_unknown_bit(struct virtio_mmio_state *st) { st->interrupt_status |= 4; }
static void wrong_max_size(struct virtio_mmio_state *st) { st->queues[0].max_size = 32; }
static void too_many_in_flight(struct virtio_mmio_state *st) { st->queues[0].last_avail_idx += QSIZE + 1; }
static void down_queue_with_indices(struct virtio_mmio_state *st) { st->queues[0].ready = 0; }
static void ready_not_bool(struct virtio_mmio_state *st) { st->queues[0].ready = 2; }
static void broken_not_bool(struct virtio_mmio_state *st) { st->queues[0].broken = 7; }
static void queue_reserved(struct virtio_mmio_state *st) { st->queues[0].reserved1[3] = 1; }
static void state_reserved(struct virtio_mmio_state *st) { st->reserved1[0] = 1; }
static void slot_past_nqueues(struct virtio_mmio_state *st) { st->queues[1].size = 16; }

static void test_snapshot_refuses_hostile_state(void **state)
{
    struct fixture *f = *state;
    static const struct mmio_mutation mutations[] = {
        { "device id", "device id", wrong_device_id },
        { "nqueues 2", "2 queues saved", more_queues },
        { "nqueues 65535", "65535 queues saved", too_many_queues },
        { "size 12", "power of two", size_not_power_of_two },
        { "size 0", "power of two", size_zero },
        { "size 128", "power of two", size_over_max },
        { "desc past memory", "outside guest memory", desc_past_memory },
        { "used wraps", "outside guest memory", used_wraps_around },
        { "avail misaligned", "misaligned", avail_misaligned },
        { "avail in the MMIO hole", "outside guest memory", avail_in_the_hole },
        { "features not offered", "never offered", features_not_offered },
        { "different offer", "offers", offer_differs },
        { "DRIVER_OK alone", "DRIVER_OK without FEATURES_OK", driver_ok_alone },
        { "status bit 4", "unknown bits", status_unknown_bit },
        { "FEATURES_OK without VERSION_1", "VERSION_1", features_ok_without_v1 },
        { "interrupt bit 2", "interrupt status", interrupt_unknown_bit },
        { "max size", "max size", wrong_max_size },
        { "in flight", "chains taken", too_many_in_flight },
        { "down queue with indices", "not ready", down_queue_with_indices },
        { "ready 2", "0 or 1", ready_not_bool },
        { "broken 7", "0 or 1", broken_not_bool },
        { "queue reserved", "reserved", queue_reserved },
        { "state reserved", "reserved", state_reserved },
        { "slot past nqueues", "queue slot 1", slot_past_nqueues },
    };
    use_rng(f);
    struct virtio_mmio_state good, before, after;
    virtio_mmio_save(f->t, &good);
    int pulses = f->irq.pulses;
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
        struct virtio_mmio_state bad = good;
        mutations[i].apply(&bad);
        virtio_mmio_save(f->t, &before);
        sm_error err = { 0 };
        sm_code rc = virtio_mmio_restore(f->t, &bad, &err);
        if (rc != SM_E_INVALID || !strstr(err.message, mutations[i].message_has) || !strstr(err.message, "rng"))
            fail_msg("%s: rc %d, message \"%s\"", mutations[i].what, rc, err.message);
        virtio_mmio_save(f->t, &after);
        assert_memory_equal(&before, &after, sizeof before);
        assert_int_equal(virtio_mmio_restore(f->t, &bad, NULL), SM_E_INVALID);
    }
    assert_int_equal(f->irq.pulses, pulses);
    /* Refusals left the live device serving. */
    post_buffer(f, 4, BUF_GPA + 0x3000, 8);
    drv_write(f->t, REG_QUEUE_NOTIFY, 0);
    assert_int_equal(drv_used_idx(&f->q), 4);
    assert_int_equal(drv_read(f->t, REG_STATUS) & S_NEEDS_RESET, 0);
}

static int resets;
static void count_reset(struct virtio_device *dev)
{
    (void)dev;
    resets++;
}

static int failing_activate(struct virtio_device *dev)
{
    (void)dev;
    activations++;
    return -1;
}

/* A probe device carried by a transport over f's memory; activate counts (and fails when asked). */
static struct virtio_mmio *probe_transport(struct fixture *f, struct virtio_device *dev, bool activate_fails)
{
    static const struct virtio_device_ops ok_ops = {
        .name = "probe", .device_id = 99, .num_queues = 1, .queue_max_size = 16,
        .activate = count_activate, .queue_notify = ignore_notify, .reset = count_reset,
    };
    static const struct virtio_device_ops failing_ops = {
        .name = "probe", .device_id = 99, .num_queues = 1, .queue_max_size = 16,
        .activate = failing_activate, .queue_notify = ignore_notify,
    };
    *dev = (struct virtio_device){ .ops = activate_fails ? &failing_ops : &ok_ops };
    return virtio_mmio_create(dev, &f->mem, NULL);
}

/* Restore resets the device first, activates a live one once, a needs-reset one never; a device that cannot activate says so. */
static void test_snapshot_restore_activation(void **state)
{
    struct fixture *f = *state;
    struct virtio_device dev, dev2;
    struct fixture pf = *f;
    pf.t = probe_transport(f, &dev, false);
    assert_non_null(pf.t);
    bring_up(&pf);
    struct virtio_mmio_state st;
    virtio_mmio_save(pf.t, &st);

    activations = 0;
    resets = 0;
    assert_int_equal(virtio_mmio_restore(pf.t, &st, NULL), SM_OK);
    assert_int_equal(activations, 1);
    assert_int_equal(resets, 1);                 /* the live device forgot its work before the new state */
    struct virtio_mmio_state dead = st;
    dead.status |= S_NEEDS_RESET;
    assert_int_equal(virtio_mmio_restore(pf.t, &dead, NULL), SM_OK);
    assert_int_equal(activations, 1);
    assert_int_equal(virtio_mmio_status(pf.t), dead.status);

    struct virtio_mmio *failing = probe_transport(f, &dev2, true);
    assert_non_null(failing);
    sm_error err = { 0 };
    assert_int_equal(virtio_mmio_restore(failing, &st, &err), SM_E_GUEST);
    assert_non_null(strstr(err.message, "probe"));
    assert_non_null(strstr(err.message, "cannot resume"));
    assert_int_equal(activations, 2);
    assert_int_equal(virtio_mmio_status(failing), 0); /* left reset, not half-restored */
    virtio_mmio_destroy(failing);
    virtio_mmio_destroy(pf.t);
}

static int begins, ends;
static void count_begin(struct virtio_device *dev) { (void)dev; begins++; }
static void count_end(struct virtio_device *dev) { (void)dev; ends++; }

/* The table entry the VMM uses: the transport's state through its ops, and
 * the carried device's snapshot hooks (when it has them) through the transport. */
static void test_state_ops_reach_device_hooks(void **state)
{
    struct fixture *f = *state;
    static const struct virtio_device_ops hooked_ops = {
        .name = "hooked", .device_id = 99, .num_queues = 1, .queue_max_size = 16,
        .activate = count_activate, .queue_notify = ignore_notify,
        .restore_begin = count_begin, .restore_end = count_end,
    };
    struct virtio_device dev = { .ops = &hooked_ops };
    struct fixture pf = *f;
    pf.t = virtio_mmio_create(&dev, &f->mem, NULL);
    assert_non_null(pf.t);
    bring_up(&pf);
    const struct device_state_ops *ops = &virtio_mmio_state_ops;
    assert_int_equal(ops->state_size, sizeof(struct virtio_mmio_state));
    struct virtio_mmio_state st, direct;
    ops->save(pf.t, &st);
    virtio_mmio_save(pf.t, &direct);
    assert_memory_equal(&st, &direct, sizeof st);

    begins = ends = activations = 0;
    ops->restore_begin(pf.t);
    assert_int_equal(ops->restore(pf.t, &st, NULL), SM_OK);
    ops->restore_end(pf.t);
    assert_int_equal(begins, 1);
    assert_int_equal(activations, 1);
    assert_int_equal(ends, 1);

    struct virtio_mmio_state bad = st;
    bad.nqueues = VIRTIO_MMIO_MAX_SAVED_QUEUES + 1;
    sm_error err = { 0 };
    assert_int_equal(ops->restore(pf.t, &bad, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "hooked"));
    virtio_mmio_destroy(pf.t);

    /* A device without hooks (rng): the transport's hooks do nothing. */
    use_rng(f);
    ops->restore_begin(f->t);
    ops->restore_end(f->t);
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
        T(test_snapshot_state_contents),
        T(test_snapshot_rng_keeps_serving),
        T(test_snapshot_restore_serves_posted_buffers),
        T(test_snapshot_of_untouched_device),
        T(test_snapshot_refuses_hostile_state),
        T(test_snapshot_restore_activation),
        T(test_state_ops_reach_device_hooks),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
