/*
 * Where a VMM's cgroup goes (src/lib/vm_cgroup.c), against fake cgroup
 * trees: plain folders with the files the search reads, and fake
 * /proc/self/mountinfo and /proc/self/cgroup pointing at them. Only the
 * search that makes nothing (doctor's) runs here: a plain file does not
 * turn "+memory" into a controller list. Making cgroups and their limits
 * is tested on a real cgroup2 tree by the VM suite (test_confine.sh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/vm_cgroup.h"

struct tree {
    char root[64];                 /* a temporary folder */
    char mountinfo[PATH_MAX], self[PATH_MAX];
    struct cgroup_sources src;
};

static void put(const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A cgroup folder under the tree's mount: cg + rel, with the lists. */
static void cgroup_at(struct tree *t, const char *rel, const char *subtree, const char *controllers)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/cg%s", t->root, rel);
    assert_true(mkdir(dir, 0755) == 0 || errno == EEXIST);
    put(dir, "cgroup.procs", "");
    put(dir, "cgroup.subtree_control", subtree);
    put(dir, "cgroup.controllers", controllers);
}

static void sources(struct tree *t, const char *mount_root, const char *own)
{
    char text[PATH_MAX * 2];
    snprintf(text, sizeof text,
             "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
             "30 22 0:26 %s %s/cg rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n",
             mount_root, t->root);
    put(t->root, "mountinfo", text);
    snprintf(text, sizeof text, "0::%s\n", own);
    put(t->root, "self", text);
}

static int setup(void **state)
{
    struct tree *t = calloc(1, sizeof *t);
    snprintf(t->root, sizeof t->root, "/tmp/sm-cgtest.XXXXXX");
    if (!t || !mkdtemp(t->root))
        return -1;
    snprintf(t->mountinfo, sizeof t->mountinfo, "%s/mountinfo", t->root);
    snprintf(t->self, sizeof t->self, "%s/self", t->root);
    t->src = (struct cgroup_sources){ t->mountinfo, t->self };
    cgroup_at(t, "", "cpu memory pids", "cpuset cpu io memory pids");
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tree *t = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->root);
    int rc = system(cmd);
    free(t);
    return rc == 0 ? 0 : -1;
}

static void expect_home(struct tree *t, const char *rel)
{
    char home[PATH_MAX], want[PATH_MAX];
    sm_error err = { 0 };
    assert_int_equal(vm_cgroup_home(&t->src, false, home, sizeof home, &err), SM_OK);
    snprintf(want, sizeof want, "%s/cg%s/supermachine", t->root, rel);
    assert_string_equal(home, want);
    struct stat st;
    assert_int_equal(stat(home, &st), -1); /* only looked: nothing made */
}

static void expect_none(struct tree *t, const char *why)
{
    char home[PATH_MAX];
    sm_error err = { 0 };
    assert_int_equal(vm_cgroup_home(&t->src, false, home, sizeof home, &err), SM_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, why));
}

/* A delegated cgroup above ours that passes the controllers on holds the
 * home; ours (a leaf with processes) passes nothing on. */
static void test_nearest_delegated_ancestor(void **state)
{
    struct tree *t = *state;
    cgroup_at(t, "/user.slice", "memory pids", "cpu memory pids");
    cgroup_at(t, "/user.slice/user@1000.service", "cpu memory pids", "cpu memory pids");
    cgroup_at(t, "/user.slice/user@1000.service/app.slice", "", "cpu memory pids");
    sources(t, "/", "/user.slice/user@1000.service/app.slice");
    expect_home(t, "/user.slice/user@1000.service");
}

/* Nothing below the root passes all three on: the root does. */
static void test_root_when_nothing_below(void **state)
{
    struct tree *t = *state;
    cgroup_at(t, "/a", "memory", "cpu memory pids");
    cgroup_at(t, "/a/b", "", "memory");
    sources(t, "/", "/a/b");
    expect_home(t, "");
}

