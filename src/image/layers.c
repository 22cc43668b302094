/*
 * OCI layer changesets -> one merged tar (OCI image spec, "Image Layer
 * Filesystem Changeset"). Layer i (1-based, bottom first) is applied onto
 * the tree left by layers 1..i-1, its entries in stream order:
 *
 *  | entry of layer i               | effect on the merged tree                                  |
 *  |--------------------------------|------------------------------------------------------------|
 *  | D/.wh.NAME (any type)          | deletes D/NAME and everything below it that came from       |
 *  |                                | layers below i; nothing if D/NAME is absent                |
 *  | D/.wh..wh..opq                 | deletes everything below D that came from layers below i;  |
 *  |                                | D stays (created as a folder if absent)                    |
 *  | D/.wh..wh.OTHER                | ignored (aufs bookkeeping such as .wh..wh.plnk)            |
 *  | .wh.X/... (a marker as folder) | error                                                      |
 *  | folder P over a folder P       | merge: the lower children stay, P takes the new metadata   |
 *  | folder P over a non-folder P   | replaces it                                                |
 *  | non-folder P over a folder P   | replaces it and deletes everything below it                |
 *  | non-folder over a non-folder   | replaces it (a file with other hard-linked names keeps     |
 *  |                                | them, and its data)                                        |
 *  | the same path twice in a layer | the later entry wins, as on extraction                     |
 *  | hard link P -> T               | P becomes one more name of the file at T as the tree is at |
 *  |                                | that point (T from layer i, earlier in the stream, or from |
 *  |                                | a lower layer). T absent (never added, or deleted by a     |
 *  |                                | whiteout) or a folder: error                               |
 *  | P whose parent folders are     | they are created: 0755, uid 0, gid 0, mtime 0              |
 *  | absent                         |                                                            |
 *  | P whose parent is a non-folder | error: a real extraction would write through a symlink    |
 *  | P with a ".." component        | error. Leading "/" and "./", "//" and "." are dropped      |
 *  | "." or "/" (the root)          | a folder: sets the root's metadata; anything else: error   |
 *  | socket                         | dropped (counted in layers_stats)                          |
 *  | any other unknown type         | error                                                      |
 *  | a layer that is not a tar, or  | error, naming the layer (and the last good entry); gzip,  |
 *  | a truncated or corrupt one     | zstd and plain tars only (no xz/bzip2: not OCI media types)|
 *
 * Whiteouts never appear in the output, and never hide what their own layer
 * adds, wherever they sit in its stream (the spec: they apply to lower layers
 * only); a lower folder that still holds entries of layer i stays.
 *
 * Kept per entry: type, permission bits (07777), uid and gid (numbers only),
 * mtime, symlink target (as is: absolute or relative, never followed, as
 * nothing is extracted on the host), device numbers, and xattrs in user.,
 * trusted. and security. (what squashfs stores; others are dropped and
 * counted). Not kept: user and group names, atime, ctime, ACLs, file flags.
 *
 * Why a merged tar and not extraction to a folder plus mksquashfs or
 * mkfs.erofs: extraction without root loses owners, device nodes and
 * trusted./security. xattrs, and bookworm's mkfs.erofs has no tar input. The
 * tar keeps everything, and tar2sqfs turns it into an image as any user.
 *
 * Design: two passes. Pass 1 reads every layer's headers (no data), bottom
 * first, and applies the table to an in-memory tree of paths. Each non-folder
 * names a "file" (an inode: the layer and entry number that carries its data,
 * shared by hard links). Pass 2 writes every folder from the tree
 * (parents first), then reads the layers again in order and copies the data
 * of each file that still has a name, under that name, then writes the other
 * names of multi-name files as hard links. The second read costs one more
 * decompression; in exchange duplicates within a layer (the later one wins),
 * hard links to files later replaced or deleted, and whiteouts anywhere in a
 * stream all come out right, and file data is only streamed, never held.
 * A plain (uncompressed) tar cut exactly at an entry boundary cannot be told
 * from a shorter one; the layer digests, checked before this, catch that.
 * Pass 1 also adds the entries' sizes up against the cap on unpacked bytes,
 * from their headers, before any of their data is decompressed.
 */
#include "image/layers.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "image/disk_space.h"

#define COMPONENT_MAX 255            /* bytes of one path component (NAME_MAX) */
#define XATTR_NAME_MAX_LEN 255       /* bytes of one xattr name */
#define XATTRS_MAX_COUNT 256         /* xattrs of one entry (each may be read twice, see entry_xattrs) */
#define READ_BLOCK (64 * 1024)
#define COPY_CHUNK (128 * 1024)
#define IMPLICIT_DIR_PERM 0755
#define SHOWN_PATH_MAX 160           /* bytes of a path quoted in an error */
#define NO_FILE SIZE_MAX

struct xattr {
    char *name;
    void *value;
    size_t size;
};

/* An xattr of the entry being read (pointers into libarchive's entry). */
struct xref {
    const char *name;
    const void *value;
    size_t size;
};

struct dir_meta {
    unsigned perm;
    uint32_t uid, gid;
    int64_t mtime;
    long mtime_nsec;
    size_t nxattrs;
    struct xattr *xattrs;
    size_t charged; /* bytes counted against LAYERS_MAX_METADATA */
};

/* One path of the merged tree. */
struct node {
    char *path; /* normalised; "" for the root */
    size_t len;
    uint64_t hash;
    struct node *hash_next;
    struct node *parent, *first_child, *last_child, *prev, *next;
    uint32_t origin;       /* layer (0-based) that last defined this path */
    bool is_dir;
    struct dir_meta *meta; /* folders: NULL means implicit (defaults) */
    size_t file;           /* non-folders: index into merge.files */
};

/* A non-folder's content: where its data is. Several names (hard links) may
 * share one; the tree walk before pass 2 finds the names still present. */
struct file {
    uint32_t layer;
    uint64_t ordinal;   /* entry number within the layer, from 0 */
    uint64_t path_hash; /* of the entry's own path, checked on the second read */
    unsigned type;      /* AE_IFREG, AE_IFLNK, ... */
    struct node *primary; /* pass 2: the name its data is written under */
};

