/* oci_fetch end to end on local inputs (no network): an OCI image layout
 * and a docker-archive tar, both written here; cached second fetches;
 * corrupt blobs, wrong platforms and nothing half-written left behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>

#include "helpers/small_fs.h"
#include "image/digest.h"
#include "image/oci_fetch.h"
#include "image/oci_manifest.h"

struct fixture {
    char dir[64];
    char layout[96];
    char store[96];
    char layer_digest[2][OCI_DIGEST_SIZE];
    char config_digest[OCI_DIGEST_SIZE];
    char manifest_digest[OCI_DIGEST_SIZE];
    const char *layer_data[2]; /* what make_layout writes: layer_bytes unless a test says */
    size_t layer_size[2];
};

static const char *layer_bytes[2] = {"first layer: pretend tar bytes",
                                     "second layer, a little longer than the first one"};

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Writes data as a layout blob and returns its digest. */
static void layout_blob(const char *layout, const void *data, size_t len,
                        char digest[OCI_DIGEST_SIZE])
{
    sm_error err;
    assert_int_equal(oci_sha256_buffer(data, len, digest, &err), SM_OK);
    char path[256];
    snprintf(path, sizeof path, "%s/blobs/sha256/%s", layout, oci_digest_hex(digest));
    write_file(path, data, len);
}

static void config_json(char *buf, size_t cap, const char *arch, const char *d0, const char *d1)
{
    snprintf(buf, cap,
             "{\"architecture\":\"%s\",\"os\":\"linux\",\"config\":{\"Env\":[\"A=1\"],"
             "\"Cmd\":[\"sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\",\"%s\"]}}",
             arch, d0, d1);
}

/* An image layout with one image (two layers) tagged "v1", for platform
 * `index_arch` in index.json ("" = no platform) and `config_arch`. */
