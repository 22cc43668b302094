/*
 * fetch_docker_archive: an image from a `docker save` tar (maybe compressed),
 * docker-archive:PATH, read with libarchive:
 *
 *   manifest.json   [{"Config": "<file>", "RepoTags": [...], "Layers": ["<file>", ...]}]
 *                   (exactly one image)
 *   <file>s         the config JSON and the layer tars, regular files or
 *                   symlinks to other entries (duplicate layers)
 *
 * The layers are (usually uncompressed) tars stored under their own sha256;
 * when the config lists rootfs.diff_ids, an uncompressed layer's digest must
 * equal its diff_id. Read in two passes, as a tar can only be read forward:
 * (1) manifest.json, symlinks, small *.json files (the config is
 * "<hex>.json" and comes before manifest.json) and every file's size; (2)
 * the config and layers into the store, skipping layers whose diff_id is
 * stored. Between the two, the layers' sizes (their tar headers') are
 * checked against the cap on compressed bytes and the store's free space;
 * pass 2 counts them again, in case the tar changed in between.
 */
#include "image/fetch_source.h"

#include "image/blob_store.h"
#include "image/oci_config.h"
#include "image/oci_manifest.h"
#include "base/error.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARCHIVE_MAX_LINKS 100000
#define ARCHIVE_PATH_MAX 1024
#define ARCHIVE_CHUNK (256u << 10)
#define ARCHIVE_JSON_KEEP (16u << 20) /* *.json bytes kept from the first pass */
#define ARCHIVE_JSON_FILES 64
/* Regular files whose sizes pass 1 keeps: a `docker save` tar holds about
 * three a layer (VERSION, json, layer.tar; or blobs), so this is above what
 * OCI_MAX_LAYERS layers need, and bounds the lookups of the sizes. */
#define ARCHIVE_MAX_FILES 16384

struct archive_link {
    char *name;   /* normalized entry name */
    char *target; /* normalized path it points to */
};

struct small_file {
    char *name;
    char *data;
    size_t len;
};

struct file_size {
    char *name; /* normalized entry name */
    uint64_t size;
};

struct docker_archive {
    const char *path;
    char *manifest_json;
    size_t manifest_len;
    struct archive_link *links;
    size_t nlinks;
    char *config_path;   /* resolved through links */
    char **layer_paths;  /* resolved through links */
    size_t nlayers;
    char config_digest[OCI_DIGEST_SIZE];
    struct oci_layer *layers; /* digest "" until found */
    struct small_file *jsons; /* "*.json" files kept from pass 1 (the config among them) */
    size_t njsons, json_bytes;
    struct oci_config config; /* parsed when the config was among them */
    bool have_config;
    struct file_size *sizes;  /* every regular file of pass 1 */
    size_t nsizes;
    uint64_t layer_bytes;     /* pass 2: bytes of layers read so far */
};

/* Normalizes base + "/" + rel into out: no ".", "..", "//" or leading "/";
 * false when it leaves the archive's root or does not fit. */
static bool normalize_path(const char *base, const char *rel, char *out, size_t cap)
{
    char tmp[2 * ARCHIVE_PATH_MAX + 2];
    if (rel[0] == '/')
        return false;
    int w = snprintf(tmp, sizeof tmp, "%s%s%s", base, base[0] ? "/" : "", rel);
    if (w < 0 || (size_t)w >= sizeof tmp)
        return false;
    size_t n = 0;
    char *save = NULL;
    out[0] = '\0';
    for (char *part = strtok_r(tmp, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (strcmp(part, ".") == 0)
            continue;
        if (strcmp(part, "..") == 0) {
            if (n == 0)
                return false;
            char *slash = strrchr(out, '/');
            n = slash ? (size_t)(slash - out) : 0;
            out[n] = '\0';
            continue;
        }
        size_t plen = strlen(part);
        if (n + (n ? 1 : 0) + plen + 1 > cap)
            return false;
        if (n)
            out[n++] = '/';
        memcpy(out + n, part, plen + 1);
        n += plen;
    }
    return n > 0;
}

static sm_code archive_open_file(const char *path, struct archive **out, sm_error *err)
{
    struct archive *a = archive_read_new();
    if (!a)
        return error_set(err, SM_E_NOMEM, "out of memory");
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, path, 64 << 10) != ARCHIVE_OK) {
        sm_code rc = error_set(err, SM_E_IO, "docker-archive:%s: %s", path, archive_error_string(a));
        archive_read_free(a);
        return rc;
    }
    *out = a;
    return SM_OK;
}

