/* Boot protocol, e820, MP table and VM option validation: no KVM needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/boot.h"
#include "machine/kvm.h"
#include "machine/guest_memory.h"
#include "vmm/mptable.h"
#include "vmm/vm.h"

#define MIB (1024ull * 1024)

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

/* A minimal, well-formed bzImage: 4 setup sectors + 1 boot sector, then a payload. */
static uint8_t *fake_bzimage(size_t payload, size_t *size_out)
{
    size_t setup = 5 * 512;
    size_t size = setup + payload;
    uint8_t *img = calloc(1, size);
    img[0x1f1] = 4;
    put16(img + 0x1fe, 0xaa55);
    img[0x200] = 0xeb;
    img[0x201] = 0x66; /* header ends at 0x268 */
    memcpy(img + 0x202, "HdrS", 4);
    put16(img + 0x206, 0x020f);
    img[0x211] = 0x01;                     /* LOADED_HIGH */
    put32(img + 0x22c, 0x7fffffff);        /* initrd_addr_max */
    put16(img + 0x236, 0x0001);            /* XLF_KERNEL_64 */
    put32(img + 0x238, 2047);              /* cmdline_size */
    put32(img + 0x260, (uint32_t)(payload * 4)); /* init_size */
    for (size_t i = 0; i < payload; i++)
        img[setup + i] = (uint8_t)(i * 7);
    *size_out = size;
    return img;
}

static void parse_accepts_valid_image(void **state)
{
    (void)state;
    size_t size;
    uint8_t *img = fake_bzimage(4096, &size);
    struct bzimage_info bz;
    sm_error err = { 0 };
    assert_int_equal(bzimage_parse(img, size, &bz, &err), SM_OK);
    assert_int_equal(bz.setup_size, 5 * 512);
    assert_int_equal(bz.payload_size, 4096);
    assert_int_equal(bz.protocol, 0x020f);
    assert_int_equal(bz.header_end, 0x268);
    assert_int_equal(bz.init_size, 4096 * 4);
    free(img);
}

static void parse_rejects_bad_images(void **state)
{
    (void)state;
    size_t size;
    struct bzimage_info bz;
    sm_error err = { 0 };
    uint8_t *img = fake_bzimage(4096, &size);

    assert_int_equal(bzimage_parse(img, 100, &bz, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "too small"));

    img[0x202] = 'X';
    assert_int_equal(bzimage_parse(img, size, &bz, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "not a bzImage"));
    img[0x202] = 'H';

    put16(img + 0x206, 0x0206);
    assert_int_equal(bzimage_parse(img, size, &bz, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "too old"));
    put16(img + 0x206, 0x020f);

    put16(img + 0x236, 0);
    assert_int_equal(bzimage_parse(img, size, &bz, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "64-bit"));
    put16(img + 0x236, 1);

    img[0x1f1] = 200; /* setup larger than the file */
    assert_int_equal(bzimage_parse(img, size, &bz, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "truncated"));
    free(img);
}

static void e820_small_and_large(void **state)
{
    (void)state;
    struct guest_memory m;
    struct e820_entry map[E820_MAX];
    static uint8_t dummy;

    gm_init_buffer(&m, &dummy, 256 * MIB);
    int n = e820_build(&m, map, E820_MAX);
    assert_int_equal(n, 3);
    assert_true(map[0].addr == 0 && map[0].size == BOOT_EBDA_START && map[0].type == E820_RAM);
    assert_true(map[1].type == E820_RESERVED && map[1].addr + map[1].size == BOOT_HIMEM_START);
    assert_true(map[2].addr == BOOT_HIMEM_START && map[2].addr + map[2].size == 256 * MIB);

    /* 5 GiB: 3 GiB below the hole, 2 GiB from 4 GiB up. */
    gm_init_buffer(&m, &dummy, 5120 * MIB);
    n = e820_build(&m, map, E820_MAX);
    assert_int_equal(n, 4);
    assert_true(map[2].addr + map[2].size == GM_MMIO_HOLE_START);
    assert_true(map[3].addr == GM_HIGH_START && map[3].size == 2048 * MIB);
}

static void initrd_placement(void **state)
{
    (void)state;
    /* Top of low memory, page aligned. */
    assert_int_equal(initrd_place(256 * MIB, 10000, 0x7fffffff, 0x200000), (256 * MIB - 10000) & ~0xfffull);
    /* Capped by initrd_addr_max. */
    assert_int_equal(initrd_place(2048 * MIB, 4096, 0x37ffffff, 0x200000), 0x38000000 - 4096);
    /* Does not fit above the kernel. */
    assert_int_equal(initrd_place(64 * MIB, 63 * MIB, 0x7fffffff, 0x200000), 0);
    /* Larger than memory. */
    assert_int_equal(initrd_place(64 * MIB, 128 * MIB, 0x7fffffff, 0x200000), 0);
}

