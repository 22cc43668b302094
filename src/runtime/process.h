/*
 * A container's process (config.json's `process`, or exec's) run in its VM
 * through the guest's agent, with the host side of its stdio relayed:
 *
 *   host fds (the engine's)            agent connection           guest
 *   in  --------------------------->  STDIN frames  ---------->  process
 *   out <---------------------------  STDOUT frames <----------  (a pty in
 *   err <---------------------------  STDERR frames <----------   the guest
 *   signals to this process ------->  SIGNAL frames ---------->   with a
 *   SIGWINCH (terminal resized) --->  RESIZE frames ---------->   terminal)
 *
 * With a terminal, the engine hands us a console socket: we make a pty,
 * send its master there (runc's protocol: one SCM_RIGHTS message), and
 * relay between its slave and the agent. The slave is set raw, since the
 * guest's own pty does the line discipline, and becomes our controlling
 * terminal, so the engine's resizes of the master reach us as SIGWINCH.
 */
#ifndef SM_RUNTIME_PROCESS_H
#define SM_RUNTIME_PROCESS_H

#include "runtime/config.h"
#include "supermachine.h"

#include <stdbool.h>

struct rt_stdio {
    int in, out, err; /* with a terminal: all three are the pty's slave */
    bool terminal;
};

/* A builder for p in vm: args, env (exactly p's: not added to the agent's),
 * cwd, user and groups, rlimits, the hostname (config.json's: the whole
 * guest's), terminal and its size. NULL with err set. */
sm_exec_builder *rt_process_builder(const sm_vm *vm, const struct rt_config *p, sm_error *err);

/* The terminal for a process: a pty whose master is sent to the console
 * socket at socket_path; its slave, raw, is *slave (also our controlling
 * terminal: call after setsid). */
sm_code rt_console_open(const char *socket_path, int *slave, sm_error *err);

/* Runs b, relaying io and forwarding signals (see RT_FORWARDED_SIGNALS in
 * process.c) until the process ends; *status is how it ended. */
sm_code rt_process_run(const sm_exec_builder *b, const struct rt_stdio *io, sm_exec_status *status,
                       sm_error *err);

/* Ends this process the way the container's process ended: exit with its
 * code, or die of its signal (without a core dump), so that whoever waits
 * for us (the engine's shim or conmon) reads the same status. */
_Noreturn void rt_exit_as(const sm_exec_status *status);

#endif