static sm_code archive_fail(struct archive *a, const char *path, sm_error *err)
{
    const char *why = archive_error_string(a);
    return error_set(err, SM_E_PROTOCOL, "docker-archive:%s: cannot read the tar: %s", path,
                   why ? why : "unknown error");
}

static sm_code read_entry_bounded(struct archive *a, struct archive_entry *e, size_t max,
                                  const char *path, char **buf, size_t *len, sm_error *err)
{
    int64_t size = archive_entry_size(e);
    if (size < 0 || (uint64_t)size > max)
        return error_set(err, SM_E_LIMIT, "docker-archive:%s: %s is larger than %zu bytes", path,
                       archive_entry_pathname(e), max);
    *buf = malloc((size_t)size + 1);
    if (!*buf)
        return error_set(err, SM_E_NOMEM, "out of memory");
    size_t got = 0;
    while (got < (size_t)size) {
        la_ssize_t r = archive_read_data(a, *buf + got, (size_t)size - got);
        if (r <= 0) {
            free(*buf);
            *buf = NULL;
            return r < 0 ? archive_fail(a, path, err)
                         : error_set(err, SM_E_PROTOCOL, "docker-archive:%s: %s is cut short", path,
                                   archive_entry_pathname(e));
        }
        got += (size_t)r;
    }
    (*buf)[got] = '\0';
    *len = got;
    return SM_OK;
}

