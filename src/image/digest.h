/*
 * sha256 content digests as OCI writes them: "sha256:" followed by 64
 * lowercase hex digits (72 bytes with the NUL). Only sha256 is accepted:
 * it is what every registry and image layout uses for the blobs we fetch.
 */
#ifndef SM_IMAGE_DIGEST_H
#define SM_IMAGE_DIGEST_H

#include "supermachine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OCI_DIGEST_PREFIX "sha256:"
#define OCI_DIGEST_HEX_LEN 64
#define OCI_DIGEST_LEN (7 + OCI_DIGEST_HEX_LEN) /* without the NUL */
#define OCI_DIGEST_SIZE (OCI_DIGEST_LEN + 1)    /* 72: a buffer for one */

/* True when s is exactly "sha256:<64 lowercase hex>". */
bool oci_digest_valid(const char *s);
/* Like oci_digest_valid for a string of n bytes (not NUL-terminated). */
bool oci_digest_valid_n(const char *s, size_t n);
/* The 64 hex digits of a valid digest (a pointer into it). */
const char *oci_digest_hex(const char *digest);
/* "sha256:0123456789ab..." : the first 12 hex digits, for messages. */
void oci_digest_short(const char *digest, char out[32]);

/* An incremental sha256 (OpenSSL EVP underneath). */
typedef struct oci_sha256 {
    void *ctx; /* EVP_MD_CTX */
} oci_sha256;

sm_code oci_sha256_init(oci_sha256 *h, sm_error *err);
void oci_sha256_update(oci_sha256 *h, const void *data, size_t len);
/* Writes "sha256:<hex>" into out; h can then be reset or freed. */
void oci_sha256_final(oci_sha256 *h, char out[OCI_DIGEST_SIZE]);
/* Back to the empty state (used when a download starts over). */
void oci_sha256_reset(oci_sha256 *h);
void oci_sha256_free(oci_sha256 *h);

/* The digest of a whole buffer. */
sm_code oci_sha256_buffer(const void *data, size_t len, char out[OCI_DIGEST_SIZE],
                          sm_error *err);

#endif