struct layer_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct merge {
    const char *const *paths;
    size_t n;
    struct layer_id *ids;
    struct node **buckets;
    size_t nbuckets, nnodes;
    struct node *root;
    struct file *files;
    size_t nfiles, files_cap;
    struct node **links; /* names written as hard links at the end */
    size_t nlinks, links_cap;
    uint64_t entries_read, memory;
    uint64_t max_unpacked, unpacked; /* the cap on file data, and the data seen so far */
    uint64_t hash_key[2];
    struct xref xrefs[XATTRS_MAX_COUNT]; /* the current entry's xattrs, see entry_xattrs */
    struct layers_stats st;
    sm_error *err;
    size_t layer;          /* for messages: the layer being read */
    char last_entry[SHOWN_PATH_MAX + 8]; /* for messages: the entry being read */
};

/* The tar stream being written. */
struct out {
    struct archive *w;
    struct archive_entry *e;
    int fd;
    bool try_send;
    char *buf;
};

/* ---- messages ----------------------------------------------------------- */

/* Copies raw into out with control and non-ASCII bytes as \xNN, cut with "...". */
static void printable(const char *raw, size_t raw_len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < raw_len; i++) {
        unsigned char c = (unsigned char)raw[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need + 4 > cap) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (plain)
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o] = 0;
}

/* "layer 2 of 3 (sha256:0123abcd4567)": the digest when the file sits in a
 * blobs/<algorithm>/ folder, else the file name. */
static void layer_label(const struct merge *m, size_t k, char *buf, size_t cap)
{
    const char *path = m->paths[k];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *algo = "";
    size_t shown = 48;
    if (slash && slash > path) {
        const char *dir = slash - 1;
        while (dir > path && dir[-1] != '/')
            dir--;
        size_t dlen = (size_t)(slash - dir);
        if ((dlen == 6 && memcmp(dir, "sha256", 6) == 0) || (dlen == 6 && memcmp(dir, "sha512", 6) == 0)) {
            algo = dlen == 6 && dir[3] == '2' ? "sha256:" : "sha512:";
            shown = 12;
        }
    }
    size_t blen = strlen(base);
    char name[64];
    printable(base, blen < shown ? blen : shown, name, sizeof name);
    snprintf(buf, cap, "layer %zu of %zu (%s%s)", k + 1, m->n, algo, name);
}

