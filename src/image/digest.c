#include "image/digest.h"

#include "base/error.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool oci_digest_valid_n(const char *s, size_t n)
{
    if (!s || n != OCI_DIGEST_LEN || memcmp(s, OCI_DIGEST_PREFIX, 7) != 0)
        return false;
    for (size_t i = 7; i < n; i++)
        if (!is_lower_hex(s[i]))
            return false;
    return true;
}

bool oci_digest_valid(const char *s)
{
    return s && oci_digest_valid_n(s, strnlen(s, OCI_DIGEST_LEN + 1));
}

const char *oci_digest_hex(const char *digest)
{
    return digest + 7;
}

void oci_digest_short(const char *digest, char out[32])
{
    if (oci_digest_valid(digest))
        snprintf(out, 32, "sha256:%.12s", oci_digest_hex(digest));
    else
        snprintf(out, 32, "(bad digest)");
}

sm_code oci_sha256_init(oci_sha256 *h, sm_error *err)
{
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx)
        return error_set(err, SM_E_NOMEM, "sha256: out of memory");
    if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        oci_sha256_free(h);
        return error_set(err, SM_E_UNSUPPORTED, "sha256: OpenSSL refused to start a digest");
    }
    return SM_OK;
}

void oci_sha256_update(oci_sha256 *h, const void *data, size_t len)
{
    if (len)
        EVP_DigestUpdate(h->ctx, data, len);
}

void oci_sha256_final(oci_sha256 *h, char out[OCI_DIGEST_SIZE])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    static const char hexdig[] = "0123456789abcdef";
    EVP_DigestFinal_ex(h->ctx, md, &mdlen);
    memcpy(out, OCI_DIGEST_PREFIX, 7);
    for (unsigned i = 0; i < 32; i++) {
        out[7 + 2 * i] = hexdig[md[i] >> 4];
        out[8 + 2 * i] = hexdig[md[i] & 15];
    }
    out[OCI_DIGEST_LEN] = '\0';
}

void oci_sha256_reset(oci_sha256 *h)
{
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void oci_sha256_free(oci_sha256 *h)
{
    if (h && h->ctx) {
        EVP_MD_CTX_free(h->ctx);
        h->ctx = NULL;
    }
}

sm_code oci_sha256_buffer(const void *data, size_t len, char out[OCI_DIGEST_SIZE], sm_error *err)
{
    oci_sha256 h;
    sm_code rc = oci_sha256_init(&h, err);
    if (rc)
        return rc;
    oci_sha256_update(&h, data, len);
    oci_sha256_final(&h, out);
    oci_sha256_free(&h);
    return SM_OK;
}