static sm_code remember_link(struct docker_archive *d, const char *name, const char *target,
                             sm_error *err)
{
    if (d->nlinks >= ARCHIVE_MAX_LINKS)
        return error_set(err, SM_E_LIMIT, "docker-archive:%s: more than %d symlinks", d->path,
                       ARCHIVE_MAX_LINKS);
    char dir[ARCHIVE_PATH_MAX], resolved[ARCHIVE_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", name);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        dir[0] = '\0';
    if (!normalize_path(dir, target, resolved, sizeof resolved))
        return SM_OK; /* points out of the archive: never a blob we use */
    if (d->nlinks % 64 == 0) {
        struct archive_link *grown = realloc(d->links, (d->nlinks + 64) * sizeof *grown);
        if (!grown)
            return error_set(err, SM_E_NOMEM, "out of memory");
        d->links = grown;
    }
    struct archive_link *l = &d->links[d->nlinks];
    l->name = strdup(name);
    l->target = strdup(resolved);
    if (!l->name || !l->target) {
        free(l->name);
        free(l->target);
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    d->nlinks++;
    return SM_OK;
}

/* Notes a regular file's size for the checks before pass 2. */
static sm_code remember_size(struct docker_archive *d, const char *name, int64_t size,
                             sm_error *err)
{
    if (d->nsizes >= ARCHIVE_MAX_FILES)
        return error_set(err, SM_E_LIMIT, "docker-archive:%s: more than %d files", d->path,
                         ARCHIVE_MAX_FILES);
    if (d->nsizes % 64 == 0) {
        struct file_size *grown = realloc(d->sizes, (d->nsizes + 64) * sizeof *grown);
        if (!grown)
            return error_set(err, SM_E_NOMEM, "out of memory");
        d->sizes = grown;
    }
    struct file_size *f = &d->sizes[d->nsizes];
    if (!(f->name = strdup(name)))
        return error_set(err, SM_E_NOMEM, "out of memory");
    f->size = size > 0 ? (uint64_t)size : 0;
    d->nsizes++;
    return SM_OK;
}

/* Keeps a small "*.json" file: the config of a legacy `docker save` tar is
 * "<hex>.json", written before manifest.json names it. With it in hand,
 * layers already in the store need not be copied again (pass 2). */
static sm_code maybe_keep_json(struct docker_archive *d, struct archive *a,
                               struct archive_entry *e, const char *name, sm_error *err)
{
    size_t n = strlen(name);
    int64_t size = archive_entry_size(e);
    if (n < 5 || strcmp(name + n - 5, ".json") != 0 || size < 0 || size > OCI_JSON_MAX ||
        d->json_bytes + (uint64_t)size > ARCHIVE_JSON_KEEP || d->njsons == ARCHIVE_JSON_FILES)
        return SM_OK;
    if (d->njsons == 0 && !(d->jsons = calloc(ARCHIVE_JSON_FILES, sizeof *d->jsons)))
        return error_set(err, SM_E_NOMEM, "out of memory");
    struct small_file *f = &d->jsons[d->njsons];
    if (!(f->name = strdup(name)))
        return error_set(err, SM_E_NOMEM, "out of memory");
    d->njsons++;
    sm_code rc = read_entry_bounded(a, e, OCI_JSON_MAX, d->path, &f->data, &f->len, err);
    d->json_bytes += f->len;
    return rc;
}

/* Pass 1: manifest.json, the symlinks and small *.json files. */
static sm_code archive_scan(struct docker_archive *d, sm_error *err)
{
    struct archive *a;
    sm_code rc = archive_open_file(d->path, &a, err);
    if (rc)
        return rc;
    struct archive_entry *e;
    int r;
    while (!rc && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        char name[ARCHIVE_PATH_MAX];
        const char *raw = archive_entry_pathname(e);
        if (!raw || !normalize_path("", raw, name, sizeof name))
            continue;
        if (strcmp(name, "manifest.json") == 0 && archive_entry_filetype(e) == AE_IFREG) {
            free(d->manifest_json);
            rc = read_entry_bounded(a, e, OCI_JSON_MAX, d->path, &d->manifest_json,
                                    &d->manifest_len, err);
        } else if (archive_entry_filetype(e) == AE_IFLNK && archive_entry_symlink(e)) {
            rc = remember_link(d, name, archive_entry_symlink(e), err);
        } else if (archive_entry_filetype(e) == AE_IFREG) {
            rc = remember_size(d, name, archive_entry_size(e), err);
            if (!rc)
                rc = maybe_keep_json(d, a, e, name, err);
        }
    }
    if (!rc && r != ARCHIVE_EOF)
        rc = archive_fail(a, d->path, err);
    archive_read_free(a);
    if (!rc && !d->manifest_json)
        rc = error_set(err, SM_E_PROTOCOL,
                     "docker-archive:%s has no manifest.json (is it a `docker save` tar?)",
                     d->path);
    return rc;
}

/* A path from manifest.json, normalized and followed through symlinks. */
static sm_code resolve_archive_path(const struct docker_archive *d, const char *raw, char **out,
                                    sm_error *err)
{
    char cur[ARCHIVE_PATH_MAX];
    if (!normalize_path("", raw, cur, sizeof cur))
        return error_set(err, SM_E_PROTOCOL, "docker-archive:%s: bad path \"%.100s\" in manifest.json",
                       d->path, raw);
    for (int hops = 0; hops < 8; hops++) {
        size_t i = 0;
        while (i < d->nlinks && strcmp(d->links[i].name, cur) != 0)
            i++;
        if (i == d->nlinks) {
            *out = strdup(cur);
            return *out ? SM_OK : error_set(err, SM_E_NOMEM, "out of memory");
        }
        snprintf(cur, sizeof cur, "%s", d->links[i].target);
    }
    return error_set(err, SM_E_PROTOCOL, "docker-archive:%s: symlinks loop at \"%.100s\"", d->path,
                   raw);
}

static sm_code parse_archive_manifest(struct docker_archive *d, sm_error *err)
{
    struct json_object *root, *img, *layers;
    sm_code rc = oci_json_parse(d->manifest_json, d->manifest_len, OCI_JSON_MAX,
                                "the archive's manifest.json", &root, err);
    if (rc)
        return rc;
    bool bad = false;
    const char *config = NULL;
    size_t n = 0;
    if (!json_object_is_type(root, json_type_array) || json_object_array_length(root) != 1)
        rc = error_set(err, SM_E_UNSUPPORTED,
                     "docker-archive:%s: manifest.json must list exactly one image (save one "
                     "image per archive)",
                     d->path);
    else if (!(img = json_object_array_get_idx(root, 0)) ||
             !(config = oci_json_string(img, "Config", ARCHIVE_PATH_MAX - 1, &bad)) ||
             !json_object_object_get_ex(img, "Layers", &layers) ||
             !json_object_is_type(layers, json_type_array))
        rc = error_set(err, SM_E_PROTOCOL,
                     "docker-archive:%s: manifest.json has no Config string and Layers array",
                     d->path);
    else if ((n = json_object_array_length(layers)) > OCI_MAX_LAYERS)
        rc = error_set(err, SM_E_LIMIT, "docker-archive:%s: more than %d layers", d->path,
                     OCI_MAX_LAYERS);
    if (!rc)
        rc = resolve_archive_path(d, config, &d->config_path, err);
    if (!rc) {
        d->layer_paths = calloc(n ? n : 1, sizeof *d->layer_paths);
        d->layers = calloc(n ? n : 1, sizeof *d->layers);
        if (!d->layer_paths || !d->layers)
            rc = error_set(err, SM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; !rc && i < n; i++) {
        struct json_object *item = json_object_array_get_idx(layers, i);
        if (!item || !json_object_is_type(item, json_type_string) ||
            (size_t)json_object_get_string_len(item) >= ARCHIVE_PATH_MAX)
            rc = error_set(err, SM_E_PROTOCOL, "docker-archive:%s: layer %zu in manifest.json is "
                                             "not a path", d->path, i + 1);
        else
            rc = resolve_archive_path(d, json_object_get_string(item), &d->layer_paths[i], err);
        if (!rc)
            d->nlayers = i + 1;
    }
    json_object_put(root);
    return rc;
}

/* The digest a path names: "blobs/sha256/<hex>" or "<hex>.json" ("" if none). */
static void digest_from_name(const char *path, char out[OCI_DIGEST_SIZE])
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char cand[OCI_DIGEST_SIZE + 8];
    out[0] = '\0';
    size_t n = strlen(base);
    if (n == OCI_DIGEST_HEX_LEN + 5 && strcmp(base + OCI_DIGEST_HEX_LEN, ".json") == 0)
        n = OCI_DIGEST_HEX_LEN;
    if (n != OCI_DIGEST_HEX_LEN)
        return;
    snprintf(cand, sizeof cand, "sha256:%.64s", base);
    if (oci_digest_valid(cand))
        memcpy(out, cand, OCI_DIGEST_SIZE);
}

/* The current entry's data into w. A .partial left by an earlier try is
 * started over: the entry is read from its first byte. */
static sm_code copy_entry_data(struct docker_archive *d, struct archive *a, struct blob_writer *w,
                               const char *name, uint64_t esize,
                               const struct oci_fetch_options *opt, sm_error *err)
{
    sm_code rc = w->written ? blob_writer_restart(w, err) : SM_OK;
    char *buf = rc ? NULL : malloc(ARCHIVE_CHUNK);
    if (!rc && !buf)
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    while (!rc) {
        la_ssize_t r = archive_read_data(a, buf, ARCHIVE_CHUNK);
        if (r < 0)
            rc = archive_fail(a, d->path, err);
        if (r <= 0)
            break;
        rc = blob_writer_write(w, buf, (size_t)r, err);
        if (!rc)
            fetch_report(opt, name, w->written, esize);
    }
    free(buf);
    return rc;
}

/* Streams the current entry into the store; *digest gets its digest. */
static sm_code archive_entry_to_store(struct docker_archive *d, struct archive *a,
                                      struct archive_entry *e, const char *name,
                                      const struct oci_fetch_options *opt,
                                      char digest[OCI_DIGEST_SIZE], uint64_t *size,
                                      uint64_t *copied, sm_error *err)
{
    char known[OCI_DIGEST_SIZE], what[ARCHIVE_PATH_MAX + 64];
    digest_from_name(name, known);
    int64_t esize = archive_entry_size(e);
    if (esize < 0 || (uint64_t)esize > OCI_MAX_LAYER_SIZE)
        return error_set(err, SM_E_LIMIT, "docker-archive:%s: %s is too large", d->path, name);
    snprintf(what, sizeof what, "docker-archive:%s: %s", d->path, name);
    struct blob_writer w;
    bool present;
    sm_code rc = blob_writer_open(opt->store_dir, known, (uint64_t)esize, what, &w, &present, err);
    if (rc)
        return rc;
    *size = (uint64_t)esize;
    if (present) {
        memcpy(digest, known, OCI_DIGEST_SIZE);
        return SM_OK;
    }
    rc = copy_entry_data(d, a, &w, name, (uint64_t)esize, opt, err);
    if (rc) {
        blob_writer_discard(&w);
        return rc;
    }
    *copied += w.written;
    rc = blob_writer_commit(&w, err);
    if (!rc)
        memcpy(digest, w.digest, OCI_DIGEST_SIZE);
    return rc;
}

/* The config, when pass 1 kept it: into the store (checked against the
 * digest its name gives), and parsed for its diff_ids. */
static sm_code preload_config(struct docker_archive *d, const struct oci_fetch_options *opt,
                              uint64_t *copied, sm_error *err)
{
    const struct small_file *f = NULL;
    for (size_t i = 0; i < d->njsons && !f; i++)
        if (strcmp(d->jsons[i].name, d->config_path) == 0)
            f = &d->jsons[i];
    if (!f || !f->data)
        return SM_OK;
    char digest[OCI_DIGEST_SIZE], named[OCI_DIGEST_SIZE], what[ARCHIVE_PATH_MAX + 64];
    sm_code rc = oci_sha256_buffer(f->data, f->len, digest, err);
    if (rc)
        return rc;
    digest_from_name(f->name, named);
    snprintf(what, sizeof what, "docker-archive:%s: %s", d->path, f->name);
    if (named[0] && strcmp(named, digest) != 0)
        return error_set(err, SM_E_PROTOCOL, "%s is corrupt: its name is not its digest", what);
    if (!blob_store_has(opt->store_dir, digest, f->len))
        *copied += f->len;
    rc = blob_store_put_buffer(opt->store_dir, digest, f->data, f->len, what, err);
    if (!rc)
        rc = oci_config_parse(f->data, f->len, &d->config, err);
    if (!rc) {
        d->have_config = true;
        memcpy(d->config_digest, digest, OCI_DIGEST_SIZE);
    }
    return rc;
}

/* Is the layer file `name` (of size bytes) already stored? An uncompressed
 * layer's digest is its diff_id, which the (verified) config lists. */
static bool layer_in_store(const struct docker_archive *d, const struct oci_fetch_options *opt,
                           const char *name, int64_t size, char digest[OCI_DIGEST_SIZE])
{
    const char *diff_id = NULL;
    if (!d->have_config || size < 0)
        return false;
    for (size_t i = 0; i < d->nlayers; i++) {
        if (strcmp(name, d->layer_paths[i]) != 0)
            continue;
        if (i >= d->config.ndiff_ids || (diff_id && strcmp(diff_id, d->config.diff_ids[i]) != 0))
            return false;
        diff_id = d->config.diff_ids[i];
    }
    if (!diff_id || !blob_store_has(opt->store_dir, diff_id, (uint64_t)size))
        return false;
    memcpy(digest, diff_id, OCI_DIGEST_SIZE);
    return true;
}

static bool is_layer_path(const struct docker_archive *d, const char *name)
{
    for (size_t i = 0; i < d->nlayers; i++)
        if (strcmp(name, d->layer_paths[i]) == 0)
            return true;
    return false;
}

/* Notes where a stored file's blob is: the config, and every layer that is
 * this file (manifest.json may list one file twice). */
static void record_blob(struct docker_archive *d, const char *name, bool is_config,
                        const char digest[OCI_DIGEST_SIZE], uint64_t size)
{
    if (is_config)
        memcpy(d->config_digest, digest, OCI_DIGEST_SIZE);
    for (size_t i = 0; i < d->nlayers; i++) {
        if (strcmp(name, d->layer_paths[i]) == 0) {
            memcpy(d->layers[i].digest, digest, OCI_DIGEST_SIZE);
            d->layers[i].size = size;
        }
    }
}

/* A layer file of esize bytes is about to be read in pass 2: within the
 * cap? (Pass 1 checked the sizes; the tar may have changed since.) */
static sm_code count_layer_bytes(struct docker_archive *d, const struct oci_fetch_options *opt,
                                 int64_t esize, sm_error *err)
{
    uint64_t size = esize > 0 ? (uint64_t)esize : 0;
    uint64_t total = size > UINT64_MAX - d->layer_bytes ? UINT64_MAX : d->layer_bytes + size;
    sm_code rc = fetch_check_cap(opt, total, err);
    if (rc)
        error_prefix(err, "docker-archive:%s", d->path);
    else
        d->layer_bytes = total;
    return rc;
}

/* One entry of pass 2: stored when it is the config (unless pass 1 stored
 * it) or a layer not in the store yet; other entries are skipped. */
static sm_code copy_entry(struct docker_archive *d, struct archive *a, struct archive_entry *e,
                          const struct oci_fetch_options *opt, uint64_t *copied, sm_error *err)
{
    char name[ARCHIVE_PATH_MAX], digest[OCI_DIGEST_SIZE];
    const char *raw = archive_entry_pathname(e);
    if (archive_entry_filetype(e) != AE_IFREG || !raw ||
        !normalize_path("", raw, name, sizeof name))
        return SM_OK;
    bool is_config = !d->have_config && strcmp(name, d->config_path) == 0;
    if (!is_config && !is_layer_path(d, name))
        return SM_OK;
    uint64_t size = (uint64_t)archive_entry_size(e);
    if (is_config || !layer_in_store(d, opt, name, archive_entry_size(e), digest)) {
        sm_code rc = is_config ? SM_OK : count_layer_bytes(d, opt, archive_entry_size(e), err);
        if (!rc)
            rc = archive_entry_to_store(d, a, e, name, opt, digest, &size, copied, err);
        if (rc)
            return rc;
    }
    record_blob(d, name, is_config, digest, size);
    return SM_OK;
}

/* After pass 2: manifest.json named no file the tar lacks. */
static sm_code check_all_found(const struct docker_archive *d, sm_error *err)
{
    if (!d->config_digest[0])
        return error_set(err, SM_E_PROTOCOL, "docker-archive:%s has no file %s (its Config)",
                         d->path, d->config_path);
    for (size_t i = 0; i < d->nlayers; i++)
        if (!d->layers[i].digest[0])
            return error_set(err, SM_E_PROTOCOL, "docker-archive:%s has no file %s (layer %zu)",
                             d->path, d->layer_paths[i], i + 1);
    return SM_OK;
}

/* Pass 2: the config and the layers into the store. */
static sm_code archive_copy_blobs(struct docker_archive *d, const struct oci_fetch_options *opt,
                                  uint64_t *copied, sm_error *err)
{
    struct archive *a;
    sm_code rc = archive_open_file(d->path, &a, err);
    if (rc)
        return rc;
    struct archive_entry *e;
    int r;
    while (!rc && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK)
        rc = copy_entry(d, a, e, opt, copied, err);
    if (!rc && r != ARCHIVE_EOF)
        rc = archive_fail(a, d->path, err);
    archive_read_free(a);
    return rc ? rc : check_all_found(d, err);
}

/* The compression of a stored layer, by its first bytes. */
static sm_code sniff_layer_type(const struct oci_fetch_options *opt, struct oci_layer *l,
                                sm_error *err)
{
    char *path = blob_store_path(opt->store_dir, l->digest);
    if (!path)
        return error_set(err, SM_E_NOMEM, "out of memory");
    unsigned char magic[4] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, magic, sizeof magic) : -1;
    int e = errno;
    if (fd >= 0)
        close(fd);
    sm_code rc = n < 0 ? error_set_errno(err, SM_E_IO, e, "cannot read %s", path) : SM_OK;
    free(path);
    if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b)
        strcpy(l->media_type, OCI_MT_LAYER_GZIP);
    else if (n == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd)
        strcpy(l->media_type, OCI_MT_LAYER_ZSTD);
    else
        strcpy(l->media_type, OCI_MT_LAYER_TAR);
    return rc;
}