static void make_layout(struct fixture *f, const char *index_arch, const char *config_arch)
{
    char path[256], buf[4096];
    snprintf(f->layout, sizeof f->layout, "%s/layout", f->dir);
    snprintf(path, sizeof path, "%s/blobs/sha256", f->layout);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", f->layout, path);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 2; i++)
        layout_blob(f->layout, f->layer_data[i], f->layer_size[i], f->layer_digest[i]);
    config_json(buf, sizeof buf, config_arch, f->layer_digest[0], f->layer_digest[1]);
    size_t config_size = strlen(buf);
    layout_blob(f->layout, buf, config_size, f->config_digest);
    snprintf(buf, sizeof buf,
             "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\","
             "\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[{\"mediaType\":\"" OCI_MT_LAYER_GZIP "\",\"digest\":\"%s\",\"size\":%zu},"
             "{\"mediaType\":\"" OCI_MT_LAYER_ZSTD "\",\"digest\":\"%s\",\"size\":%zu}]}",
             f->config_digest, config_size, f->layer_digest[0], f->layer_size[0],
             f->layer_digest[1], f->layer_size[1]);
    size_t manifest_size = strlen(buf);
    layout_blob(f->layout, buf, manifest_size, f->manifest_digest);
    char platform[128] = "";
    if (index_arch[0])
        snprintf(platform, sizeof platform,
                 ",\"platform\":{\"os\":\"linux\",\"architecture\":\"%s\"}", index_arch);
    snprintf(buf, sizeof buf,
             "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\","
             "\"digest\":\"%s\",\"size\":%zu%s,"
             "\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}}]}",
             f->manifest_digest, manifest_size, platform);
    snprintf(path, sizeof path, "%s/index.json", f->layout);
    write_file(path, buf, strlen(buf));
    snprintf(path, sizeof path, "%s/oci-layout", f->layout);
    write_file(path, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/sm-test-fetch-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->store, sizeof f->store, "%s/store", f->dir);
    for (int i = 0; i < 2; i++) {
        f->layer_data[i] = layer_bytes[i];
        f->layer_size[i] = strlen(layer_bytes[i]);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* How many files the store's blob folder holds, and how many are not blobs. */
static void count_store(const struct fixture *f, int *blobs, int *others)
{
    char path[160];
    snprintf(path, sizeof path, "%s/blobs/sha256", f->store);
    *blobs = *others = 0;
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char name[OCI_DIGEST_SIZE + 8];
        snprintf(name, sizeof name, "sha256:%.64s", e->d_name);
        if (strlen(e->d_name) == 64 && oci_digest_valid(name))
            (*blobs)++;
        else
            (*others)++;
    }
    closedir(d);
}

static void test_oci_layout(void **state)
{
    struct fixture *f = *state;
    make_layout(f, "amd64", "amd64");
    struct oci_fetch_options opt = {.store_dir = f->store};
    struct oci_fetched out;
    sm_error err = {0};
    char ref[200];
    snprintf(ref, sizeof ref, "oci:%s:v1", f->layout);
    if (oci_fetch(ref, &opt, &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    assert_string_equal(out.manifest_digest, f->manifest_digest);
    assert_string_equal(out.config_digest, f->config_digest);
    assert_int_equal(out.nlayers, 2);
    assert_string_equal(out.layers[0].digest, f->layer_digest[0]);
    assert_string_equal(out.layers[0].media_type, OCI_MT_LAYER_GZIP);
    assert_string_equal(out.layers[1].media_type, OCI_MT_LAYER_ZSTD);
    assert_int_equal(out.compressed_size, f->layer_size[0] + f->layer_size[1]);
    assert_string_equal(out.canonical_ref, ref);
    assert_non_null(strstr(out.config_json, "\"Cmd\":[\"sh\"]"));
    assert_int_equal(strlen(out.config_json), out.config_len);
    assert_true(out.downloaded > out.compressed_size); /* layers + config */
    /* every blob is where oci_blob_path says, with the right bytes */
    char *p = oci_blob_path(f->store, out.layers[1].digest);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    char buf[128] = "";
    assert_int_equal(fread(buf, 1, sizeof buf, fp), f->layer_size[1]);
    fclose(fp);
    free(p);
    assert_string_equal(buf, layer_bytes[1]);
    oci_fetched_free(&out);
    int blobs, others;
    count_store(f, &blobs, &others);
    assert_int_equal(blobs, 4); /* manifest, config, 2 layers */
    assert_int_equal(others, 0);

    /* again, without the tag: nothing copied */
    snprintf(ref, sizeof ref, "oci:%s", f->layout);
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_OK);
    assert_int_equal(out.downloaded, 0);
    assert_string_equal(out.manifest_digest, f->manifest_digest);
    oci_fetched_free(&out);

    snprintf(ref, sizeof ref, "oci:%s:v2", f->layout);
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "no image named \"v2\""));
}

static void test_oci_layout_corrupt_layer(void **state)
{
    struct fixture *f = *state;
    make_layout(f, "", "amd64"); /* the only entry, no platform: taken */
    char path[256];
    snprintf(path, sizeof path, "%s/blobs/sha256/%s", f->layout,
             oci_digest_hex(f->layer_digest[1]));
    char bad[128];
    snprintf(bad, sizeof bad, "%s", layer_bytes[1]);
    bad[3] ^= 0x20;
    write_file(path, bad, strlen(bad));
    struct oci_fetch_options opt = {.store_dir = f->store};
    struct oci_fetched out;
    sm_error err = {0};
    char ref[200];
    snprintf(ref, sizeof ref, "oci:%s", f->layout);
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_E_PROTOCOL);
    char want[128];
    snprintf(want, sizeof want, "layer sha256:%.12s… is corrupt: digest mismatch (got sha256:",
             oci_digest_hex(f->layer_digest[1]));
    if (!strstr(err.message, want))
        fail_msg("%s", err.message);
    assert_null(out.layers);
    int blobs, others;
    count_store(f, &blobs, &others);
    assert_int_equal(blobs, 3); /* what verified stays: manifest, config, layer 1 */
    assert_int_equal(others, 0);  /* no .partial, no temporary file */

    /* a truncated blob (shorter than its descriptor) */
    write_file(path, layer_bytes[1], 5);
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_E_PROTOCOL);
    assert_non_null(strstr(err.message, "truncated: got 5 of"));
}

