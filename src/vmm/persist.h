/*
 * A VM saved into a snapshot folder (src/protocol/vmm.h), and a VM
 * built from one. The VMM owns this: it knows which devices a VM has, and
 * asks each (through its device_state_ops) to save or restore itself; the
 * snapshot code below it only encodes sections and KVM state.
 */
#ifndef SM_VMM_PERSIST_H
#define SM_VMM_PERSIST_H

#include "supermachine.h"
#include "vmm/vm.h"

/* Writes a snapshot of vm into the open folder dir_fd (dir_name names it
 * in messages; files inside are replaced atomically). The VM must be paused
 * (vm_pause). */
sm_code persist_save(struct vm *vm, int dir_fd, const char *dir_name, sm_error *err);

/* Creates dir if missing and opens it for persist_save (not through a
 * link); -1 with err. */
int persist_open_dir(const char *dir, sm_error *err);

/* Builds a VM from the snapshot in dir. cfg supplies what is the host's
 * choice (sockets, console); memory size, vCPU count and guest CID come from
 * the snapshot. The VM is not started: vm_start() runs it. A snapshot that is
 * truncated, corrupt, from another format version or from a CPU lacking a
 * feature the guest saw is refused with a message saying which. */
struct vm *persist_restore(const char *dir, const struct vm_config *cfg, sm_error *err);

#endif
