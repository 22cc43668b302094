/*
 * Snapshots of a running VM, and VMs restored from them.
 *
 * A snapshot is a folder with two files:
 *   state    every piece of state KVM and our devices hold (format.h has the
 *            container, kvm_state.h the KVM sections' payloads, each
 *            device's header its own)
 *   memory   guest RAM, raw, sparse where the guest's pages are zero
 *
 * Restore maps `memory` copy-on-write, so its cost does not grow with the
 * guest's memory size and VMs restored from one snapshot share its pages.
 * The snapshot must not change while VMs restored from it run.
 *
 * src/vmm/persist.h saves a VM into such a folder and builds one from it.
 */
#ifndef SM_SNAPSHOT_SNAPSHOT_H
#define SM_SNAPSHOT_SNAPSHOT_H

#define SNAPSHOT_STATE_FILE "state"
#define SNAPSHOT_MEMORY_FILE "memory"
#define SNAPSHOT_DISK_LINK "disk" /* symlink to the VM's disk image, when it had one */

#endif
