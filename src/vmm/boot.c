/*
 * Loading a bzImage the way a boot loader does, for the 64-bit entry point.
 *
 * Setup header fields we read or write (offsets in the file and in the zero
 * page, which share the layout):
 *
 *   offset  size  field              use
 *   0x0c0   4     ext_ramdisk_image  0 (initrd below 4 GiB)
 *   0x0c4   4     ext_ramdisk_size   0
 *   0x0c8   4     ext_cmd_line_ptr   0
 *   0x1e8   1     e820_entries       number of entries at 0x2d0
 *   0x1f1   1     setup_sects        0 means 4; setup = (sects+1)*512 bytes
 *   0x1fa   2     vid_mode           0xffff ("normal")
 *   0x1fe   2     boot_flag          must be 0xaa55
 *   0x201   1     jump offset        the header ends at 0x202 + this
 *   0x202   4     header             must be "HdrS"
 *   0x206   2     version            >= 0x020c (xloadflags exist)
 *   0x210   1     type_of_loader     0xff (undefined loader)
 *   0x211   1     loadflags          bit 0 LOADED_HIGH required; we set bit 7 CAN_USE_HEAP
 *   0x218   4     ramdisk_image      initrd address
 *   0x21c   4     ramdisk_size       initrd size
 *   0x224   2     heap_end_ptr       0xfe00
 *   0x228   4     cmd_line_ptr       command line address
 *   0x22c   4     initrd_addr_max    highest initrd byte
 *   0x236   2     xloadflags         bit 0 XLF_KERNEL_64 required
 *   0x238   4     cmdline_size       longest command line
 *   0x260   4     init_size          memory needed from the load address
 *   0x2d0   20*n  e820_table         {u64 addr, u64 size, u32 type}, packed
 */
#include "vmm/boot.h"

#include <string.h>

#include "base/error.h"

#define ZP_EXT_RAMDISK_IMAGE 0x0c0
#define ZP_EXT_RAMDISK_SIZE  0x0c4
#define ZP_EXT_CMD_LINE_PTR  0x0c8
#define ZP_E820_ENTRIES      0x1e8
#define HDR_SETUP_SECTS      0x1f1
#define HDR_VID_MODE         0x1fa
#define HDR_BOOT_FLAG        0x1fe
#define HDR_JUMP_OFFSET      0x201
#define HDR_MAGIC            0x202
#define HDR_VERSION          0x206
#define HDR_TYPE_OF_LOADER   0x210
#define HDR_LOADFLAGS        0x211
#define HDR_RAMDISK_IMAGE    0x218
#define HDR_RAMDISK_SIZE     0x21c
#define HDR_HEAP_END_PTR     0x224
#define HDR_CMD_LINE_PTR     0x228
#define HDR_INITRD_ADDR_MAX  0x22c
#define HDR_XLOADFLAGS       0x236
#define HDR_CMDLINE_SIZE     0x238
#define HDR_INIT_SIZE        0x260
#define ZP_E820_TABLE        0x2d0
#define ZP_SIZE              0x1000

#define LOADED_HIGH   0x01
#define CAN_USE_HEAP  0x80
#define XLF_KERNEL_64 0x01
#define E820_ENTRY_SIZE 20

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)v); wr16(p + 2, (uint16_t)(v >> 16)); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

sm_code bzimage_parse(const uint8_t *image, size_t size, struct bzimage_info *out, sm_error *err)
{
    memset(out, 0, sizeof *out);
    if (size < HDR_INIT_SIZE + 4)
        return error_set(err, SM_E_INVALID, "kernel image is too small (%zu bytes) to be a bzImage", size);
    if (rd16(image + HDR_BOOT_FLAG) != 0xaa55 || memcmp(image + HDR_MAGIC, "HdrS", 4) != 0)
        return error_set(err, SM_E_INVALID,
                       "kernel image is not a bzImage (no boot signature); pass arch/x86/boot/bzImage, not vmlinux");
    out->protocol = rd16(image + HDR_VERSION);
    if (out->protocol < 0x020c)
        return error_set(err, SM_E_INVALID, "kernel boot protocol %u.%02u is too old; 2.12 or newer is needed",
                       out->protocol >> 8, out->protocol & 0xff);
    if (!(rd16(image + HDR_XLOADFLAGS) & XLF_KERNEL_64))
        return error_set(err, SM_E_INVALID, "kernel has no 64-bit entry point (build it for x86-64)");
    if (!(image[HDR_LOADFLAGS] & LOADED_HIGH))
        return error_set(err, SM_E_INVALID, "kernel is a zImage that loads low; a bzImage is needed");
    uint32_t sects = image[HDR_SETUP_SECTS] ? image[HDR_SETUP_SECTS] : 4;
    out->setup_size = (sects + 1) * 512;
    if (out->setup_size >= size)
        return error_set(err, SM_E_INVALID, "kernel image is truncated: setup (%u bytes) fills the file", out->setup_size);
    out->payload_size = size - out->setup_size;
    out->header_end = 0x202 + image[HDR_JUMP_OFFSET];
    if (out->header_end > out->setup_size || out->header_end > ZP_SIZE)
        return error_set(err, SM_E_INVALID, "kernel setup header is malformed (ends at 0x%x)", out->header_end);
    out->init_size = rd32(image + HDR_INIT_SIZE);
    if (out->init_size < out->payload_size)
        out->init_size = (uint32_t)out->payload_size;
    out->initrd_addr_max = rd32(image + HDR_INITRD_ADDR_MAX);
    out->cmdline_size = rd32(image + HDR_CMDLINE_SIZE);
    return SM_OK;
}