static void boot_load_writes_zero_page(void **state)
{
    (void)state;
    size_t size;
    uint8_t *img = fake_bzimage(8192, &size);
    uint64_t mem_size = 64 * MIB;
    uint8_t *ram = calloc(1, mem_size);
    struct guest_memory m;
    gm_init_buffer(&m, ram, mem_size);
    uint8_t initrd[5000];
    memset(initrd, 0x5a, sizeof initrd);
    struct boot_images in = { .kernel = img, .kernel_size = size, .initrd = initrd, .initrd_size = sizeof initrd,
                              .cmdline = "console=ttyS0 quiet" };
    uint64_t entry = 0;
    sm_error err = { 0 };
    assert_int_equal(boot_load(&m, &in, &entry, &err), SM_OK);
    assert_int_equal(entry, BOOT_KERNEL_ADDR + 0x200);

    uint8_t *zp = ram + BOOT_ZERO_PAGE_ADDR;
    assert_memory_equal(zp + 0x202, "HdrS", 4);
    assert_int_equal(zp[0x210], 0xff);
    assert_int_equal(get32(zp + 0x228), BOOT_CMDLINE_ADDR);
    assert_string_equal((char *)ram + BOOT_CMDLINE_ADDR, "console=ttyS0 quiet");
    uint32_t rd = get32(zp + 0x218);
    assert_int_equal(get32(zp + 0x21c), sizeof initrd);
    assert_int_equal(rd % 4096, 0);
    assert_true(rd + sizeof initrd <= mem_size);
    assert_memory_equal(ram + rd, initrd, sizeof initrd);
    assert_memory_equal(ram + BOOT_KERNEL_ADDR, img + 5 * 512, 8192);
    assert_int_equal(zp[0x1e8], 3);
    assert_int_equal(get64(zp + 0x2d0 + 20 * 2), BOOT_HIMEM_START);
    /* The identity map: PML4[0] -> PDPT, PD[1] maps 2 MiB. */
    assert_int_equal(get64(ram + BOOT_PML4_ADDR) & ~0xfffull, BOOT_PDPT_ADDR);
    assert_int_equal(get64(ram + BOOT_PD_ADDR + 8), (2 * MIB) | 0x83);
    free(ram);
    free(img);
}

static void boot_load_refuses_what_does_not_fit(void **state)
{
    (void)state;
    size_t size;
    uint8_t *img = fake_bzimage(8192, &size);
    uint64_t mem_size = 4 * MIB;
    uint8_t *ram = calloc(1, mem_size);
    struct guest_memory m;
    gm_init_buffer(&m, ram, mem_size);
    uint8_t *big = calloc(1, 4 * MIB);
    struct boot_images in = { .kernel = img, .kernel_size = size, .initrd = big, .initrd_size = 4 * MIB,
                              .cmdline = "" };
    uint64_t entry;
    sm_error err = { 0 };
    assert_int_equal(boot_load(&m, &in, &entry, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "initrd"));

    char *longline = malloc(5000);
    memset(longline, 'a', 4999);
    longline[4999] = 0;
    in.initrd = NULL;
    in.initrd_size = 0;
    in.cmdline = longline;
    assert_int_equal(boot_load(&m, &in, &entry, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "command line"));
    free(longline);
    free(big);
    free(ram);
    free(img);
}

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

static void mptable_is_well_formed(void **state)
{
    (void)state;
    uint64_t mem_size = 2 * MIB;
    uint8_t *ram = calloc(1, mem_size);
    struct guest_memory m;
    gm_init_buffer(&m, ram, mem_size);
    sm_error err = { 0 };
    assert_int_equal(mptable_write(&m, BOOT_MPTABLE_ADDR, 4, &err), SM_OK);
    uint8_t *fp = ram + BOOT_MPTABLE_ADDR;
    assert_memory_equal(fp, "_MP_", 4);
    assert_int_equal(sum(fp, 16), 0);
    uint32_t cfg = get32(fp + 4);
    uint8_t *hdr = ram + cfg;
    assert_memory_equal(hdr, "PCMP", 4);
    uint16_t len = (uint16_t)(hdr[4] | hdr[5] << 8);
    assert_int_equal(sum(hdr, len), 0);
    uint16_t count = (uint16_t)(hdr[34] | hdr[35] << 8);
    assert_int_equal(count, 4 + 1 + 1 + 24 + 2);
    /* Walk the entries: 4 processors, the first the boot processor. */
    uint8_t *e = hdr + 44;
    int cpus = 0;
    for (int i = 0; i < count; i++) {
        if (e[0] == 0) {
            assert_int_equal(e[1], cpus);
            assert_int_equal(e[3] & 2, cpus == 0 ? 2 : 0);
            cpus++;
            e += 20;
        } else {
            e += 8;
        }
    }
    assert_int_equal(cpus, 4);
    assert_int_equal(e - hdr, len);

    assert_int_equal(mptable_write(&m, BOOT_MPTABLE_ADDR, 0, &err), SM_E_INVALID);
    assert_int_equal(mptable_write(&m, BOOT_MPTABLE_ADDR, MPTABLE_MAX_CPUS + 1, &err), SM_E_INVALID);
    assert_int_equal(mptable_write(&m, mem_size - 16, 1, &err), SM_E_INVALID);
    free(ram);
}

