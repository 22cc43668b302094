/*
 * The snapshot state file: a header, typed sections in a fixed order, and
 * two CRC-32s. Guest memory lives beside it in its own file ("memory"), raw
 * and page aligned, so that restore maps it copy-on-write instead of reading it.
 *
 * Header (32 bytes, little endian):
 *
 *   offset  size  field
 *   0       8     magic "SMSNAP\r\n"
 *   8       4     format version (SNAP_VERSION)
 *   12      4     header size (32)
 *   16      4     number of sections
 *   20      4     total file size in bytes
 *   24      4     CRC-32 of bytes [32, total)
 *   28      4     CRC-32 of bytes [0, 28)
 *
 * Section (16-byte header, payload padded with zeros to 8 bytes):
 *
 *   0       4     type (enum snap_section_type)
 *   4       4     index (the vCPU or device number; 0 otherwise)
 *   8       8     payload length in bytes (<= SNAP_MAX_SECTION)
 *   16      len   payload
 *
 * Sections appear in this order, and a reader refuses any other: VM, CPUID,
 * then for each vCPU i = 0..n-1 one VCPU section, IRQCHIP, PIT, CLOCK, then
 * DEVICE sections with increasing index, then END. What each payload holds is
 * described beside its type below; payload sizes are checked exactly.
 */
#ifndef SM_SNAPSHOT_FORMAT_H
#define SM_SNAPSHOT_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "supermachine.h"

#define SNAP_MAGIC "SMSNAP\r\n"
#define SNAP_VERSION 2u
#define SNAP_HEADER_SIZE 32u
#define SNAP_SECTION_HEADER 16u
#define SNAP_MAX_SECTION (4u << 20)     /* one section: 4 MiB */
#define SNAP_MAX_FILE (64u << 20)       /* the whole state file: 64 MiB */
#define SNAP_MAX_SECTIONS 4096u

enum snap_section_type {
    SNAP_SEC_VM = 1,       /* struct snap_vm_info */
    SNAP_SEC_CPUID = 2,    /* u32 nent, then nent x struct kvm_cpuid_entry2 */
    SNAP_SEC_VCPU = 3,     /* struct snap_vcpu_fixed, then u32 nmsrs + nmsrs x struct kvm_msr_entry */
    SNAP_SEC_IRQCHIP = 4,  /* 3 x struct kvm_irqchip: PIC master, PIC slave, IOAPIC */
    SNAP_SEC_PIT = 5,      /* struct kvm_pit_state2 */
    SNAP_SEC_CLOCK = 6,    /* struct kvm_clock_data */
    SNAP_SEC_DEVICE = 7,   /* u32 device kind + the device's own plain-data state */
    SNAP_SEC_END = 8,      /* empty: the last section */
};

/* Payload of SNAP_SEC_VM. */
struct snap_vm_info {
    uint64_t mem_bytes;      /* guest RAM, and the size of the memory file */
    uint32_t ncpus;
    uint32_t ndevices;       /* DEVICE sections that follow */
    uint64_t guest_cid;
    uint64_t created_unix_s; /* when the snapshot was taken */
    char cpu_vendor[16];     /* CPUID leaf 0 vendor string of the host that took it */
    uint32_t tsc_khz;        /* the guest's TSC rate (KVM_GET_TSC_KHZ); 0: unknown */
    uint32_t reserved;       /* zero */
};

/* --- writing ---------------------------------------------------------------- */

struct snap_writer {
    uint8_t *buf;
    size_t len;
    size_t cap;
    uint32_t nsections;
    size_t open_section;   /* offset of the section being appended to, or 0 */
    sm_code error;
};

void snap_writer_init(struct snap_writer *w);
void snap_writer_free(struct snap_writer *w);
/* Starts a section; append its payload with snap_put, then snap_end_section. */
void snap_begin_section(struct snap_writer *w, uint32_t type, uint32_t index);
void snap_put(struct snap_writer *w, const void *data, size_t len);
void snap_end_section(struct snap_writer *w);
/* Adds the END section, fills in the header; the file bytes are w->buf[0, w->len). */
sm_code snap_finish(struct snap_writer *w, sm_error *err);

/* --- reading ------------------------------------------------------------------ */

struct snap_section {
    uint32_t type;
    uint32_t index;
    const uint8_t *data;
    uint64_t len;
};

struct snap_reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;            /* next section header */
    uint32_t remaining;    /* sections not yet read */
};

/* Reads a whole state file (at most SNAP_MAX_FILE bytes) into *out; free() it. */
sm_code snap_read_file(const char *path, uint8_t **out, size_t *len, sm_error *err);
/* Checks magic, version, sizes and both CRCs; the message says which failed. */
sm_code snap_reader_open(struct snap_reader *r, const uint8_t *buf, size_t len, sm_error *err);
/* Reads the next section, which must have type `type` and index `index`. */
sm_code snap_expect(struct snap_reader *r, uint32_t type, uint32_t index, struct snap_section *out, sm_error *err);
/* Reads the next section whatever its type (for optional sections). */
sm_code snap_next(struct snap_reader *r, struct snap_section *out, sm_error *err);

/* A section's name for messages. */
const char *snap_section_name(uint32_t type);

#endif
