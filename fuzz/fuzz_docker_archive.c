/*
 * libFuzzer target: `docker save` archives (src/image/fetch_docker_archive.c),
 * fetched with oci_fetch into a blob store in a scratch folder (scratch.h).
 *
 * The input: a flags byte, then the rest.
 *   bit 0 set: the rest is the archive file itself (any bytes: a tar, a
 *              compressed one, noise).
 *   bit 0 clear: the rest is manifest.json, put into a tar with fixed
 *              entries it may name: the config CONFIG_HEX.json (amd64, its
 *              diff_id the layer's), the layer aaaa/layer.tar and the same
 *              bytes as blobs/sha256/LAYER_HEX, symlinks bbbb/layer.tar ->
 *              ../aaaa/layer.tar, a loop (loop/layer.tar <-> loop2/layer.tar),
 *              one out of the archive (out/layer.tar -> ../../etc/passwd)
 *              and one absolute (abs/layer.tar -> /etc/passwd). Bit 1 puts
 *              manifest.json first instead of last, bit 2 gzips the tar.
 *   bit 3 (either way): a cap of 16 bytes on the compressed layers.
 * The fixed names are in the seed corpus (fuzz/corpus/fuzz_docker_archive).
 *
 * Checked: a failure says why and leaves no temporary file in the store; a
 * success lists layers that are in the store with their sizes.
 *
 *   build/fuzz/fuzz_docker_archive -max_total_time=20 fuzz/corpus/fuzz_docker_archive
 */
#include "image/digest.h"
#include "image/oci_fetch.h"

#include "scratch.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INPUT_MAX (256u << 10)
#define LAYER_BYTES "not really a tar, but the bytes of one layer\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char config_json[512];
static char config_digest[OCI_DIGEST_SIZE], layer_digest[OCI_DIGEST_SIZE];

static void make_fixed(void)
{
    if (config_digest[0])
        return;
    sm_error err;
    oci_sha256_buffer(LAYER_BYTES, strlen(LAYER_BYTES), layer_digest, &err);
    snprintf(config_json, sizeof config_json,
             "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
             "\"diff_ids\":[\"%s\"]}}",
             layer_digest);
    oci_sha256_buffer(config_json, strlen(config_json), config_digest, &err);
}

static void add(struct archive *a, const char *name, const void *body, size_t len, const char *link_to)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, link_to ? AE_IFLNK : AE_IFREG);
    archive_entry_set_perm(e, 0644);
    if (link_to)
        archive_entry_set_symlink(e, link_to);
    archive_entry_set_size(e, link_to ? 0 : (la_int64_t)len);
    if (archive_write_header(a, e) == ARCHIVE_OK && len && !link_to)
        archive_write_data(a, body, len);
    archive_entry_free(e);
}

static void add_fixed(struct archive *a)
{
    char name[128];
    snprintf(name, sizeof name, "%s.json", oci_digest_hex(config_digest));
    add(a, name, config_json, strlen(config_json), NULL);
    add(a, "aaaa/layer.tar", LAYER_BYTES, strlen(LAYER_BYTES), NULL);
    snprintf(name, sizeof name, "blobs/sha256/%s", oci_digest_hex(layer_digest));
    add(a, name, LAYER_BYTES, strlen(LAYER_BYTES), NULL);
    add(a, "bbbb/layer.tar", NULL, 0, "../aaaa/layer.tar");
    add(a, "loop/layer.tar", NULL, 0, "../loop2/layer.tar");
    add(a, "loop2/layer.tar", NULL, 0, "../loop/layer.tar");
    add(a, "out/layer.tar", NULL, 0, "../../etc/passwd");
    add(a, "abs/layer.tar", NULL, 0, "/etc/passwd");
}

/* The structured archive at path: the fixed entries and manifest.json. */
static bool write_archive(const char *path, const uint8_t *manifest, size_t len, uint8_t flags)
{
    struct archive *a = archive_write_new();
    if (!a)
        return false;
    archive_write_set_format_pax_restricted(a);
    if (flags & 4)
        archive_write_add_filter_gzip(a);
    bool ok = archive_write_open_filename(a, path) == ARCHIVE_OK;
    if (ok) {
        if (flags & 2)
            add(a, "manifest.json", manifest, len, NULL);
        add_fixed(a);
        if (!(flags & 2))
            add(a, "manifest.json", manifest, len, NULL);
        ok = archive_write_close(a) == ARCHIVE_OK;
    }
    archive_write_free(a);
    return ok;
}

static bool write_raw(const char *path, const uint8_t *bytes, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return false;
    bool ok = write(fd, bytes, len) == (ssize_t)len;
    close(fd);
    return ok;
}

/* Only blobs, and resumable <hex>.partial files (oci_fetch.h allows
 * those), may outlive a fetch: no temporary .import-* file. */
static void check_store_clean(const char *store)
{
    char path[400];
    snprintf(path, sizeof path, "%s/blobs/sha256", store);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char digest[OCI_DIGEST_SIZE + 8];
        snprintf(digest, sizeof digest, "sha256:%.64s", e->d_name);
        const char *rest = strlen(e->d_name) >= 64 ? e->d_name + 64 : "?";
        if (!oci_digest_valid(digest) || (rest[0] && strcmp(rest, ".partial") != 0))
            abort();
    }
    if (d)
        closedir(d);
}

static void check_result(const char *store, sm_code rc, const sm_error *err, const struct oci_fetched *out)
{
    check_store_clean(store);
    if (rc != SM_OK) {
        if (!err->message[0] || out->layers)
            abort();
        return;
    }
    for (size_t i = 0; i < out->nlayers; i++) {
        char *p = oci_blob_path(store, out->layers[i].digest);
        struct stat st;
        if (!p || stat(p, &st) != 0 || (uint64_t)st.st_size != out->layers[i].size)
            abort();
        free(p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *root = scratch_dir("fuzz-docker-archive");
    if (!root || size < 1 || size > INPUT_MAX)
        return 0;
    make_fixed();
    scratch_empty(root);
    char tar[300], store[300], ref[320];
    snprintf(tar, sizeof tar, "%s/image.tar", root);
    snprintf(store, sizeof store, "%s/store", root);
    uint8_t flags = data[0];
    bool ok = (flags & 1) ? write_raw(tar, data + 1, size - 1) : write_archive(tar, data + 1, size - 1, flags);
    if (!ok)
        return 0;
    snprintf(ref, sizeof ref, "docker-archive:%s", tar);
    struct oci_fetch_options opt = {.store_dir = store, .max_compressed = (flags & 8) ? 16 : 0};
    struct oci_fetched out;
    sm_error err = {0};
    sm_code rc = oci_fetch(ref, &opt, &out, &err);
    check_result(store, rc, &err, &out);
    oci_fetched_free(&out);
    return 0;
}