/* Fails with "layer ... : entry 'x': <fmt>". */
static sm_code entry_fail(struct merge *m, sm_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sm_code entry_fail(struct merge *m, sm_code code, const char *fmt, ...)
{
    char label[128], detail[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    layer_label(m, m->layer, label, sizeof label);
    return error_set(m->err, code, "%s: entry '%s': %s", label, m->last_entry, detail);
}

static sm_code layer_fail(struct merge *m, sm_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sm_code layer_fail(struct merge *m, sm_code code, const char *fmt, ...)
{
    char label[128], detail[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    layer_label(m, m->layer, label, sizeof label);
    return error_set(m->err, code, "%s: %s", label, detail);
}

/* A read error from libarchive: a corrupt, truncated or unreadable layer. */
static sm_code read_fail(struct merge *m, struct archive *a)
{
    const char *why = archive_error_string(a);
    if (!why)
        why = "unreadable";
    if (m->last_entry[0])
        return layer_fail(m, SM_E_INVALID, "corrupt or truncated after entry '%s': %s", m->last_entry, why);
    return layer_fail(m, SM_E_INVALID, "corrupt or truncated (not a tar, or a bad gzip/zstd stream): %s", why);
}

static void remember_entry(struct merge *m, const char *raw)
{
    if (!raw)
        raw = "";
    size_t len = strnlen(raw, PATH_MAX + 1);
    printable(raw, len, m->last_entry, sizeof m->last_entry);
}

/* ---- paths --------------------------------------------------------------- */

/* Writes raw's canonical form to out (PATH_MAX bytes): components joined by
 * one '/', no leading "/" or "./", no "." components, no trailing '/'; the
 * root is "". Returns NULL, or why the path is refused. */
static const char *normalise_path(const char *raw, char *out, size_t *out_len)
{
    size_t o = 0;
    const char *p = raw;
    while (*p) {
        while (*p == '/')
            p++;
        const char *start = p;
        while (*p && *p != '/')
            p++;
        size_t clen = (size_t)(p - start);
        if (clen == 0 || (clen == 1 && start[0] == '.'))
            continue;
        if (clen == 2 && start[0] == '.' && start[1] == '.')
            return "a path that leaves the root ('..' component)";
        if (clen > COMPONENT_MAX)
            return "a path component longer than 255 bytes";
        if (o + (o ? 1 : 0) + clen >= PATH_MAX)
            return "a path longer than PATH_MAX";
        if (o)
            out[o++] = '/';
        memcpy(out + o, start, clen);
        o += clen;
    }
    out[o] = 0;
    *out_len = o;
    return NULL;
}

/* Length of path's parent (0 for a top-level name). */
static size_t parent_len(const char *path, size_t len)
{
    const char *slash = memrchr(path, '/', len);
    return slash ? (size_t)(slash - path) : 0;
}

/* SipHash-2-4 (Aumasson and Bernstein), keyed at random per flattening: the
 * paths are hostile, and a predictable hash would let a layer put every path
 * in one bucket of the table. */
#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sip_round(uint64_t v[4])
{
    v[0] += v[1]; v[1] = ROTL64(v[1], 13); v[1] ^= v[0]; v[0] = ROTL64(v[0], 32);
    v[2] += v[3]; v[3] = ROTL64(v[3], 16); v[3] ^= v[2];
    v[0] += v[3]; v[3] = ROTL64(v[3], 21); v[3] ^= v[0];
    v[2] += v[1]; v[1] = ROTL64(v[1], 17); v[1] ^= v[2]; v[2] = ROTL64(v[2], 32);
}

static uint64_t siphash24(const uint64_t key[2], const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    uint64_t v[4] = { key[0] ^ 0x736f6d6570736575ull, key[1] ^ 0x646f72616e646f6dull,
                      key[0] ^ 0x6c7967656e657261ull, key[1] ^ 0x7465646279746573ull };
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word = 0;
        for (int b = 0; b < 8; b++)
            word |= (uint64_t)p[i + b] << (8 * b);
        v[3] ^= word;
        sip_round(v);
        sip_round(v);
        v[0] ^= word;
    }
    uint64_t last = (uint64_t)len << 56;
    for (int b = 0; i + (size_t)b < len; b++)
        last |= (uint64_t)p[i + b] << (8 * b);
    v[3] ^= last;
    sip_round(v);
    sip_round(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for (int r = 0; r < 4; r++)
        sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static uint64_t path_hash(const struct merge *m, const char *path, size_t len)
{
    return siphash24(m->hash_key, path, len);
}

/* A key no layer can guess: getrandom, or failing that, bits of the time and
 * addresses (still unknown in advance). */
static void pick_hash_key(uint64_t key[2])
{
    if (getrandom(key, 2 * sizeof key[0], GRND_NONBLOCK) == (ssize_t)(2 * sizeof key[0]))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)key;
    key[1] = (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&ts;
}

/* ---- memory budget --------------------------------------------------------- */

static sm_code charge(struct merge *m, size_t bytes)
{
    if (bytes > LAYERS_MAX_METADATA - m->memory)
        return entry_fail(m, SM_E_LIMIT, "the merged tree needs more than %llu MiB of metadata (paths, xattrs)",
                          (unsigned long long)(LAYERS_MAX_METADATA >> 20));
    m->memory += bytes;
    return SM_OK;
}

static void uncharge(struct merge *m, size_t bytes)
{
    m->memory -= bytes < m->memory ? bytes : m->memory;
}

/* ---- the tree ---------------------------------------------------------------- */

static struct node *lookup(const struct merge *m, const char *path, size_t len)
{
    uint64_t h = path_hash(m, path, len);
    for (struct node *n = m->buckets[h & (m->nbuckets - 1)]; n; n = n->hash_next)
        if (n->hash == h && n->len == len && memcmp(n->path, path, len) == 0)
            return n;
    return NULL;
}

static sm_code grow_table(struct merge *m)
{
    size_t nb = m->nbuckets * 2;
    sm_code rc = charge(m, nb * sizeof(struct node *));
    if (rc != SM_OK)
        return rc;
    struct node **b = calloc(nb, sizeof *b);
    if (!b)
        return error_set(m->err, SM_E_NOMEM, "flattening layers: out of memory for %zu paths", m->nnodes);
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (struct node *n = m->buckets[i], *next; n; n = next) {
            next = n->hash_next;
            n->hash_next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    }
    uncharge(m, m->nbuckets * sizeof(struct node *));
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
    return SM_OK;
}

static void dir_meta_free(struct merge *m, struct dir_meta *meta)
{
    if (!meta)
        return;
    for (size_t i = 0; i < meta->nxattrs; i++) {
        free(meta->xattrs[i].name);
        free(meta->xattrs[i].value);
    }
    free(meta->xattrs);
    uncharge(m, meta->charged);
    free(meta);
}

/* Adds path (absent so far) below parent. */
static sm_code node_new(struct merge *m, const char *path, size_t len, struct node *parent, bool is_dir,
                        uint32_t origin, struct node **out)
{
    sm_code rc = m->nnodes + 1 > m->nbuckets ? grow_table(m) : SM_OK;
    if (rc == SM_OK)
        rc = charge(m, sizeof(struct node) + len + 1);
    if (rc != SM_OK)
        return rc;
    struct node *n = calloc(1, sizeof *n);
    char *copy = malloc(len + 1);
    if (!n || !copy) {
        free(n);
        free(copy);
        uncharge(m, sizeof(struct node) + len + 1);
        return error_set(m->err, SM_E_NOMEM, "flattening layers: out of memory for %zu paths", m->nnodes);
    }
    memcpy(copy, path, len);
    copy[len] = 0;
    n->path = copy;
    n->len = len;
    n->hash = path_hash(m, path, len);
    n->is_dir = is_dir;
    n->origin = origin;
    n->file = NO_FILE;
    size_t slot = n->hash & (m->nbuckets - 1);
    n->hash_next = m->buckets[slot];
    m->buckets[slot] = n;
    m->nnodes++;
    n->parent = parent;
    if (parent) {
        n->prev = parent->last_child;
        if (parent->last_child)
            parent->last_child->next = n;
        else
            parent->first_child = n;
        parent->last_child = n;
    }
    *out = n;
    return SM_OK;
}

/* A non-folder losing its path (its file may keep other names). */
static void drop_file(struct node *n)
{
    n->file = NO_FILE;
}

/* Removes a node that has no children. */
static void node_delete(struct merge *m, struct node *n)
{
    struct node *parent = n->parent;
    if (n->prev)
        n->prev->next = n->next;
    else if (parent)
        parent->first_child = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else if (parent)
        parent->last_child = n->prev;
    struct node **link = &m->buckets[n->hash & (m->nbuckets - 1)];
    while (*link != n)
        link = &(*link)->hash_next;
    *link = n->hash_next;
    m->nnodes--;
    drop_file(n);
    dir_meta_free(m, n->meta);
    uncharge(m, sizeof(struct node) + n->len + 1);
    free(n->path);
    free(n);
}

/* The first node of top's subtree in post-order (children before parents). */
static struct node *postorder_first(struct node *n)
{
    while (n->first_child)
        n = n->first_child;
    return n;
}

/* Deletes what top's subtree got from layers below `layer` (all of it for
 * UINT32_MAX); folders still holding newer entries stay. Iterative: paths can
 * be 2000 levels deep. */
static void remove_lower(struct merge *m, struct node *top, uint32_t layer)
{
    struct node *cur = postorder_first(top);
    for (;;) {
        struct node *succ = NULL;
        if (cur != top)
            succ = cur->next ? postorder_first(cur->next) : cur->parent;
        if (cur->origin < layer && !cur->first_child)
            node_delete(m, cur);
        if (!succ)
            return;
        cur = succ;
    }
}

static void remove_children(struct merge *m, struct node *dir, uint32_t layer)
{
    for (struct node *c = dir->first_child, *next; c; c = next) {
        next = c->next;
        remove_lower(m, c, layer);
    }
}

/* Finds (creating absent folders) the parent folder of path. */
static sm_code ensure_parent(struct merge *m, uint32_t layer, const char *path, size_t len, struct node **out)
{
    size_t end = parent_len(path, len);
    size_t have = end;
    struct node *found = NULL;
    while (have > 0 && !(found = lookup(m, path, have)))
        have = parent_len(path, have);
    if (!found)
        found = m->root;
    if (!found->is_dir) {
        char shown[SHOWN_PATH_MAX + 8];
        printable(found->path, found->len, shown, sizeof shown);
        return entry_fail(m, SM_E_INVALID,
                          "its parent '%s' is not a folder in the merged tree (a %s from layer %u): "
                          "refused, a real extraction would write through it",
                          shown, m->files[found->file].type == AE_IFLNK ? "symlink" : "non-folder",
                          (unsigned)found->origin + 1);
    }
    while (have < end) {
        const char *slash = memchr(path + have + (have ? 1 : 0), '/', end - have - (have ? 1 : 0));
        size_t next = slash ? (size_t)(slash - path) : end;
        sm_code rc = node_new(m, path, next, found, true, layer, &found);
        if (rc != SM_OK)
            return rc;
        have = next;
    }
    *out = found;
    return SM_OK;
}

static sm_code new_file(struct merge *m, uint32_t layer, uint64_t ordinal, uint64_t hash, unsigned type, size_t *idx)
{
    if (m->nfiles == m->files_cap) {
        size_t cap = m->files_cap ? m->files_cap * 2 : 1024;
        sm_code rc = charge(m, (cap - m->files_cap) * sizeof(struct file));
        if (rc != SM_OK)
            return rc;
        struct file *f = realloc(m->files, cap * sizeof *f);
        if (!f)
            return error_set(m->err, SM_E_NOMEM, "flattening layers: out of memory for %zu files", m->nfiles);
        m->files = f;
        m->files_cap = cap;
    }
    m->files[m->nfiles] = (struct file){ .layer = layer, .ordinal = ordinal, .path_hash = hash, .type = type };
    *idx = m->nfiles++;
    return SM_OK;
}

/* Points path (node, or absent) at file idx, replacing what was there. */
static sm_code put_file(struct merge *m, uint32_t layer, struct node *parent, struct node *node, const char *path,
                        size_t len, size_t idx)
{
    if (!node) {
        sm_code rc = node_new(m, path, len, parent, false, layer, &node);
        if (rc != SM_OK)
            return rc;
    } else if (node->is_dir) {
        remove_children(m, node, UINT32_MAX);
        dir_meta_free(m, node->meta);
        node->meta = NULL;
        node->is_dir = false;
    }
    node->file = idx;
    node->origin = layer;
    return SM_OK;
}

/* ---- entry metadata --------------------------------------------------------- */

static bool xattr_kept(const char *name)
{
    return strncmp(name, "user.", 5) == 0 || strncmp(name, "trusted.", 8) == 0 ||
           strncmp(name, "security.", 9) == 0;
}

/* Refuses metadata squashfs or the kernel cannot hold. */
static sm_code check_metadata(struct merge *m, struct archive_entry *e, unsigned type)
{
    if (archive_entry_uid(e) < 0 || archive_entry_uid(e) > UINT32_MAX || archive_entry_gid(e) < 0 ||
        archive_entry_gid(e) > UINT32_MAX)
        return entry_fail(m, SM_E_INVALID, "uid %lld or gid %lld out of range", (long long)archive_entry_uid(e),
                          (long long)archive_entry_gid(e));
    if (type == AE_IFLNK) {
        const char *target = archive_entry_symlink(e);
        if (!target || !target[0])
            return entry_fail(m, SM_E_INVALID, "a symlink without a target");
        if (strnlen(target, PATH_MAX) >= PATH_MAX)
            return entry_fail(m, SM_E_INVALID, "a symlink target longer than PATH_MAX");
    }
    if (type == AE_IFREG && archive_entry_size(e) < 0)
        return entry_fail(m, SM_E_INVALID, "a negative size");
    size_t count = 0, total = 0;
    const char *name;
    const void *value;
    size_t size;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        size_t nlen = name ? strnlen(name, XATTR_NAME_MAX_LEN + 1) : 0;
        if (nlen == 0 || nlen > XATTR_NAME_MAX_LEN)
            return entry_fail(m, SM_E_INVALID, "an xattr name that is empty or longer than 255 bytes");
        if (size > LAYERS_MAX_XATTR_VALUE) {
            char shown[64];
            printable(name, nlen, shown, sizeof shown);
            return entry_fail(m, SM_E_LIMIT, "xattr '%s' holds %zu bytes (at most %u)", shown, size,
                              LAYERS_MAX_XATTR_VALUE);
        }
        total += nlen + size;
        if (++count > XATTRS_MAX_COUNT || total > LAYERS_MAX_XATTRS_TOTAL)
            return entry_fail(m, SM_E_LIMIT, "more than %d xattrs or %u bytes of them", XATTRS_MAX_COUNT,
                              LAYERS_MAX_XATTRS_TOTAL);
    }
    return SM_OK;
}

/* Fills m->xrefs with e's xattrs (checked already: at most XATTRS_MAX_COUNT),
 * each name once. libarchive reads an xattr twice when a pax header has it
 * both as LIBARCHIVE.xattr and SCHILY.xattr, as its own writer puts it; the
 * first one counts. */
static size_t entry_xattrs(struct merge *m, struct archive_entry *e)
{
    size_t n = 0;
    struct xref x;
    archive_entry_xattr_reset(e);
    while (n < XATTRS_MAX_COUNT && archive_entry_xattr_next(e, &x.name, &x.value, &x.size) == ARCHIVE_OK) {
        bool seen = false;
        for (size_t i = 0; i < n && !seen; i++)
            seen = strcmp(m->xrefs[i].name, x.name) == 0;
        if (!seen)
            m->xrefs[n++] = x;
    }
    return n;
}

/* A folder's metadata, copied from its entry (xattrs checked already). */
static sm_code dir_meta_from(struct merge *m, struct archive_entry *e, struct dir_meta **out)
{
    size_t count = entry_xattrs(m, e), charged = sizeof(struct dir_meta);
    for (size_t i = 0; i < count; i++)
        charged += sizeof(struct xattr) + strlen(m->xrefs[i].name) + 1 + m->xrefs[i].size;
    sm_code rc = charge(m, charged);
    if (rc != SM_OK)
        return rc;
    struct dir_meta *meta = calloc(1, sizeof *meta);
    if (!meta || (count && !(meta->xattrs = calloc(count, sizeof *meta->xattrs)))) {
        free(meta);
        uncharge(m, charged);
        return error_set(m->err, SM_E_NOMEM, "flattening layers: out of memory");
    }
    meta->charged = charged;
    meta->perm = archive_entry_perm(e) & 07777;
    meta->uid = (uint32_t)archive_entry_uid(e);
    meta->gid = (uint32_t)archive_entry_gid(e);
    if (archive_entry_mtime_is_set(e)) {
        meta->mtime = archive_entry_mtime(e);
        meta->mtime_nsec = archive_entry_mtime_nsec(e);
    }
    for (size_t i = 0; i < count; i++) {
        const struct xref *from = &m->xrefs[i];
        struct xattr *x = &meta->xattrs[meta->nxattrs++];
        x->name = strdup(from->name);
        x->value = malloc(from->size ? from->size : 1);
        x->size = from->size;
        if (!x->name || !x->value) {
            dir_meta_free(m, meta);
            return error_set(m->err, SM_E_NOMEM, "flattening layers: out of memory");
        }
        memcpy(x->value, from->value, from->size);
    }
    *out = meta;
    return SM_OK;
}

static sm_code set_dir(struct merge *m, uint32_t layer, struct node *n, struct archive_entry *e)
{
    struct dir_meta *meta = NULL;
    sm_code rc = dir_meta_from(m, e, &meta);
    if (rc != SM_OK)
        return rc;
    if (!n->is_dir) {
        drop_file(n);
        n->is_dir = true;
    }
    dir_meta_free(m, n->meta);
    n->meta = meta;
    n->origin = layer;
    return SM_OK;
}

/* ---- pass 1: the tree ---------------------------------------------------------- */

static sm_code apply_whiteout(struct merge *m, uint32_t layer, const char *path, size_t len, size_t base_at)
{
    const char *base = path + base_at;
    if (strcmp(base, ".wh..wh..opq") == 0) {
        m->st.whiteouts++;
        struct node *dir;
        sm_code rc = ensure_parent(m, layer, path, len, &dir);
        if (rc == SM_OK)
            remove_children(m, dir, layer);
        return rc;
    }
    if (strncmp(base, ".wh..wh.", 8) == 0)
        return SM_OK;
    m->st.whiteouts++;
    const char *name = base + 4;
    if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return entry_fail(m, SM_E_INVALID, "a whiteout without a valid name");
    /* D/.wh.NAME -> D/NAME: the same path without the 4-byte marker. */
    char target[PATH_MAX];
    memcpy(target, path, base_at);
    memcpy(target + base_at, name, len - base_at - 4);
    struct node *victim = lookup(m, target, len - 4);
    if (victim)
        remove_lower(m, victim, layer);
    return SM_OK;
}

static sm_code apply_hardlink(struct merge *m, uint32_t layer, const char *path, size_t len, const char *raw_target)
{
    char target[PATH_MAX];
    size_t tlen;
    const char *why = normalise_path(raw_target, target, &tlen);
    if (why)
        return entry_fail(m, SM_E_INVALID, "a hard link to %s", why);
    struct node *t = tlen ? lookup(m, target, tlen) : m->root;
    char shown[SHOWN_PATH_MAX + 8];
    printable(target, tlen, shown, sizeof shown);
    if (!t)
        return entry_fail(m, SM_E_INVALID,
                          "a hard link to '%s', which is not in the merged tree at this point "
                          "(never added, or deleted by a whiteout)",
                          shown);
    if (t->is_dir)
        return entry_fail(m, SM_E_INVALID, "a hard link to the folder '%s'", shown);
    if (len == 0)
        return entry_fail(m, SM_E_INVALID, "a hard link as the root folder");
    struct node *parent;
    sm_code rc = ensure_parent(m, layer, path, len, &parent);
    if (rc != SM_OK)
        return rc;
    struct node *node = lookup(m, path, len);
    if (node == t)
        return SM_OK;
    return put_file(m, layer, parent, node, path, len, t->file);
}

/* Does a folder part of path (its first `folders` bytes) start with ".wh."?
 * Such a folder would reach the output, where no whiteout name may appear. */
static bool marker_in_folders(const char *path, size_t folders)
{
    for (size_t i = 0; i + 4 <= folders; i++)
        if ((i == 0 || path[i - 1] == '/') && memcmp(path + i, ".wh.", 4) == 0)
            return true;
    return false;
}

static sm_code apply_entry(struct merge *m, uint32_t layer, uint64_t ordinal, struct archive_entry *e)
{
    const char *raw = archive_entry_pathname(e);
    if (!raw)
        return entry_fail(m, SM_E_INVALID, "an entry without a name");
    char path[PATH_MAX];
    size_t len;
    const char *why = normalise_path(raw, path, &len);
    if (why)
        return entry_fail(m, SM_E_INVALID, "%s", why);
    size_t base_at = len ? parent_len(path, len) : 0;
    if (base_at)
        base_at++;
    if (marker_in_folders(path, base_at))
        return entry_fail(m, SM_E_INVALID, "a whiteout name used as a folder");
    if (strncmp(path + base_at, ".wh.", 4) == 0)
        return apply_whiteout(m, layer, path, len, base_at);
    const char *hardlink = archive_entry_hardlink(e);
    if (hardlink)
        return apply_hardlink(m, layer, path, len, hardlink);

    unsigned type = archive_entry_filetype(e);
    switch (type) {
    case AE_IFSOCK:
        m->st.sockets_dropped++;
        return SM_OK;
    case AE_IFREG: case AE_IFDIR: case AE_IFLNK: case AE_IFCHR: case AE_IFBLK: case AE_IFIFO:
        break;
    default:
        return entry_fail(m, SM_E_INVALID, "an entry of unknown type 0%o", type);
    }
    sm_code rc = check_metadata(m, e, type);
    if (rc != SM_OK)
        return rc;
    if (len == 0) {
        if (type != AE_IFDIR)
            return entry_fail(m, SM_E_INVALID, "the root is not a folder");
        return set_dir(m, layer, m->root, e);
    }
    struct node *parent;
    rc = ensure_parent(m, layer, path, len, &parent);
    if (rc != SM_OK)
        return rc;
    struct node *node = lookup(m, path, len);
    if (type == AE_IFDIR) {
        if (!node && (rc = node_new(m, path, len, parent, true, layer, &node)) != SM_OK)
            return rc;
        return set_dir(m, layer, node, e);
    }
    size_t idx = NO_FILE;
    rc = new_file(m, layer, ordinal, path_hash(m, path, len), type, &idx);
    if (rc != SM_OK)
        return rc;
    return put_file(m, layer, parent, node, path, len, idx);
}

/* ---- reading layers ----------------------------------------------------------------- */

/* Opens layer k for reading (again: for pass 2, and it must be the same file). */
static sm_code open_layer(struct merge *m, size_t k, bool again, struct archive **out, int *out_fd)
{
    const char *path = m->paths[k];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return layer_fail(m, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, "cannot open %s: %s", path,
                          strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return layer_fail(m, SM_E_INVALID, "%s is not a regular file", path);
    }
    struct layer_id id = { sb.st_dev, sb.st_ino, sb.st_size, sb.st_mtim };
    if (!again) {
        m->ids[k] = id;
    } else if (memcmp(&m->ids[k], &id, sizeof id) != 0) {
        close(fd);
        return layer_fail(m, SM_E_INVALID, "%s changed while the layers were being flattened", path);
    }
    struct archive *a = archive_read_new();
    if (!a) {
        close(fd);
        return error_set(m->err, SM_E_NOMEM, "flattening layers: out of memory");
    }
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_empty(a);
    if (archive_read_open_fd(a, fd, READ_BLOCK) != ARCHIVE_OK) {
        m->last_entry[0] = 0;
        sm_code rc = read_fail(m, a);
        archive_read_free(a);
        close(fd);
        return rc;
    }
    *out = a;
    *out_fd = fd; /* archive_read_open_fd does not close it */
    return SM_OK;
}

/* Frees a reader made by open_layer, closing its file. */
static void close_layer(struct archive *a, int fd)
{
    archive_read_free(a);
    close(fd);
}

/* Counts an entry's data against the cap, from its header: libarchive
 * decompresses an entry's data only when it is read or skipped, after
 * this, so a bomb is refused before it costs anything. */
static sm_code count_unpacked(struct merge *m, struct archive_entry *e)
{
    int64_t size = archive_entry_size(e);
    if (size <= 0)
        return SM_OK;
    if ((uint64_t)size <= m->max_unpacked - m->unpacked) {
        m->unpacked += (uint64_t)size;
        return SM_OK;
    }
    char cap[SIZE_TEXT_MAX];
    size_text_exact(m->max_unpacked, cap);
    return entry_fail(m, SM_E_LIMIT,
                      "the layers unpack to more than %s, the cap on an image's unpacked bytes: "
                      "%llu bytes of files before this one, and it has %lld",
                      cap, (unsigned long long)m->unpacked, (long long)size);
}

/* Pass 1 over layer k. */
static sm_code scan_layer(struct merge *m, size_t k)
{
    m->layer = k;
    m->last_entry[0] = 0;
    struct archive *a;
    int fd;
    sm_code rc = open_layer(m, k, false, &a, &fd);
    if (rc != SM_OK)
        return rc;
    for (uint64_t ordinal = 0;; ordinal++) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            rc = read_fail(m, a);
            break;
        }
        if (++m->entries_read > LAYERS_MAX_ENTRIES) {
            rc = layer_fail(m, SM_E_LIMIT, "more than %u entries in the layers together", LAYERS_MAX_ENTRIES);
            break;
        }
        remember_entry(m, archive_entry_pathname(e));
        rc = count_unpacked(m, e);
        if (rc == SM_OK)
            rc = apply_entry(m, (uint32_t)k, ordinal, e);
        if (rc != SM_OK)
            break;
    }
    close_layer(a, fd);
    return rc;
}

/* ---- pass 2: the merged tar ------------------------------------------------------------ */

/* libarchive's write callback: all of buf to the output. On a socket, send
 * with MSG_NOSIGNAL, so that a reader going away is an error, not SIGPIPE. */
static la_ssize_t sink_write(struct archive *w, void *ctx, const void *buf, size_t len)
{
    struct out *o = ctx;
    size_t done = 0;
    while (done < len) {
        const char *at = (const char *)buf + done;
        ssize_t got;
        if (o->try_send) {
            got = send(o->fd, at, len - done, MSG_NOSIGNAL);
            if (got < 0 && errno == ENOTSOCK) {
                o->try_send = false;
                continue;
            }
        } else {
            got = write(o->fd, at, len - done);
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            int e = got < 0 ? errno : EIO;
            archive_set_error(w, e, "%s", strerror(e));
            return -1;
        }
        done += (size_t)got;
    }
    return (la_ssize_t)len;
}

static sm_code write_fail(struct merge *m, struct out *o)
{
    const char *why = archive_error_string(o->w);
    return error_set(m->err, SM_E_IO, "writing the merged tar: %s", why ? why : "failed");
}

static sm_code out_open(struct merge *m, struct out *o, int fd)
{
    o->fd = fd;
    o->try_send = true;
    o->w = archive_write_new();
    o->e = archive_entry_new();
    o->buf = malloc(COPY_CHUNK);
    if (!o->w || !o->e || !o->buf)
        return error_set(m->err, SM_E_NOMEM, "flattening layers: out of memory");
    /* pax: xattrs, long names, big ids. hdrcharset=BINARY: names are bytes,
     * written as they came, whatever this process's locale. */
    if (archive_write_set_format_pax_restricted(o->w) != ARCHIVE_OK ||
        archive_write_set_options(o->w, "hdrcharset=BINARY") != ARCHIVE_OK ||
        archive_write_open(o->w, o, NULL, sink_write, NULL) != ARCHIVE_OK)
        return write_fail(m, o);
    return SM_OK;
}

static void out_free(struct out *o)
{
    if (o->w)
        archive_write_free(o->w);
    if (o->e)
        archive_entry_free(o->e);
    free(o->buf);
}

static void add_xattr(struct merge *m, struct archive_entry *e, const char *name, const void *value, size_t size)
{
    if (xattr_kept(name))
        archive_entry_xattr_add_entry(e, name, value, size);
    else
        m->st.xattrs_dropped++;
}

static sm_code write_header(struct merge *m, struct out *o)
{
    if (archive_write_header(o->w, o->e) < ARCHIVE_WARN)
        return write_fail(m, o);
    m->st.entries++;
    return SM_OK;
}

static sm_code write_dir(struct merge *m, struct out *o, const struct node *n)
{
    struct archive_entry *e = archive_entry_clear(o->e);
    const struct dir_meta *meta = n->meta;
    archive_entry_set_pathname(e, n->len ? n->path : "./");
    archive_entry_set_filetype(e, AE_IFDIR);
    archive_entry_set_perm(e, meta ? meta->perm : IMPLICIT_DIR_PERM);
    archive_entry_set_uid(e, meta ? meta->uid : 0);
    archive_entry_set_gid(e, meta ? meta->gid : 0);
    archive_entry_set_mtime(e, meta ? meta->mtime : 0, meta ? meta->mtime_nsec : 0);
    for (size_t i = 0; meta && i < meta->nxattrs; i++)
        add_xattr(m, e, meta->xattrs[i].name, meta->xattrs[i].value, meta->xattrs[i].size);
    return write_header(m, o);
}

/* Copies a file's entry (metadata we keep, and data) from a layer to the output as `name`. */
static sm_code write_file(struct merge *m, struct out *o, struct archive *a, struct archive_entry *in,
                          const struct node *name)
{
    struct archive_entry *e = archive_entry_clear(o->e);
    unsigned type = archive_entry_filetype(in);
    archive_entry_set_pathname(e, name->path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, archive_entry_perm(in) & 07777);
    archive_entry_set_uid(e, archive_entry_uid(in));
    archive_entry_set_gid(e, archive_entry_gid(in));
    if (archive_entry_mtime_is_set(in))
        archive_entry_set_mtime(e, archive_entry_mtime(in), archive_entry_mtime_nsec(in));
    else
        archive_entry_set_mtime(e, 0, 0);
    if (type == AE_IFREG)
        archive_entry_set_size(e, archive_entry_size(in));
    else if (type == AE_IFLNK)
        archive_entry_set_symlink(e, archive_entry_symlink(in));
    else if (type == AE_IFCHR || type == AE_IFBLK)
        archive_entry_set_rdev(e, archive_entry_rdev(in));
    size_t nx = entry_xattrs(m, in);
    for (size_t i = 0; i < nx; i++)
        add_xattr(m, e, m->xrefs[i].name, m->xrefs[i].value, m->xrefs[i].size);
    sm_code rc = write_header(m, o);
    if (rc != SM_OK || type != AE_IFREG)
        return rc;

    int64_t want = archive_entry_size(in), done = 0;
    /* Pass 1 counted every size, so this holds unless a layer changed in
     * between without open_layer noticing (same inode, size and mtime). */
    if (want > 0 && (uint64_t)want > m->max_unpacked - m->st.bytes)
        return entry_fail(m, SM_E_LIMIT, "more data than the cap on unpacked bytes (the layer changed?)");
    for (;;) {
        la_ssize_t got = archive_read_data(a, o->buf, COPY_CHUNK);
        if (got < 0)
            return read_fail(m, a);
        if (got == 0)
            break;
        if (archive_write_data(o->w, o->buf, (size_t)got) != got)
            return write_fail(m, o);
        done += got;
    }
    if (done != want)
        return entry_fail(m, SM_E_INVALID, "%lld bytes of data where the header says %lld", (long long)done,
                          (long long)want);
    m->st.bytes += (uint64_t)done;
    return SM_OK;
}

/* Is the entry at this position the one pass 1 saw there? */
static bool same_entry(const struct merge *m, const struct file *f, struct archive_entry *e)
{
    const char *raw = archive_entry_pathname(e);
    char path[PATH_MAX];
    size_t len;
    if (!raw || normalise_path(raw, path, &len) || archive_entry_hardlink(e))
        return false;
    return path_hash(m, path, len) == f->path_hash && archive_entry_filetype(e) == f->type;
}

/* The next file from *cursor on that still has a name. */
static size_t next_live_file(const struct merge *m, size_t c)
{
    while (c < m->nfiles && !m->files[c].primary)
        c++;
    return c;
}

/* Pass 2 over layer k: the data of its files that won. */
static sm_code copy_layer(struct merge *m, struct out *o, size_t k, size_t *cursor)
{
    size_t c = next_live_file(m, *cursor);
    *cursor = c;
    if (c == m->nfiles || m->files[c].layer != k)
        return SM_OK;
    m->layer = k;
    m->last_entry[0] = 0;
    struct archive *a;
    int fd;
    sm_code rc = open_layer(m, k, true, &a, &fd);
    if (rc != SM_OK)
        return rc;
    for (uint64_t ordinal = 0;; ordinal++) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) {
            rc = layer_fail(m, SM_E_INVALID, "changed while being read: it ends before entry %llu",
                            (unsigned long long)m->files[c].ordinal + 1);
            break;
        }
        if (r < ARCHIVE_WARN) {
            rc = read_fail(m, a);
            break;
        }
        if (ordinal != m->files[c].ordinal)
            continue;
        remember_entry(m, archive_entry_pathname(e));
        if (!same_entry(m, &m->files[c], e)) {
            rc = entry_fail(m, SM_E_INVALID, "the layer changed while being read");
            break;
        }
        rc = write_file(m, o, a, e, m->files[c].primary);
        if (rc != SM_OK)
            break;
        c = next_live_file(m, c + 1);
        if (c == m->nfiles || m->files[c].layer != k)
            break;
    }
    close_layer(a, fd);
    *cursor = c;
    return rc;
}

