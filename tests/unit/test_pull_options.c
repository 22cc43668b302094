/* The caps of sm_pull_options and the free-space check, through the public
 * API (sm_image_from_oci on an OCI layout written here) and through the
 * CLI's --max-download/--max-unpacked (the built command, beside this test
 * program). Every case fails before a VM would be needed: no KVM here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>

#include "helpers/small_fs.h"
#include "image/digest.h"
#include "image/oci_manifest.h"
#include "supermachine.h"

#define LAYER_FILE_SIZE (600u << 10) /* incompressible bytes in each layer's one file */

struct fixture {
    char dir[64];
    char layout[96];
    char images[96];
    char ref[128];
    uint64_t layers_size; /* the two layer blobs' sizes added up */
};

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void layout_blob(const char *layout, const void *data, size_t len, char digest[OCI_DIGEST_SIZE])
{
    sm_error err;
    assert_int_equal(oci_sha256_buffer(data, len, digest, &err), SM_OK);
    char path[256];
    snprintf(path, sizeof path, "%s/blobs/sha256/%s", layout, oci_digest_hex(digest));
    write_file(path, data, len);
}

/* A plain tar of one file of LAYER_FILE_SIZE noisy bytes, into memory. */
static char *tar_layer(const char *name, unsigned seed, size_t *len)
{
    size_t cap = LAYER_FILE_SIZE + 8192;
    char *buf = malloc(cap), *data = malloc(LAYER_FILE_SIZE);
    assert_non_null(buf);
    assert_non_null(data);
    uint32_t x = seed;
    for (size_t i = 0; i < LAYER_FILE_SIZE; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (char)(x >> 23);
    }
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_memory(a, buf, cap, len), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, LAYER_FILE_SIZE);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, data, LAYER_FILE_SIZE), (la_ssize_t)LAYER_FILE_SIZE);
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    free(data);
    return buf;
}

/* An OCI layout (f->layout) of one linux/amd64 image of two tar layers. */
static void make_layout(struct fixture *f)
{
    char path[256], cmd[300], layer_digest[2][OCI_DIGEST_SIZE], config_digest[OCI_DIGEST_SIZE];
    char manifest_digest[OCI_DIGEST_SIZE], buf[2048];
    size_t layer_len[2];
    snprintf(f->layout, sizeof f->layout, "%s/layout", f->dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/blobs/sha256'", f->layout);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 2; i++) {
        char *tar = tar_layer(i ? "b" : "a", 7u + (unsigned)i, &layer_len[i]);
        layout_blob(f->layout, tar, layer_len[i], layer_digest[i]);
        free(tar);
    }
    f->layers_size = layer_len[0] + layer_len[1];
    const char *config = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"sh\"]}}";
    layout_blob(f->layout, config, strlen(config), config_digest);
    int n = snprintf(buf, sizeof buf,
                     "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\","
                     "\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
                     "\"layers\":[{\"mediaType\":\"" OCI_MT_LAYER_TAR "\",\"digest\":\"%s\",\"size\":%zu},"
                     "{\"mediaType\":\"" OCI_MT_LAYER_TAR "\",\"digest\":\"%s\",\"size\":%zu}]}",
                     config_digest, strlen(config), layer_digest[0], layer_len[0], layer_digest[1], layer_len[1]);
    layout_blob(f->layout, buf, (size_t)n, manifest_digest);
    n = snprintf(buf, sizeof buf,
                 "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\","
                 "\"digest\":\"%s\",\"size\":%d}]}",
                 manifest_digest, n);
    snprintf(path, sizeof path, "%s/index.json", f->layout);
    write_file(path, buf, (size_t)n);
    snprintf(path, sizeof path, "%s/oci-layout", f->layout);
    write_file(path, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);
    snprintf(f->ref, sizeof f->ref, "oci:%s", f->layout);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/sm-test-pullopt-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->images, sizeof f->images, "%s/images", f->dir);
    if (mkdir(f->images, 0755) != 0)
        return -1;
    make_layout(f);
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

/* Files in the store's rootfs folder: none may be left by a failed build. */
static int rootfs_files(const struct fixture *f)
{
    char path[160];
    snprintf(path, sizeof path, "%s/.oci/rootfs", f->images);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    return n;
}

/* sm_image_from_oci of the fixture's layout with opt; its error. */
static sm_code pull(const struct fixture *f, const sm_pull_options *opt, sm_error *err)
{
    sm_store *store;
    assert_int_equal(sm_store_new(f->images, NULL, &store, err), SM_OK);
    sm_image *img = NULL;
    memset(err, 0, sizeof *err);
    sm_code rc = sm_image_from_oci(store, f->ref, opt, NULL, &img, err);
    printf("     (expected refusal) %s\n", err->message);
    sm_image_free(img);
    sm_store_free(store);
    return rc;
}

static void test_setters(void **state)
{
    (void)state;
    sm_pull_options *o = sm_pull_options_new();
    assert_non_null(o);
    assert_int_equal(sm_pull_options_max_compressed_bytes(NULL, 1), SM_E_INVALID);
    assert_int_equal(sm_pull_options_max_unpacked_bytes(NULL, 1), SM_E_INVALID);
    assert_int_equal(sm_pull_options_max_compressed_bytes(o, 0), SM_E_INVALID);
    assert_int_equal(sm_pull_options_max_unpacked_bytes(o, 0), SM_E_INVALID);
    assert_int_equal(sm_pull_options_max_compressed_bytes(o, UINT64_MAX), SM_OK);
    assert_int_equal(sm_pull_options_max_unpacked_bytes(o, 1), SM_OK);
    sm_pull_options_free(o);
}

