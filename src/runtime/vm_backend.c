/*
 * The backend that makes a container's VM through libsupermachine. The VM
 * belongs to the container's monitor (monitor.h), a process `create` forks
 * and leaves behind; the other commands reach it through the monitor's pid
 * (signals), its start FIFO (start) and the VM's ID (exec, destroy).
 */
#include "runtime/backend.h"
#include "runtime/container.h"
#include "runtime/log.h"
#include "runtime/monitor.h"
#include "runtime/process.h"
#include "runtime/store.h"

#include "base/error.h"
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static sm_code fifo_path(const struct rt_state *st, char *out, size_t cap, sm_error *err)
{
    if ((size_t)snprintf(out, cap, "%s/%s", st->dir, RT_START_FIFO) >= cap)
        return error_set(err, SM_E_INVALID, "the path of %s/%s is too long", st->dir,
                         RT_START_FIFO);
    return SM_OK;
}

/* The store of the containers beside st's: under its --root, the parent of
 * its folder. */
static sm_code open_store(const struct rt_state *st, sm_store **store, sm_error *err)
{
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s", st->dir);
    char *slash = strrchr(root, '/');
    if (!slash || slash == root)
        return error_set(err, SM_E_INVALID, "the container folder %s is not under a root", st->dir);
    *slash = 0;
    return rt_store_open(root, store, err);
}

/* The monitor's report, or why there is none (it died first). */
static sm_code read_report(int fd, pid_t monitor, struct rt_monitor_report *r, sm_error *err)
{
    size_t got = 0;
    while (got < sizeof *r) {
        ssize_t n = read(fd, (char *)r + got, sizeof *r - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got == sizeof *r && r->code == SM_OK) {
        r->text[sizeof r->text - 1] = 0;
        return SM_OK;
    }
    int ws = 0;
    while (waitpid(monitor, &ws, 0) < 0 && errno == EINTR) {
    }
    if (got == sizeof *r) {
        r->text[sizeof r->text - 1] = 0;
        return error_set(err, r->code, "%s", r->text);
    }
    return error_set(err, SM_E_IO, "the container's monitor ended before it reported (%s %d)",
                     WIFSIGNALED(ws) ? "signal" : "status",
                     WIFSIGNALED(ws) ? WTERMSIG(ws) : WEXITSTATUS(ws));
}

static sm_code vm_create(struct rt_state *st, const struct rt_config *cfg,
                         const struct rt_create_request *req, sm_error *err)
{
    char fifo[PATH_MAX];
    int pipe_fds[2];
    sm_store *store = NULL;
    sm_code rc = fifo_path(st, fifo, sizeof fifo, err);
    if (rc || (rc = open_store(st, &store, err)))
        return rc;
    if (mkfifo(fifo, 0600) != 0) {
        sm_store_free(store);
        return error_set_errno(err, SM_E_IO, errno, "cannot make %s", fifo);
    }
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        sm_store_free(store);
        return error_set_errno(err, SM_E_IO, errno, "cannot make a pipe");
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        rc = error_set_errno(err, SM_E_IO, errno, "cannot fork the container's monitor");
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        sm_store_free(store);
        return rc;
    }
    if (pid == 0) {
        struct rt_monitor_args a = { .cfg = cfg, .rootfs = req->rootfs, .store = store,
                                     .console_socket = req->console_socket, .start_fifo = fifo,
                                     .report_fd = pipe_fds[1], .keep_fd = rt_log_fd() };
        rt_monitor_run(&a);
    }
    sm_store_free(store);
    close(pipe_fds[1]);
    struct rt_monitor_report r;
    rc = read_report(pipe_fds[0], pid, &r, err);
    close(pipe_fds[0]);
    if (rc)
        return rc;
    if (strlen(r.text) >= sizeof st->handle) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return error_set(err, SM_E_PROTOCOL, "the VM's ID '%.32s...' is too long", r.text);
    }
    st->pid = pid;
    memcpy(st->handle, r.text, strlen(r.text) + 1);
    return SM_OK;
}

