/* A VMM's cgroup (see vm_cgroup.h). */
#include "lib/vm_cgroup.h"
#include "base/error.h"
#include "base/file.h"
#include "base/random.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HOME_NAME "supermachine"
#define CPU_PERIOD_US 100000u
static const char *const needed[] = { "memory", "cpu", "pids" };

/* ---- reading ------------------------------------------------------------------------ */

static bool write_small(const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX];
    return snprintf(path, sizeof path, "%s/%s", dir, file) < (int)sizeof path && file_write_text(path, text);
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (char *r = s; *r;) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
            r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
}

/* The first cgroup2 mount: its mount point and the cgroup it shows as root. */
static bool find_cgroup2_mount(const char *mountinfo, char *mnt, size_t mcap, char *root, size_t rcap)
{
    FILE *f = fopen(mountinfo, "re");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        const char *sep = strstr(line, " - ");
        if (!sep || strncmp(sep + 3, "cgroup2 ", 8))
            continue;
        char r[PATH_MAX], m[PATH_MAX];
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", r, m) != 2)
            continue;
        unescape_octal(r);
        unescape_octal(m);
        found = snprintf(mnt, mcap, "%s", m) < (int)mcap && snprintf(root, rcap, "%s", r) < (int)rcap;
    }
    fclose(f);
    return found;
}

/* Our cgroup v2 path, from the "0::PATH" line. */
static bool find_own_cgroup(const char *self, char *out, size_t cap)
{
    FILE *f = fopen(self, "re");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::/", 4))
            continue;
        line[strcspn(line, "\n")] = 0;
        found = snprintf(out, cap, "%s", line + 3) < (int)cap;
    }
    fclose(f);
    return found;
}

static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || !p[n]))
            return true;
    return false;
}

/* The controllers of `needed` not in dir's list (cgroup.subtree_control:
 * what its children get; cgroup.controllers: what it could give them). */
static int missing_controllers(const char *dir, const char *list_file)
{
    char path[PATH_MAX], list[512];
    snprintf(path, sizeof path, "%s/%s", dir, list_file);
    if (!file_read_text(path, list, sizeof list))
        return -1;
    int missing = 0;
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++)
        missing += !has_word(list, needed[i]);
    return missing;
}

/* "+memory +cpu +pids" into dir's subtree_control, one at a time (a
 * controller already on is no error). */
static bool pass_controllers_on(const char *dir)
{
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        char word[16];
        snprintf(word, sizeof word, "+%s", needed[i]);
        write_small(dir, "cgroup.subtree_control", word);
    }
    return missing_controllers(dir, "cgroup.subtree_control") == 0;
}

static bool writable(const char *dir, const char *file)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return access(path, W_OK) == 0;
}

/* dir can hold our home: we may make folders in it and move processes
 * through it, and its children get the controllers (the root of the tree,
 * which may hold processes, may be asked to pass them on). */
static bool can_hold_home(const char *dir, bool is_root, bool create)
{
    if (access(dir, W_OK | X_OK) || !writable(dir, "cgroup.procs"))
        return false;
    int missing = missing_controllers(dir, "cgroup.subtree_control");
    return missing == 0 || (missing > 0 && is_root && writable(dir, "cgroup.subtree_control") &&
                            missing_controllers(dir, "cgroup.controllers") == 0 &&
                            (!create || pass_controllers_on(dir)));
}

/* ---- the home ----------------------------------------------------------------------- */

static sm_code unsupported(sm_error *err, const char *why)
{
    return error_set(err, SM_E_UNSUPPORTED, "no cgroup v2 delegated to us here: %s", why);
}

static sm_code home_path(const char *parent, char *out, size_t cap, sm_error *err)
{
    if (snprintf(out, cap, "%s/" HOME_NAME, parent) >= (int)cap)
        return error_set(err, SM_E_LIMIT, "the cgroup path %s is too long", parent);
    return SM_OK;
}

static sm_code make_home(const char *parent, char *out, size_t cap, sm_error *err)
{
    sm_code rc = home_path(parent, out, cap, err);
    if (rc)
        return rc;
    if (mkdir(out, 0755) < 0 && errno != EEXIST)
        return error_set_errno(err, SM_E_IO, errno, "cannot create the cgroup %s", out);
    struct stat st;
    if (lstat(out, &st) < 0 || !S_ISDIR(st.st_mode) || (st.st_uid != geteuid() && geteuid() != 0))
        return error_set(err, SM_E_IO, "the cgroup %s is not a folder of ours", out);
    if (!pass_controllers_on(out))
        return error_set(err, SM_E_IO, "the cgroup %s does not pass memory, cpu and pids on to its "
                         "children", out);
    return SM_OK;
}