/* The root may be asked to pass on controllers it has (a fresh cgroup2
 * mount, as in tools/kvmbox); one whose controllers are taken by cgroup v1
 * hierarchies (a hybrid host) has none to pass on. */
static void test_root_may_pass_controllers_on(void **state)
{
    struct tree *t = *state;
    cgroup_at(t, "", "", "cpu memory pids");
    sources(t, "/", "/");
    expect_home(t, "");
    cgroup_at(t, "", "", "");
    expect_none(t, "no cgroup at or above ours");
}

/* In a cgroup namespace, our path and the mount's root are both relative
 * to the namespace: the mount's root comes off our path. */
static void test_cgroup_namespace_root(void **state)
{
    struct tree *t = *state;
    cgroup_at(t, "/job", "cpu memory pids", "cpu memory pids");
    cgroup_at(t, "/job/leaf", "", "cpu memory pids");
    sources(t, "/outer", "/outer/job/leaf");
    expect_home(t, "/job");
    sources(t, "/outer", "/elsewhere/leaf");
    expect_none(t, "outside the cgroup2 mount");
}

static void test_no_cgroup_v2(void **state)
{
    struct tree *t = *state;
    put(t->root, "mountinfo", "22 1 0:21 / /proc rw - proc proc rw\n"
                              "30 22 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
    put(t->root, "self", "0::/\n");
    expect_none(t, "no cgroup2 file system is mounted");
    sources(t, "/", "/");
    put(t->root, "self", "4:memory:/x\n1:name=systemd:/\n");
    expect_none(t, "cgroup v1");
}

/* A mount point with a space in it, as mountinfo escapes it (\040). */
static void test_escaped_mount_point(void **state)
{
    struct tree *t = *state;
    char spaced[256], text[PATH_MAX * 2];
    snprintf(spaced, sizeof spaced, "%s/my cg", t->root);
    assert_int_equal(mkdir(spaced, 0755), 0);
    put(spaced, "cgroup.procs", "");
    put(spaced, "cgroup.subtree_control", "cpu memory pids");
    put(spaced, "cgroup.controllers", "cpu memory pids");
    snprintf(text, sizeof text, "30 22 0:26 / %s/my\\040cg rw - cgroup2 cgroup2 rw\n", t->root);
    put(t->root, "mountinfo", text);
    put(t->root, "self", "0::/\n");
    char home[PATH_MAX], want[PATH_MAX + 16];
    assert_int_equal(vm_cgroup_home(&t->src, false, home, sizeof home, NULL), SM_OK);
    snprintf(want, sizeof want, "%s/supermachine", spaced);
    assert_string_equal(home, want);
}

/* Removal touches only a VM's cgroup: a folder inside a "supermachine". */
static void test_remove_only_vm_cgroups(void **state)
{
    struct tree *t = *state;
    char home[256], vm[PATH_MAX], other[PATH_MAX], dotted[PATH_MAX];
    snprintf(home, sizeof home, "%s/cg/supermachine", t->root);
    snprintf(vm, sizeof vm, "%s/0a1b2c3d-00000001", home);
    snprintf(other, sizeof other, "%s/cg/user.slice", t->root);
    snprintf(dotted, sizeof dotted, "%s/../user.slice", home);
    assert_int_equal(mkdir(home, 0755), 0);
    assert_int_equal(mkdir(vm, 0755), 0);
    assert_int_equal(mkdir(other, 0755), 0);
    vm_cgroup_remove(other);
    vm_cgroup_remove(dotted);
    vm_cgroup_remove("relative/supermachine/x");
    struct stat st;
    assert_int_equal(stat(other, &st), 0);
    vm_cgroup_remove(vm);
    assert_int_equal(stat(vm, &st), -1);
    assert_int_equal(stat(home, &st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nearest_delegated_ancestor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_when_nothing_below, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_may_pass_controllers_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_namespace_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_cgroup_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaped_mount_point, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_only_vm_cgroups, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
