/*
 * The Intel MultiProcessor table (MP spec 1.4): how a guest without ACPI
 * finds its CPUs, its I/O APIC and how ISA interrupts are wired.
 *
 * Floating pointer (16 bytes, at BOOT_MPTABLE_ADDR, found by Linux's scan of
 * 0xf0000-0xfffff):
 *   0  4  "_MP_"          8  1  length in 16-byte units (1)
 *   4  4  config table    9  1  spec revision (4)
 *                         10 1  checksum (all bytes sum to 0)
 *                         11 5  feature bytes (0: a config table follows)
 *
 * Configuration table header (44 bytes), then entries:
 *   0  4 "PCMP"   4 2 length   6 1 revision   7 1 checksum   8 8 OEM id
 *   16 12 product id   28 4 OEM table ptr   32 2 OEM size   34 2 entry count
 *   36 4 local APIC address   40 2 ext length   42 1 ext checksum   43 1 reserved
 *
 *   entry       size  fields
 *   processor   20    type 0, apic id, apic version, flags (1 enabled, 2 BSP),
 *                     signature u32, feature flags u32, 8 reserved
 *   bus         8     type 1, bus id, "ISA   "
 *   I/O APIC    8     type 2, id, version, flags (1 enabled), address u32
 *   I/O intr    8     type 3, kind (0 INT), flags u16, bus, bus irq, apic id, pin
 *   local intr  8     type 4, kind (3 ExtINT, 1 NMI), flags u16, bus, bus irq,
 *                     apic id (0xff all), LINT pin
 *
 * ISA IRQ n goes to I/O APIC pin n, matching KVM's default GSI routing.
 */
#include "vmm/mptable.h"

#include <string.h>

#include "base/error.h"

#define APIC_VERSION   0x14
#define IOAPIC_VERSION 0x11
#define IOAPIC_PINS    24
#define LAPIC_ADDR     0xfee00000u
#define IOAPIC_ADDR    0xfec00000u

struct mp_writer {
    uint8_t *base;
    size_t cap;
    size_t len;
    bool overflow;
};

static uint8_t *mp_reserve(struct mp_writer *w, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return NULL;
    }
    uint8_t *p = w->base + w->len;
    memset(p, 0, n);
    w->len += n;
    return p;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }

static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)-sum;
}

static void add_processor(struct mp_writer *w, uint8_t apic_id, bool bsp)
{
    uint8_t *e = mp_reserve(w, 20);
    if (!e)
        return;
    e[0] = 0;
    e[1] = apic_id;
    e[2] = APIC_VERSION;
    e[3] = (uint8_t)(1 | (bsp ? 2 : 0));
    put32(e + 4, 0x600);        /* family 6: a plausible signature; CPUID has the truth */
    put32(e + 8, 0x201);        /* FPU, APIC */
}

static void add_intr(struct mp_writer *w, uint8_t type, uint8_t kind, uint8_t bus_irq, uint8_t apic, uint8_t pin)
{
    uint8_t *e = mp_reserve(w, 8);
    if (!e)
        return;
    e[0] = type;
    e[1] = kind;
    put16(e + 2, 0);            /* polarity and trigger conform to the bus */
    e[4] = 0;                   /* bus 0, ISA */
    e[5] = bus_irq;
    e[6] = apic;
    e[7] = pin;
}

size_t mptable_size(int ncpus)
{
    return 16 + 44 + 20 * (size_t)ncpus + 8 + 8 + 8 * IOAPIC_PINS + 8 * 2;
}

sm_code mptable_write(const struct guest_memory *mem, uint64_t addr, int ncpus, sm_error *err)
{
    if (ncpus < 1 || ncpus > MPTABLE_MAX_CPUS)
        return error_set(err, SM_E_INVALID, "%d vCPUs: the MP table holds 1 to %d", ncpus, MPTABLE_MAX_CPUS);
    size_t size = mptable_size(ncpus);
    uint8_t *base = gm_ptr(mem, addr, size);
    if (!base)
        return error_set(err, SM_E_INVALID, "guest memory too small for the MP table");
    struct mp_writer w = { .base = base, .cap = size };

    uint8_t *fp = mp_reserve(&w, 16);
    uint8_t *hdr = mp_reserve(&w, 44);
    if (!fp || !hdr)
        return error_set(err, SM_E_INVALID, "MP table overflow");
    size_t hdr_off = w.len - 44;
    uint8_t ioapic_id = (uint8_t)ncpus;

    for (int i = 0; i < ncpus; i++)
        add_processor(&w, (uint8_t)i, i == 0);
    uint8_t *bus = mp_reserve(&w, 8);
    if (bus) {
        bus[0] = 1;
        memcpy(bus + 2, "ISA   ", 6);
    }
    uint8_t *io = mp_reserve(&w, 8);
    if (io) {
        io[0] = 2;
        io[1] = ioapic_id;
        io[2] = IOAPIC_VERSION;
        io[3] = 1;
        put32(io + 4, IOAPIC_ADDR);
    }
    for (uint8_t pin = 0; pin < IOAPIC_PINS; pin++)
        add_intr(&w, 3, 0, pin, ioapic_id, pin);
    add_intr(&w, 4, 3, 0, 0xff, 0);  /* ExtINT on LINT0 */
    add_intr(&w, 4, 1, 0, 0xff, 1);  /* NMI on LINT1 */
    if (w.overflow)
        return error_set(err, SM_E_INVALID, "MP table overflow");

    uint16_t entries = (uint16_t)(ncpus + 1 + 1 + IOAPIC_PINS + 2);
    memcpy(hdr, "PCMP", 4);
    put16(hdr + 4, (uint16_t)(w.len - hdr_off));
    hdr[6] = 4;
    memcpy(hdr + 8, "SUPERMCH", 8);
    memcpy(hdr + 16, "MICROVM     ", 12);
    put16(hdr + 34, entries);
    put32(hdr + 36, LAPIC_ADDR);
    hdr[7] = checksum(hdr, w.len - hdr_off);

    memcpy(fp, "_MP_", 4);
    put32(fp + 4, (uint32_t)(addr + hdr_off));
    fp[8] = 1;
    fp[9] = 4;
    fp[10] = checksum(fp, 16);
    return SM_OK;
}
