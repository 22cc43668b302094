/*
 * The parts of the VM lifecycle that need no VM: asset lookup (src/lib/
 * assets.c), the runtime folder, and a VM's state folder (src/lib/
 * vm_state.c: vm.info, whether a recorded VMM lives, removal).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/assets.h"
#include "lib/image_info.h"
#include "lib/vm_state.h"

static char tmp[64];

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/sm-vm-state.XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(vm_id_valid("0a1b2c3d"));
    assert_true(vm_id_valid("f"));
    assert_false(vm_id_valid(""));
    assert_false(vm_id_valid(NULL));
    assert_false(vm_id_valid("0A1B2C3D"));   /* we only make lowercase */
    assert_false(vm_id_valid("../x"));
    assert_false(vm_id_valid("abc/def"));
    assert_false(vm_id_valid("0123456789abcdef")); /* 16: too long */
}

static void test_record_round_trip(void **state)
{
    (void)state;
    struct vm_record r = { .pid = 1234, .start_ticks = 987654321, .memory_mib = 512, .cpus = 2,
                           .started_unix = 1790000000 };
    assert_int_equal(vm_record_write(tmp, &r, NULL), SM_OK);
    struct vm_record back;
    assert_int_equal(vm_record_read(tmp, &back, NULL), SM_OK);
    assert_int_equal(back.pid, 1234);
    assert_int_equal(back.start_ticks, 987654321);
    assert_int_equal(back.memory_mib, 512);
    assert_int_equal(back.cpus, 2);
    assert_int_equal(back.started_unix, 1790000000);
    char path[128];
    snprintf(path, sizeof path, "%s/vm.info.tmp", tmp);
    assert_int_equal(access(path, F_OK), -1); /* renamed into place */
}

static void test_record_hostile_files(void **state)
{
    (void)state;
    struct vm_record r;
    sm_error err;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/none", tmp);
    assert_int_equal(vm_record_read(dir, &r, &err), SM_E_NOTFOUND);
    const char *bad[] = {
        "",                                            /* empty */
        "version 1\nstart_ticks 5\n",                  /* no pid */
        "version 1\npid 0\nstart_ticks 5\n",           /* pid 0 */
        "version 1\npid -4\nstart_ticks 5\n",          /* negative */
        "version 1\npid 99999999999\nstart_ticks 5\n", /* beyond pid_t */
        "version 1\npid 12x\nstart_ticks 5\n",         /* trailing junk */
        "version 1\npid 12\n",                         /* no start_ticks */
        "pidx 12\nstart_ticks 5\n",                    /* a longer key is not pid */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(tmp, "vm.info", bad[i]);
        assert_int_equal(vm_record_read(tmp, &r, &err), SM_E_PROTOCOL);
        assert_int_equal(r.pid, 0);
    }
    /* Unknown keys are skipped; what lies beyond the first 1 KiB is not read. */
    char big[2100];
    memset(big, 'k', 2000);
    snprintf(big + 2000, sizeof big - 2000, "\npid 77\nstart_ticks 9\n");
    write_file(tmp, "vm.info", "later_key 5\npid 77\nstart_ticks 9\ncpus 3\n");
    assert_int_equal(vm_record_read(tmp, &r, &err), SM_OK);
    assert_int_equal(r.pid, 77);
    assert_int_equal(r.cpus, 3);
    write_file(tmp, "vm.info", big); /* the pid line lies beyond the 1 KiB read */
    assert_int_equal(vm_record_read(tmp, &r, &err), SM_E_PROTOCOL);
}

/* A live process is alive only with its own start time: a reused PID (same
 * number, other start) is not the VMM; zombies and reaped ones are gone. */
static void test_alive_and_pid_reuse(void **state)
{
    (void)state;
    uint64_t mine = vm_process_start_ticks(getpid());
    assert_true(mine > 0);
    struct vm_record r = { .pid = getpid(), .start_ticks = mine };
    assert_true(vm_record_alive(&r));
    r.start_ticks = mine + 1;
    assert_false(vm_record_alive(&r));
    r.pid = 0;
    assert_false(vm_record_alive(&r));

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    usleep(100000); /* a zombie now */
    for (int i = 0; i < 50 && vm_process_start_ticks(child); i++)
        usleep(20000);
    assert_int_equal(vm_process_start_ticks(child), 0);
    waitpid(child, NULL, 0);
    assert_int_equal(vm_process_start_ticks(child), 0);
}

