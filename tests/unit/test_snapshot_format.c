/* The snapshot container: round trip, and every kind of damage refused with
 * the message that names it. No KVM needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "snapshot/format.h"
#include "snapshot/kvm_state.h"

/* A small but complete state: VM, CPUID, two VCPU sections, END. */
static void build(struct snap_writer *w)
{
    snap_writer_init(w);
    struct snap_vm_info info = { .mem_bytes = 256u << 20, .ncpus = 2, .ndevices = 0, .guest_cid = 3 };
    snap_begin_section(w, SNAP_SEC_VM, 0);
    snap_put(w, &info, sizeof info);
    snap_end_section(w);
    uint32_t nent = 0;
    snap_begin_section(w, SNAP_SEC_CPUID, 0);
    snap_put(w, &nent, sizeof nent);
    snap_end_section(w);
    for (uint32_t i = 0; i < 2; i++) {
        uint8_t payload[13];
        memset(payload, (int)(0x40 + i), sizeof payload); /* odd size: exercises padding */
        snap_begin_section(w, SNAP_SEC_VCPU, i);
        snap_put(w, payload, sizeof payload);
        snap_end_section(w);
    }
    assert_int_equal(snap_finish(w, NULL), SM_OK);
}

static void round_trip(void **state)
{
    (void)state;
    struct snap_writer w;
    build(&w);
    struct snap_reader r;
    struct snap_section s;
    sm_error err = { 0 };
    assert_int_equal(snap_reader_open(&r, w.buf, w.len, &err), SM_OK);
    assert_int_equal(snap_expect(&r, SNAP_SEC_VM, 0, &s, &err), SM_OK);
    assert_int_equal(s.len, sizeof(struct snap_vm_info));
    struct snap_vm_info info;
    memcpy(&info, s.data, sizeof info);
    assert_int_equal(info.ncpus, 2);
    assert_int_equal(snap_expect(&r, SNAP_SEC_CPUID, 0, &s, &err), SM_OK);
    for (uint32_t i = 0; i < 2; i++) {
        assert_int_equal(snap_expect(&r, SNAP_SEC_VCPU, i, &s, &err), SM_OK);
        assert_int_equal(s.len, 13);
        assert_int_equal(s.data[12], 0x40 + i);
    }
    assert_int_equal(snap_expect(&r, SNAP_SEC_END, 0, &s, &err), SM_OK);
    /* Nothing after END. */
    assert_int_equal(snap_next(&r, &s, &err), SM_E_INVALID);
    snap_writer_free(&w);
}

static void expect_refused(const uint8_t *buf, size_t len, const char *words)
{
    struct snap_reader r;
    sm_error err = { 0 };
    assert_int_equal(snap_reader_open(&r, buf, len, &err), SM_E_INVALID);
    if (!strstr(err.message, words))
        fail_msg("message \"%s\" does not say \"%s\"", err.message, words);
}

static void truncated_is_refused(void **state)
{
    (void)state;
    struct snap_writer w;
    build(&w);
    expect_refused(w.buf, w.len - 8, "truncated");
    expect_refused(w.buf, 20, "not a supermachine snapshot");
    snap_writer_free(&w);
}

static void flipped_byte_is_refused(void **state)
{
    (void)state;
    struct snap_writer w;
    build(&w);
    for (size_t at = SNAP_HEADER_SIZE; at < w.len; at += 7) {
        w.buf[at] ^= 0x10;
        expect_refused(w.buf, w.len, "corrupt");
        w.buf[at] ^= 0x10;
    }
    w.buf[3] ^= 1; /* in the magic */
    expect_refused(w.buf, w.len, "not a supermachine snapshot");
    w.buf[3] ^= 1;
    w.buf[17] ^= 1; /* in the header's section count: header CRC */
    expect_refused(w.buf, w.len, "header is corrupt");
    snap_writer_free(&w);
}

