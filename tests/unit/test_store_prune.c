/*
 * sm_store_prune (src/lib/prune.c) on a store made by hand, no VM: two OCI
 * images that share a layer, a root filesystem only a VM folder links to,
 * leftovers that no image uses, a download in progress, and hostile links.
 * After an rmi, exactly the removed image's files and the leftovers go;
 * a dry run removes nothing; nothing outside the store is touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "image/digest.h"
#include "lib/prune.h"
#include "supermachine.h"

static char root[64];
/* Short enough that every path made from them fits PATH_MAX. */
static char images[256], vms[256], oci[256], blobs[256], rootfs[256], outside[256];

/* The store's two images: their manifests, configs, layers, root filesystems. */
struct fake_image {
    char manifest[OCI_DIGEST_SIZE], config[OCI_DIGEST_SIZE], layer[OCI_DIGEST_SIZE];
    char rootfs[PATH_MAX];
};
static struct fake_image a, b;
static char shared_layer[OCI_DIGEST_SIZE], orphan_blob[OCI_DIGEST_SIZE];
static char vm_rootfs[PATH_MAX], orphan_rootfs[PATH_MAX], partial[PATH_MAX], planted_link[PATH_MAX],
    victim[PATH_MAX];

/* A path made with snprintf must fit its buffer (and gcc then knows the
 * result is looked at). */
