/*
 * The split virtqueue against a fake guest memory: well-formed chains,
 * indirect tables, index wrap-around, and hostile rings (loops, bad
 * indices, addresses outside RAM, overflowing lengths, avail idx jumps),
 * each of which must be an error, never a crash or a hang.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/virtio/virtqueue.h"
#include "helpers/virtio_driver.h"
#include "machine/guest_memory.h"

#define MEM_SIZE   (1u << 20)
#define DESC_GPA   0x1000
#define AVAIL_GPA  0x3000
#define USED_GPA   0x4000
#define DATA_GPA   0x10000
#define QSIZE      16

struct fixture {
    uint8_t *ram;
    struct guest_memory mem;
    struct virtqueue vq;
    struct drv_queue q;   /* the driver's side of vq */
    struct vq_chain chain;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->ram = drv_ram_create(&f->mem, MEM_SIZE);
    drv_queue_init(&f->q, f->ram, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
    vq_reset(&f->vq, QSIZE);
    f->vq.size = QSIZE;
    f->vq.desc_addr = DESC_GPA;
    f->vq.avail_addr = AVAIL_GPA;
    f->vq.used_addr = USED_GPA;
    assert_int_equal(vq_validate(&f->vq, &f->mem), 0);
    f->vq.ready = true;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    free(f->ram);
    free(f);
    return 0;
}

/* --- well-formed rings --------------------------------------------------- */

static void test_empty_ring_gives_nothing(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), 0);
    assert_false(f->vq.broken);
}

static void test_single_readable_buffer(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 3, DATA_GPA, 100, 0, 0);
    drv_publish(&f->q, 3);
    assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), 1);
    assert_int_equal(f->chain.head, 3);
    assert_int_equal(f->chain.nbufs, 1);
    assert_int_equal(f->chain.nreadable, 1);
    assert_ptr_equal(f->chain.bufs[0].host, f->ram + DATA_GPA);
    assert_int_equal(f->chain.bufs[0].len, 100);
    assert_false(f->chain.bufs[0].writable);
    assert_int_equal(f->chain.readable_bytes, 100);
    assert_int_equal(f->chain.writable_bytes, 0);
    assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), 0);
}

static void test_chain_readable_then_writable_and_push(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 5);
    drv_queue_put_desc(&f->q, 5, DATA_GPA + 16, 32, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    drv_queue_put_desc(&f->q, 2, DATA_GPA + 48, 64, VIRTQ_DESC_F_WRITE, 0);
    drv_publish(&f->q, 0);
    assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), 1);
    assert_int_equal(f->chain.nbufs, 3);
    assert_int_equal(f->chain.nreadable, 1);
    assert_true(f->chain.bufs[1].writable);
    assert_true(f->chain.bufs[2].writable);
    assert_ptr_equal(f->chain.bufs[2].host, f->ram + DATA_GPA + 48);
    assert_int_equal(f->chain.readable_bytes, 16);
    assert_int_equal(f->chain.writable_bytes, 96);

    assert_int_equal(vq_push(&f->vq, &f->mem, f->chain.head, 77), 0);
    assert_int_equal(drv_used_idx(&f->q), 1);
    uint32_t id, len;
    drv_used_elem(&f->q, 0, &id, &len);
    assert_int_equal(id, 0);
    assert_int_equal(len, 77);
}

static void test_indices_wrap_around(void **state)
{
    struct fixture *f = *state;
    /* Start both sides just below the 16-bit wrap. */
    f->vq.last_avail_idx = 65530;
    f->vq.used_idx = 65530;
    drv_set_avail_idx(&f->q, 65530);
    for (int i = 0; i < 12; i++) {
        uint16_t head = (uint16_t)(i % QSIZE);
        drv_queue_put_desc(&f->q, head, DATA_GPA + 64u * i, 8, VIRTQ_DESC_F_WRITE, 0);
        drv_publish(&f->q, head);
        assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), 1);
        assert_int_equal(f->chain.head, head);
        assert_int_equal(vq_push(&f->vq, &f->mem, head, (uint32_t)i), 0);
    }
    assert_int_equal(drv_used_idx(&f->q), (uint16_t)(65530 + 12));
    uint32_t id, len;
    drv_used_elem(&f->q, (uint16_t)(65530 + 11) % QSIZE, &id, &len);
    assert_int_equal(id, 11);
    assert_int_equal(len, 11);
}

static void test_full_ring_is_accepted(void **state)
{
    struct fixture *f = *state;
    for (uint16_t i = 0; i < QSIZE; i++) {
        drv_queue_put_desc(&f->q, i, DATA_GPA, 4, 0, 0);
        drv_publish(&f->q, i);
    }
    for (uint16_t i = 0; i < QSIZE; i++)
        assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), 1);
    assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), 0);
}

