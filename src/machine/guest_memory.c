#include "machine/guest_memory.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* Makes the mapping p of `bytes` the guest's RAM. */
static void adopt_mapping(struct guest_memory *m, void *p, uint64_t bytes)
{
    /* Guest RAM (a guest's secrets) is never in a host core dump. */
    madvise(p, bytes, MADV_DONTDUMP);
    m->mapping = p;
    m->mapping_size = bytes;
    layout(m, p, bytes);
}

int gm_create(struct guest_memory *m, uint64_t bytes)
{
    memset(m, 0, sizeof *m);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    adopt_mapping(m, p, bytes);
    return 0;
}

/* The mapping granule: x86-64 base pages. */
#define GM_PAGE_SIZE 4096u
/* Beyond this many data extents, map the whole file instead (one VMA each). */
#define GM_MAX_EXTENTS 4096

/*
 * Maps the file's data extents (SEEK_DATA/SEEK_HOLE) over `base`, each
 * MAP_PRIVATE|MAP_FIXED. Returns 0, or -1 when the file cannot say where its
 * data is or has too many extents (the caller then maps all of it).
 */
static int map_data_extents(uint8_t *base, int fd, uint64_t bytes)
{
    uint64_t off = 0;
    for (int n = 0; off < bytes; n++) {
        off_t data = lseek(fd, (off_t)off, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -1; /* ENXIO: no data past off */
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0 || n >= GM_MAX_EXTENTS)
            return -1;
        uint64_t start = (uint64_t)data & ~(uint64_t)(GM_PAGE_SIZE - 1);
        uint64_t end = (uint64_t)hole < bytes ? (uint64_t)hole : bytes;
        end = (end + GM_PAGE_SIZE - 1) & ~(uint64_t)(GM_PAGE_SIZE - 1);
        if (end > bytes)
            end = bytes;
        if (start >= end)
            return -1;
        if (mmap(base + start, end - start, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd,
                 (off_t)start) == MAP_FAILED)
            return -1;
        off = end;
    }
    return 0;
}

int gm_create_from_file(struct guest_memory *m, int fd, uint64_t bytes)
{
    memset(m, 0, sizeof *m);
    /*
     * Holes of the file become anonymous memory, so a guest reading one
     * gets the zero page and never allocates into the file: on tmpfs, a
     * private mapping over a hole allocates a page of the file itself, and
     * the shared image would grow with every VM restored from it.
     */
    uint8_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    if (map_data_extents(p, fd, bytes) < 0 &&
        mmap(p, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, 0) == MAP_FAILED) {
        int e = errno;
        munmap(p, bytes);
        errno = e;
        return -1;
    }
    adopt_mapping(m, p, bytes);
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
