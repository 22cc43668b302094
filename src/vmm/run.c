/*
 * Running one VM to its end as a process does: boot, wait for the agent,
 * serve until the guest stops or a signal arrives, and turn the way it ended
 * into an exit status and a message. Shared by `supermachine boot` and the
 * supermachine-vmm process.
 */
#include "vmm/run.h"
#include "base/clock.h"
#include "base/text.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "protocol/agent_conn.h"
#include "vmm/persist.h"
#include "vmm/confine.h"
#include "vmm/control.h"
#include "vmm/vm.h"

/* After the agent was asked to power off, how long it may take. */
#define POWEROFF_GRACE_NS (15ll * 1000000000)

static void print_console_tail(struct vm *vm, const char *prog)
{
    char tail[4096];
    vm_console_tail(vm, tail, sizeof tail, 20);
    if (isatty(STDERR_FILENO))
        for (char *c = tail; *c; c++)
            if (!text_terminal_safe((unsigned char)*c))
                *c = TEXT_REPLACEMENT;
    if (tail[0])
        fprintf(stderr, "%s: last lines of the guest console:\n%s%s", prog, tail,
                tail[strlen(tail) - 1] == '\n' ? "" : "\n");
    else
        fprintf(stderr, "%s: the guest console printed nothing\n", prog);
}

static int report_stop(struct vm *vm, bool was_ready, const char *prog)
{
    char detail[256];
    switch (vm_get_stop_reason(vm, detail, sizeof detail)) {
    case VM_STOP_GUEST_RESET:
        if (was_ready)
            return VMM_EXIT_OK;
        fprintf(stderr, "%s: the guest reset itself before its agent was ready\n", prog);
        print_console_tail(vm, prog);
        return VMM_EXIT_ERROR;
    case VM_STOP_PANIC:
        fprintf(stderr, "%s: the guest kernel panicked %s its agent was ready\n", prog, was_ready ? "after" : "before");
        print_console_tail(vm, prog);
        return VMM_EXIT_PANIC;
    case VM_STOP_ERROR:
        fprintf(stderr, "%s: the VM failed: %s\n", prog, detail);
        print_console_tail(vm, prog);
        return VMM_EXIT_ERROR;
    case VM_STOP_HOST:
        return was_ready ? VMM_EXIT_OK : VMM_EXIT_ERROR;
    case VM_STOP_NONE:
        break;
    }
    return VMM_EXIT_OK;
}

static void on_stop_signal(void *opaque, uint32_t events)
{
    struct vm *vm = opaque;
    struct signalfd_siginfo si;
    (void)events;
    if (read(vm->signal_fd, &si, sizeof si) == sizeof si)
        vm_request_stop(vm, VM_STOP_HOST);
}

/* SIGTERM, SIGINT and SIGHUP stop the VM from the event loop, cleanly. */
static int watch_stop_signals(struct vm *vm)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    vm->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (vm->signal_fd < 0)
        return -1;
    return evl_add(&vm->loop, vm->signal_fd, EPOLLIN, on_stop_signal, vm);
}

/* The lifeline (--lifeline-fd): a pipe nobody writes into, whose write end
 * the process that started us holds. Its end means that process is gone, or
 * done with the VM: stop, as SIGTERM would. Unlike PR_SET_PDEATHSIG, which
 * fires when the *thread* that forked us ends, this follows the process. */
struct lifeline {
    struct vm *vm;
    int fd;
};

static void on_lifeline(void *opaque, uint32_t events)
{
    struct lifeline *l = opaque;
    char byte[16];
    (void)events;
    ssize_t n = read(l->fd, byte, sizeof byte);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return; /* bytes mean nothing; only the end does */
    evl_remove(&l->vm->loop, l->fd);
    vm_request_stop(l->vm, VM_STOP_HOST);
}

