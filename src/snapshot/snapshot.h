/*
 * Snapshots of a running VM, and VMs restored from them.
 *
 * A snapshot is a folder with two files:
 *   state    every piece of state KVM and our devices hold (format.h has the
 *            container; snapshot.c the sections' payloads)
 *   memory   guest RAM, raw, sparse where the guest's pages are zero
 *
 * Restore maps `memory` copy-on-write, so its cost does not grow with the
 * guest's memory size and VMs restored from one snapshot share its pages.
 * The snapshot must not change while VMs restored from it run.
 */
#ifndef SM_SNAPSHOT_SNAPSHOT_H
#define SM_SNAPSHOT_SNAPSHOT_H

#include "supermachine.h"
#include "protocol/vmm.h"
#include "vmm/vm.h"


/* Writes a snapshot of vm into dir (created if missing; files inside are
 * replaced atomically). The VM must be paused (vm_pause). */
sm_code snapshot_save(struct vm *vm, const char *dir, sm_error *err);

/* Builds a VM from the snapshot in dir. cfg supplies what is the host's
 * choice (sockets, console); memory size, vCPU count and guest CID come from
 * the snapshot. The VM is not started: vm_start() runs it. A snapshot that is
 * truncated, corrupt, from another format version or from a CPU lacking a
 * feature the guest saw is refused with a message saying which. */
struct vm *snapshot_restore(const char *dir, const struct vm_config *cfg, sm_error *err);

#endif