int e820_build(const struct guest_memory *mem, struct e820_entry *out, int max)
{
    int n = 0;
    uint64_t low_end = gm_low_end(mem);
    if (max < 4 || low_end <= BOOT_HIMEM_START)
        return 0;
    out[n++] = (struct e820_entry){ 0, BOOT_EBDA_START, E820_RAM };
    out[n++] = (struct e820_entry){ BOOT_EBDA_START, BOOT_HIMEM_START - BOOT_EBDA_START, E820_RESERVED };
    out[n++] = (struct e820_entry){ BOOT_HIMEM_START, low_end - BOOT_HIMEM_START, E820_RAM };
    for (int i = 1; i < mem->nregions; i++)
        out[n++] = (struct e820_entry){ mem->regions[i].gpa, mem->regions[i].size, E820_RAM };
    return n;
}

uint64_t initrd_place(uint64_t low_end, uint64_t initrd_size, uint32_t initrd_addr_max, uint64_t kernel_end)
{
    uint64_t limit = low_end;
    if ((uint64_t)initrd_addr_max + 1 < limit)
        limit = (uint64_t)initrd_addr_max + 1;
    if (initrd_size > limit)
        return 0;
    uint64_t addr = (limit - initrd_size) & ~0xfffull;
    return addr >= kernel_end ? addr : 0;
}

/* GDT entries in the legacy descriptor encoding. */
#define GDT_CODE64 0x00af9b000000ffffull /* present, DPL0, exec/read, L=1, G=1 */
#define GDT_DATA   0x00cf93000000ffffull /* present, DPL0, read/write, D/B=1, G=1 */
#define GDT_TSS    0x00808b0000000fffull /* present, busy 64-bit TSS, base 0 */

static sm_code write_gdt_and_page_tables(const struct guest_memory *mem, sm_error *err)
{
    uint64_t gdt[5] = { 0, 0, GDT_CODE64, GDT_DATA, GDT_TSS };
    uint8_t *p = gm_ptr(mem, BOOT_GDT_ADDR, sizeof gdt);
    uint8_t *pml4 = gm_ptr(mem, BOOT_PML4_ADDR, 0x1000);
    uint8_t *pdpt = gm_ptr(mem, BOOT_PDPT_ADDR, 0x1000);
    uint8_t *pd = gm_ptr(mem, BOOT_PD_ADDR, 0x1000);
    if (!p || !pml4 || !pdpt || !pd)
        return error_set(err, SM_E_INVALID, "guest memory too small for boot structures");
    for (int i = 0; i < 5; i++)
        wr64(p + 8 * i, gdt[i]);
    memset(pml4, 0, 0x1000);
    memset(pdpt, 0, 0x1000);
    wr64(pml4, BOOT_PDPT_ADDR | 0x3);         /* present, writable */
    wr64(pdpt, BOOT_PD_ADDR | 0x3);
    for (uint64_t i = 0; i < 512; i++)        /* 512 x 2 MiB = 1 GiB */
        wr64(pd + 8 * i, (i << 21) | 0x83);   /* present, writable, page size */
    return SM_OK;
}

