/* The content key of a root filesystem folder (src/image/rootfs_dir.c):
 * each field of the walk's record must change the key, the walk must not
 * follow symlinks, and its bounds must hold. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/rootfs.h"
#include "image/rootfs_dir.h"

static char root[64];

static void path_of(char *out, size_t cap, const char *rel)
{
    snprintf(out, cap, "%s/%s", root, rel);
}

static void write_file(const char *rel, const char *data)
{
    char p[256];
    path_of(p, sizeof p, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(data, f);
    assert_int_equal(fclose(f), 0);
}

static void set_mtime(const char *rel, long sec)
{
    char p[256];
    path_of(p, sizeof p, rel);
    struct timespec ts[2] = { { sec, 5 }, { sec, 5 } };
    assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static void key(char out[OCI_DIGEST_SIZE])
{
    sm_error err = { 0 };
    assert_int_equal(rootfs_dir_key(root, NULL, out, &err), SM_OK);
}

/* A small tree: bin/, bin/sh -> busybox, bin/busybox, etc/marker. */
static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/sm-rootfs-dir-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    char p[256];
    path_of(p, sizeof p, "bin");
    mkdir(p, 0755);
    path_of(p, sizeof p, "etc");
    mkdir(p, 0755);
    write_file("bin/busybox", "#!fake\n");
    write_file("etc/marker", "hello\n");
    path_of(p, sizeof p, "bin/sh");
    if (symlink("busybox", p) != 0)
        return -1;
    set_mtime("bin/busybox", 1000);
    set_mtime("etc/marker", 1000);
    set_mtime("bin/sh", 1000);
    set_mtime("bin", 1000);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_same_tree_same_key(void **state)
{
    (void)state;
    char a[OCI_DIGEST_SIZE], b[OCI_DIGEST_SIZE];
    key(a);
    key(b);
    assert_true(oci_digest_valid(a));
    assert_string_equal(a, b);
}

static void test_mode_changes_key(void **state)
{
    (void)state;
    char a[OCI_DIGEST_SIZE], b[OCI_DIGEST_SIZE], p[256];
    key(a);
    path_of(p, sizeof p, "etc/marker");
    assert_int_equal(chmod(p, 0600), 0);
    key(b);
    assert_string_not_equal(a, b);
}

static void test_size_and_mtime_change_key(void **state)
{
    (void)state;
    char a[OCI_DIGEST_SIZE], b[OCI_DIGEST_SIZE], c[OCI_DIGEST_SIZE];
    key(a);
    write_file("etc/marker", "hello, longer\n");
    set_mtime("etc/marker", 1000);
    key(b);
    assert_string_not_equal(a, b);
    set_mtime("etc/marker", 1001);
    key(c);
    assert_string_not_equal(b, c);
}

static void test_same_size_and_mtime_edit_is_not_seen(void **state)
{
    (void)state; /* the documented trade-off: contents are not read */
    char a[OCI_DIGEST_SIZE], b[OCI_DIGEST_SIZE];
    key(a);
    write_file("etc/marker", "HELLO\n");
    set_mtime("etc/marker", 1000);
    key(b);
    assert_string_equal(a, b);
}

/* What an engine does to each container's root: a new empty mount-point
 * file made in a folder (both times change), or a link, must give the same
 * key as the same made earlier; a non-empty file's time still counts. */
static void test_times_of_folders_links_empty_files_do_not_count(void **state)
{
    (void)state;
    char a[OCI_DIGEST_SIZE], b[OCI_DIGEST_SIZE], c[OCI_DIGEST_SIZE];
    write_file("etc/mountpoint", "");
    set_mtime("etc/mountpoint", 1000);
    set_mtime("etc", 1000);
    key(a);
    set_mtime("etc/mountpoint", 2000);
    set_mtime("etc", 2000);
    set_mtime("bin", 2000);
    key(b);
    assert_string_equal(a, b);
    char l[256];
    path_of(l, sizeof l, "etc/mtab"); /* podman's, made anew in each container */
    assert_int_equal(symlink("/proc/mounts", l), 0);
    set_mtime("etc/mtab", 1000);
    key(a);
    set_mtime("etc/mtab", 3000);
    key(b);
    assert_string_equal(a, b);
    set_mtime("etc/marker", 2000);
    key(c);
    assert_string_not_equal(b, c);
    assert_int_equal(unlink(l), 0);
    char p[256];
    path_of(p, sizeof p, "etc/mountpoint");
    assert_int_equal(unlink(p), 0);
    set_mtime("etc/marker", 1000);
}

static void test_new_file_and_rename_change_key(void **state)
{
    (void)state;
    char a[OCI_DIGEST_SIZE], b[OCI_DIGEST_SIZE], c[OCI_DIGEST_SIZE], p[256], q[256];
    key(a);
    write_file("etc/new", "");
    key(b);
    assert_string_not_equal(a, b);
    path_of(p, sizeof p, "etc/new");
    path_of(q, sizeof q, "etc/renamed");
    assert_int_equal(rename(p, q), 0);
    key(c);
    assert_string_not_equal(b, c);
}

