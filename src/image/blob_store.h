/*
 * The local content-addressed blob store (layout: see blob_store.c). A blob
 * is in the store only once its bytes have been checked against its sha256
 * digest and size; downloads in progress are .partial files beside it.
 */
#ifndef SM_IMAGE_BLOB_STORE_H
#define SM_IMAGE_BLOB_STORE_H

#include "image/digest.h"
#include "supermachine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLOB_SIZE_UNKNOWN UINT64_MAX

/* STORE/blobs/sha256/<hex> and STORE/blobs/sha256/<hex>.partial (malloc'd;
 * NULL on a bad digest or no memory). */
char *blob_store_path(const char *store_dir, const char *digest);
char *blob_store_partial_path(const char *store_dir, const char *digest);

/* Creates STORE/blobs/sha256 (and its parents) when missing. */
sm_code blob_store_init(const char *store_dir, sm_error *err);

/* Is the blob present (a regular file of that size; BLOB_SIZE_UNKNOWN: any)? */
bool blob_store_has(const char *store_dir, const char *digest, uint64_t size);

/* Reads a stored blob into a malloc'd, NUL-terminated buffer; SM_E_NOTFOUND
 * when absent, SM_E_LIMIT when larger than max. */
sm_code blob_store_read(const char *store_dir, const char *digest, size_t max, char **buf,
                        size_t *len, sm_error *err);

/* Writing one blob. With a known digest the bytes go to <hex>.partial (kept
 * when the writer is closed unfinished, and resumed by the next open); with
 * an unknown one (digest "" : a blob from a docker-archive) they go to a
 * temporary file named after no digest, which commit names. */
struct blob_writer {
    int fd;
    char *store_dir;
    char *partial_path;
    char digest[OCI_DIGEST_SIZE]; /* expected; after commit, the actual */
    uint64_t size;                /* expected, or BLOB_SIZE_UNKNOWN */
    uint64_t written;             /* bytes in the file so far (all hashed) */
    oci_sha256 hash;
    char what[96];                /* "layer sha256:0123456789ab" for messages */
};

/* Opens the writer. For a known digest: when the blob is already in the
 * store (or the .partial held all of it, verified and now committed),
 * *present is set and nothing is to be written (the writer is closed).
 * Otherwise a .partial's bytes are kept and hashed again (w->written says
 * from where to resume); one longer than size is emptied. Waits while
 * another process writes the same blob (flock). */
sm_code blob_writer_open(const char *store_dir, const char *digest, uint64_t size,
                         const char *what, struct blob_writer *w, bool *present, sm_error *err);
/* Appends bytes; SM_E_PROTOCOL when they go past the expected size. */
sm_code blob_writer_write(struct blob_writer *w, const void *buf, size_t len, sm_error *err);
/* Empties the file and the hash: the source sent the whole blob again. */
sm_code blob_writer_restart(struct blob_writer *w, sm_error *err);
/* Checks size and digest, then renames into place (closing the writer).
 * On a mismatch the .partial is deleted and SM_E_PROTOCOL says "corrupt".
 * On success w->digest is the blob's digest. */
sm_code blob_writer_commit(struct blob_writer *w, sm_error *err);
/* Closes, keeping a .partial to resume later (a temporary file is deleted). */
void blob_writer_close(struct blob_writer *w);
/* Closes and deletes what was written. */
void blob_writer_discard(struct blob_writer *w);

/* Stores a whole buffer as the blob digest (verified); a no-op when present. */
sm_code blob_store_put_buffer(const char *store_dir, const char *digest, const void *buf,
                              size_t len, const char *what, sm_error *err);
/* Copies an open file into the store, verified against digest (or, when
 * digest is "", named by its own digest, into out_digest) and size (or
 * BLOB_SIZE_UNKNOWN). Reads fd from its current position to its end. */
sm_code blob_store_put_fd(const char *store_dir, int fd, const char *digest, uint64_t size,
                          const char *what, char out_digest[OCI_DIGEST_SIZE], uint64_t *out_size,
                          sm_error *err);

#endif