static void test_oci_layout_wrong_platform(void **state)
{
    struct fixture *f = *state;
    struct oci_fetch_options opt = {.store_dir = f->store};
    struct oci_fetched out;
    sm_error err = {0};
    char ref[200];
    make_layout(f, "arm64", "arm64");
    snprintf(ref, sizeof ref, "oci:%s", f->layout);
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "no linux/amd64 image: the index offers linux/arm64"));
    /* the index has no platform but the config says arm64 */
    make_layout(f, "", "arm64");
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, "the image is for linux/arm64, not linux/amd64"));
}

static void test_bad_inputs(void **state)
{
    struct fixture *f = *state;
    struct oci_fetch_options opt = {.store_dir = f->store};
    struct oci_fetched out;
    sm_error err = {0};
    char ref[200];
    snprintf(ref, sizeof ref, "oci:%s", f->dir); /* a folder, not a layout */
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "not an OCI image layout"));
    assert_int_equal(oci_fetch("docker-archive:/nonexistent.tar", &opt, &out, &err),
                     SM_E_NOTFOUND);
    assert_int_equal(oci_fetch("Not A Ref", &opt, &out, &err), SM_E_INVALID);
    assert_int_equal(oci_fetch("x", NULL, &out, &err), SM_E_INVALID);
    /* a registry nobody listens on (loopback port 1): a clear error, at once */
    struct oci_fetch_options plain = {.store_dir = f->store, .plain_http = true};
    assert_int_equal(oci_fetch("127.0.0.1:1/x:y", &plain, &out, &err), SM_E_IO);
    assert_non_null(strstr(err.message, "cannot reach 127.0.0.1:1"));
}

/* ---- caps and room -------------------------------------------------------- */

/* Layers adding up to more than the cap on compressed bytes: refused before
 * the config or any layer is copied; at the cap exactly, fetched. */
static void test_download_cap_layout(void **state)
{
    struct fixture *f = *state;
    make_layout(f, "amd64", "amd64");
    uint64_t total = f->layer_size[0] + f->layer_size[1];
    struct oci_fetch_options opt = {.store_dir = f->store, .max_compressed = total - 1};
    struct oci_fetched out;
    sm_error err = {0};
    char ref[200], want[200];
    snprintf(ref, sizeof ref, "oci:%s", f->layout);
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_E_LIMIT);
    snprintf(want, sizeof want,
             "the image's layers are %llu bytes compressed, more than the cap of %llu bytes on an "
             "image's compressed bytes",
             (unsigned long long)total, (unsigned long long)total - 1);
    if (!strstr(err.message, want))
        fail_msg("%s", err.message);
    int blobs, others;
    count_store(f, &blobs, &others);
    assert_int_equal(blobs, 1); /* the manifest: it gave the sizes */
    assert_int_equal(others, 0);
    opt.max_compressed = total;
    if (oci_fetch(ref, &opt, &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    oci_fetched_free(&out);
}

struct room_case {
    struct fixture *f;
    char ref[200];
};

/* In a child, with the store on a 1 MiB tmpfs: a 2 MiB layer does not fit,
 * which is said before a byte of it is copied. */
static int fetch_into_small_store(void *arg)
{
    struct room_case *c = arg;
    struct oci_fetch_options opt = {.store_dir = c->f->store};
    struct oci_fetched out;
    sm_error err = {0};
    sm_code rc = oci_fetch(c->ref, &opt, &out, &err);
    printf("     (expected refusal) %s\n", err.message);
    if (rc != SM_E_LIMIT || !strstr(err.message, "not enough free space in") ||
        !strstr(err.message, "for the image's layers: it needs 2.0 MiB, only") ||
        !strstr(err.message, "No space left on device")) {
        printf("     wanted SM_E_LIMIT and \"not enough free space\", got %d\n", rc);
        return 1;
    }
    int blobs, others;
    count_store(c->f, &blobs, &others);
    if (blobs != 1 || others != 0) { /* the manifest; no .partial, no temporary file */
        printf("     the store holds %d blobs and %d other files\n", blobs, others);
        return 1;
    }
    return 0;
}

static void test_room_for_layers(void **state)
{
    struct fixture *f = *state;
    size_t big = (2u << 20) + 100;
    char *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)((i * 2654435761u) >> 13);
    f->layer_data[1] = data;
    f->layer_size[1] = big;
    make_layout(f, "amd64", "amd64");
    free(data);
    assert_int_equal(mkdir(f->store, 0755), 0);
    struct room_case c = {.f = f};
    snprintf(c.ref, sizeof c.ref, "oci:%s", f->layout);
    int rc = small_fs_run(f->store, 1u << 20, fetch_into_small_store, &c);
    if (rc == SMALL_FS_UNAVAILABLE)
        skip();
    assert_int_equal(rc, 0);
}