static void test_symlink_target_changes_key(void **state)
{
    (void)state;
    char a[OCI_DIGEST_SIZE], b[OCI_DIGEST_SIZE], p[256];
    key(a);
    path_of(p, sizeof p, "bin/sh");
    assert_int_equal(unlink(p), 0);
    assert_int_equal(symlink("busyboX", p), 0);
    set_mtime("bin/sh", 1000); /* only the target differs: same length, times */
    set_mtime("bin", 1000);
    key(b);
    assert_string_not_equal(a, b);
}

/* A symlink to a folder (even outside the tree) is hashed as a link: what
 * is behind it does not count. */
static void test_symlink_to_folder_not_followed(void **state)
{
    (void)state;
    char a[OCI_DIGEST_SIZE], b[OCI_DIGEST_SIZE], p[256], outside[64];
    snprintf(outside, sizeof outside, "/tmp/sm-rootfs-out-XXXXXX");
    assert_non_null(mkdtemp(outside));
    path_of(p, sizeof p, "outside");
    assert_int_equal(symlink(outside, p), 0);
    key(a);
    char f[128];
    snprintf(f, sizeof f, "%s/x", outside);
    int fd = open(f, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    key(b);
    assert_string_equal(a, b);
    unlink(f);
    rmdir(outside);
}

static void test_limits(void **state)
{
    (void)state;
    char out[OCI_DIGEST_SIZE], p[256];
    sm_error err = { 0 };
    struct rootfs_dir_limits few = { .max_entries = 3 };
    assert_int_equal(rootfs_dir_key(root, &few, out, &err), SM_E_LIMIT);
    assert_non_null(strstr(err.message, "more than 3 entries"));
    path_of(p, sizeof p, "bin/a");
    mkdir(p, 0755);
    path_of(p, sizeof p, "bin/a/b");
    mkdir(p, 0755);
    struct rootfs_dir_limits shallow = { .max_depth = 2 };
    assert_int_equal(rootfs_dir_key(root, &shallow, out, &err), SM_E_LIMIT);
    assert_non_null(strstr(err.message, "deeper than 2"));
    struct rootfs_dir_limits enough = { .max_depth = 3 };
    assert_int_equal(rootfs_dir_key(root, &enough, out, &err), SM_OK);
}

static void test_not_a_folder(void **state)
{
    (void)state;
    char out[OCI_DIGEST_SIZE], p[256];
    sm_error err = { 0 };
    path_of(p, sizeof p, "etc/marker");
    assert_int_equal(rootfs_dir_key(p, NULL, out, &err), SM_E_INVALID);
    assert_int_equal(rootfs_dir_key("/nonexistent/sm", NULL, out, &err), SM_E_INVALID);
}

/* Packs the tree with gensquashfs and lists it back with rdsquashfs. */
static void test_pack_and_list(void **state)
{
    (void)state;
    char p[256], img[256], cmd[700], out[4096] = "";
    path_of(p, sizeof p, "etc/marker");
    assert_int_equal(chmod(p, 0640), 0);
    snprintf(img, sizeof img, "%s.sqfs", root);
    sm_error err = { 0 };
    sm_code rc = rootfs_build_dir(root, img, &err);
    if (rc == SM_E_UNSUPPORTED)
        skip();
    assert_int_equal(rc, SM_OK);
    snprintf(cmd, sizeof cmd, "rdsquashfs -l /etc '%s' && rdsquashfs -l /bin '%s' 2>&1", img, img);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t got = fread(out, 1, sizeof out - 1, f);
    out[got] = 0;
    assert_int_equal(pclose(f), 0);
    unlink(img);
    assert_non_null(strstr(out, "-rw-r----- "));
    assert_non_null(strstr(out, " marker\n"));
    assert_non_null(strstr(out, " sh -> busybox\n"));
}

/* A failed pack leaves neither the image nor its temporary file. */
static void test_pack_failure_leaves_nothing(void **state)
{
    (void)state;
    char img[256], tmp[300];
    snprintf(img, sizeof img, "%s.sqfs", root);
    sm_error err = { 0 };
    sm_code rc = rootfs_build_dir("/nonexistent/sm-rootfs", img, &err);
    if (rc == SM_E_UNSUPPORTED)
        skip();
    assert_int_equal(rc, SM_E_IO);
    assert_non_null(strstr(err.message, "gensquashfs failed"));
    assert_int_equal(access(img, F_OK), -1);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", img, (long)getpid());
    assert_int_equal(access(tmp, F_OK), -1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_same_tree_same_key),
        T(test_mode_changes_key),
        T(test_size_and_mtime_change_key),
        T(test_same_size_and_mtime_edit_is_not_seen),
        T(test_times_of_folders_links_empty_files_do_not_count),
        T(test_new_file_and_rename_change_key),
        T(test_symlink_target_changes_key),
        T(test_symlink_to_folder_not_followed),
        T(test_limits),
        T(test_not_a_folder),
        T(test_pack_and_list),
        T(test_pack_failure_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
