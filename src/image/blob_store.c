/*
 * The blob store on disk:
 *
 *   path                                   what
 *   STORE/blobs/sha256/<hex>               a complete blob whose sha256 is <hex> and whose
 *                                          size matched its descriptor (mode 0600). Never
 *                                          written in place: only ever renamed into place.
 *   STORE/blobs/sha256/<hex>.partial       a download in progress or interrupted: a prefix
 *                                          of the blob, resumed from its length (HTTP Range).
 *                                          flock()ed by its writer; one found longer than the
 *                                          blob, or complete and wrong, is deleted.
 *   STORE/blobs/sha256/.import-XXXXXX      a blob whose digest is not known in advance (a
 *                                          layer of a docker-archive) while it is copied;
 *                                          renamed to <hex> once hashed, or deleted.
 *
 * <hex> is 64 lowercase hex digits. The same layout as an OCI image
 * layout's blobs folder, so a store can be read by tools that read those.
 * A blob's presence (with the right size) means it was verified: nothing is
 * ever fetched again for it.
 */
#include "image/blob_store.h"
#include "base/file.h"

#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOB_DIR "blobs/sha256"
#define COPY_CHUNK (256u << 10)
#define OPEN_RETRIES 16

static char *join(const char *store_dir, const char *digest, const char *suffix)
{
    if (!store_dir || !oci_digest_valid(digest))
        return NULL;
    char *p = NULL;
    if (asprintf(&p, "%s/" BLOB_DIR "/%s%s", store_dir, oci_digest_hex(digest), suffix) < 0)
        return NULL;
    return p;
}

char *blob_store_path(const char *store_dir, const char *digest)
{
    return join(store_dir, digest, "");
}

char *blob_store_partial_path(const char *store_dir, const char *digest)
{
    return join(store_dir, digest, ".partial");
}

static sm_code mkdir_one(const char *path, sm_error *err)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return SM_OK;
    return error_set_errno(err, SM_E_IO, errno, "cannot create the image store folder %s", path);
}

sm_code blob_store_init(const char *store_dir, sm_error *err)
{
    if (!store_dir || !store_dir[0])
        return error_set(err, SM_E_INVALID, "no image store folder given");
    char *path;
    if (asprintf(&path, "%s/" BLOB_DIR, store_dir) < 0)
        return error_set(err, SM_E_NOMEM, "out of memory");
    /* mkdir -p: every '/' after the first character ends a parent. */
    sm_code rc = SM_OK;
    for (char *p = path + 1; *p && !rc; p++) {
        if (*p == '/') {
            *p = '\0';
            rc = mkdir_one(path, err);
            *p = '/';
        }
    }
    if (!rc)
        rc = mkdir_one(path, err);
    free(path);
    return rc;
}

bool blob_store_has(const char *store_dir, const char *digest, uint64_t size)
{
    char *path = blob_store_path(store_dir, digest);
    struct stat st;
    bool ok = path && lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
              (size == BLOB_SIZE_UNKNOWN || (uint64_t)st.st_size == size);
    free(path);
    return ok;
}

static sm_code read_fd_bounded(int fd, const char *path, size_t max, char **buf, size_t *len,
                               sm_error *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot stat %s", path);
    if ((uint64_t)st.st_size > max)
        return error_set(err, SM_E_LIMIT, "%s is %lld bytes, more than the limit of %zu", path,
                       (long long)st.st_size, max);
    size_t n = (size_t)st.st_size;
    char *b = malloc(n + 1);
    if (!b)
        return error_set(err, SM_E_NOMEM, "out of memory reading %s", path);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(b);
            return error_set_errno(err, SM_E_IO, e, "cannot read %s", path);
        }
        got += (size_t)r;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return SM_OK;
}

sm_code blob_store_read(const char *store_dir, const char *digest, size_t max, char **buf,
                        size_t *len, sm_error *err)
{
    *buf = NULL;
    *len = 0;
    char *path = blob_store_path(store_dir, digest);
    if (!path)
        return error_set(err, SM_E_INVALID, "bad blob digest");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    sm_code rc;
    if (fd < 0)
        rc = error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno,
                           "cannot open the blob %s", path);
    else
        rc = read_fd_bounded(fd, path, max, buf, len, err);
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

/* ---- writers ------------------------------------------------------------- */

static void writer_free(struct blob_writer *w)
{
    if (w->fd >= 0)
        close(w->fd); /* also drops the flock */
    w->fd = -1;
    oci_sha256_free(&w->hash);
    free(w->partial_path);
    free(w->store_dir);
    w->partial_path = NULL;
    w->store_dir = NULL;
}

