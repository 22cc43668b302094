/*
 * The monitor: the host process that stands for a container. `create`
 * forks it, and its pid is the container's pid (the pid file's, state's):
 *
 *   create ──fork──> monitor: setsid; bind mounts checked (binds.h); the
 *     │                 terminal (console socket), if any
 *     │                 image from root.path (packed and baked the first
 *     │                 time, restored after: sm_image_from_rootfs); the VM
 *     │                 started, attached, so that it lives as long as we do
 *     │<── report ───── "ok" and the VM's ID, or the error
 *   exits 0 / 1         waits on the start FIFO
 *   start ── 1 byte ──> copies bind-mounted files in; runs process through
 *                       the agent, relaying stdio and
 *                       forwarding signals (process.h); stops the VM; ends
 *                       as the process ended (exit code or signal)
 *
 * It inherits create's stdio, as runc's container process does: the engine
 * (conmon, containerd's shim) gave create the container's stdio, and waits
 * for our pid (it is the subreaper we are reparented to). SIGKILL, which we
 * cannot forward, ends us and with us the VM (its lifeline).
 *
 * The start FIFO, ROOT/ID/start: the monitor holds it open read-write before
 * it reports, so a writer never blocks and never finds it readerless while
 * the monitor lives: `start` opens it write-only without blocking, and
 * ENXIO means the monitor is gone.
 */
#ifndef SM_RUNTIME_MONITOR_H
#define SM_RUNTIME_MONITOR_H

#include "runtime/config.h"
#include "supermachine.h"

#define RT_START_FIFO "start"

struct rt_monitor_args {
    const struct rt_config *cfg;
    const char *rootfs;
    const sm_store *store;      /* images and VM folders (store.h) */
    const char *console_socket; /* NULL: none */
    const char *start_fifo;     /* made by the caller */
    int report_fd;              /* the write end of create's report pipe */
    int keep_fd;                /* one more descriptor to keep open (the log), or -1 */
};

/* The report on report_fd: one write of this, then the pipe is closed. */
struct rt_monitor_report {
    sm_code code;
    char text[512]; /* SM_OK: the VM's ID; else the error's message */
};

/* Runs in the child create forked; does not return. */
_Noreturn void rt_monitor_run(const struct rt_monitor_args *a);

/* The VM's size from linux.resources: memory.limit (rounded up to MiB, at
 * least RT_MIN_MEMORY_MIB) and cpu.quota/period (rounded up). */
#define RT_MIN_MEMORY_MIB 128u
sm_code rt_vm_size(const struct rt_config *cfg, sm_vm_config *vm, sm_error *err);

#endif