static sm_code write_cmdline(const struct guest_memory *mem, const struct bzimage_info *bz, const char *cmdline,
                             sm_error *err)
{
    size_t len = strlen(cmdline);
    uint64_t max = bz->cmdline_size ? bz->cmdline_size : 255;
    if (max > BOOT_CMDLINE_MAX - 1)
        max = BOOT_CMDLINE_MAX - 1;
    if (len > max)
        return error_set(err, SM_E_INVALID, "kernel command line is %zu bytes; this kernel takes at most %llu", len,
                       (unsigned long long)max);
    if (!gm_write(mem, BOOT_CMDLINE_ADDR, cmdline, len + 1))
        return error_set(err, SM_E_INVALID, "guest memory too small for the command line");
    return SM_OK;
}

static sm_code write_zero_page(const struct guest_memory *mem, const struct boot_images *in,
                               const struct bzimage_info *bz, uint64_t initrd_addr, sm_error *err)
{
    uint8_t *zp = gm_ptr(mem, BOOT_ZERO_PAGE_ADDR, ZP_SIZE);
    if (!zp)
        return error_set(err, SM_E_INVALID, "guest memory too small for the zero page");
    memset(zp, 0, ZP_SIZE);
    memcpy(zp + HDR_SETUP_SECTS, in->kernel + HDR_SETUP_SECTS, bz->header_end - HDR_SETUP_SECTS);
    wr16(zp + HDR_VID_MODE, 0xffff);
    zp[HDR_TYPE_OF_LOADER] = 0xff;
    zp[HDR_LOADFLAGS] |= CAN_USE_HEAP;
    wr16(zp + HDR_HEAP_END_PTR, 0xfe00);
    wr32(zp + HDR_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE_ADDR);
    wr32(zp + ZP_EXT_CMD_LINE_PTR, 0);
    wr32(zp + HDR_RAMDISK_IMAGE, (uint32_t)initrd_addr);
    wr32(zp + HDR_RAMDISK_SIZE, in->initrd ? (uint32_t)in->initrd_size : 0);
    wr32(zp + ZP_EXT_RAMDISK_IMAGE, 0);
    wr32(zp + ZP_EXT_RAMDISK_SIZE, 0);

    struct e820_entry map[E820_MAX];
    int n = e820_build(mem, map, E820_MAX);
    if (n == 0)
        return error_set(err, SM_E_INVALID, "guest memory too small for an e820 map");
    zp[ZP_E820_ENTRIES] = (uint8_t)n;
    for (int i = 0; i < n; i++) {
        uint8_t *e = zp + ZP_E820_TABLE + E820_ENTRY_SIZE * i;
        wr64(e, map[i].addr);
        wr64(e + 8, map[i].size);
        wr32(e + 16, map[i].type);
    }
    return SM_OK;
}

sm_code boot_load(const struct guest_memory *mem, const struct boot_images *in, uint64_t *entry_out, sm_error *err)
{
    struct bzimage_info bz;
    sm_code rc = bzimage_parse(in->kernel, in->kernel_size, &bz, err);
    if (rc)
        return rc;
    uint64_t kernel_end = BOOT_KERNEL_ADDR + bz.init_size;
    if (kernel_end > gm_low_end(mem))
        return error_set(err, SM_E_INVALID, "guest memory (%llu MiB) is too small for this kernel (needs %u MiB)",
                       (unsigned long long)(mem->total >> 20), (unsigned)((kernel_end >> 20) + 1));
    if (!gm_write(mem, BOOT_KERNEL_ADDR, in->kernel + bz.setup_size, bz.payload_size))
        return error_set(err, SM_E_INVALID, "guest memory too small for the kernel");

    uint64_t initrd_addr = 0;
    if (in->initrd) {
        if (in->initrd_size > UINT32_MAX)
            return error_set(err, SM_E_INVALID, "initrd is larger than 4 GiB");
        initrd_addr = initrd_place(gm_low_end(mem), in->initrd_size, bz.initrd_addr_max, kernel_end);
        if (!initrd_addr)
            return error_set(err, SM_E_INVALID,
                           "initrd (%zu KiB) does not fit in guest memory beside the kernel; give the VM more memory",
                           in->initrd_size >> 10);
        if (!gm_write(mem, initrd_addr, in->initrd, in->initrd_size))
            return error_set(err, SM_E_INVALID, "initrd placement out of guest memory");
    }
    if ((rc = write_cmdline(mem, &bz, in->cmdline ? in->cmdline : "", err)) ||
        (rc = write_zero_page(mem, in, &bz, initrd_addr, err)) ||
        (rc = write_gdt_and_page_tables(mem, err)))
        return rc;
    *entry_out = BOOT_KERNEL_ADDR + 0x200;
    return SM_OK;
}