/* Hashes the first w->written bytes of the file again (a resumed .partial). */
static sm_code rehash_existing(struct blob_writer *w, sm_error *err)
{
    char *buf = malloc(COPY_CHUNK);
    if (!buf)
        return error_set(err, SM_E_NOMEM, "out of memory");
    uint64_t off = 0;
    sm_code rc = SM_OK;
    while (off < w->written && !rc) {
        size_t want = w->written - off < COPY_CHUNK ? (size_t)(w->written - off) : COPY_CHUNK;
        ssize_t r = pread(w->fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = error_set_errno(err, SM_E_IO, r < 0 ? errno : EIO, "cannot read %s",
                               w->partial_path);
        else {
            oci_sha256_update(&w->hash, buf, (size_t)r);
            off += (uint64_t)r;
        }
    }
    free(buf);
    return rc;
}

/* Opens and locks <hex>.partial, retrying when the file we locked was
 * renamed or deleted by its previous writer meanwhile. */
static sm_code open_locked_partial(struct blob_writer *w, bool *present, sm_error *err)
{
    for (int attempt = 0; attempt < OPEN_RETRIES; attempt++) {
        if (blob_store_has(w->store_dir, w->digest, w->size)) {
            *present = true;
            return SM_OK;
        }
        /* O_APPEND: writes land after the bytes a resumed .partial holds. */
        int fd = open(w->partial_path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                      0600);
        if (fd < 0)
            return error_set_errno(err, SM_E_IO, errno, "cannot create %s", w->partial_path);
        while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
            ;
        struct stat held, now;
        if (fstat(fd, &held) == 0 && stat(w->partial_path, &now) == 0 &&
            held.st_ino == now.st_ino && held.st_dev == now.st_dev) {
            w->fd = fd;
            return SM_OK;
        }
        close(fd);
    }
    return error_set(err, SM_E_IO, "%s keeps changing under us (another writer?)", w->partial_path);
}

static sm_code open_temporary(struct blob_writer *w, sm_error *err)
{
    if (asprintf(&w->partial_path, "%s/" BLOB_DIR "/.import-XXXXXX", w->store_dir) < 0) {
        w->partial_path = NULL;
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    w->fd = mkostemp(w->partial_path, O_CLOEXEC);
    if (w->fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot create a file in %s/" BLOB_DIR,
                             w->store_dir);
    fchmod(w->fd, 0600);
    return SM_OK;
}

/* The verified file becomes the blob `got`; the writer is closed either way. */
static sm_code rename_into_place(struct blob_writer *w, const char *got, sm_error *err)
{
    sm_code rc = SM_OK;
    char *final = blob_store_path(w->store_dir, got);
    if (!final) {
        blob_writer_discard(w);
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    struct stat st;
    if (fstat(w->fd, &st) < 0 || (uint64_t)st.st_size != w->written)
        rc = error_set(err, SM_E_IO, "%s changed while it was written", w->partial_path);
    else if (fsync(w->fd) < 0)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot sync %s", w->partial_path);
    else if (rename(w->partial_path, final) < 0)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot rename %s to %s", w->partial_path, final);
    else if (!fsync_parent_dir(final))
        rc = error_set_errno(err, SM_E_IO, errno, "cannot sync the folder of %s", final);
    free(final);
    if (rc) {
        blob_writer_discard(w);
        return rc;
    }
    memmove(w->digest, got, OCI_DIGEST_SIZE);
    writer_free(w);
    return SM_OK;
}

/* Takes up what a .partial holds: emptied when too long; committed when
 * complete and right; emptied when complete and wrong. */
static sm_code adopt_partial(struct blob_writer *w, bool *present, sm_error *err)
{
    struct stat st;
    if (fstat(w->fd, &st) < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot stat %s", w->partial_path);
    w->written = (uint64_t)st.st_size;
    if (w->written > w->size)
        return blob_writer_restart(w, err);
    sm_code rc = rehash_existing(w, err);
    if (rc || w->written < w->size)
        return rc;
    char got[OCI_DIGEST_SIZE];
    oci_sha256_final(&w->hash, got);
    if (strcmp(got, w->digest) == 0) {
        rc = rename_into_place(w, got, err);
        if (!rc)
            *present = true;
        return rc;
    }
    return blob_writer_restart(w, err);
}

sm_code blob_writer_open(const char *store_dir, const char *digest, uint64_t size,
                         const char *what, struct blob_writer *w, bool *present, sm_error *err)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    *present = false;
    bool known = digest && digest[0];
    if (known && !oci_digest_valid(digest))
        return error_set(err, SM_E_INVALID, "%s: bad digest", what);
    snprintf(w->digest, sizeof w->digest, "%s", known ? digest : "");
    snprintf(w->what, sizeof w->what, "%s", what);
    w->size = size;
    w->store_dir = strdup(store_dir);
    if (!w->store_dir || (known && !(w->partial_path = blob_store_partial_path(store_dir, digest)))) {
        writer_free(w);
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    sm_code rc = blob_store_init(store_dir, err);
    if (!rc)
        rc = oci_sha256_init(&w->hash, err);
    if (!rc)
        rc = known ? open_locked_partial(w, present, err) : open_temporary(w, err);
    if (!rc && known && !*present)
        rc = adopt_partial(w, present, err);
    if (rc || *present)
        writer_free(w);
    return rc;
}

sm_code blob_writer_write(struct blob_writer *w, const void *buf, size_t len, sm_error *err)
{
    if (w->size != BLOB_SIZE_UNKNOWN && len > w->size - w->written)
        return error_set(err, SM_E_PROTOCOL,
                       "%s is corrupt: more bytes than the %llu its descriptor gives", w->what,
                       (unsigned long long)w->size);
    if (!write_all(w->fd, buf, len))
        return error_set_errno(err, SM_E_IO, errno, "cannot write %s", w->partial_path);
    oci_sha256_update(&w->hash, buf, len);
    w->written += len;
    return SM_OK;
}

sm_code blob_writer_restart(struct blob_writer *w, sm_error *err)
{
    if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot empty %s", w->partial_path);
    oci_sha256_reset(&w->hash);
    w->written = 0;
    return SM_OK;
}

sm_code blob_writer_commit(struct blob_writer *w, sm_error *err)
{
    char got[OCI_DIGEST_SIZE], short_got[32];
    sm_code rc = SM_OK;
    if (w->size != BLOB_SIZE_UNKNOWN && w->written != w->size) {
        rc = error_set(err, SM_E_PROTOCOL, "%s is truncated: got %llu of %llu bytes", w->what,
                     (unsigned long long)w->written, (unsigned long long)w->size);
        blob_writer_close(w); /* resumable */
        return rc;
    }
    oci_sha256_final(&w->hash, got);
    if (w->digest[0] && strcmp(got, w->digest) != 0) {
        oci_digest_short(got, short_got);
        rc = error_set(err, SM_E_PROTOCOL, "%s is corrupt: digest mismatch (got %s…)", w->what,
                     short_got);
        blob_writer_discard(w);
        return rc;
    }
    return rename_into_place(w, got, err);
}

void blob_writer_close(struct blob_writer *w)
{
    if (w->partial_path && !w->digest[0])
        unlink(w->partial_path); /* a temporary file cannot be resumed */
    writer_free(w);
}

void blob_writer_discard(struct blob_writer *w)
{
    if (w->partial_path && w->fd >= 0)
        unlink(w->partial_path); /* while still holding the lock */
    writer_free(w);
}

sm_code blob_store_put_buffer(const char *store_dir, const char *digest, const void *buf,
                              size_t len, const char *what, sm_error *err)
{
    struct blob_writer w;
    bool present;
    sm_code rc = blob_writer_open(store_dir, digest, len, what, &w, &present, err);
    if (rc || present)
        return rc;
    if (w.written) /* a stale .partial: write it all again */
        rc = blob_writer_restart(&w, err);
    if (!rc)
        rc = blob_writer_write(&w, buf, len, err);
    if (rc) {
        blob_writer_discard(&w);
        return rc;
    }
    return blob_writer_commit(&w, err);
}

sm_code blob_store_put_fd(const char *store_dir, int fd, const char *digest, uint64_t size,
                          const char *what, char out_digest[OCI_DIGEST_SIZE], uint64_t *out_size,
                          sm_error *err)
{
    struct blob_writer w;
    bool present;
    sm_code rc = blob_writer_open(store_dir, digest, size, what, &w, &present, err);
    if (rc)
        return rc;
    if (present) {
        snprintf(out_digest, OCI_DIGEST_SIZE, "%s", digest);
        *out_size = size;
        return SM_OK;
    }
    if (w.written)
        rc = blob_writer_restart(&w, err);
    char *buf = rc ? NULL : malloc(COPY_CHUNK);
    if (!rc && !buf)
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    while (!rc) {
        ssize_t r = read(fd, buf, COPY_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = error_set_errno(err, SM_E_IO, errno, "%s: cannot read", what);
        if (r <= 0)
            break;
        rc = blob_writer_write(&w, buf, (size_t)r, err);
    }
    free(buf);
    if (rc) {
        blob_writer_discard(&w);
        return rc;
    }
    uint64_t written = w.written;
    rc = blob_writer_commit(&w, err);
    if (!rc) {
        memcpy(out_digest, w.digest, OCI_DIGEST_SIZE);
        *out_size = written;
    }
    return rc;
}