static void test_compressed_cap(void **state)
{
    struct fixture *f = *state;
    sm_pull_options *o = sm_pull_options_new();
    assert_int_equal(sm_pull_options_max_compressed_bytes(o, f->layers_size - 1), SM_OK);
    sm_error err;
    assert_int_equal(pull(f, o, &err), SM_E_LIMIT);
    char want[160];
    snprintf(want, sizeof want, "(%llu bytes) compressed, more than the cap of", (unsigned long long)f->layers_size);
    assert_non_null(strstr(err.message, want));
    assert_int_equal(rootfs_files(f), 0);
    sm_pull_options_free(o);
}

static void test_unpacked_cap(void **state)
{
    struct fixture *f = *state;
    sm_pull_options *o = sm_pull_options_new();
    /* Room for the first layer's file, not the second's. */
    assert_int_equal(sm_pull_options_max_unpacked_bytes(o, LAYER_FILE_SIZE + 1000), SM_OK);
    sm_error err;
    assert_int_equal(pull(f, o, &err), SM_E_LIMIT);
    assert_non_null(strstr(err.message, "building the root filesystem of oci:"));
    assert_non_null(strstr(err.message, "layer 2 of 3 (sha256:"));
    assert_non_null(strstr(err.message, "entry 'b': the layers unpack to more than 600.9 KiB (615400 bytes)"));
    assert_int_equal(rootfs_files(f), 0); /* no image, no temporary file, no settings layer */
    sm_pull_options_free(o);
}

/* In a child with the images on a 1536 KiB tmpfs: the layers (1.2 MiB)
 * fit, twice them does not; refused before the root filesystem is packed. */
static int pull_on_small_fs(void *arg)
{
    struct fixture *f = arg;
    sm_error err;
    sm_code rc = pull(f, NULL, &err);
    if (rc != SM_E_LIMIT || !strstr(err.message, "building the root filesystem of oci:") ||
        !strstr(err.message, "not enough free space in") ||
        !strstr(err.message, "for the image's root filesystem (2 times its 1.1 MiB of layers)")) {
        printf("     wanted the free-space refusal, got %d\n", rc);
        return 1;
    }
    if (rootfs_files(f) != 0) {
        printf("     the rootfs folder is not empty\n");
        return 1;
    }
    return 0;
}

static void test_room_for_the_root_filesystem(void **state)
{
    struct fixture *f = *state;
    int rc = small_fs_run(f->images, 1536u << 10, pull_on_small_fs, f);
    if (rc == SMALL_FS_UNAVAILABLE)
        skip();
    assert_int_equal(rc, 0);
}

/* ---- the CLI's flags -------------------------------------------------------------- */

/* build[/asan]/bin/supermachine, beside this program's build[/asan]/tests. */
static bool cli_path(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return false;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (!slash)
        return false;
    *slash = 0;
    if (snprintf(out, cap, "%s/../bin/supermachine", self) >= (int)cap)
        return false;
    return access(out, X_OK) == 0;
}

/* Runs the CLI with args (a shell word list), SUPERMACHINE_IMAGES at the
 * fixture's images; its exit status, and its stderr in errbuf. */
static int run_cli(const struct fixture *f, const char *args, char *errbuf, size_t cap)
{
    char cli[PATH_MAX], cmd[PATH_MAX * 2 + 512], errfile[128];
    if (!cli_path(cli, sizeof cli)) {
        printf("     SKIPPED: the supermachine command is not built beside this test\n");
        skip();
    }
    snprintf(errfile, sizeof errfile, "%s/stderr", f->dir);
    snprintf(cmd, sizeof cmd, "SUPERMACHINE_IMAGES='%s' '%s' %s </dev/null >/dev/null 2>'%s'", f->images, cli,
             args, errfile);
    int status = system(cmd);
    FILE *e = fopen(errfile, "r");
    size_t got = e ? fread(errbuf, 1, cap - 1, e) : 0;
    if (e)
        fclose(e);
    errbuf[got] = 0;
    printf("     %s -> %d: %s", args, WIFEXITED(status) ? WEXITSTATUS(status) : -1, errbuf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cli_flags(void **state)
{
    struct fixture *f = *state;
    char err[1024], args[400];
    /* Bad sizes: usage errors, status 2, saying what a size is. */
    static const char *const bad[] = {"12Q", "0", "-5", "' 5'", "1.5G", "99999999999T", "''", "8GB"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "pull --max-download %s %s", bad[i], f->ref);
        assert_int_equal(run_cli(f, args, err, sizeof err), 2);
        assert_non_null(strstr(err, "--max-download wants a size"));
    }
    snprintf(args, sizeof args, "run --max-unpacked 1X %s -- true", f->ref);
    assert_int_equal(run_cli(f, args, err, sizeof err), 2);
    assert_non_null(strstr(err, "supermachine run: --max-unpacked wants a size"));
    /* Good sizes reach the library: 1K is below the layers. */
    snprintf(args, sizeof args, "pull --max-download 1K %s", f->ref);
    assert_int_equal(run_cli(f, args, err, sizeof err), 1);
    assert_non_null(strstr(err, "more than the cap of 1 KiB (1024 bytes)"));
    snprintf(args, sizeof args, "pull --max-unpacked 1k %s", f->ref);
    assert_int_equal(run_cli(f, args, err, sizeof err), 1);
    assert_non_null(strstr(err, "the layers unpack to more than 1 KiB (1024 bytes)"));
    assert_int_equal(rootfs_files(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setters),
        cmocka_unit_test_setup_teardown(test_compressed_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpacked_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_for_the_root_filesystem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_flags, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
