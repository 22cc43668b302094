/* Thin, checked wrappers around /dev/kvm's system ioctls. */
#ifndef SM_MACHINE_KVM_H
#define SM_MACHINE_KVM_H

#include <linux/kvm.h>

#include "supermachine.h"

#include <stdbool.h>

/* True when /dev/kvm is PVM (kvm_pvm): it runs only guests patched for it. */
bool kvm_host_is_pvm(void);

/* Opens /dev/kvm and checks the API version and every capability we use. */
sm_code kvm_open_checked(int *kvm_fd, sm_error *err);

/* KVM_GET_SUPPORTED_CPUID, grown until it fits; free() the result. */
struct kvm_cpuid2 *kvm_supported_cpuid(int kvm_fd, sm_error *err);

/* Whether KVM emulates the LAPIC's TSC-deadline timer mode. */
bool kvm_has_tsc_deadline(int kvm_fd);

/* Adjusts the supported CPUID for vCPU `index` of `ncpus` (APIC ids,
 * topology, hypervisor and TSC-deadline bits; VMX and SVM hidden). */
void cpuid_patch_for_vcpu(struct kvm_cpuid2 *cpuid, int index, int ncpus, bool tsc_deadline);

#endif