static sm_code push_link(struct merge *m, struct node *n)
{
    if (m->nlinks == m->links_cap) {
        size_t cap = m->links_cap ? m->links_cap * 2 : 256;
        sm_code rc = charge(m, (cap - m->links_cap) * sizeof(struct node *));
        if (rc != SM_OK)
            return rc;
        struct node **l = realloc(m->links, cap * sizeof *l);
        if (!l)
            return error_set(m->err, SM_E_NOMEM, "flattening layers: out of memory");
        m->links = l;
        m->links_cap = cap;
    }
    m->links[m->nlinks++] = n;
    return SM_OK;
}

/* The next node of the tree in pre-order (parents before children). */
static struct node *preorder_next(struct node *n)
{
    if (n->first_child)
        return n->first_child;
    while (n && !n->next)
        n = n->parent;
    return n ? n->next : NULL;
}

/* Writes every folder, and picks the name each file's data goes under (the
 * first in tree order); its other names become hard links. */
static sm_code write_dirs_pick_names(struct merge *m, struct out *o)
{
    for (struct node *n = m->root; n; n = preorder_next(n)) {
        sm_code rc;
        if (n->is_dir) {
            rc = write_dir(m, o, n);
        } else if (!m->files[n->file].primary) {
            m->files[n->file].primary = n;
            rc = SM_OK;
        } else {
            rc = push_link(m, n);
        }
        if (rc != SM_OK)
            return rc;
    }
    return SM_OK;
}

