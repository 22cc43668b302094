/*
 * libFuzzer target: an OCI image layout (src/image/fetch_oci_layout.c),
 * its index.json and the indexes and manifests it leads to, fetched with
 * oci_fetch into a blob store (both in a scratch folder, see scratch.h).
 *
 * The input: a flags byte, then up to four documents separated by NUL
 * bytes. Document 0 is index.json; documents 1-3 are written as blobs
 * under their own sha256. As the fuzzer cannot compute digests, a document
 * may name a later one: "@N" becomes document N's digest ("sha256:..."),
 * "#N" its size in bytes (N = 1-3, greater than the naming document's own
 * number; substituted from the last document back, so that a chain
 * index.json -> index -> manifest -> config/layer can be built).
 * Flags: bit 0 asks for the tag "v1" (oci:DIR:v1), bit 1 sets a cap of 64
 * bytes on the compressed layers.
 *
 * Checked: a failure says why; a success has a config and layers that are
 * in the store, and the layers' sizes add up to compressed_size.
 *
 *   build/fuzz/fuzz_oci_layout -max_total_time=20 fuzz/corpus/fuzz_oci_layout
 */
#include "image/digest.h"
#include "image/oci_fetch.h"

#include "scratch.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DOCS 4
#define INPUT_MAX (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct doc {
    char *bytes; /* after substitution (malloc'd) */
    size_t len;
    char digest[OCI_DIGEST_SIZE];
};

static bool write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return false;
    bool ok = write(fd, data, len) == (ssize_t)len;
    close(fd);
    return ok;
}

/* doc's raw bytes with "@N"/"#N" (N > self) replaced from docs[N]. */
static bool substitute(const uint8_t *raw, size_t n, int self, struct doc *docs)
{
    struct doc *d = &docs[self];
    size_t cap = n * (OCI_DIGEST_SIZE / 2) + 1; /* "@N" (2 bytes) grows to at most 71 */
    d->bytes = malloc(cap);
    if (!d->bytes)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ref = i + 1 < n ? raw[i + 1] - '0' : -1;
        if ((raw[i] == '@' || raw[i] == '#') && ref > self && ref < DOCS && docs[ref].bytes) {
            if (raw[i] == '@')
                o += (size_t)snprintf(d->bytes + o, cap - o, "%s", docs[ref].digest);
            else
                o += (size_t)snprintf(d->bytes + o, cap - o, "%zu", docs[ref].len);
            i++;
        } else {
            d->bytes[o++] = (char)raw[i];
        }
    }
    d->len = o;
    sm_error err;
    return oci_sha256_buffer(d->bytes, d->len, d->digest, &err) == SM_OK;
}

/* Splits the documents and substitutes them, last first. */
static int split(const uint8_t *data, size_t size, struct doc *docs)
{
    const uint8_t *start[DOCS];
    size_t len[DOCS];
    int n = 0;
    size_t from = 0;
    for (size_t i = 0; i <= size && n < DOCS; i++) {
        if (i < size && data[i] != 0)
            continue;
        start[n] = data + from;
        len[n] = i - from;
        n++;
        from = i + 1;
    }
    for (int k = n - 1; k >= 0; k--)
        if (!substitute(start[k], len[k], k, docs))
            return -1;
    return n;
}

static void check_result(const char *store, sm_code rc, const sm_error *err, const struct oci_fetched *out)
{
    if (rc != SM_OK) {
        if (!err->message[0] || out->layers || out->config_json)
            abort();
        return;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < out->nlayers; i++) {
        char *p = oci_blob_path(store, out->layers[i].digest);
        struct stat st;
        if (!p || stat(p, &st) != 0 || (uint64_t)st.st_size != out->layers[i].size)
            abort();
        free(p);
        total += out->layers[i].size;
    }
    if (total != out->compressed_size || !out->config_json || strlen(out->config_json) != out->config_len)
        abort();
}

static void fetch(const char *layout, const char *store, uint8_t flags)
{
    char ref[512];
    snprintf(ref, sizeof ref, "oci:%s%s", layout, (flags & 1) ? ":v1" : "");
    struct oci_fetch_options opt = {.store_dir = store, .max_compressed = (flags & 2) ? 64 : 0};
    struct oci_fetched out;
    sm_error err = {0};
    sm_code rc = oci_fetch(ref, &opt, &out, &err);
    check_result(store, rc, &err, &out);
    oci_fetched_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *root = scratch_dir("fuzz-oci-layout");
    if (!root || size < 1 || size > INPUT_MAX)
        return 0;
    scratch_empty(root);
    char layout[300], store[300], path[400];
    snprintf(layout, sizeof layout, "%s/layout", root);
    snprintf(store, sizeof store, "%s/store", root);
    snprintf(path, sizeof path, "%s/blobs/sha256", layout);
    if (mkdir(layout, 0755) != 0 || mkdir(store, 0755) != 0)
        return 0;
    snprintf(path, sizeof path, "%s/blobs", layout);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/blobs/sha256", layout);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/oci-layout", layout);
    write_file(path, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);

    struct doc docs[DOCS] = {0};
    int n = split(data + 1, size - 1, docs);
    bool ok = n > 0;
    snprintf(path, sizeof path, "%s/index.json", layout);
    if (ok)
        ok = write_file(path, docs[0].bytes, docs[0].len);
    for (int k = 1; ok && k < n; k++) {
        snprintf(path, sizeof path, "%s/blobs/sha256/%s", layout, oci_digest_hex(docs[k].digest));
        ok = write_file(path, docs[k].bytes, docs[k].len);
    }
    if (ok)
        fetch(layout, store, data[0]);
    for (int k = 0; k < DOCS; k++)
        free(docs[k].bytes);
    return 0;
}