static void test_indirect_table(void **state)
{
    struct fixture *f = *state;
    const uint64_t table = 0x8000;
    f->vq.indirect_ok = true;
    drv_put_desc(f->ram + table, 0, DATA_GPA, 10, VIRTQ_DESC_F_NEXT, 2);
    drv_put_desc(f->ram + table, 2, DATA_GPA + 100, 20, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    drv_put_desc(f->ram + table, 1, DATA_GPA + 200, 30, VIRTQ_DESC_F_WRITE, 0);
    drv_queue_put_desc(&f->q, 7, table, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    drv_publish(&f->q, 7);
    assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), 1);
    assert_int_equal(f->chain.head, 7);
    assert_int_equal(f->chain.nbufs, 3);
    assert_int_equal(f->chain.nreadable, 1);
    assert_ptr_equal(f->chain.bufs[1].host, f->ram + DATA_GPA + 100);
    assert_int_equal(f->chain.writable_bytes, 50);
}

static void test_should_interrupt_follows_no_interrupt_flag(void **state)
{
    struct fixture *f = *state;
    assert_true(vq_should_interrupt(&f->vq, &f->mem));
    drv_set_avail_flags(&f->q, VIRTQ_AVAIL_F_NO_INTERRUPT);
    assert_false(vq_should_interrupt(&f->vq, &f->mem));
}

/* --- hostile rings: every case is an error and leaves the queue broken ---- */

static void expect_broken(struct fixture *f)
{
    assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), -1);
    assert_true(f->vq.broken);
    /* Sticky until reset, even though nothing else changed. */
    assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), -1);
    assert_int_equal(vq_push(&f->vq, &f->mem, 0, 0), -1);
}

