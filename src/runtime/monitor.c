/* The process that stands for a container: see monitor.h. */
#include "runtime/monitor.h"

#include "base/error.h"
#include "base/file.h"
#include "runtime/binds.h"
#include "runtime/log.h"
#include "runtime/process.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

sm_code rt_vm_size(const struct rt_config *cfg, sm_vm_config *vm, sm_error *err)
{
    if (cfg->has_memory_limit && cfg->memory_limit > 0) {
        uint64_t mib = ((uint64_t)cfg->memory_limit + (1u << 20) - 1) >> 20;
        if (mib < RT_MIN_MEMORY_MIB)
            mib = RT_MIN_MEMORY_MIB;
        if (mib > UINT32_MAX || sm_vm_config_memory_mib(vm, (uint32_t)mib) != SM_OK)
            return error_set(err, SM_E_UNSUPPORTED,
                             "linux.resources.memory.limit: %lld bytes is outside what a VM may "
                             "have",
                             (long long)cfg->memory_limit);
    }
    if (cfg->has_cpu_quota && cfg->cpu_quota > 0) {
        uint64_t period = cfg->has_cpu_period && cfg->cpu_period ? cfg->cpu_period : 100000;
        uint64_t cpus = ((uint64_t)cfg->cpu_quota + period - 1) / period;
        if (cpus > UINT32_MAX || sm_vm_config_cpus(vm, (uint32_t)cpus) != SM_OK)
            return error_set(err, SM_E_UNSUPPORTED,
                             "linux.resources.cpu: a quota of %lld per %llu us is %llu CPUs, more "
                             "than a VM may have",
                             (long long)cfg->cpu_quota, (unsigned long long)period,
                             (unsigned long long)cpus);
    }
    return SM_OK;
}

/* Everything but stdio, the report pipe and keep_fd: the engine's other
 * descriptors and the container's lock are not the monitor's to hold. */
static void close_inherited(int report_fd, int keep_fd)
{
    int keep[2] = { report_fd < keep_fd ? report_fd : keep_fd,
                    report_fd < keep_fd ? keep_fd : report_fd };
    int from = 3;
    for (int i = 0; i < 2; i++) {
        if (keep[i] < from)
            continue;
        if (keep[i] > from)
            syscall(SYS_close_range, from, keep[i] - 1, 0);
        from = keep[i] + 1;
    }
    syscall(SYS_close_range, from, ~0u, 0);
}

static void report(int fd, sm_code code, const char *text)
{
    struct rt_monitor_report r = { .code = code };
    snprintf(r.text, sizeof r.text, "%s", text);
    write_all(fd, &r, sizeof r);
    close(fd);
}

/* The VM's NAT opens its sockets in the VMM, which inherits our network
 * namespace: joining the engine's (or a new, empty one) makes the
 * container's traffic leave as the engine set it up, or not at all
 * (podman --network none). */
static sm_code enter_network_namespace(const struct rt_config *cfg, sm_error *err)
{
    if (!cfg->has_net_namespace)
        return SM_OK;
    if (!cfg->net_namespace_path) {
        if (unshare(CLONE_NEWNET) != 0)
            return error_set_errno(err, SM_E_IO, errno,
                                   "linux.namespaces: cannot make a new network namespace");
        return SM_OK;
    }
    int fd = open(cfg->net_namespace_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "linux.namespaces: cannot open %s",
                               cfg->net_namespace_path);
    int rc = setns(fd, CLONE_NEWNET);
    int e = errno;
    close(fd);
    if (rc != 0)
        return error_set_errno(err, SM_E_IO, e, "linux.namespaces: cannot join the network namespace %s",
                               cfg->net_namespace_path);
    return SM_OK;
}

/* The container's VM: its image made from rootfs (or found made), started
 * attached to us, with the network on. */
static sm_code start_vm(const struct rt_monitor_args *a, sm_vm **vm, sm_error *err)
{
    sm_vm_config *vc = sm_vm_config_new();
    sm_image *img = NULL;
    if (!vc)
        return error_set(err, SM_E_NOMEM, "out of memory");
    sm_code rc = rt_vm_size(a->cfg, vc, err);
    if (!rc && (rc = sm_image_from_rootfs(a->store, a->rootfs, vc, &img, err)))
        error_prefix(err, "making the image of %s", a->rootfs);
    if (!rc)
        rc = sm_vm_config_image(vc, img);
    if (!rc)
        rc = sm_vm_config_store(vc, a->store);
    if (!rc)
        rc = sm_vm_config_net(vc, true);
    if (!rc && (rc = sm_vm_start(vc, vm, err)))
        error_prefix(err, "starting the container's VM");
    sm_image_free(img);
    sm_vm_config_free(vc);
    return rc;
}

/* Blocks until `start` writes its byte. */
static bool wait_for_start(int fifo)
{
    char b;
    for (;;) {
        ssize_t n = read(fifo, &b, 1);
        if (n == 1)
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
}

static _Noreturn void fail_after_report(sm_vm *vm, const char *what, const sm_error *err)
{
    rt_log(RT_LOG_ERROR, "%s: %s", what, err->message);
    sm_vm_free(vm);
    _exit(255);
}

_Noreturn void rt_monitor_run(const struct rt_monitor_args *a)
{
    close_inherited(a->report_fd, a->keep_fd);
    setsid();
    sm_error err = { 0 };
    sm_vm *vm = NULL;
    struct rt_stdio io = { .in = STDIN_FILENO, .out = STDOUT_FILENO, .err = STDERR_FILENO };
    int fifo = open(a->start_fifo, O_RDWR | O_CLOEXEC);
    sm_code rc = fifo < 0 ? error_set_errno(&err, SM_E_IO, errno, "cannot open %s", a->start_fifo)
                          : SM_OK;
    if (!rc)
        rc = rt_binds_check(a->cfg, &err);
    if (!rc && a->console_socket) {
        int tty;
        if (!(rc = rt_console_open(a->console_socket, &tty, &err)))
            io = (struct rt_stdio){ .in = tty, .out = tty, .err = tty, .terminal = true };
    }
    if (!rc)
        rc = enter_network_namespace(a->cfg, &err);
    if (!rc)
        rc = start_vm(a, &vm, &err);
    report(a->report_fd, rc, rc ? err.message : sm_vm_id(vm));
    if (rc)
        _exit(1);

    if (!wait_for_start(fifo)) {
        error_set_errno(&err, SM_E_IO, errno, "reading %s", a->start_fifo);
        fail_after_report(vm, "waiting for start", &err);
    }
    close(fifo);
    sm_exec_builder *b = rt_process_builder(vm, a->cfg, &err);
    sm_exec_status status;
    if (!b || rt_binds_stage(b, a->cfg, &err) || rt_process_run(b, &io, &status, &err))
        fail_after_report(vm, "running the container's process", &err);
    sm_exec_builder_free(b);
    sm_vm_free(vm);
    rt_exit_as(&status);
}
