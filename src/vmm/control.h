/* The VMM process's control socket: the server side of the requests in
 * src/protocol/vmm.h. */
#ifndef SM_VMM_CONTROL_H
#define SM_VMM_CONTROL_H

#include "supermachine.h"
#include "vmm/vm.h"

struct vm_control;

/* Listens on path (replacing a stale socket) and serves from vm's event loop. */
struct vm_control *vm_control_open(struct vm *vm, const char *path, sm_error *err);
/* Stops listening, closes any client, removes the socket file. */
void vm_control_close(struct vm_control *c);

#endif
