/*
 * The VMM process's control socket: one line in, one line out, per request.
 *
 *   request             reply                     effect
 *   "snapshot DIR\n"    "ok\n" | "error MSG\n"    pause, write a snapshot to DIR, resume
 *   "stop\n"            "ok\n"                    stop the VM (the process then exits 0)
 *   "stats\n"           "ok KEY=VALUE ...\n"      VM exits by kind, ready time
 *
 * Lines are at most CONTROL_MAX_LINE bytes; a longer or unknown request gets
 * an error reply and the connection is closed. One client at a time.
 */
#ifndef SM_VMM_CONTROL_H
#define SM_VMM_CONTROL_H

#include "supermachine.h"
#include "vmm/vm.h"

#define CONTROL_MAX_LINE 4096

struct vm_control;

/* Listens on path (replacing a stale socket) and serves from vm's event loop. */
struct vm_control *vm_control_open(struct vm *vm, const char *path, sm_error *err);
/* Stops listening, closes any client, removes the socket file. */
void vm_control_close(struct vm_control *c);

#endif