static sm_code write_links(struct merge *m, struct out *o)
{
    for (size_t i = 0; i < m->nlinks; i++) {
        struct archive_entry *e = archive_entry_clear(o->e);
        archive_entry_set_pathname(e, m->links[i]->path);
        archive_entry_set_hardlink(e, m->files[m->links[i]->file].primary->path);
        sm_code rc = write_header(m, o);
        if (rc != SM_OK)
            return rc;
    }
    return SM_OK;
}

static sm_code write_tree(struct merge *m, int out_fd)
{
    struct out o = { 0 };
    sm_code rc = out_open(m, &o, out_fd);
    if (rc == SM_OK)
        rc = write_dirs_pick_names(m, &o);
    size_t cursor = 0;
    for (size_t k = 0; rc == SM_OK && k < m->n; k++)
        rc = copy_layer(m, &o, k, &cursor);
    if (rc == SM_OK)
        rc = write_links(m, &o);
    if (rc == SM_OK && archive_write_close(o.w) != ARCHIVE_OK)
        rc = write_fail(m, &o);
    out_free(&o);
    return rc;
}

/* ---- the whole ---------------------------------------------------------------------- */

static void merge_free(struct merge *m)
{
    for (size_t i = 0; m->buckets && i < m->nbuckets; i++) {
        for (struct node *n = m->buckets[i], *next; n; n = next) {
            next = n->hash_next;
            dir_meta_free(m, n->meta);
            free(n->path);
            free(n);
        }
    }
    free(m->buckets);
    free(m->files);
    free(m->links);
    free(m->ids);
}

