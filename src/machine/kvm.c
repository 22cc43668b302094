#include "machine/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/error.h"

struct required_cap {
    int cap;
    const char *name;
};

static const struct required_cap required_caps[] = {
    { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
    { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
    { KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
    { KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
    { KVM_CAP_PIT2, "KVM_CAP_PIT2" },
    { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
    { KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
    { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
};

bool kvm_host_is_pvm(void)
{
    return access("/sys/module/kvm_pvm", F_OK) == 0;
}

sm_code kvm_open_checked(int *kvm_fd, sm_error *err)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return error_set(err, SM_E_UNSUPPORTED,
                           "/dev/kvm does not exist: this host has no KVM (enable VT-x/AMD-V, load kvm_intel or "
                           "kvm_amd; `supermachine doctor` says more)");
        if (e == EACCES || e == EPERM)
            return error_set(err, SM_E_UNSUPPORTED,
                           "no permission to open /dev/kvm: add this user to the kvm group (then log in again)");
        return error_set_errno(err, SM_E_IO, e, "cannot open /dev/kvm");
    }
    int version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        close(fd);
        return error_set(err, SM_E_UNSUPPORTED, "/dev/kvm speaks API version %d; version %d is needed", version,
                       KVM_API_VERSION);
    }
    for (size_t i = 0; i < sizeof required_caps / sizeof required_caps[0]; i++) {
        if (ioctl(fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
            close(fd);
            return error_set(err, SM_E_UNSUPPORTED, "this host's KVM lacks %s, which supermachine needs",
                           required_caps[i].name);
        }
    }
    *kvm_fd = fd;
    return SM_OK;
}

struct kvm_cpuid2 *kvm_supported_cpuid(int kvm_fd, sm_error *err)
{
    for (uint32_t nent = 64; nent <= 4096; nent *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof *c + nent * sizeof c->entries[0]);
        if (!c) {
            error_set(err, SM_E_NOMEM, "out of memory for CPUID entries");
            return NULL;
        }
        c->nent = nent;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            return c;
        int e = errno;
        free(c);
        if (e != E2BIG) {
            error_set_errno(err, SM_E_KVM, e, "KVM_GET_SUPPORTED_CPUID failed");
            return NULL;
        }
    }
    error_set(err, SM_E_KVM, "KVM_GET_SUPPORTED_CPUID wants more than 4096 entries");
    return NULL;
}

#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT        (1u << 28)
#define CPUID_1_ECX_VMX        (1u << 5)
#define CPUID_80000001_ECX_SVM (1u << 2)

bool kvm_has_tsc_deadline(int kvm_fd)
{
    return ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
}

void cpuid_patch_for_vcpu(struct kvm_cpuid2 *cpuid, int index, int ncpus, bool tsc_deadline)
{
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        switch (e->function) {
        case 1:
            /* EBX[31:24] initial APIC id, EBX[23:16] logical processors. */
            e->ebx = (e->ebx & 0x0000ffffu) | ((uint32_t)index << 24) | ((uint32_t)ncpus << 16);
            e->ecx |= CPUID_1_ECX_HYPERVISOR;
            /* KVM emulates the TSC-deadline timer but leaves the bit out of
             * the supported CPUID. With it the guest skips calibrating the
             * LAPIC timer against the PIT: faster, and reliable when the
             * host is slow (calibration fails under emulation). */
            if (tsc_deadline)
                e->ecx |= CPUID_1_ECX_TSC_DEADLINE;
            if (ncpus > 1)
                e->edx |= CPUID_1_EDX_HTT;
            else
                e->edx &= ~CPUID_1_EDX_HTT;
            /* No nested virtualization: a snapshot does not hold nested
             * state, so a guest must never start a VM of its own. */
            e->ecx &= ~CPUID_1_ECX_VMX;
            break;
        case 0x80000001:
            e->ecx &= ~CPUID_80000001_ECX_SVM;
            break;
        case 0xb:
        case 0x1f:
            /* Extended topology: EDX is this CPU's x2APIC id. */
            e->edx = (uint32_t)index;
            break;
        default:
            break;
        }
    }
}