static sm_code vm_start(struct rt_state *st, const struct rt_config *cfg, sm_error *err)
{
    (void)cfg;
    char fifo[PATH_MAX];
    sm_code rc = fifo_path(st, fifo, sizeof fifo, err);
    if (rc)
        return rc;
    /* The monitor holds the FIFO open for reading: without it, ENXIO. */
    int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENXIO || errno == ENOENT
                   ? error_set(err, SM_E_INVALID, "container not running: its monitor is gone")
                   : error_set_errno(err, SM_E_IO, errno, "cannot open %s", fifo);
    bool sent = write(fd, "s", 1) == 1;
    int e = errno;
    close(fd);
    unlink(fifo);
    return sent ? SM_OK : error_set_errno(err, SM_E_IO, e, "cannot write %s", fifo);
}

/* The container's VM, if it still runs. */
static sm_code open_vm(const struct rt_state *st, sm_vm **vm, sm_error *err)
{
    sm_store *store = NULL;
    sm_code rc = open_store(st, &store, err);
    if (!rc)
        rc = sm_vm_open(store, st->handle, vm, err);
    sm_store_free(store);
    if (rc == SM_E_NOTFOUND || (!rc && !sm_vm_running(*vm))) {
        sm_vm_free(*vm);
        *vm = NULL;
        return error_set(err, SM_E_INVALID, "container not running: its VM %s is gone",
                         st->handle);
    }
    return rc;
}

/* exec --detach: a child of ours runs the process, as the monitor does, and
 * its pid goes to the pid file; whoever waits for that pid reads its status. */
static sm_code exec_detached(const sm_exec_builder *b, const struct rt_config *proc,
                             const struct rt_exec_opts *o, sm_error *err)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot fork");
    if (pid == 0) {
        setsid();
        struct rt_stdio io = { .in = STDIN_FILENO, .out = STDOUT_FILENO, .err = STDERR_FILENO };
        sm_exec_status status;
        sm_error e = { 0 };
        int tty;
        if (proc->terminal && o->console_socket) {
            if (rt_console_open(o->console_socket, &tty, &e)) {
                rt_log(RT_LOG_ERROR, "exec: %s", e.message);
                _exit(255);
            }
            io = (struct rt_stdio){ .in = tty, .out = tty, .err = tty, .terminal = true };
        }
        if (rt_process_run(b, &io, &status, &e)) {
            rt_log(RT_LOG_ERROR, "exec: %s", e.message);
            _exit(255);
        }
        rt_exit_as(&status);
    }
    return o->pid_file ? rt_write_pid_file(o->pid_file, pid, err) : SM_OK;
}

static sm_code vm_exec(const struct rt_state *st, const struct rt_config *proc,
                       const struct rt_exec_opts *o, int *status, sm_error *err)
{
    *status = -1;
    sm_vm *vm = NULL;
    sm_code rc = open_vm(st, &vm, err);
    sm_exec_builder *b = rc ? NULL : rt_process_builder(vm, proc, err);
    if (!rc && !b)
        rc = err && err->code ? err->code : SM_E_NOMEM;
    if (!rc && o->detach) {
        rc = exec_detached(b, proc, o, err);
        *status = 0;
    } else if (!rc) {
        struct rt_stdio io = { .in = STDIN_FILENO, .out = STDOUT_FILENO, .err = STDERR_FILENO,
                               .terminal = proc->terminal };
        sm_exec_status s;
        if (o->pid_file)
            rc = rt_write_pid_file(o->pid_file, getpid(), err);
        if (!rc && !(rc = rt_process_run(b, &io, &s, err)))
            *status = sm_exec_status_shell_code(&s);
    }
    sm_exec_builder_free(b);
    sm_vm_free(vm);
    return rc;
}

/* Whether pid is alive and not a zombie (a monitor that ended but was not
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

/* The monitor stops its VM as it ends; one killed outright leaves the VM to
 * end by its lifeline, and its folder behind: that is removed here. */
static sm_code vm_destroy(const struct rt_state *st, sm_error *err)
{
    if (!st->handle[0])
        return SM_OK;
    sm_vm *vm = NULL;
    sm_store *store = NULL;
    sm_code rc = open_store(st, &store, err);
    if (!rc)
        rc = sm_vm_open(store, st->handle, &vm, err);
    sm_store_free(store);
    if (rc == SM_E_NOTFOUND)
        return SM_OK;
    if (!rc)
        rc = sm_vm_stop(vm, err);
    sm_vm_free(vm);
    return rc;
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