static sm_code merge_init(struct merge *m, const char *const *paths, size_t n, uint64_t max_unpacked,
                          sm_error *err)
{
    *m = (struct merge){ .paths = paths, .n = n, .err = err, .nbuckets = 1024, .max_unpacked = max_unpacked };
    pick_hash_key(m->hash_key);
    m->ids = calloc(n ? n : 1, sizeof *m->ids);
    m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
    if (!m->ids || !m->buckets)
        return error_set(err, SM_E_NOMEM, "flattening layers: out of memory");
    m->memory = m->nbuckets * sizeof *m->buckets;
    return node_new(m, "", 0, NULL, true, 0, &m->root);
}

sm_code layers_flatten(const char *const *layer_paths, size_t n, int out_fd, uint64_t max_unpacked,
                       struct layers_stats *st, sm_error *err)
{
    if ((n && !layer_paths) || out_fd < 0)
        return error_set(err, SM_E_INVALID, "layers_flatten: no layer list or no output file");
    if (n > LAYERS_MAX_LAYERS)
        return error_set(err, SM_E_LIMIT, "an image of %zu layers (at most %u)", n, LAYERS_MAX_LAYERS);
    for (size_t i = 0; i < n; i++)
        if (!layer_paths[i])
            return error_set(err, SM_E_INVALID, "layers_flatten: layer %zu has no path", i + 1);
    struct merge m;
    sm_code rc = merge_init(&m, layer_paths, n, max_unpacked, err);
    for (size_t k = 0; rc == SM_OK && k < n; k++)
        rc = scan_layer(&m, k);
    if (rc == SM_OK)
        rc = write_tree(&m, out_fd);
    if (rc == SM_OK && st)
        *st = m.st;
    merge_free(&m);
    return rc;
}