static int watch_lifeline(struct lifeline *l)
{
    int flags = fcntl(l->fd, F_GETFL);
    if (flags < 0 || fcntl(l->fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(l->fd, F_SETFD, FD_CLOEXEC) < 0)
        return -1;
    return evl_add(&l->vm->loop, l->fd, EPOLLIN, on_lifeline, l);
}

/* A restored guest is ready once its agent has the host's clock and fresh
 * entropy (SYNC): before that, two clones would share both. The exchange
 * runs on its own thread because the vsock device it crosses is served by
 * the event loop on this one. */
struct sync_job {
    struct vm *vm;
    const char *exec_socket;
    int wake_fd; /* readable: stop waiting for the guest */
};

static void *sync_guest(void *arg)
{
    struct sync_job *job = arg;
    sm_error err = { 0 };
    prctl(PR_SET_NAME, "sync");
    if (job->vm->cfg.confine && confine_thread(CONFINE_SYNC, &err) != SM_OK) {
        vm_fail(job->vm, "%s", err.message);
        return NULL;
    }
    if (agent_sync(job->exec_socket, job->wake_fd, &err) != SM_OK)
        vm_fail(job->vm, "the restored guest's agent did not take the clock and entropy: %s", err.message);
    else if (agent_netconf(job->exec_socket, job->vm->cfg.net.enabled, job->wake_fd, &err) != SM_OK)
        vm_fail(job->vm, "the restored guest's agent did not set up its network: %s", err.message);
    else
        vm_mark_ready(job->vm);
    return NULL;
}

static void announce_ready(struct vm *vm, const struct vm_run_options *opt)
{
    double ms = (double)vm_ready_us(vm) / 1000.0;
    if (opt->print_boot_time) {
        printf("boot-to-ready: %.1f ms\n", ms);
        fflush(stdout);
    }
    if (opt->ready_fd >= 0) {
        char line[VMM_READY_LINE_MAX];
        struct vmm_ready r = { .us = vm_ready_us(vm), .memory_mib = vm->cfg.mem_mib, .cpus = (uint32_t)vm->ncpus };
        int len = vmm_ready_line_format(line, sizeof line, &r);
        if (write(opt->ready_fd, line, (size_t)len) != len)
            fprintf(stderr, "%s: cannot write the ready line: %s\n", opt->prog, strerror(errno));
        close(opt->ready_fd);
    }
}

/* Bake: the agent is ready, so this is the moment to keep. */
static int snapshot_and_stop(struct vm *vm, const struct vm_run_options *opt)
{
    sm_error err = { 0 };
    if (vm_pause(vm, &err) || persist_save(vm, opt->snapshot_dir_fd, opt->snapshot_when_ready, &err)) {
        fprintf(stderr, "%s: %s\n", opt->prog, err.message);
        return VMM_EXIT_ERROR;
    }
    return VMM_EXIT_OK;
}

static int run_after_ready(struct vm *vm, const struct vm_run_options *opt)
{
    if (opt->snapshot_when_ready)
        return snapshot_and_stop(vm, opt);
    int64_t deadline = opt->serve ? 0 : clock_now_ns() + POWEROFF_GRACE_NS;
    enum vm_wait_result w = vm_run_until(vm, false, deadline);
    if (w == VM_WAIT_TIMEOUT) {
        fprintf(stderr, "%s: the agent was ready but the guest did not power off within %lld s\n", opt->prog,
                POWEROFF_GRACE_NS / 1000000000);
        print_console_tail(vm, opt->prog);
        return VMM_EXIT_ERROR;
    }
    if (w == VM_WAIT_ERROR) {
        fprintf(stderr, "%s: the event loop failed: %s\n", opt->prog, strerror(errno));
        return VMM_EXIT_ERROR;
    }
    return report_stop(vm, true, opt->prog);
}

int vm_run_to_exit(struct vm_config *cfg, const struct vm_run_options *opt)
{
    sm_error err = { 0 };
    cfg->poweroff_when_ready = !opt->serve && !opt->snapshot_when_ready;
    struct vm *vm = opt->restore_dir ? persist_restore(opt->restore_dir, cfg, &err) : vm_create(cfg, &err);
    if (!vm) {
        fprintf(stderr, "%s: %s\n", opt->prog, err.message);
        return VMM_EXIT_ERROR;
    }
    struct vm_control *control = NULL;
    if (opt->serve && watch_stop_signals(vm) < 0) {
        fprintf(stderr, "%s: cannot watch for stop signals: %s\n", opt->prog, strerror(errno));
        vm_destroy(vm);
        return VMM_EXIT_ERROR;
    }
    struct lifeline lifeline = { .vm = vm, .fd = opt->lifeline_fd };
    if (lifeline.fd >= 0 && watch_lifeline(&lifeline) < 0) {
        fprintf(stderr, "%s: cannot watch --lifeline-fd %d: %s\n", opt->prog, lifeline.fd, strerror(errno));
        vm_destroy(vm);
        return VMM_EXIT_ERROR;
    }
    if ((opt->control_socket && !(control = vm_control_open(vm, opt->control_socket, &err))) ||
        (opt->cell && cell_seal(opt->cell, &err)) || vm_start(vm, &err)) {
        fprintf(stderr, "%s: %s\n", opt->prog, err.message);
        vm_control_close(control);
        vm_destroy(vm);
        return VMM_EXIT_ERROR;
    }
    struct sync_job job = { .vm = vm, .exec_socket = cfg->exec_socket, .wake_fd = -1 };
    pthread_t sync_thread;
    if (opt->restore_dir)
        job.wake_fd = eventfd(0, EFD_CLOEXEC);
    bool syncing = opt->restore_dir && job.wake_fd >= 0 &&
                   pthread_create(&sync_thread, NULL, sync_guest, &job) == 0;
    if (opt->restore_dir && !syncing)
        vm_fail(vm, "cannot start the thread that syncs the restored guest");
    /* Every thread is started: no more, and the event loop's own filter
     * goes on last. */
    if (opt->cell)
        cell_close_door();
    if (cfg->confine && confine_thread(CONFINE_MAIN, &err) != SM_OK)
        vm_fail(vm, "%s", err.message);
    int64_t deadline = vm->created_ns + (int64_t)(opt->timeout_s * 1e9);
    int status;
    switch (vm_run_until(vm, true, deadline)) {
    case VM_WAIT_READY:
        announce_ready(vm, opt);
        status = run_after_ready(vm, opt);
        break;
    case VM_WAIT_TIMEOUT:
        fprintf(stderr, "%s: the guest was not ready within %g s (timeout)%s\n", opt->prog, opt->timeout_s,
                vm_get_stop_reason(vm, NULL, 0) == VM_STOP_PANIC ? "; it panicked" : "");
        print_console_tail(vm, opt->prog);
        status = VMM_EXIT_TIMEOUT;
        break;
    case VM_WAIT_STOPPED:
        status = report_stop(vm, false, opt->prog);
        break;
    default:
        fprintf(stderr, "%s: the event loop failed: %s\n", opt->prog, strerror(errno));
        status = VMM_EXIT_ERROR;
        break;
    }
    if (syncing) {
        /* A sync still waiting on a guest that will never answer (it
         * panicked, say) gives up: the wait must not outlive the VM. */
        uint64_t one = 1;
        if (write(job.wake_fd, &one, sizeof one) != sizeof one)
            vm_stop(vm);
        pthread_join(sync_thread, NULL);
    }
    if (job.wake_fd >= 0)
        close(job.wake_fd);
    vm_control_close(control);
    vm_destroy(vm);
    return status;
}