static void test_dir_remove(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/vmdir", tmp);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(dir, "a", "x");
    write_file(dir, "console.log", "y");
    assert_int_equal(vm_dir_remove(dir, NULL), SM_OK);
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(vm_dir_remove(dir, NULL), SM_OK); /* already gone: fine */
}

static void test_assets_lookup_order(void **state)
{
    (void)state;
    char a[128], b[128], out[PATH_MAX];
    snprintf(a, sizeof a, "%s/assets", tmp);
    snprintf(b, sizeof b, "%s/data", tmp);
    char b_sm[160];
    snprintf(b_sm, sizeof b_sm, "%s/supermachine", b);
    assert_int_equal(mkdir(a, 0755), 0);
    assert_int_equal(mkdir(b, 0755), 0);
    assert_int_equal(mkdir(b_sm, 0755), 0);
    write_file(a, "bzImage", "k");
    write_file(b_sm, "bzImage", "k");
    write_file(b_sm, "initramfs.cpio", "i");
    setenv("XDG_DATA_HOME", b, 1);
    /* $SUPERMACHINE_ASSETS first; what it lacks comes from later places. */
    setenv("SUPERMACHINE_ASSETS", a, 1);
    assert_int_equal(assets_find(ASSET_KERNEL, out, sizeof out, NULL), SM_OK);
    assert_true(strncmp(out, a, strlen(a)) == 0);
    assert_int_equal(assets_find(ASSET_INITRD, out, sizeof out, NULL), SM_OK);
    assert_true(strncmp(out, b_sm, strlen(b_sm)) == 0);
    /* A file named outright wins, and must exist. */
    char named[200];
    snprintf(named, sizeof named, "%s/bzImage", b_sm);
    setenv("SUPERMACHINE_KERNEL", named, 1);
    assert_int_equal(assets_find(ASSET_KERNEL, out, sizeof out, NULL), SM_OK);
    assert_string_equal(out, named);
    setenv("SUPERMACHINE_KERNEL", "/nonexistent/k", 1);
    sm_error err;
    assert_int_equal(assets_find(ASSET_KERNEL, out, sizeof out, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "/nonexistent/k"));
    unsetenv("SUPERMACHINE_KERNEL");
    unsetenv("SUPERMACHINE_ASSETS");
    unsetenv("XDG_DATA_HOME");
}

/* Found nowhere: the message names the places looked. (An 8-byte output
 * refuses every real path, so even the build tree's files count as absent.) */
static void test_assets_not_found_names_places(void **state)
{
    (void)state;
    char out[8];
    sm_error err;
    char data[128];
    snprintf(data, sizeof data, "%s/empty-data", tmp);
    setenv("XDG_DATA_HOME", data, 1);
    sm_code rc = assets_find(ASSET_INITRD, out, sizeof out, &err);
    unsetenv("XDG_DATA_HOME");
    assert_int_equal(rc, SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "looked in:"));
    assert_non_null(strstr(err.message, data));
    assert_non_null(strstr(err.message, "SUPERMACHINE_INITRD"));
}

