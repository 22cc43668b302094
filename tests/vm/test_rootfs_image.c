/*
 * sm_image_from_rootfs against a real VM: a root filesystem folder made of
 * busybox-static (/usr/bin/busybox) and a marker file is packed, baked and
 * started; `cat /marker` and `sh -c 'echo ok'` run in it. A second call for
 * the same folder must reuse both the squashfs (same inode) and the baked
 * image (same folder inode and mtime): no pack, no bake. Prints the time of
 * each call. Needs a host that runs guests (tests/vm/test_image.sh runs it).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "supermachine.h"

static char work[128];

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sh(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "FAIL: %s: status %d\n", cmd, rc);
    return rc;
}

/* bin/busybox and its links, the folders the agent mounts over, /marker. */
static int make_rootfs(const char *root)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; mkdir -p bin etc proc sys dev tmp run root; cp /usr/bin/busybox bin/busybox; "
             "for l in sh cat echo id ls mount; do ln -s busybox bin/$l; done; echo rootfs-marker >marker",
             root);
    return sh(cmd);
}

/* The one dir-*.sqfs of the store's images (its inode), or 0. */
static ino_t sqfs_inode(const char *images)
{
    char dir[300], path[600];
    snprintf(dir, sizeof dir, "%s/.oci/rootfs", images);
    DIR *d = opendir(dir);
    ino_t ino = 0;
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!strncmp(e->d_name, "dir-", 4) && strstr(e->d_name, ".sqfs") && !strstr(e->d_name, ".tmp.") &&
            stat(path, &st) == 0) {
            ino = st.st_ino;
            n++;
        }
    }
    if (d)
        closedir(d);
    return n == 1 ? ino : 0;
}

static int run_in(sm_image *img, int argc, const char *const *argv, const char *want)
{
    sm_vm_config *c = sm_vm_config_new();
    sm_vm *vm = NULL;
    sm_error err = { 0 };
    sm_code rc = c ? sm_vm_config_image(c, img) : SM_E_NOMEM;
    if (!rc)
        rc = sm_vm_start(c, &vm, &err);
    sm_vm_config_free(c);
    if (rc) {
        fprintf(stderr, "FAIL: sm_vm_start: %s\n", err.message);
        return 1;
    }
    sm_exec_builder *b = sm_vm_exec_builder(vm);
    sm_exec_outcome out;
    memset(&out, 0, sizeof out);
    rc = b ? sm_exec_builder_argv(b, argc, argv) : SM_E_NOMEM;
    if (!rc)
        rc = sm_exec_output(b, &out, &err);
    sm_exec_builder_free(b);
    int bad = rc != SM_OK || out.status.code != 0 || !out.stdout_buf || strcmp((char *)out.stdout_buf, want);
    if (bad)
        fprintf(stderr, "FAIL: %s: rc %d (%s), status %d, stdout '%.60s'\n", argv[argc - 1], rc,
                rc ? err.message : "", out.status.code, out.stdout_buf ? (char *)out.stdout_buf : "");
    else
        printf("ok: %s -> %s", argv[argc - 1], want);
    sm_exec_outcome_free(&out);
    sm_vm_free(vm);
    return bad;
}

static int from_rootfs(sm_store *store, const char *root, sm_image **img, const char *what)
{
    sm_error err = { 0 };
    long long t0 = now_ms();
    sm_code rc = sm_image_from_rootfs(store, root, NULL, img, &err);
    printf("info: %s sm_image_from_rootfs: %lld ms\n", what, now_ms() - t0);
    if (rc)
        fprintf(stderr, "FAIL: %s sm_image_from_rootfs: %s\n", what, err.message);
    return rc != SM_OK;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/sm-rootfs-image.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(work))
        return perror("mkdtemp"), 1;
    char root[200], images[200], vms[200];
    snprintf(root, sizeof root, "%s/root", work);
    snprintf(images, sizeof images, "%s/images", work);
    snprintf(vms, sizeof vms, "%s/vms", work);
    setenv("XDG_RUNTIME_DIR", work, 1);
    mkdir(root, 0755);
    sm_store *store = NULL;
    sm_error err = { 0 };
    int failed = make_rootfs(root) != 0;
    if (!failed && sm_store_new(images, vms, &store, &err))
        failed = fprintf(stderr, "FAIL: sm_store_new: %s\n", err.message) > 0;
    sm_image *img = NULL, *again = NULL;
    if (!failed)
        failed = from_rootfs(store, root, &img, "first (pack + bake)");
    if (!failed) {
        const char *const cat[] = { "cat", "/marker" };
        const char *const echo[] = { "sh", "-c", "echo ok" };
        failed += run_in(img, 2, cat, "rootfs-marker\n");
        failed += run_in(img, 3, echo, "ok\n");
    }
    struct stat a = { 0 }, b = { 0 };
    ino_t sq1 = failed ? 0 : sqfs_inode(images), sq2 = 0;
    if (!failed && (sq1 == 0 || stat(sm_image_dir(img), &a) != 0))
        failed = fprintf(stderr, "FAIL: no single dir-*.sqfs or no image folder\n") > 0;
    if (!failed)
        failed = from_rootfs(store, root, &again, "second (cached)");
    if (!failed) {
        sq2 = sqfs_inode(images);
        if (stat(sm_image_dir(again), &b) != 0 || a.st_ino != b.st_ino ||
            a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec || sq1 != sq2)
            failed = fprintf(stderr, "FAIL: the second call packed or baked again (sqfs inode %lu -> %lu)\n",
                             (unsigned long)sq1, (unsigned long)sq2) > 0;
        else
            printf("ok: the second call reused the squashfs and the baked image\n");
    }
    sm_image_free(img);
    sm_image_free(again);
    sm_store_free(store);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    if (system(cmd) != 0)
        failed++;
    printf("%s\n", failed ? "FAILED" : "PASSED");
    return failed ? 1 : 0;
}
