/*
 * The KVM-held part of a snapshot: vCPU registers, the in-kernel interrupt
 * controllers, PIT and clock, and the CPUID the guest saw, encoded into the
 * sections of format.h. Works on KVM file descriptors only, so it knows
 * nothing of how the VMM builds a VM (src/vmm/persist.c does that).
 *
 * Section payloads:
 *
 *   CPUID    u32 nent, nent x kvm_cpuid_entry2: what vCPU 0 saw (other vCPUs
 *            differ only in their APIC ids, re-derived on restore)
 *   VCPU i   struct snap_vcpu (KVM's own structs, fixed size), then
 *            xsave_size bytes of XSAVE area, then nmsrs x kvm_msr_entry
 *   IRQCHIP  kvm_irqchip x 3 (PIC master, PIC slave, IOAPIC)
 *   PIT      kvm_pit_state2
 *   CLOCK    kvm_clock_data
 *
 * Every count and size read back is checked against what this build and
 * this host expect before it reaches KVM.
 */
#ifndef SM_SNAPSHOT_KVM_STATE_H
#define SM_SNAPSHOT_KVM_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "supermachine.h"
#include "snapshot/format.h"

/* The XSAVE area size of this VM's vCPUs (asked of the VM fd). */
uint32_t kvm_state_xsave_size(int vm_fd);

/* The MSRs KVM can save for a vCPU of this host; free() it. */
struct kvm_msr_list *kvm_state_msr_list(int kvm_fd, sm_error *err);

/* Appends the CPUID section: cpuid as vCPU 0 of ncpus sees it. */
sm_code kvm_state_save_cpuid(struct snap_writer *w, const struct kvm_cpuid2 *cpuid, int ncpus, bool tsc_deadline,
                             sm_error *err);
/* Reads a CPUID section, and refuses it if the guest saw a CPU feature (or
 * vendor) this host's KVM does not offer. Returns a malloc'd copy. */
struct kvm_cpuid2 *kvm_state_restore_cpuid(const struct snap_section *sec, int kvm_fd, sm_error *err);
/* CPUID leaf 0's vendor string (12 characters, zero padded). */
void kvm_state_cpu_vendor(const struct kvm_cpuid2 *cpuid, char out[16]);

/* Appends vCPU `index`'s VCPU section. The vCPU must be outside KVM_RUN. */
sm_code kvm_state_save_vcpu(struct snap_writer *w, int vcpu_fd, int index, const struct kvm_msr_list *msrs,
                            uint32_t xsave_size, sm_error *err);
/* Installs a VCPU section into vCPU `index` of ncpus, with cpuid (the
 * guest's view, as kvm_state_restore_cpuid returned) patched for it. Every
 * saved MSR must be one of msr_list (KVM's MSRs to save and restore): a
 * snapshot is not to set any other MSR of the host's KVM. */
sm_code kvm_state_restore_vcpu(int vcpu_fd, int index, int ncpus, const struct kvm_cpuid2 *cpuid,
                               const struct kvm_msr_list *msr_list, const struct snap_section *sec,
                               uint32_t xsave_size, sm_error *err);
/* Whether every entry's index is in the list; if not, *unlisted is the first
 * that is not. */
bool kvm_state_msrs_listed(const struct kvm_msr_entry *entries, uint32_t n, const struct kvm_msr_list *list,
                           uint32_t *unlisted);

/* The guest's TSC rate: 0 when KVM cannot say. */
uint32_t kvm_state_tsc_khz(int vcpu_fd);
/* Makes the vCPU's TSC run at khz (0: unknown, left alone), or refuses. */
sm_code kvm_state_restore_tsc_khz(int vcpu_fd, uint32_t khz, sm_error *err);

/* Appends the IRQCHIP, PIT and CLOCK sections; reads them back in that order. */
sm_code kvm_state_save_vm(struct snap_writer *w, int vm_fd, sm_error *err);
sm_code kvm_state_restore_vm(struct snap_reader *r, int vm_fd, sm_error *err);

#endif
