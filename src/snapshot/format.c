/* The snapshot state file's container: see the table in format.h. */
#include "snapshot/format.h"
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/error.h"

static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)crc;
}

const char *snap_section_name(uint32_t type)
{
    switch (type) {
    case SNAP_SEC_VM: return "VM";
    case SNAP_SEC_CPUID: return "CPUID";
    case SNAP_SEC_VCPU: return "VCPU";
    case SNAP_SEC_IRQCHIP: return "IRQCHIP";
    case SNAP_SEC_PIT: return "PIT";
    case SNAP_SEC_CLOCK: return "CLOCK";
    case SNAP_SEC_DEVICE: return "DEVICE";
    case SNAP_SEC_END: return "END";
    }
    return "unknown";
}

/* --- writing ------------------------------------------------------------------ */

void snap_writer_init(struct snap_writer *w)
{
    memset(w, 0, sizeof *w);
    w->cap = 64 * 1024;
    w->buf = calloc(1, w->cap);
    if (!w->buf)
        w->error = SM_E_NOMEM;
    else
        w->len = SNAP_HEADER_SIZE;
}

void snap_writer_free(struct snap_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

static uint8_t *reserve(struct snap_writer *w, size_t n)
{
    if (w->error)
        return NULL;
    if (n > SNAP_MAX_FILE - w->len) {
        w->error = SM_E_LIMIT;
        return NULL;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *nb = realloc(w->buf, cap);
        if (!nb) {
            w->error = SM_E_NOMEM;
            return NULL;
        }
        memset(nb + w->cap, 0, cap - w->cap);
        w->buf = nb;
        w->cap = cap;
    }
    uint8_t *p = w->buf + w->len;
    w->len += n;
    return p;
}

void snap_begin_section(struct snap_writer *w, uint32_t type, uint32_t index)
{
    uint8_t *h = reserve(w, SNAP_SECTION_HEADER);
    if (!h)
        return;
    wr32(h, type);
    wr32(h + 4, index);
    wr64(h + 8, 0);
    w->open_section = (size_t)(h - w->buf);
}

void snap_put(struct snap_writer *w, const void *data, size_t len)
{
    uint8_t *p = reserve(w, len);
    if (p)
        memcpy(p, data, len);
}

void snap_end_section(struct snap_writer *w)
{
    if (w->error || !w->open_section)
        return;
    uint64_t payload = w->len - w->open_section - SNAP_SECTION_HEADER;
    if (payload > SNAP_MAX_SECTION) {
        w->error = SM_E_LIMIT;
        return;
    }
    wr64(w->buf + w->open_section + 8, payload);
    size_t pad = (8 - (w->len % 8)) % 8;
    reserve(w, pad);
    w->open_section = 0;
    w->nsections++;
}

sm_code snap_finish(struct snap_writer *w, sm_error *err)
{
    snap_begin_section(w, SNAP_SEC_END, 0);
    snap_end_section(w);
    if (w->error)
        return error_set(err, w->error, "cannot build the snapshot state: %s", sm_strerror(w->error));
    uint8_t *h = w->buf;
    memcpy(h, SNAP_MAGIC, 8);
    wr32(h + 8, SNAP_VERSION);
    wr32(h + 12, SNAP_HEADER_SIZE);
    wr32(h + 16, w->nsections);
    wr32(h + 20, (uint32_t)w->len);
    wr32(h + 24, crc32_of(w->buf + SNAP_HEADER_SIZE, w->len - SNAP_HEADER_SIZE));
    wr32(h + 28, crc32_of(h, 28));
    return SM_OK;
}

/* --- reading ------------------------------------------------------------------ */

sm_code snap_read_file(const char *path, uint8_t **out, size_t *len, sm_error *err)
{
    struct stat st;
    int fd = file_open_read(path, false, false, &st);
    if (fd < 0 && (errno == ELOOP || errno == EINVAL))
        return error_set(err, SM_E_INVALID, "%s is not a snapshot state file (%s)", path,
                         errno == ELOOP ? "a symbolic link" : "not a regular file");
    if (fd < 0)
        return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno, "cannot open %s", path);
    if (st.st_size > SNAP_MAX_FILE) {
        close(fd);
        return error_set(err, SM_E_INVALID, "%s is not a snapshot state file (over %u MiB)", path,
                       SNAP_MAX_FILE >> 20);
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != (size_t)st.st_size) {
        free(buf);
        return error_set(err, SM_E_IO, "cannot read %s", path);
    }
    *out = buf;
    *len = got;
    return SM_OK;
}