/* An uncompressed layer's digest is its diff_id: check it when listed. */
static sm_code check_diff_ids(const struct docker_archive *d, const struct oci_fetch_options *opt,
                              sm_error *err)
{
    char *json = NULL;
    size_t len;
    struct oci_config cfg;
    sm_code rc = blob_store_read(opt->store_dir, d->config_digest, OCI_JSON_MAX, &json, &len, err);
    if (!rc)
        rc = oci_config_parse(json, len, &cfg, err);
    free(json);
    if (rc)
        return rc;
    for (size_t i = 0; i < d->nlayers && i < cfg.ndiff_ids && !rc; i++) {
        if (strcmp(d->layers[i].media_type, OCI_MT_LAYER_TAR) == 0 &&
            strcmp(d->layers[i].digest, cfg.diff_ids[i]) != 0) {
            char name[64];
            fetch_blob_name("layer", d->layers[i].digest, name, sizeof name);
            rc = error_set(err, SM_E_PROTOCOL,
                         "%s (layer %zu, %s) is corrupt: it is not the layer the config lists "
                         "(diff_id %s)",
                         name, i + 1, d->layer_paths[i], cfg.diff_ids[i]);
        }
    }
    oci_config_free(&cfg);
    return rc;
}

/* The size pass 1 saw for a (resolved) path; 0 when it saw no such file
 * (pass 2 then says which is missing). */