/* ---- docker-archive -------------------------------------------------------- */

static void tar_add(struct archive *a, const char *name, const char *data, size_t len,
                    const char *symlink_to)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    if (symlink_to) {
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, symlink_to);
        archive_entry_set_perm(e, 0777);
        archive_entry_set_size(e, 0);
    } else {
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)len);
    }
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    if (len)
        assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
    archive_entry_free(e);
}

/* A `docker save`-style tar: legacy layout, the second layer a symlink to
 * the first one's file (as docker writes duplicate layers); diff_id of
 * layer 2 is `second_diff` (pass NULL for the right one). */
static void make_archive(const char *path, const char *second_diff, char config_digest[72],
                         char layer_digest[72])
{
    sm_error err;
    const char *layer = layer_bytes[0];
    assert_int_equal(oci_sha256_buffer(layer, strlen(layer), layer_digest, &err), SM_OK);
    char config[1024];
    config_json(config, sizeof config, "amd64", layer_digest,
                second_diff ? second_diff : layer_digest);
    assert_int_equal(oci_sha256_buffer(config, strlen(config), config_digest, &err), SM_OK);
    char config_name[80], manifest[512];
    snprintf(config_name, sizeof config_name, "%s.json", oci_digest_hex(config_digest));
    snprintf(manifest, sizeof manifest,
             "[{\"Config\":\"%s\",\"RepoTags\":[\"x:y\"],"
             "\"Layers\":[\"aaaa/layer.tar\",\"./bbbb/layer.tar\"]}]",
             config_name);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    tar_add(a, "aaaa/layer.tar", layer, strlen(layer), NULL);
    tar_add(a, "bbbb/layer.tar", NULL, 0, "../aaaa/layer.tar");
    tar_add(a, config_name, config, strlen(config), NULL);
    tar_add(a, "manifest.json", manifest, strlen(manifest), NULL);
    archive_write_close(a);
    archive_write_free(a);
}

static void test_docker_archive(void **state)
{
    struct fixture *f = *state;
    char tar[160], ref[200], config_digest[72], layer_digest[72];
    snprintf(tar, sizeof tar, "%s/img.tar", f->dir);
    make_archive(tar, NULL, config_digest, layer_digest);
    struct oci_fetch_options opt = {.store_dir = f->store};
    struct oci_fetched out;
    sm_error err = {0};
    snprintf(ref, sizeof ref, "docker-archive:%s", tar);
    if (oci_fetch(ref, &opt, &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    assert_string_equal(out.config_digest, config_digest);
    assert_string_equal(out.manifest_digest, config_digest); /* no manifest: the config's */
    assert_int_equal(out.nlayers, 2);
    assert_string_equal(out.layers[0].digest, layer_digest);
    assert_string_equal(out.layers[1].digest, layer_digest);
    assert_string_equal(out.layers[0].media_type, OCI_MT_LAYER_TAR);
    assert_int_equal(out.layers[0].size, strlen(layer_bytes[0]));
    assert_string_equal(out.canonical_ref, ref);
    assert_true(out.downloaded > strlen(layer_bytes[0]));
    oci_fetched_free(&out);
    int blobs, others;
    count_store(f, &blobs, &others);
    assert_int_equal(blobs, 2);
    assert_int_equal(others, 0);

    /* again: the config names the layers (diff_ids), all stored: no copy */
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_OK);
    assert_int_equal(out.downloaded, 0);
    assert_string_equal(out.layers[1].digest, layer_digest);
    oci_fetched_free(&out);

    /* a layer that is not the one its config lists */
    char other[72] = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    make_archive(tar, other, config_digest, layer_digest);
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_E_PROTOCOL);
    assert_non_null(strstr(err.message, "(layer 2, aaaa/layer.tar) is corrupt"));
}