static void test_vms_dir(void **state)
{
    (void)state;
    char rt[128], out[PATH_MAX], want[200];
    snprintf(rt, sizeof rt, "%s/rt", tmp);
    setenv("XDG_RUNTIME_DIR", rt, 1);
    assert_int_equal(assets_vms_dir(out, sizeof out, false, NULL), SM_OK);
    snprintf(want, sizeof want, "%s/supermachine/vms", rt);
    assert_string_equal(out, want);
    assert_int_equal(access(rt, F_OK), -1); /* not created when not asked */
    assert_int_equal(assets_vms_dir(out, sizeof out, true, NULL), SM_OK);
    struct stat st;
    assert_int_equal(stat(want, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    char small[16];
    assert_int_equal(assets_vms_dir(small, sizeof small, false, NULL), SM_E_INVALID);
    unsetenv("XDG_RUNTIME_DIR");
}

/* Two stores side by side: each lists only its own VMs and images, folders
 * are made on first use, and a store refuses a relative path. */
static void test_two_stores(void **state)
{
    (void)state;
    char a_images[PATH_MAX], a_vms[PATH_MAX], b_vms[PATH_MAX], got[PATH_MAX];
    snprintf(a_images, sizeof a_images, "%s/a/images", tmp);
    snprintf(a_vms, sizeof a_vms, "%s/a/vms", tmp);
    snprintf(b_vms, sizeof b_vms, "%s/b/vms", tmp);
    sm_store *a = NULL, *b = NULL, *bad = NULL;
    sm_error err = { 0 };
    assert_int_equal(sm_store_new("relative/images", NULL, &bad, &err), SM_E_INVALID);
    assert_null(bad);
    assert_non_null(strstr(err.message, "absolute"));
    assert_int_equal(sm_store_new(a_images, a_vms, &a, NULL), SM_OK);
    assert_int_equal(sm_store_new(NULL, b_vms, &b, NULL), SM_OK);
    assert_int_equal(sm_store_images_dir(a, got, sizeof got, NULL), SM_OK);
    assert_string_equal(got, a_images);
    struct stat st;
    assert_int_equal(stat(a_images, &st), 0); /* made on first use */
    assert_int_equal(sm_store_vms_dir(b, got, sizeof got, NULL), SM_OK);
    assert_string_equal(got, b_vms);

    /* A VM folder in a only (a dead VMM's: its recorded PID is long gone). */
    char vm_dir[PATH_MAX + 16];
    snprintf(vm_dir, sizeof vm_dir, "%s/0123abcd", a_vms);
    assert_int_equal(mkdir(a_vms, 0700), 0);
    assert_int_equal(mkdir(vm_dir, 0700), 0);
    struct vm_record r = { .pid = 999999, .start_ticks = 1, .memory_mib = 256, .cpus = 1 };
    assert_int_equal(vm_record_write(vm_dir, &r, NULL), SM_OK);
    sm_vm_info *list = NULL;
    size_t n = 9;
    assert_int_equal(sm_vm_list(a, &list, &n, NULL), SM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, "0123abcd");
    assert_false(list[0].running);
    free(list);
    assert_int_equal(sm_vm_list(b, &list, &n, NULL), SM_OK);
    assert_int_equal(n, 0);
    free(list);
    sm_vm *vm = NULL;
    assert_int_equal(sm_vm_open(b, "0123abcd", &vm, NULL), SM_E_NOTFOUND);
    assert_int_equal(sm_vm_open(a, "0123abcd", &vm, NULL), SM_OK);
    /* A dead VM is neither paused nor resumed, and a stale paused file
     * does not make it look paused. */
    assert_int_equal(sm_vm_pause(vm, &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "VM 0123abcd is not running: nothing to pause"));
    assert_int_equal(sm_vm_resume(vm, &err), SM_E_NOTFOUND);
    char paused[PATH_MAX + 32];
    snprintf(paused, sizeof paused, "%s/" VM_PAUSED_FILE, vm_dir);
    close(open(paused, O_WRONLY | O_CREAT, 0600));
    sm_vm_info info;
    assert_int_equal(sm_vm_get_info(vm, &info, NULL), SM_OK);
    assert_false(info.running);
    assert_false(info.paused);
    sm_vm_free(vm);
    assert_int_equal(sm_vm_pause(NULL, &err), SM_E_INVALID);

    sm_image_info *images = NULL;
    assert_int_equal(sm_image_list(a, &images, &n, NULL), SM_OK);
    assert_int_equal(n, 0);
    free(images);
    sm_image *img = NULL;
    assert_int_equal(sm_image_open(a, "nothing-here", &img, &err), SM_E_NOTFOUND);
    sm_store_free(a);
    sm_store_free(b);
}

/* Store folders are made 0700; one that others may write into is refused
 * with the reason, for images and at every level of the VM state folder. */
static void test_unsafe_store_folders_refused(void **state)
{
    (void)state;
    char images[PATH_MAX], rt[PATH_MAX], mid[PATH_MAX + 16], out[PATH_MAX + 32];
    snprintf(images, sizeof images, "%s/unsafe/images", tmp);
    sm_store *s = NULL;
    sm_error err = { 0 };
    assert_int_equal(sm_store_new(images, NULL, &s, NULL), SM_OK);
    assert_int_equal(sm_store_images_dir(s, out, sizeof out, &err), SM_OK);
    struct stat st;
    assert_int_equal(stat(images, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(chmod(images, 0777), 0);
    sm_image_info *list = NULL;
    size_t n = 0;
    assert_int_equal(sm_image_list(s, &list, &n, &err), SM_E_IO);
    assert_non_null(strstr(err.message, "not safe to use"));
    assert_int_equal(chmod(images, 0755), 0); /* readable by others is fine: not writable */
    assert_int_equal(sm_image_list(s, &list, &n, NULL), SM_OK);
    free(list);
    sm_store_free(s);

    snprintf(rt, sizeof rt, "%s/unsafe-rt", tmp);
    snprintf(mid, sizeof mid, "%s/supermachine", rt);
    assert_int_equal(mkdir(rt, 0700), 0);
    assert_int_equal(mkdir(mid, 0700), 0);
    assert_int_equal(chmod(mid, 0770), 0);
    setenv("XDG_RUNTIME_DIR", rt, 1);
    sm_vm_info *vms = NULL;
    assert_int_equal(sm_vm_list(NULL, &vms, &n, &err), SM_E_IO);
    assert_non_null(strstr(err.message, mid));
    assert_int_equal(assets_vms_dir(out, sizeof out, true, &err), SM_E_IO);
    assert_int_equal(chmod(mid, 0700), 0);
    assert_int_equal(assets_vms_dir(out, sizeof out, true, NULL), SM_OK);
    unsetenv("XDG_RUNTIME_DIR");
}

/* An image's disk link is followed only into the root filesystems of the
 * store that holds it, and to the file of the digest image.info names. */
static void test_image_disk_link_checked(void **state)
{
    (void)state;
    char images[PATH_MAX], rootfs[PATH_MAX + 16], img[PATH_MAX + 16], sqfs[PATH_MAX + 96], other[PATH_MAX + 96];
    char link[PATH_MAX + 32], info[PATH_MAX + 32], out[PATH_MAX];
    const char *hex = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";
    snprintf(images, sizeof images, "%s/disk-store", tmp);
    snprintf(rootfs, sizeof rootfs, "%s/.oci", images);
    assert_int_equal(mkdir(images, 0700), 0);
    assert_int_equal(mkdir(rootfs, 0700), 0);
    snprintf(rootfs, sizeof rootfs, "%s/.oci/rootfs", images);
    assert_int_equal(mkdir(rootfs, 0700), 0);
    snprintf(sqfs, sizeof sqfs, "%s/%s.sqfs", rootfs, hex);
    snprintf(other, sizeof other, "%s/elsewhere.sqfs", tmp);
    FILE *f = fopen(sqfs, "w");
    fclose(f);
    f = fopen(other, "w");
    fclose(f);
    snprintf(img, sizeof img, "%s/oci-ab12", images);
    assert_int_equal(mkdir(img, 0700), 0);
    sm_error err = { 0 };
    assert_int_equal(image_disk_for_restore(img, out, sizeof out, &err), SM_OK);
    assert_string_equal(out, ""); /* no disk */
    snprintf(link, sizeof link, "%s/disk", img);
    snprintf(info, sizeof info, "%s/image.info", img);
    assert_int_equal(symlink(sqfs, link), 0);
    f = fopen(info, "w");
    fprintf(f, "memory_mib 256\ndigest sha256:%s\n", hex);
    fclose(f);
    assert_int_equal(image_disk_for_restore(img, out, sizeof out, &err), SM_OK);
    assert_string_equal(out, sqfs);
    /* a link out of the store */
    unlink(link);
    assert_int_equal(symlink(other, link), 0);
    assert_int_equal(image_disk_for_restore(img, out, sizeof out, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "outside the image store"));
    /* another digest's root filesystem */
    unlink(link);
    snprintf(other, sizeof other, "%s/cd34.sqfs", rootfs);
    f = fopen(other, "w");
    fclose(f);
    assert_int_equal(symlink(other, link), 0);
    assert_int_equal(image_disk_for_restore(img, out, sizeof out, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "not the root filesystem of its digest"));
    /* not a link at all */
    unlink(link);
    f = fopen(link, "w");
    fclose(f);
    assert_int_equal(image_disk_for_restore(img, out, sizeof out, &err), SM_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_hostile_files),
        cmocka_unit_test(test_alive_and_pid_reuse),
        cmocka_unit_test(test_dir_remove),
        cmocka_unit_test(test_assets_lookup_order),
        cmocka_unit_test(test_assets_not_found_names_places),
        cmocka_unit_test(test_vms_dir),
        cmocka_unit_test(test_two_stores),
        cmocka_unit_test(test_unsafe_store_folders_refused),
        cmocka_unit_test(test_image_disk_link_checked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