static void fits(int n, size_t cap)
{
    assert_true(n >= 0 && (size_t)n < cap);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void make_dir(const char *path)
{
    assert_int_equal(mkdir(path, 0700), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void path_of(char *out, const char *digest)
{
    fits(snprintf(out, PATH_MAX, "%s/%s", blobs, oci_digest_hex(digest)), PATH_MAX);
}

/* Stores text as a blob under its own digest. */
static void put_blob(const char *text, char digest[OCI_DIGEST_SIZE])
{
    char path[PATH_MAX];
    assert_int_equal(oci_sha256_buffer(text, strlen(text), digest, NULL), SM_OK);
    path_of(path, digest);
    write_text(path, text);
}

static void put_rootfs(const char *digest, char *out)
{
    fits(snprintf(out, PATH_MAX, "%s/%s.sqfs", rootfs, oci_digest_hex(digest)), PATH_MAX);
    write_text(out, "a squashfs, as far as prune cares");
}

/* An image folder as a pull leaves it: snapshot files, image.info naming
 * the manifest, and the disk link. */
static void make_image(const char *name, const char *layer_text, struct fake_image *img)
{
    char text[2048], dir[PATH_MAX], path[PATH_MAX + 16];
    put_blob(layer_text, img->layer);
    fits(snprintf(text, sizeof text, "{\"config-of\": \"%s\"}", name), sizeof text);
    put_blob(text, img->config);
    snprintf(text, sizeof text,
             "{\"schemaVersion\": 2, \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", "
             "\"config\": {\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"%s\", "
             "\"size\": 20}, \"layers\": ["
             "{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", \"digest\": \"%s\", \"size\": 12}, "
             "{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", \"digest\": \"%s\", \"size\": 7}]}",
             img->config, shared_layer, img->layer);
    put_blob(text, img->manifest);
    put_rootfs(img->manifest, img->rootfs);
    fits(snprintf(dir, sizeof dir, "%s/%s", images, name), sizeof dir);
    make_dir(dir);
    fits(snprintf(path, sizeof path, "%s/state", dir), sizeof path);
    write_text(path, "state");
    fits(snprintf(path, sizeof path, "%s/memory", dir), sizeof path);
    write_text(path, "memory");
    fits(snprintf(path, sizeof path, "%s/image.info", dir), sizeof path);
    fits(snprintf(text, sizeof text, "memory_mib 256\ncpus 1\ndigest %s\n", img->manifest), sizeof text);
    write_text(path, text);
    fits(snprintf(path, sizeof path, "%s/disk", dir), sizeof path);
    assert_int_equal(symlink(img->rootfs, path), 0);
}

static int setup(void **state)
{
    (void)state;
    fits(snprintf(root, sizeof root, "/tmp/sm-prune-XXXXXX"), sizeof root);
    assert_non_null(mkdtemp(root));
    fits(snprintf(images, sizeof images, "%s/images", root), sizeof images);
    fits(snprintf(vms, sizeof vms, "%s/vms", root), sizeof vms);
    fits(snprintf(oci, sizeof oci, "%s/.oci", images), sizeof oci);
    fits(snprintf(blobs, sizeof blobs, "%s/blobs/sha256", oci), sizeof blobs);
    fits(snprintf(rootfs, sizeof rootfs, "%s/rootfs", oci), sizeof rootfs);
    fits(snprintf(outside, sizeof outside, "%s/outside", root), sizeof outside);
    make_dir(images);
    make_dir(vms);
    make_dir(outside);
    make_dir(oci);
    char p[PATH_MAX];
    fits(snprintf(p, sizeof p, "%s/blobs", oci), sizeof p);
    make_dir(p);
    make_dir(blobs);
    make_dir(rootfs);
    put_blob("the layer both images have", shared_layer);
    make_image("a", "a's own layer", &a);
    make_image("b", "b's own layer", &b);
    put_blob("a blob no image names", orphan_blob);
    char digest[OCI_DIGEST_SIZE];
    /* A root filesystem whose image is gone, but a VM from it runs on. */
    assert_int_equal(oci_sha256_buffer("vm", 2, digest, NULL), SM_OK);
    put_rootfs(digest, vm_rootfs);
    fits(snprintf(p, sizeof p, "%s/0000abcd", vms), sizeof p);
    make_dir(p);
    fits(snprintf(p, sizeof p, "%s/0000abcd/disk", vms), sizeof p);
    assert_int_equal(symlink(vm_rootfs, p), 0);
    /* One nothing uses. */
    assert_int_equal(oci_sha256_buffer("old", 3, digest, NULL), SM_OK);
    put_rootfs(digest, orphan_rootfs);
    /* A download in progress, and a link planted where a blob would be,
     * leading to a file outside the store that looks like a blob. */
    assert_int_equal(oci_sha256_buffer("partial", 7, digest, NULL), SM_OK);
    fits(snprintf(partial, sizeof partial, "%s/%s.partial", blobs, oci_digest_hex(digest)), sizeof partial);
    write_text(partial, "half");
    assert_int_equal(oci_sha256_buffer("victim", 6, digest, NULL), SM_OK);
    fits(snprintf(victim, sizeof victim, "%s/%s", outside, oci_digest_hex(digest)), sizeof victim);
    write_text(victim, "not the store's");
    fits(snprintf(planted_link, sizeof planted_link, "%s/%s", blobs, oci_digest_hex(digest)), sizeof planted_link);
    assert_int_equal(symlink(victim, planted_link), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    fits(snprintf(cmd, sizeof cmd, "rm -rf %s", root), sizeof cmd);
    return system(cmd) == 0 ? 0 : -1;
}

static sm_store *new_store(void)
{
    sm_store *s = NULL;
    assert_int_equal(sm_store_new(images, vms, &s, NULL), SM_OK);
    return s;
}

/* What the callback was told. */
struct seen {
    char paths[16][PATH_MAX];
    int n;
    uint64_t bytes;
};

static void note(void *ctx, const char *path, uint64_t bytes)
{
    struct seen *s = ctx;
    assert_true(s->n < 16);
    fits(snprintf(s->paths[s->n++], PATH_MAX, "%s", path), PATH_MAX);
    s->bytes += bytes;
}

static bool was_seen(const struct seen *s, const char *path)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->paths[i], path))
            return true;
    return false;
}

static void expect_blob(const char *digest, bool present)
{
    char path[PATH_MAX];
    path_of(path, digest);
    if (exists(path) != present)
        fail_msg("blob %s should %s", path, present ? "be there" : "be gone");
}

/* Every file of both images, and the VM's root filesystem, stay. */
static void expect_b_and_vm_kept(void)
{
    expect_blob(shared_layer, true);
    expect_blob(b.manifest, true);
    expect_blob(b.config, true);
    expect_blob(b.layer, true);
    assert_true(exists(b.rootfs));
    assert_true(exists(vm_rootfs));
    assert_true(exists(partial));
    assert_true(exists(planted_link));
    assert_true(exists(victim));
}

static void test_prune_after_rmi(void **state)
{
    (void)state;
    sm_store *s = new_store();
    sm_prune_report r;
    struct seen seen = { .n = 0 };
    sm_error err = { 0 };

    /* Both images named: only the leftovers would go, and a dry run keeps them. */
    assert_int_equal(sm_store_prune(s, true, note, &seen, &r, &err), SM_OK);
    assert_int_equal(r.rootfs_removed, 1);
    assert_int_equal(r.blobs_removed, 1);
    assert_int_equal(seen.n, 2);
    assert_true(was_seen(&seen, orphan_rootfs));
    assert_true(exists(orphan_rootfs));
    expect_blob(orphan_blob, true);
    assert_int_equal(r.bytes_freed, seen.bytes);

    assert_int_equal(sm_image_remove(s, "a", &err), SM_OK);

    /* Dry run after rmi: a's manifest, config, own layer and root
     * filesystem join the leftovers; nothing is removed. */
    memset(&seen, 0, sizeof seen);
    assert_int_equal(sm_store_prune(s, true, note, &seen, &r, &err), SM_OK);
    assert_int_equal(r.rootfs_removed, 2);
    assert_int_equal(r.blobs_removed, 4);
    assert_true(r.bytes_freed > 0);
    expect_blob(a.manifest, true);
    assert_true(exists(a.rootfs));

    /* The prune itself: exactly those go. */
    memset(&seen, 0, sizeof seen);
    assert_int_equal(sm_store_prune(s, false, note, &seen, &r, &err), SM_OK);
    assert_int_equal(r.rootfs_removed, 2);
    assert_int_equal(r.blobs_removed, 4);
    assert_int_equal(seen.n, 6);
    assert_int_equal(r.bytes_freed, seen.bytes);
    assert_true(was_seen(&seen, a.rootfs));
    expect_blob(a.manifest, false);
    expect_blob(a.config, false);
    expect_blob(a.layer, false);
    expect_blob(orphan_blob, false);
    assert_false(exists(a.rootfs));
    assert_false(exists(orphan_rootfs));
    expect_b_and_vm_kept();

    /* Nothing left to do. */
    assert_int_equal(sm_store_prune(s, false, NULL, NULL, &r, &err), SM_OK);
    assert_int_equal(r.rootfs_removed + r.blobs_removed + r.bytes_freed, 0);

    /* Once the VM's folder is gone, its root filesystem goes too. */
    char p[PATH_MAX];
    fits(snprintf(p, sizeof p, "%s/0000abcd/disk", vms), sizeof p);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(sm_store_prune(s, false, NULL, NULL, &r, &err), SM_OK);
    assert_int_equal(r.rootfs_removed, 1);
    assert_int_equal(r.blobs_removed, 0);
    assert_false(exists(vm_rootfs));
    assert_true(exists(b.rootfs));
    sm_store_free(s);
}

/* The blob folder swapped for a link to a folder outside the store: it is
 * refused, and the blob-named file there stays. */
static void test_linked_folder_refused(void **state)
{
    (void)state;
    char moved[PATH_MAX + 8];
    fits(snprintf(moved, sizeof moved, "%s.real", blobs), sizeof moved);
    assert_int_equal(rename(blobs, moved), 0);
    assert_int_equal(symlink(outside, blobs), 0);
    sm_store *s = new_store();
    assert_int_equal(sm_image_remove(s, "a", NULL), SM_OK);
    sm_prune_report r;
    sm_error err = { 0 };
    assert_int_equal(sm_store_prune(s, false, NULL, NULL, &r, &err), SM_E_IO);
    assert_non_null(strstr(err.message, "a link there is refused"));
    assert_true(exists(victim));
    assert_int_equal(r.blobs_removed, 0);
    sm_store_free(s);
}

/* A pull holds the store's lock: a prune then removes nothing, SM_E_BUSY. */
static void test_busy_while_pulling(void **state)
{
    (void)state;
    int lock;
    assert_int_equal(oci_store_lock(oci, false, &lock, NULL), SM_OK);
    sm_store *s = new_store();
    assert_int_equal(sm_image_remove(s, "a", NULL), SM_OK);
    sm_prune_report r;
    sm_error err = { 0 };
    assert_int_equal(sm_store_prune(s, false, NULL, NULL, &r, &err), SM_E_BUSY);
    assert_non_null(strstr(err.message, "being pulled"));
    expect_blob(a.manifest, true);
    close(lock);
    assert_int_equal(sm_store_prune(s, false, NULL, NULL, &r, &err), SM_OK);
    expect_blob(a.manifest, false);
    sm_store_free(s);
}

/* A store that never pulled anything has nothing to prune. */
static void test_no_oci_store(void **state)
{
    (void)state;
    char cmd[PATH_MAX + 16];
    fits(snprintf(cmd, sizeof cmd, "rm -rf %s", oci), sizeof cmd);
    assert_int_equal(system(cmd), 0);
    sm_store *s = new_store();
    sm_prune_report r = { 1, 1, 1 };
    assert_int_equal(sm_store_prune(s, false, NULL, NULL, &r, NULL), SM_OK);
    assert_int_equal(r.rootfs_removed + r.blobs_removed + r.bytes_freed, 0);
    sm_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prune_after_rmi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linked_folder_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_while_pulling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_oci_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
