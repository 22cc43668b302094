#include "vmm/memory.h"

#include <string.h>
#include <sys/mman.h>

static void layout(struct guest_memory *m, uint8_t *base, uint64_t bytes)
{
    uint64_t low = bytes < GM_MMIO_HOLE_START ? bytes : GM_MMIO_HOLE_START;
    m->nregions = 0;
    m->total = bytes;
    m->regions[m->nregions++] = (struct gm_region){ .gpa = 0, .size = low, .host = base };
    if (bytes > low)
        m->regions[m->nregions++] =
            (struct gm_region){ .gpa = GM_HIGH_START, .size = bytes - low, .host = base + low };
}

int gm_create(struct guest_memory *m, uint64_t bytes)
{
    memset(m, 0, sizeof *m);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    /* Guest RAM is never in a host core dump, and THP keeps TLB misses low. */
    madvise(p, bytes, MADV_DONTDUMP);
    m->mapping = p;
    m->mapping_size = bytes;
    layout(m, p, bytes);
    return 0;
}

int gm_create_from_file(struct guest_memory *m, int fd, uint64_t bytes)
{
    memset(m, 0, sizeof *m);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED)
        return -1;
    madvise(p, bytes, MADV_DONTDUMP);
    m->mapping = p;
    m->mapping_size = bytes;
    layout(m, p, bytes);
    return 0;
}

void gm_init_buffer(struct guest_memory *m, void *buf, uint64_t size)
{
    memset(m, 0, sizeof *m);
    layout(m, buf, size);
}

void gm_destroy(struct guest_memory *m)
{
    if (m->mapping)
        munmap(m->mapping, m->mapping_size);
    memset(m, 0, sizeof *m);
}

void *gm_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len)
{
    for (int i = 0; i < m->nregions; i++) {
        const struct gm_region *r = &m->regions[i];
        if (gpa < r->gpa)
            continue;
        uint64_t off = gpa - r->gpa;
        /* off <= size and len <= size - off: no addition that could overflow. */
        if (off <= r->size && len <= r->size - off)
            return r->host + off;
    }
    return NULL;
}

bool gm_read(const struct guest_memory *m, uint64_t gpa, void *dst, uint64_t len)
{
    const void *src = gm_ptr(m, gpa, len);
    if (!src)
        return false;
    memcpy(dst, src, len);
    return true;
}

bool gm_write(const struct guest_memory *m, uint64_t gpa, const void *src, uint64_t len)
{
    void *dst = gm_ptr(m, gpa, len);
    if (!dst)
        return false;
    memcpy(dst, src, len);
    return true;
}

uint64_t gm_low_end(const struct guest_memory *m)
{
    return m->nregions ? m->regions[0].size : 0;
}
