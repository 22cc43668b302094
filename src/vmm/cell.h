/*
 * The VMM's cell: what a guest that took over the VMM's device code finds
 * around it, besides the seccomp filters (confine.h). Firecracker's jailer
 * builds its cell from outside, as root; the VMM builds its own here,
 * unprivileged, with user namespaces, in three steps:
 *
 *   cell_join_cgroup with --cgroup, before anything is allocated: the VMM
 *                    moves itself into the cgroup of its limits (made by the
 *                    library, lib/vm_cgroup.h), so all it touches is charged
 *   cell_enter       first thing in main, one thread: inherited descriptors
 *                    closed; new user (only our uid and gid mapped), mount,
 *                    PID, IPC, UTS and cgroup namespaces, and a network namespace
 *                    when the VM has no network; then a fork (below)
 *   cell_seal        every file open and socket bound, no thread yet: the
 *                    root becomes a read-only tmpfs holding the cell folder
 *                    (at its own path, read-only) and, for the NAT, the
 *                    host's resolv.conf; the host's tree is detached;
 *                    rlimits: no core dumps, descriptors bounded
 *   cell_close_door  every thread started: no new process (RLIMIT_NPROC 0)
 *
 * The fork: a new PID namespace takes effect for children only, so the VMM
 * forks and goes on as PID 1 of its namespace; the parent stays behind as
 * its stand-in. The stand-in is the process the library started and knows
 * by PID: it forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
 * to the VMM, ends the way the VMM ended (its status, or its signal
 * re-raised), and is itself seccomp-confined to exactly that work. If the
 * stand-in dies, the VMM is killed (PR_SET_PDEATHSIG).
 *
 * Where the kernel refuses user namespaces (a sysctl, an LSM, a container
 * without them), cell_enter says so on stderr (vmm.log) and the VMM runs
 * with the rest: closed descriptors, rlimits, seccomp. `supermachine doctor`
 * says beforehand which applies.
 */
#ifndef SM_VMM_CELL_H
#define SM_VMM_CELL_H

#include <stdbool.h>

#include "supermachine.h"

#define CELL_KEEP_FDS 2

struct cell {
    const char *dir;    /* the VM's cell folder (absolute): its sockets */
    bool host_network;  /* the VM's NAT needs the host's network (and resolv.conf) */
    int keep_fds[CELL_KEEP_FDS]; /* descriptors to keep besides 0-2 (the ready pipe, the
                                    lifeline), or -1 */
    bool namespaces;    /* out: the namespaces were entered (false: the kernel refused) */
};

/* Moves this process into the cgroup v2 folder dir (its cgroup.procs). */
sm_code cell_join_cgroup(const char *dir, sm_error *err);

/* Step one; returns in the VMM (the stand-in never returns). false with
 * err only for a failure after the namespaces were granted: a cell half
 * made is not run in. */
bool cell_enter(struct cell *c, sm_error *err);

/* Step two. */
sm_code cell_seal(const struct cell *c, sm_error *err);

/* Step three. */
void cell_close_door(void);

#endif
