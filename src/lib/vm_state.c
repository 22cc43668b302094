/*
 * A VM's state folder (see vm_state.h).
 *
 * vm.info is text, one "key value" line each, in this order, at most 1 KiB:
 *
 *   key           value                       meaning
 *   version       1                           format of this file
 *   pid           decimal                     the VMM process
 *   start_ticks   decimal                     /proc/PID/stat field 22 of it, so that a
 *                                             reused PID is never taken for the VMM
 *   memory_mib    decimal                     guest memory
 *   cpus          decimal                     vCPUs
 *   started_unix  decimal                     wall-clock seconds when it was started
 *   volumes       decimal                     volumes mounted (0 if missing): a stop
 *                                             then powers the guest off first, so that
 *                                             what it wrote reaches them
 *
 * Unknown keys are ignored (later versions may add some); a missing or
 * malformed pid line makes the whole file unreadable.
 */
#include "lib/vm_state.h"
#include "lib/vm_cgroup.h"
#include "base/file.h"
#include "base/error.h"
#include "protocol/guest_abi.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

#define VM_INFO_MAX 1024

bool vm_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    return n > 0 && n < 16 && strspn(id, "0123456789abcdef") == n;
}

uint64_t vm_process_start_ticks(pid_t pid)
{
    if (pid <= 0)
        return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    /* "pid (comm) state ppid ... starttime": comm may hold spaces and ')',
     * so fields are counted from the last ')'. state is field 3, starttime 22. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return 0;
    p += 2;
    char state = *p;
    if (state == 'Z' || state == 'X' || state == 'x')
        return 0;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return 0;
        p++;
    }
    return strtoull(p, NULL, 10);
}

bool vm_record_alive(const struct vm_record *r)
{
    if (r->pid <= 0)
        return false;
    uint64_t t = vm_process_start_ticks(r->pid);
    return t != 0 && t == r->start_ticks;
}

sm_code vm_record_write(const char *dir, const struct vm_record *r, sm_error *err)
{
    char path[512], text[VM_INFO_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, VM_INFO_FILE);
    int len = snprintf(text, sizeof text,
                       "version 1\npid %d\nstart_ticks %" PRIu64 "\nmemory_mib %" PRIu32
                       "\ncpus %" PRIu32 "\nstarted_unix %" PRId64 "\nvolumes %" PRIu32 "\n",
                       (int)r->pid, r->start_ticks, r->memory_mib, r->cpus, r->started_unix, r->volumes);
    if (!write_file_atomic(path, text, (size_t)len, 0600))
        return error_set_errno(err, SM_E_IO, errno, "cannot write %s", path);
    return SM_OK;
}

/* "key value" → value of key, or false. */
static bool field_u64(const char *text, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    for (const char *line = text; *line;) {
        if (strncmp(line, key, klen) || line[klen] != ' ') {
            const char *nl = strchr(line, '\n');
            if (!nl)
                return false;
            line = nl + 1;
            continue;
        }
        const char *v = line + klen + 1;
        if (*v < '0' || *v > '9')
            return false;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || (*end != '\n' && *end))
            return false;
        *out = x;
        return true;
    }
    return false;
}

sm_code vm_record_read(const char *dir, struct vm_record *r, sm_error *err)
{
    char path[512], text[VM_INFO_MAX + 1];
    memset(r, 0, sizeof *r);
    snprintf(path, sizeof path, "%s/%s", dir, VM_INFO_FILE);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno,
                             "cannot read %s", path);
    ssize_t n = read(fd, text, VM_INFO_MAX);
    close(fd);
    if (n < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot read %s", path);
    text[n] = 0;
    uint64_t pid = 0, ticks = 0, mem = 0, cpus = 0, started = 0, volumes = 0;
    if (!field_u64(text, "pid", &pid) || pid == 0 || pid > INT32_MAX ||
        !field_u64(text, "start_ticks", &ticks))
        return error_set(err, SM_E_PROTOCOL, "%s is malformed (no pid or start_ticks line)", path);
    field_u64(text, "memory_mib", &mem);
    field_u64(text, "cpus", &cpus);
    field_u64(text, "started_unix", &started);
    field_u64(text, "volumes", &volumes);
    r->pid = (pid_t)pid;
    r->start_ticks = ticks;
    r->memory_mib = mem <= UINT32_MAX ? (uint32_t)mem : 0;
    r->cpus = cpus <= UINT32_MAX ? (uint32_t)cpus : 0;
    r->started_unix = started <= INT64_MAX ? (int64_t)started : 0;
    r->volumes = volumes <= SM_MAX_VOLUMES ? (uint32_t)volumes : 0;
    return SM_OK;
}

/* The cgroup the VM folder's "cgroup" file names (its VMM is gone). */
static void remove_recorded_cgroup(int dfd)
{
    char path[PATH_MAX];
    if (vm_cgroup_recorded(dfd, path, sizeof path))
        vm_cgroup_remove(path);
}

/* Removes the files of dir (the VM folder's cell/ too, and the cgroup its
 * "cgroup" file names), then dir. */
sm_code vm_dir_remove(const char *dir, sm_error *err)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return errno == ENOENT ? SM_OK
                               : error_set_errno(err, SM_E_IO, errno, "cannot open %s", dir);
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return error_set_errno(err, SM_E_IO, errno, "cannot list %s", dir);
    }
    sm_code rc = SM_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        sm_code one = SM_OK;
        if (!strcmp(e->d_name, VM_CGROUP_FILE))
            remove_recorded_cgroup(dirfd(d));
        if (!strcmp(e->d_name, VM_CELL_DIR) && e->d_type == DT_DIR) {
            char sub[PATH_MAX];
            snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
            one = vm_dir_remove(sub, rc ? NULL : err);
        } else if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT) {
            one = error_set_errno(rc ? NULL : err, SM_E_IO, errno, "cannot remove %s/%s", dir, e->d_name);
        }
        if (!rc)
            rc = one;
    }
    closedir(d);
    if (!rc && rmdir(dir) < 0 && errno != ENOENT)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot remove %s", dir);
    return rc;
}

void vmm_environment(char *out[VMM_ENV_MAX])
{
    static const char *const kept[] = { "ASAN_OPTIONS=", "UBSAN_OPTIONS=", "LSAN_OPTIONS=", "SM_ALLOW_PVM=" };
    size_t n = 0;
    for (char **e = environ; *e && n < VMM_ENV_MAX - 1; e++)
        for (size_t k = 0; k < sizeof kept / sizeof kept[0]; k++)
            if (!strncmp(*e, kept[k], strlen(kept[k])))
                out[n++] = *e;
    out[n] = NULL;
}

bool vm_seccomp_off(void)
{
    const char *v = getenv("SUPERMACHINE_VMM_SECCOMP");
    return v && !strcmp(v, "off");
}
