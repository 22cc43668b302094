/* vCPUs: boot state and the per-vCPU thread that runs KVM_RUN. */
#ifndef SM_VMM_VCPU_H
#define SM_VMM_VCPU_H

#include <linux/kvm.h>

#include "vmm/vm.h"

sm_code vcpu_create(struct vcpu *v, struct vm *vm, int index, sm_error *err);
void vcpu_destroy(struct vcpu *v);
/* CPUID, MSRs, LAPIC for every vCPU; long-mode entry registers for vCPU 0. */
sm_code vcpu_configure_for_boot(struct vcpu *v, const struct kvm_cpuid2 *cpuid, int ncpus, uint64_t entry,
                                sm_error *err);
sm_code vcpu_start(struct vcpu *v, sm_error *err);
/* Makes a running KVM_RUN return (immediate_exit + a signal to the thread). */
void vcpu_kick(struct vcpu *v);
/* Kicks until the thread has ended, then joins it. vm->stopping must be set. */
void vcpu_join(struct vcpu *v);
/* The real-time signal used to kick vCPU threads. */
int vcpu_kick_signal(void);

#endif
