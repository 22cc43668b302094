/*
 * The VMM's seccomp filters: each thread, once its setup is done, allows
 * itself exactly the system calls (and, for ioctl and socket, the
 * arguments) that its work needs, listed per role in confine.c. Anything
 * else kills the whole process: a guest that took over a device's code
 * must not get to open files, exec, ptrace or reach the network.
 *
 *   role             installed                      what it does afterwards
 *   CONFINE_VCPU     top of each vCPU thread        KVM_RUN, interrupt lines, eventfds
 *   CONFINE_NETWORK  top of the network thread      the NAT's sockets (libslirp)
 *   CONFINE_SYNC     top of the restore-sync thread one Unix connection to the agent
 *   CONFINE_MAIN     once the VM runs               devices, vsock, control socket, snapshots
 *
 * A forbidden call raises SIGSYS (SECCOMP_RET_TRAP): the handler writes
 * VMM_SECCOMP_KILLED "N" on stderr (the VM's vmm.log)
 * and the signal, re-raised with its default action, ends the process.
 * The trap rather than RET_KILL_PROCESS so that the log names the call;
 * the handler cannot be escaped: SIGSYS blocked or ignored makes the
 * kernel kill outright, and sigaction is not on any list.
 */
#ifndef SM_VMM_CONFINE_H
#define SM_VMM_CONFINE_H

#include <stdbool.h>

#include "protocol/vmm.h" /* VMM_SECCOMP_KILLED: what the SIGSYS handler writes */
#include "supermachine.h"

/* A VMM that is PID 1 of its PID namespace (cell.h) cannot die of a signal
 * it sends itself: the SIGSYS handler then exits with this status, which
 * the cell's stand-in turns back into SIGSYS. */
#define CONFINE_EXIT_SIGSYS (128 + 31)

enum confine_role { CONFINE_MAIN, CONFINE_VCPU, CONFINE_NETWORK, CONFINE_SYNC };

/* Sets NO_NEW_PRIVS and loads the role's filter for the calling thread
 * only (threads it creates later inherit it). */
sm_code confine_thread(enum confine_role role, sm_error *err);

/* Test only: makes a call no filter allows (the control request
 * "test-forbidden-syscall"), to prove the filter is there. */
void confine_call_forbidden(void);

#endif
