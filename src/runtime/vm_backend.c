/*
 * The backend that makes a container's VM through libsupermachine.
 *
 * Not yet: creating the VM from the bundle (root.path packed into a root
 * filesystem, a VM restored or booted from it, process run through the
 * guest's agent) is issue 14's second slice. Until then `create` checks the
 * bundle and its config.json in full and then fails here, saying so, and
 * leaves nothing behind. What a container's VM will be asked (signal,
 * alive, destroy) is written already, on the host process that stands for
 * the container, so that slice 2 replaces create and start only.
 */
#include "runtime/backend.h"
#include "runtime/container.h"

#include "base/error.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

static sm_code vm_create(struct rt_state *st, const struct rt_config *cfg, const char *rootfs,
                         sm_error *err)
{
    (void)st;
    (void)cfg;
    (void)rootfs;
    return error_set(err, SM_E_UNSUPPORTED,
                     "not yet supported: creating a container's VM (issue 14, slice 2); the "
                     "bundle and its config.json were read and are valid");
}

static sm_code vm_start(struct rt_state *st, const struct rt_config *cfg, sm_error *err)
{
    (void)st;
    (void)cfg;
    return error_set(err, SM_E_UNSUPPORTED,
                     "not yet supported: running a container's process in its VM (issue 14, "
                     "slice 2)");
}

static sm_code vm_exec(const struct rt_state *st, const struct rt_config *proc,
                       const struct rt_exec_opts *o, int *status, sm_error *err)
{
    (void)st;
    (void)proc;
    (void)o;
    *status = -1;
    return error_set(err, SM_E_UNSUPPORTED,
                     "not yet supported: running a process in a container's VM (issue 14, "
                     "slice 2)");
}

/* Whether pid is alive and not a zombie (a VMM that ended but was not
 * reaped by its parent stands for a stopped container). */
static bool vm_alive(const struct rt_state *st)
{
    if (st->pid <= 0 || (kill(st->pid, 0) != 0 && errno != EPERM))
        return false;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", st->pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *close_paren = strrchr(buf, ')'); /* the command may hold ')' */
    return !close_paren || close_paren[1] != ' ' || close_paren[2] != 'Z';
}

static sm_code vm_signal(const struct rt_state *st, int signo, sm_error *err)
{
    if (st->pid <= 0 || kill(st->pid, signo) != 0)
        return errno == ESRCH || st->pid <= 0
                   ? error_set(err, SM_E_INVALID, "container not running")
                   : error_set_errno(err, SM_E_IO, errno, "cannot signal process %d", st->pid);
    return SM_OK;
}

static sm_code vm_destroy(const struct rt_state *st, sm_error *err)
{
    (void)st;
    (void)err;
    return SM_OK;
}

const struct rt_backend rt_backend_vm = {
    .name = "vm",
    .create = vm_create,
    .start = vm_start,
    .signal = vm_signal,
    .exec = vm_exec,
    .alive = vm_alive,
    .destroy = vm_destroy,
};