static void test_loop_between_two_descriptors(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
    drv_queue_put_desc(&f->q, 1, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_descriptor_pointing_at_itself(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 4, DATA_GPA, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 4);
    drv_publish(&f->q, 4);
    expect_broken(f);
}

static void test_loop_inside_indirect_table(void **state)
{
    struct fixture *f = *state;
    const uint64_t table = 0x8000;
    f->vq.indirect_ok = true;
    drv_put_desc(f->ram + table, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
    drv_put_desc(f->ram + table, 1, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
    drv_queue_put_desc(&f->q, 0, table, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_next_index_out_of_range(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, QSIZE);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_head_out_of_range(void **state)
{
    struct fixture *f = *state;
    drv_publish(&f->q, 999);
    expect_broken(f);
}

static void test_buffer_outside_ram(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 0, MEM_SIZE + 4096, 8, 0, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_buffer_straddling_end_of_ram(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 0, MEM_SIZE - 4, 8, VIRTQ_DESC_F_WRITE, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_address_plus_length_overflows(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 0, UINT64_MAX - 15, 0xffffffffu, VIRTQ_DESC_F_WRITE, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_avail_idx_jump_beyond_queue_size(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 0, DATA_GPA, 8, 0, 0);
    drv_set_avail_idx(&f->q, QSIZE + 1);
    expect_broken(f);
}

static void test_avail_idx_going_backwards(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 0, DATA_GPA, 8, 0, 0);
    drv_publish(&f->q, 0);
    assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), 1);
    drv_set_avail_idx(&f->q, 0); /* as if the driver "un-published": a jump of 65535 */
    expect_broken(f);
}

static void test_readable_after_writable(void **state)
{
    struct fixture *f = *state;
    drv_queue_put_desc(&f->q, 0, DATA_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    drv_queue_put_desc(&f->q, 1, DATA_GPA, 8, 0, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_indirect_not_negotiated(void **state)
{
    struct fixture *f = *state;
    drv_put_desc(f->ram + 0x8000, 0, DATA_GPA, 8, 0, 0);
    drv_queue_put_desc(&f->q, 0, 0x8000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_nested_indirect(void **state)
{
    struct fixture *f = *state;
    f->vq.indirect_ok = true;
    drv_put_desc(f->ram + 0x8000, 0, 0x9000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    drv_put_desc(f->ram + 0x9000, 0, DATA_GPA, 8, 0, 0);
    drv_queue_put_desc(&f->q, 0, 0x8000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_indirect_with_next(void **state)
{
    struct fixture *f = *state;
    f->vq.indirect_ok = true;
    drv_put_desc(f->ram + 0x8000, 0, DATA_GPA, 8, 0, 0);
    drv_queue_put_desc(&f->q, 0, 0x8000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    drv_queue_put_desc(&f->q, 1, DATA_GPA, 8, 0, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_indirect_bad_lengths(void **state)
{
    struct fixture *f = *state;
    static const uint32_t bad_lengths[] = { 0, 15, 17, 16 * (VQ_MAX_CHAIN_BUFS + 1) };
    for (size_t i = 0; i < sizeof bad_lengths / sizeof bad_lengths[0]; i++) {
        vq_reset(&f->vq, QSIZE);
        f->vq.desc_addr = DESC_GPA;
        f->vq.avail_addr = AVAIL_GPA;
        f->vq.used_addr = USED_GPA;
        f->vq.ready = true;
        f->vq.indirect_ok = true;
        drv_set_avail_idx(&f->q, 0);
        drv_queue_put_desc(&f->q, 0, 0x8000, bad_lengths[i], VIRTQ_DESC_F_INDIRECT, 0);
        drv_publish(&f->q, 0);
        expect_broken(f);
    }
}

static void test_indirect_table_outside_ram(void **state)
{
    struct fixture *f = *state;
    f->vq.indirect_ok = true;
    drv_queue_put_desc(&f->q, 0, MEM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

/* A chain longer than VQ_MAX_CHAIN_BUFS in a queue big enough to hold it. */
static void test_chain_longer_than_the_limit(void **state)
{
    struct fixture *f = *state;
    const uint16_t big = 512;
    vq_reset(&f->vq, big);
    f->vq.desc_addr = 0x20000; /* 8 KiB table */
    f->vq.avail_addr = AVAIL_GPA;
    f->vq.used_addr = 0x30000;
    assert_int_equal(vq_validate(&f->vq, &f->mem), 0);
    f->vq.ready = true;
    for (uint16_t i = 0; i < VQ_MAX_CHAIN_BUFS + 1; i++)
        drv_put_desc(f->ram + 0x20000, i, DATA_GPA, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
    drv_put_desc(f->ram + 0x20000, VQ_MAX_CHAIN_BUFS + 1, DATA_GPA, 1, 0, 0);
    drv_publish(&f->q, 0);
    expect_broken(f);
}

static void test_reset_clears_broken(void **state)
{
    struct fixture *f = *state;
    drv_publish(&f->q, 999);
    expect_broken(f);
    vq_reset(&f->vq, QSIZE);
    assert_false(f->vq.broken);
    assert_false(f->vq.ready);
    assert_int_equal(vq_pop(&f->vq, &f->mem, &f->chain), 0); /* not ready: nothing */
}

static void test_push_rejects_bad_head_and_unready_queue(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(vq_push(&f->vq, &f->mem, QSIZE, 0), -1);
    f->vq.ready = false;
    assert_int_equal(vq_push(&f->vq, &f->mem, 0, 0), -1);
    assert_int_equal(drv_used_idx(&f->q), 0);
}

static void test_validate_rejects_bad_settings(void **state)
{
    struct fixture *f = *state;
    struct virtqueue vq;
    const struct { uint16_t size; uint64_t desc, avail, used; } bad[] = {
        { 0, DESC_GPA, AVAIL_GPA, USED_GPA },            /* size 0 */
        { 12, DESC_GPA, AVAIL_GPA, USED_GPA },           /* not a power of two */
        { 32, DESC_GPA, AVAIL_GPA, USED_GPA },           /* above max_size */
        { QSIZE, DESC_GPA + 8, AVAIL_GPA, USED_GPA },    /* desc not 16-aligned */
        { QSIZE, DESC_GPA, AVAIL_GPA + 1, USED_GPA },    /* avail not 2-aligned */
        { QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA + 2 },    /* used not 4-aligned */
        { QSIZE, MEM_SIZE - 128, AVAIL_GPA, USED_GPA },  /* desc table runs past RAM */
        { QSIZE, DESC_GPA, MEM_SIZE - 8, USED_GPA },     /* avail ring runs past RAM */
        { QSIZE, DESC_GPA, AVAIL_GPA, UINT64_MAX - 3 },  /* used ring wraps the address space */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vq_reset(&vq, QSIZE);
        vq.size = bad[i].size;
        vq.desc_addr = bad[i].desc;
        vq.avail_addr = bad[i].avail;
        vq.used_addr = bad[i].used;
        assert_int_equal(vq_validate(&vq, &f->mem), -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_empty_ring_gives_nothing),
        T(test_single_readable_buffer),
        T(test_chain_readable_then_writable_and_push),
        T(test_indices_wrap_around),
        T(test_full_ring_is_accepted),
        T(test_indirect_table),
        T(test_should_interrupt_follows_no_interrupt_flag),
        T(test_loop_between_two_descriptors),
        T(test_descriptor_pointing_at_itself),
        T(test_loop_inside_indirect_table),
        T(test_next_index_out_of_range),
        T(test_head_out_of_range),
        T(test_buffer_outside_ram),
        T(test_buffer_straddling_end_of_ram),
        T(test_address_plus_length_overflows),
        T(test_avail_idx_jump_beyond_queue_size),
        T(test_avail_idx_going_backwards),
        T(test_readable_after_writable),
        T(test_indirect_not_negotiated),
        T(test_nested_indirect),
        T(test_indirect_with_next),
        T(test_indirect_bad_lengths),
        T(test_indirect_table_outside_ram),
        T(test_chain_longer_than_the_limit),
        T(test_reset_clears_broken),
        T(test_push_rejects_bad_head_and_unready_queue),
        T(test_validate_rejects_bad_settings),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