sm_code vm_cgroup_home(const struct cgroup_sources *src, bool create, char *out, size_t cap, sm_error *err)
{
    char mnt[PATH_MAX], root[PATH_MAX], own[PATH_MAX], dir[PATH_MAX];
    if (!find_cgroup2_mount(src && src->mountinfo ? src->mountinfo : "/proc/self/mountinfo", mnt,
                            sizeof mnt, root, sizeof root))
        return unsupported(err, "no cgroup2 file system is mounted");
    if (!find_own_cgroup(src && src->self ? src->self : "/proc/self/cgroup", own, sizeof own))
        return unsupported(err, "this process is in no cgroup v2 (the host uses cgroup v1)");
    /* Our path is relative to the root of our cgroup namespace, as is the
     * mount's, so the mount's root comes off the front. */
    size_t rlen = strcmp(root, "/") ? strlen(root) : 0;
    if (rlen && (strncmp(own, root, rlen) || (own[rlen] && own[rlen] != '/')))
        return unsupported(err, "our cgroup is outside the cgroup2 mount");
    if (snprintf(dir, sizeof dir, "%s%s", mnt, own + rlen) >= (int)sizeof dir)
        return error_set(err, SM_E_LIMIT, "the cgroup path of this process is too long");
    size_t mlen = strlen(mnt), n = strlen(dir);
    while (n > mlen && dir[n - 1] == '/')
        dir[--n] = 0;
    for (;;) { /* from ours up to the mount's root */
        bool is_root = n <= mlen;
        if (can_hold_home(dir, is_root, create))
            return create ? make_home(dir, out, cap, err) : home_path(dir, out, cap, err);
        char *slash = strrchr(dir, '/');
        if (is_root || !slash || (size_t)(slash - dir) < mlen)
            break;
        *slash = 0;
        n = strlen(dir);
    }
    return unsupported(err, "no cgroup at or above ours may be written by us with memory, cpu and "
                       "pids for its children (delegate one, e.g. systemd's Delegate=yes)");
}

/* ---- one VM's cgroup ---------------------------------------------------------------- */

static sm_code set_limit(const char *dir, const char *file, const char *value, sm_error *err)
{
    if (write_small(dir, file, value))
        return SM_OK;
    return error_set_errno(err, SM_E_IO, errno, "cannot set %s/%s to %s", dir, file, value);
}

static sm_code set_limits(const char *dir, const struct vm_limits *l, sm_error *err)
{
    char v[64];
    sm_code rc = SM_OK;
    if (l->memory_bytes) {
        snprintf(v, sizeof v, "%" PRIu64, l->memory_bytes);
        rc = set_limit(dir, "memory.max", v, err);
        if (!rc && writable(dir, "memory.swap.max"))
            rc = set_limit(dir, "memory.swap.max", "0", err);
    }
    if (!rc && l->cpu_millis) {
        snprintf(v, sizeof v, "%" PRIu64 " %u", (uint64_t)l->cpu_millis * (CPU_PERIOD_US / 1000), CPU_PERIOD_US);
        rc = set_limit(dir, "cpu.max", v, err);
    }
    if (!rc) {
        snprintf(v, sizeof v, "%d", VM_CGROUP_PIDS_MAX);
        rc = set_limit(dir, "pids.max", v, err);
    }
    return rc;
}

sm_code vm_cgroup_create(const char *home, const char *id, const struct vm_limits *l, char *out,
                         size_t cap, sm_error *err)
{
    /* Two runtime folders may both have a VM of this id: the tag tells
     * their cgroups apart. */
    if (snprintf(out, cap, "%s/%s-%08x", home, id, random_u32()) >= (int)cap)
        return error_set(err, SM_E_LIMIT, "the cgroup path under %s is too long", home);
    if (mkdir(out, 0755) < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot create the cgroup %s", out);
    sm_code rc = set_limits(out, l, err);
    if (rc)
        rmdir(out);
    return rc;
}

void vm_cgroup_remove(const char *path)
{
    const char *last = strrchr(path, '/');
    if (path[0] != '/' || !last || last - path < (ptrdiff_t)sizeof HOME_NAME ||
        strncmp(last - (sizeof HOME_NAME - 1), HOME_NAME, sizeof HOME_NAME - 1) ||
        last[-(ptrdiff_t)sizeof HOME_NAME] != '/' || strstr(path, "/.."))
        return;
    /* The VMM has been reaped, but its stand-in may take a moment more. */
    for (int i = 0; i < 50 && rmdir(path) < 0 && errno == EBUSY; i++) {
        struct timespec ms10 = { 0, 10 * 1000 * 1000 };
        nanosleep(&ms10, NULL);
    }
}

bool vm_cgroup_recorded(int dir_fd, char *out, size_t cap)
{
    int fd = openat(dir_fd, VM_CGROUP_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    if (n <= 0)
        return false;
    out[n] = 0;
    return out[0] == '/' && !memchr(out, '\n', (size_t)n);
}

uint64_t vm_cgroup_oom_kills(const char *path)
{
    char file[PATH_MAX], text[1024];
    if (snprintf(file, sizeof file, "%s/memory.events", path) >= (int)sizeof file ||
        !file_read_text(file, text, sizeof text))
        return 0;
    const char *at = strstr(text, "\noom_kill ");
    unsigned long long n = 0;
    if (at)
        sscanf(at + 10, "%llu", &n);
    return n;
}