static uint64_t size_of(const struct docker_archive *d, const char *name)
{
    for (size_t i = d->nsizes; i > 0; i--) /* the last entry of a name wins, as in pass 2 */
        if (strcmp(d->sizes[i - 1].name, name) == 0)
            return d->sizes[i - 1].size;
    return 0;
}

static bool layer_listed_before(const struct docker_archive *d, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(d->layer_paths[j], d->layer_paths[i]) == 0)
            return true;
    return false;
}

/* Before pass 2: the layers' sizes added up within the cap, and room in
 * the store for those it does not hold yet. */
static sm_code archive_preflight(const struct docker_archive *d,
                                 const struct oci_fetch_options *opt, sm_error *err)
{
    uint64_t total = 0, need = 0;
    for (size_t i = 0; i < d->nlayers; i++) {
        uint64_t size = size_of(d, d->layer_paths[i]);
        char digest[OCI_DIGEST_SIZE];
        /* A tar entry's size is below 2^63 and there are at most
         * OCI_MAX_LAYERS: saturate rather than wrap all the same. */
        total = size > UINT64_MAX - total ? UINT64_MAX : total + size;
        if (!layer_listed_before(d, i) &&
            !layer_in_store(d, opt, d->layer_paths[i], (int64_t)size, digest))
            need = size > UINT64_MAX - need ? UINT64_MAX : need + size;
    }
    sm_code rc = fetch_check_cap(opt, total, err);
    if (!rc)
        rc = fetch_check_room(opt, need, err);
    if (rc)
        error_prefix(err, "docker-archive:%s", d->path);
    return rc;
}