/* The archive's layers (the same file listed twice: counted twice, as the
 * manifest lists them) against the cap: refused before pass 2 copies them. */
static void test_download_cap_docker_archive(void **state)
{
    struct fixture *f = *state;
    char tar[160], ref[200], config_digest[72], layer_digest[72];
    snprintf(tar, sizeof tar, "%s/img.tar", f->dir);
    make_archive(tar, NULL, config_digest, layer_digest);
    uint64_t total = 2 * strlen(layer_bytes[0]);
    struct oci_fetch_options opt = {.store_dir = f->store, .max_compressed = total - 1};
    struct oci_fetched out;
    sm_error err = {0};
    snprintf(ref, sizeof ref, "docker-archive:%s", tar);
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_E_LIMIT);
    char want[300];
    snprintf(want, sizeof want,
             "docker-archive:%s: the image's layers are %llu bytes compressed", tar,
             (unsigned long long)total);
    if (!strstr(err.message, want))
        fail_msg("%s", err.message);
    int blobs, others;
    count_store(f, &blobs, &others);
    assert_int_equal(blobs, 1); /* the config, read in pass 1; no layer */
    assert_int_equal(others, 0);
    opt.max_compressed = total;
    if (oci_fetch(ref, &opt, &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    oci_fetched_free(&out);
}

static void test_docker_archive_missing_parts(void **state)
{
    struct fixture *f = *state;
    char tar[160], ref[200];
    snprintf(tar, sizeof tar, "%s/bad.tar", f->dir);
    struct oci_fetch_options opt = {.store_dir = f->store};
    struct oci_fetched out;
    sm_error err = {0};
    snprintf(ref, sizeof ref, "docker-archive:%s", tar);
    struct {
        const char *manifest; /* NULL: no manifest.json */
        const char *piece;
    } cases[] = {
        {NULL, "has no manifest.json"},
        {"[]", "exactly one image"},
        {"[{\"Config\":\"c.json\",\"Layers\":[]}]", "has no file c.json"},
        {"[{\"Config\":\"x.json\",\"Layers\":[\"nope/layer.tar\"]}]", "has no file"},
        {"[{\"Config\":\"../x.json\",\"Layers\":[]}]", "bad path"},
        {"[{\"Config\":\"x.json\",\"Layers\":[\"loop/layer.tar\"]}]", "symlinks loop"},
        {"{", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        assert_int_equal(archive_write_open_filename(a, tar), ARCHIVE_OK);
        tar_add(a, "x.json", "{}", 2, NULL);
        tar_add(a, "loop/layer.tar", NULL, 0, "../loop2/layer.tar");
        tar_add(a, "loop2/layer.tar", NULL, 0, "../loop/layer.tar");
        if (cases[i].manifest)
            tar_add(a, "manifest.json", cases[i].manifest, strlen(cases[i].manifest), NULL);
        archive_write_close(a);
        archive_write_free(a);
        sm_code rc = oci_fetch(ref, &opt, &out, &err);
        if (rc == SM_OK || !strstr(err.message, cases[i].piece))
            fail_msg("case %zu: %d \"%s\"", i, rc, err.message);
    }
    write_file(tar, "this is not a tar file at all, not even close......", 50);
    assert_int_not_equal(oci_fetch(ref, &opt, &out, &err), SM_OK);
    int blobs, others;
    count_store(f, &blobs, &others);
    assert_int_equal(others, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_oci_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oci_layout_corrupt_layer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oci_layout_wrong_platform, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docker_archive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docker_archive_missing_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_download_cap_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_download_cap_docker_archive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_for_layers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