static void other_version_is_refused(void **state)
{
    (void)state;
    struct snap_writer w;
    build(&w);
    uint32_t v = SNAP_VERSION + 1;
    memcpy(w.buf + 8, &v, 4);
    /* Re-seal the header so only the version is wrong. */
    uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), w.buf, 28);
    memcpy(w.buf + 28, &crc, 4);
    expect_refused(w.buf, w.len, "version");
    snap_writer_free(&w);
}

static void swapped_sections_are_refused(void **state)
{
    (void)state;
    struct snap_writer w;
    build(&w);
    struct snap_reader r;
    struct snap_section s;
    sm_error err = { 0 };
    assert_int_equal(snap_reader_open(&r, w.buf, w.len, &err), SM_OK);
    /* A reader that wants CPUID first finds VM: out of order. */
    assert_int_equal(snap_expect(&r, SNAP_SEC_CPUID, 0, &s, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "out of order"));
    /* A VCPU section with the wrong index. */
    assert_int_equal(snap_reader_open(&r, w.buf, w.len, &err), SM_OK);
    assert_int_equal(snap_expect(&r, SNAP_SEC_VM, 0, &s, &err), SM_OK);
    assert_int_equal(snap_expect(&r, SNAP_SEC_CPUID, 0, &s, &err), SM_OK);
    assert_int_equal(snap_expect(&r, SNAP_SEC_VCPU, 1, &s, &err), SM_E_INVALID);
    snap_writer_free(&w);
}

static void oversized_section_is_refused(void **state)
{
    (void)state;
    struct snap_writer w;
    build(&w);
    /* Claim the first section is huge, then re-seal both CRCs so that only
     * the bound catches it. */
    uint64_t huge = (uint64_t)SNAP_MAX_SECTION + 1;
    memcpy(w.buf + SNAP_HEADER_SIZE + 8, &huge, 8);
    uint32_t body = (uint32_t)crc32(crc32(0, NULL, 0), w.buf + SNAP_HEADER_SIZE, (unsigned)(w.len - SNAP_HEADER_SIZE));
    memcpy(w.buf + 24, &body, 4);
    uint32_t head = (uint32_t)crc32(crc32(0, NULL, 0), w.buf, 28);
    memcpy(w.buf + 28, &head, 4);
    struct snap_reader r;
    struct snap_section s;
    sm_error err = { 0 };
    assert_int_equal(snap_reader_open(&r, w.buf, w.len, &err), SM_OK);
    assert_int_equal(snap_next(&r, &s, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "beyond"));
    snap_writer_free(&w);
}

/* A restored vCPU may set only the MSRs KVM lists for saving: any other
 * index in a snapshot (a hostile or foreign one) is named and refused. */
static void unlisted_msr_is_refused(void **state)
{
    (void)state;
    struct kvm_msr_list *list = calloc(1, sizeof *list + 3 * sizeof list->indices[0]);
    assert_non_null(list);
    list->nmsrs = 3;
    list->indices[0] = 0x10;       /* TSC */
    list->indices[1] = 0x1b;       /* APIC base */
    list->indices[2] = 0xc0000080; /* EFER */
    struct kvm_msr_entry ok[2] = { { .index = 0xc0000080 }, { .index = 0x10 } };
    struct kvm_msr_entry bad[3] = { { .index = 0x10 }, { .index = 0x1b }, { .index = 0xc0010015 } };
    uint32_t unlisted = 0;
    assert_true(kvm_state_msrs_listed(ok, 2, list, &unlisted));
    assert_true(kvm_state_msrs_listed(ok, 0, list, &unlisted));
    assert_false(kvm_state_msrs_listed(bad, 3, list, &unlisted));
    assert_int_equal(unlisted, 0xc0010015);
    free(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(truncated_is_refused),
        cmocka_unit_test(flipped_byte_is_refused),
        cmocka_unit_test(other_version_is_refused),
        cmocka_unit_test(swapped_sections_are_refused),
        cmocka_unit_test(oversized_section_is_refused),
        cmocka_unit_test(unlisted_msr_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