static void docker_archive_free(struct docker_archive *d)
{
    free(d->manifest_json);
    for (size_t i = 0; i < d->nlinks; i++) {
        free(d->links[i].name);
        free(d->links[i].target);
    }
    free(d->links);
    free(d->config_path);
    for (size_t i = 0; d->layer_paths && i < d->nlayers; i++)
        free(d->layer_paths[i]);
    free(d->layer_paths);
    free(d->layers);
    for (size_t i = 0; i < d->njsons; i++) {
        free(d->jsons[i].name);
        free(d->jsons[i].data);
    }
    free(d->jsons);
    oci_config_free(&d->config);
    for (size_t i = 0; i < d->nsizes; i++)
        free(d->sizes[i].name);
    free(d->sizes);
}

/* The two passes, and the checks of what they stored. */
static sm_code import_archive(struct docker_archive *d, const struct oci_fetch_options *opt,
                              uint64_t *copied, sm_error *err)
{
    sm_code rc = archive_scan(d, err);
    if (!rc)
        rc = parse_archive_manifest(d, err);
    if (!rc)
        rc = preload_config(d, opt, copied, err);
    if (!rc)
        rc = archive_preflight(d, opt, err);
    if (!rc)
        rc = archive_copy_blobs(d, opt, copied, err);
    for (size_t i = 0; !rc && i < d->nlayers; i++)
        rc = sniff_layer_type(opt, &d->layers[i], err);
    if (!rc)
        rc = check_diff_ids(d, opt, err);
    return rc;
}

sm_code fetch_docker_archive(const char *path, const struct oci_fetch_options *opt,
                             struct oci_fetched *out, sm_error *err)
{
    struct docker_archive d = {.path = path};
    char *abs = realpath(path, NULL);
    if (!abs)
        return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno,
                               "docker-archive:%s", path);
    sm_code rc = import_archive(&d, opt, &out->downloaded, err);
    if (!rc)
        rc = fetch_finish(opt, d.config_digest, d.layers, d.nlayers, out, err);
    /* A docker save archive has no registry manifest (its manifest.json is
     * Docker's own, not content-addressed): the config's digest, which
     * names the image (its "image ID"), stands in for it. */
    if (!rc)
        memcpy(out->manifest_digest, d.config_digest, OCI_DIGEST_SIZE);
    if (!rc && asprintf(&out->canonical_ref, "docker-archive:%s", abs) < 0) {
        out->canonical_ref = NULL;
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    }
    docker_archive_free(&d);
    free(abs);
    return rc;
}
