/*
 * fetch_oci_layout: an image from an OCI image layout folder, oci:PATH[:TAG].
 *
 *   PATH/oci-layout          {"imageLayoutVersion": ...}: says it is a layout
 *   PATH/index.json          an index; TAG picks the entry whose ref.name
 *                            annotation is TAG, else the linux/amd64 one
 *   PATH/blobs/sha256/<hex>  the manifests, the config and the layers
 *
 * Manifests are read whole and verified; the config and the layers are
 * copied into the store, verified while copied, once the layers' sizes
 * (the manifest's) are known to be within the cap on compressed bytes and
 * to fit in the store. A layer file longer than its descriptor is refused
 * at its first byte past it.
 */
#include "image/fetch_source.h"

#include "image/blob_store.h"
#include "image/oci_manifest.h"
#include "image/reference.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LAYOUT_FILE_MAX 4096 /* oci-layout */

struct layout {
    char *dir; /* the layout folder, absolute */
    char tag[OCI_REF_TAG_MAX + 1];
};

/* Reads the rest of fd into buf (size bytes expected, NUL added). */
static sm_code read_exactly(int fd, const char *path, char *buf, size_t size, sm_error *err)
{
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return error_set_errno(err, SM_E_IO, r < 0 ? errno : EIO, "cannot read %s", path);
        got += (size_t)r;
    }
    buf[got] = '\0';
    return SM_OK;
}

/* A regular file of at most max bytes, whole, NUL-terminated. */
static sm_code read_small_file(const char *path, size_t max, char **buf, size_t *len,
                               sm_error *err)
{
    *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno,
                               "cannot open %s", path);
    struct stat st;
    sm_code rc = SM_OK;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        rc = error_set(err, SM_E_INVALID, "%s is not a regular file", path);
    else if ((uint64_t)st.st_size > max)
        rc = error_set(err, SM_E_LIMIT, "%s is %lld bytes, more than the limit of %zu", path,
                       (long long)st.st_size, max);
    else if (!(*buf = malloc((size_t)st.st_size + 1)))
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    if (!rc)
        rc = read_exactly(fd, path, *buf, (size_t)st.st_size, err);
    close(fd);
    if (rc) {
        free(*buf);
        *buf = NULL;
        return rc;
    }
    *len = (size_t)st.st_size;
    return SM_OK;
}

static char *layout_blob_path(const struct layout *l, const char *digest)
{
    char *p = NULL;
    if (asprintf(&p, "%s/blobs/sha256/%s", l->dir, oci_digest_hex(digest)) < 0)
        return NULL;
    return p;
}

/* A small blob of the layout (a manifest or index), verified. */
static sm_code layout_read_blob(const struct layout *l, const struct oci_descriptor *d,
                                char **buf, size_t *len, sm_error *err)
{
    if (d->size > OCI_JSON_MAX)
        return error_set(err, SM_E_LIMIT, "manifest %s is %llu bytes, more than %u", d->digest,
                         (unsigned long long)d->size, OCI_JSON_MAX);
    char *path = layout_blob_path(l, d->digest);
    if (!path)
        return error_set(err, SM_E_NOMEM, "out of memory");
    sm_code rc = read_small_file(path, OCI_JSON_MAX, buf, len, err);
    free(path);
    char got[OCI_DIGEST_SIZE], name[64];
    if (!rc)
        rc = fetch_verify_manifest(*buf, *len, d->digest, got, err);
    if (!rc && *len != d->size) {
        fetch_blob_name("manifest", d->digest, name, sizeof name);
        rc = error_set(err, SM_E_PROTOCOL, "%s is corrupt: %zu bytes where the index says %llu",
                       name, *len, (unsigned long long)d->size);
    }
    if (rc) {
        free(*buf);
        *buf = NULL;
    }
    return rc;
}

/* PATH/oci-layout exists and names an imageLayoutVersion. */
static sm_code layout_check(const struct layout *l, sm_error *err)
{
    char *path = NULL, *buf = NULL;
    size_t len;
    struct json_object *root = NULL;
    if (asprintf(&path, "%s/oci-layout", l->dir) < 0)
        return error_set(err, SM_E_NOMEM, "out of memory");
    sm_code rc = read_small_file(path, LAYOUT_FILE_MAX, &buf, &len, err);
    if (rc == SM_E_NOTFOUND)
        rc = error_set(err, SM_E_NOTFOUND,
                       "%s is not an OCI image layout (it has no oci-layout file)", l->dir);
    if (!rc)
        rc = oci_json_parse(buf, len, LAYOUT_FILE_MAX, path, &root, err);
    bool bad = false;
    if (!rc && !oci_json_string(root, "imageLayoutVersion", 64, &bad))
        rc = error_set(err, SM_E_PROTOCOL, "%s has no imageLayoutVersion", path);
    json_object_put(root);
    free(buf);
    free(path);
    return rc;
}

/* PATH/index.json, which must be an index. */
static sm_code layout_read_index(const struct layout *l, struct oci_manifest *m, sm_error *err)
{
    char *path = NULL, *buf = NULL;
    size_t len;
    if (asprintf(&path, "%s/index.json", l->dir) < 0)
        return error_set(err, SM_E_NOMEM, "out of memory");
    sm_code rc = read_small_file(path, OCI_JSON_MAX, &buf, &len, err);
    if (!rc)
        rc = oci_manifest_parse(buf, len, OCI_MT_OCI_INDEX, m, err);
    if (!rc && m->kind != OCI_KIND_INDEX)
        rc = error_set(err, SM_E_PROTOCOL, "%s is not an image index", path);
    free(buf);
    free(path);
    return rc;
}