sm_code snap_reader_open(struct snap_reader *r, const uint8_t *buf, size_t len, sm_error *err)
{
    memset(r, 0, sizeof *r);
    if (len < SNAP_HEADER_SIZE || memcmp(buf, SNAP_MAGIC, 8) != 0)
        return error_set(err, SM_E_INVALID, "not a supermachine snapshot (no SMSNAP header)");
    uint32_t version = rd32(buf + 8);
    if (rd32(buf + 28) != crc32_of(buf, 28))
        return error_set(err, SM_E_INVALID, "snapshot header is corrupt (checksum mismatch)");
    if (version != SNAP_VERSION)
        return error_set(err, SM_E_INVALID,
                       "snapshot format version %u; this build reads version %u only (re-bake the image)", version,
                       SNAP_VERSION);
    uint32_t total = rd32(buf + 20);
    if (rd32(buf + 12) != SNAP_HEADER_SIZE || total > SNAP_MAX_FILE)
        return error_set(err, SM_E_INVALID, "snapshot header is malformed");
    if (total != len)
        return error_set(err, SM_E_INVALID, "snapshot state is truncated or padded: %zu bytes where the header says %u",
                       len, total);
    if (rd32(buf + 24) != crc32_of(buf + SNAP_HEADER_SIZE, len - SNAP_HEADER_SIZE))
        return error_set(err, SM_E_INVALID, "snapshot state is corrupt (checksum mismatch)");
    r->buf = buf;
    r->len = len;
    r->pos = SNAP_HEADER_SIZE;
    r->remaining = rd32(buf + 16);
    if (r->remaining == 0 || r->remaining > SNAP_MAX_SECTIONS)
        return error_set(err, SM_E_INVALID, "snapshot has %u sections", r->remaining);
    return SM_OK;
}

sm_code snap_next(struct snap_reader *r, struct snap_section *out, sm_error *err)
{
    if (r->remaining == 0 || r->len - r->pos < SNAP_SECTION_HEADER)
        return error_set(err, SM_E_INVALID, "snapshot ends before its END section");
    const uint8_t *h = r->buf + r->pos;
    uint64_t len = rd64(h + 8);
    size_t avail = r->len - r->pos - SNAP_SECTION_HEADER;
    if (len > SNAP_MAX_SECTION || len > avail)
        return error_set(err, SM_E_INVALID, "snapshot section %s is %llu bytes, beyond the file or the limit",
                       snap_section_name(rd32(h)), (unsigned long long)len);
    out->type = rd32(h);
    out->index = rd32(h + 4);
    out->data = h + SNAP_SECTION_HEADER;
    out->len = len;
    size_t padded = (size_t)((len + 7) & ~7ull);
    r->pos += SNAP_SECTION_HEADER + (padded <= avail ? padded : avail);
    r->remaining--;
    return SM_OK;
}

sm_code snap_expect(struct snap_reader *r, uint32_t type, uint32_t index, struct snap_section *out, sm_error *err)
{
    sm_code rc = snap_next(r, out, err);
    if (rc)
        return rc;
    if (out->type != type || out->index != index)
        return error_set(err, SM_E_INVALID, "snapshot sections are out of order: found %s %u where %s %u belongs",
                       snap_section_name(out->type), out->index, snap_section_name(type), index);
    return SM_OK;
}
