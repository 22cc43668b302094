/*
 * Guest physical memory: at most two host mappings, one below the 32-bit
 * MMIO hole and one above 4 GiB.
 *
 * Every access the VMM makes on behalf of the guest goes through gm_ptr(),
 * which checks the whole range [gpa, gpa+len) lies in one region, with
 * overflow checked. Anything the guest wrote (descriptor addresses, lengths)
 * is hostile input.
 */
#ifndef SM_MACHINE_GUEST_MEMORY_H
#define SM_MACHINE_GUEST_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GM_MAX_REGIONS 2
#define GM_MMIO_HOLE_START 0xc0000000ull   /* 3 GiB: devices live above */
#define GM_HIGH_START      0x100000000ull  /* 4 GiB */

struct gm_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *host;
};

struct guest_memory {
    struct gm_region regions[GM_MAX_REGIONS];
    int nregions;
    uint64_t total;   /* bytes of RAM */
    void *mapping;    /* the single host mapping backing all regions */
    size_t mapping_size;
};

/* Maps `bytes` of anonymous memory and lays it out as regions. */
int gm_create(struct guest_memory *m, uint64_t bytes);
/* Maps `bytes` of the file fd copy-on-write (MAP_PRIVATE): restore costs a
 * mapping, not a copy, and every VM restored from one file shares its pages
 * until it writes them. Only the file's data extents are mapped from it; its
 * holes are anonymous memory (the file never grows). */
int gm_create_from_file(struct guest_memory *m, int fd, uint64_t bytes);
/* Uses a caller-owned buffer as guest memory starting at GPA 0 (tests, fuzzing). */
void gm_init_buffer(struct guest_memory *m, void *buf, uint64_t size);
void gm_destroy(struct guest_memory *m);

/* Host pointer for [gpa, gpa+len), or NULL if any byte is outside RAM. */
void *gm_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len);
/* Copy helpers; return false (and copy nothing) when out of range. */
bool gm_read(const struct guest_memory *m, uint64_t gpa, void *dst, uint64_t len);
bool gm_write(const struct guest_memory *m, uint64_t gpa, const void *src, uint64_t len);

/* End of RAM below the MMIO hole (exclusive). */
uint64_t gm_low_end(const struct guest_memory *m);

#endif
