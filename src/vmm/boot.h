/*
 * The Linux x86 boot protocol, 64-bit entry (Documentation/x86/boot.rst).
 *
 * Guest physical layout we build before the first instruction:
 *
 *   address     size     what
 *   0x000500    0x28     GDT: null, null, code64 (0x10), data (0x18), TSS (0x20)
 *   0x007000    4 KiB    zero page (struct boot_params)
 *   0x009000    4 KiB    PML4            \
 *   0x00a000    4 KiB    PDPT             > identity map of the first 1 GiB
 *   0x00b000    4 KiB    PD (2 MiB pages)/
 *   0x020000    <=64KiB  kernel command line
 *   0x0f0000    <=64KiB  MP floating pointer + MP configuration table
 *   0x100000    ...      protected-mode kernel (bzImage payload), entry +0x200
 *   top of low  ...      initrd, page aligned, below initrd_addr_max
 *
 * The e820 map says: [0, 0x9fc00) RAM, [0x9fc00, 0x100000) reserved,
 * [0x100000, low end) RAM, and [4 GiB, ...) RAM when memory reaches the hole.
 */
#ifndef SM_VMM_BOOT_H
#define SM_VMM_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "supermachine.h"
#include "machine/guest_memory.h"

#define BOOT_GDT_ADDR        0x500ull
#define BOOT_ZERO_PAGE_ADDR  0x7000ull
#define BOOT_PML4_ADDR       0x9000ull
#define BOOT_PDPT_ADDR       0xa000ull
#define BOOT_PD_ADDR         0xb000ull
#define BOOT_CMDLINE_ADDR    0x20000ull
#define BOOT_CMDLINE_MAX     0x10000ull
#define BOOT_MPTABLE_ADDR    0xf0000ull
#define BOOT_EBDA_START      0x9fc00ull
#define BOOT_HIMEM_START     0x100000ull
#define BOOT_KERNEL_ADDR     0x100000ull

#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define BOOT_TSS 0x20

/* What we need from a bzImage's setup header, validated. */
struct bzimage_info {
    uint16_t protocol;        /* e.g. 0x020f */
    uint32_t setup_size;      /* bytes before the protected-mode kernel */
    uint64_t payload_size;    /* bytes of the protected-mode kernel */
    uint32_t init_size;       /* memory the kernel needs from its load address */
    uint32_t initrd_addr_max; /* highest address the initrd may end at (inclusive) */
    uint32_t cmdline_size;    /* longest command line, without the NUL */
    uint32_t header_end;      /* end of the setup header within the file */
};

/* Checks a bzImage in memory: magic, protocol >= 2.12, 64-bit entry, sizes. */
sm_code bzimage_parse(const uint8_t *image, size_t size, struct bzimage_info *out, sm_error *err);

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_MAX      128

struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

/* Fills the e820 map for a guest memory layout; returns the number of entries. */
int e820_build(const struct guest_memory *mem, struct e820_entry *out, int max);

/* Where the initrd goes: page aligned, below both the low RAM end and the
 * kernel's limit, above the kernel's footprint. Returns 0 if it cannot fit. */
uint64_t initrd_place(uint64_t low_end, uint64_t initrd_size, uint32_t initrd_addr_max, uint64_t kernel_end);

struct boot_images {
    const uint8_t *kernel;
    size_t kernel_size;
    const uint8_t *initrd;   /* may be NULL */
    size_t initrd_size;
    const char *cmdline;
};

/* Loads kernel, initrd and command line into guest memory and writes the
 * zero page, e820 map, GDT and page tables. The caller sets the registers
 * (boot_entry_point gives RIP). */
sm_code boot_load(const struct guest_memory *mem, const struct boot_images *in, uint64_t *entry_out, sm_error *err);

#endif