static void vm_options_are_validated(void **state)
{
    (void)state;
    struct vm_config cfg;
    sm_error err = { 0 };
    vm_config_init(&cfg);
    assert_int_equal(vm_config_validate(&cfg, &err), SM_E_INVALID); /* no kernel */
    cfg.kernel_path = "/k";
    assert_int_equal(vm_config_validate(&cfg, &err), SM_OK);
    cfg.cpus = 0;
    assert_int_equal(vm_config_validate(&cfg, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "--cpus"));
    cfg.cpus = VMM_MAX_CPUS + 1;
    assert_int_equal(vm_config_validate(&cfg, &err), SM_E_INVALID);
    cfg.cpus = 2;
    cfg.mem_mib = 1;
    assert_int_equal(vm_config_validate(&cfg, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "--memory"));
}

static void guest_memory_bounds(void **state)
{
    (void)state;
    static uint8_t buf[4096];
    struct guest_memory m;
    gm_init_buffer(&m, buf, sizeof buf);
    assert_non_null(gm_ptr(&m, 0, 4096));
    assert_non_null(gm_ptr(&m, 4095, 1));
    assert_null(gm_ptr(&m, 4095, 2));
    assert_null(gm_ptr(&m, 4096, 1));
    assert_null(gm_ptr(&m, UINT64_MAX, 2));
    assert_null(gm_ptr(&m, 1, UINT64_MAX));
    uint8_t x = 0;
    assert_false(gm_read(&m, 5000, &x, 1));
    assert_true(gm_write(&m, 10, "\x42", 1));
    assert_true(gm_read(&m, 10, &x, 1));
    assert_int_equal(x, 0x42);
}

/* The guest never sees VMX or SVM (nested state is not in a snapshot), and
 * each vCPU gets its own APIC id. */
static void cpuid_hides_nested_virtualization(void **state)
{
    (void)state;
    union {
        struct kvm_cpuid2 c;
        uint8_t bytes[sizeof(struct kvm_cpuid2) + 3 * sizeof(struct kvm_cpuid_entry2)];
    } u;
    memset(&u, 0, sizeof u);
    u.c.nent = 3;
    u.c.entries[0] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 1u << 5, .ebx = 0xffffffffu };
    u.c.entries[1] = (struct kvm_cpuid_entry2){ .function = 0x80000001, .ecx = 0xffffffffu };
    u.c.entries[2] = (struct kvm_cpuid_entry2){ .function = 0xb, .edx = 7 };
    cpuid_patch_for_vcpu(&u.c, 2, 4, false);
    assert_int_equal(u.c.entries[0].ecx & (1u << 5), 0);          /* VMX */
    assert_int_not_equal(u.c.entries[0].ecx & (1u << 31), 0);     /* hypervisor */
    assert_int_equal(u.c.entries[0].ebx >> 24, 2);                /* APIC id */
    assert_int_equal((u.c.entries[0].ebx >> 16) & 0xff, 4);
    assert_int_equal(u.c.entries[1].ecx, 0xffffffffu & ~(1u << 2)); /* SVM only */
    assert_int_equal(u.c.entries[2].edx, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_accepts_valid_image),
        cmocka_unit_test(parse_rejects_bad_images),
        cmocka_unit_test(e820_small_and_large),
        cmocka_unit_test(initrd_placement),
        cmocka_unit_test(boot_load_writes_zero_page),
        cmocka_unit_test(boot_load_refuses_what_does_not_fit),
        cmocka_unit_test(mptable_is_well_formed),
        cmocka_unit_test(vm_options_are_validated),
        cmocka_unit_test(guest_memory_bounds),
        cmocka_unit_test(cpuid_hides_nested_virtualization),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