/* The manifest (or index) a descriptor names: read, verified, stored. */
static sm_code layout_load_manifest(const struct layout *l, const struct oci_fetch_options *opt,
                                    const struct oci_descriptor *d, struct oci_manifest *m,
                                    sm_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    sm_code rc = layout_read_blob(l, d, &buf, &len, err);
    if (!rc)
        rc = oci_manifest_parse(buf, len, d->media_type, m, err);
    if (!rc)
        rc = fetch_store_manifest(opt, d->digest, buf, len, err);
    free(buf);
    return rc;
}

/* index.json, then down to the linux/amd64 (or tagged) image manifest. */
static sm_code layout_resolve(const struct layout *l, const struct oci_fetch_options *opt,
                              struct oci_manifest *m, char digest[OCI_DIGEST_SIZE], sm_error *err)
{
    sm_code rc = layout_read_index(l, m, err);
    for (int depth = 0; !rc && m->kind == OCI_KIND_INDEX; depth++) {
        struct oci_descriptor chosen;
        /* The tag names an entry of index.json only, not of nested indexes. */
        rc = fetch_pick_platform(m, depth, depth == 0 ? l->tag : NULL, &chosen, err);
        if (rc)
            return rc;
        oci_manifest_free(m);
        rc = layout_load_manifest(l, opt, &chosen, m, err);
        if (!rc)
            memcpy(digest, chosen.digest, OCI_DIGEST_SIZE);
    }
    return rc;
}

/* Copies one blob of the layout into the store (verified). */
static sm_code layout_import(const struct layout *l, const struct oci_fetch_options *opt,
                             const char *kind, const char *digest, uint64_t size,
                             uint64_t *copied, sm_error *err)
{
    char name[64];
    if (fetch_blob_stored(opt, kind, digest, size, name, sizeof name))
        return SM_OK;
    char *path = layout_blob_path(l, digest);
    if (!path)
        return error_set(err, SM_E_NOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    sm_code rc = SM_OK;
    if (fd < 0)
        rc = error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno,
                             "%s: cannot open %s", name, path);
    free(path);
    if (rc)
        return rc;
    char got[OCI_DIGEST_SIZE];
    uint64_t got_size = 0;
    rc = blob_store_put_fd(opt->store_dir, fd, digest, size, name, got, &got_size, err);
    close(fd);
    if (!rc) {
        *copied += got_size;
        fetch_report(opt, name, size, size);
    }
    return rc;
}

/* "PATH" or "PATH:TAG" (PATH itself may hold ':' when it names a folder). */
static sm_code layout_split(const char *spec, struct layout *l, sm_error *err)
{
    struct stat st;
    const char *colon = strrchr(spec, ':');
    size_t dir_len = strlen(spec);
    if (!(stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) && colon && !strchr(colon, '/')) {
        size_t tlen = strlen(colon + 1);
        if (tlen == 0 || tlen > OCI_REF_TAG_MAX)
            return error_set(err, SM_E_INVALID, "oci:%s: a tag is 1 to %d characters", spec,
                             OCI_REF_TAG_MAX);
        memcpy(l->tag, colon + 1, tlen + 1);
        dir_len = (size_t)(colon - spec);
    }
    if (dir_len == 0)
        return error_set(err, SM_E_INVALID, "oci: needs a folder, as in oci:/path/to/layout[:tag]");
    char *dir = strndup(spec, dir_len);
    if (!dir)
        return error_set(err, SM_E_NOMEM, "out of memory");
    l->dir = realpath(dir, NULL);
    int e = errno;
    sm_code rc = l->dir ? SM_OK
                        : error_set_errno(err, e == ENOENT ? SM_E_NOTFOUND : SM_E_IO, e,
                                          "oci:%s: cannot open the folder %s", spec, dir);
    free(dir);
    return rc;
}

/* The config, then the layers, into the store. */
static sm_code layout_import_blobs(const struct layout *l, const struct oci_fetch_options *opt,
                                   const struct oci_manifest *m, uint64_t *copied, sm_error *err)
{
    if (m->config.size > OCI_JSON_MAX)
        return error_set(err, SM_E_LIMIT, "the image config is more than %u bytes", OCI_JSON_MAX);
    sm_code rc = layout_import(l, opt, "config", m->config.digest, m->config.size, copied, err);
    for (size_t i = 0; !rc && i < m->nlayers; i++)
        rc = layout_import(l, opt, "layer", m->layers[i].digest, m->layers[i].size, copied, err);
    return rc;
}

sm_code fetch_oci_layout(const char *spec, const struct oci_fetch_options *opt,
                         struct oci_fetched *out, sm_error *err)
{
    struct layout l = {0};
    sm_code rc = layout_split(spec, &l, err);
    if (rc)
        return rc;
    struct oci_manifest m = {0};
    rc = layout_check(&l, err);
    if (!rc)
        rc = layout_resolve(&l, opt, &m, out->manifest_digest, err);
    if (!rc)
        rc = fetch_preflight(opt, m.layers, m.nlayers, err);
    if (!rc)
        rc = layout_import_blobs(&l, opt, &m, &out->downloaded, err);
    if (!rc)
        rc = fetch_finish(opt, m.config.digest, m.layers, m.nlayers, out, err);
    if (!rc && asprintf(&out->canonical_ref, "oci:%s%s%s", l.dir, l.tag[0] ? ":" : "", l.tag) < 0) {
        out->canonical_ref = NULL;
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    }
    if (rc)
        error_prefix(err, "oci:%s", spec);
    oci_manifest_free(&m);
    free(l.dir);
    return rc;
}
