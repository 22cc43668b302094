/*
 * vCPUs: their initial state for the 64-bit boot entry, and the thread that
 * runs each one and dispatches its exits to the buses.
 */
#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/error.h"
#include "vmm/boot.h"
#include "vmm/confine.h"
#include "machine/kvm.h"

/* Control registers and MSRs for long mode. */
#define CR0_PE (1ull << 0)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE    0x2ff
#define MISC_ENABLE_FAST_STRING 1ull
#define MTRR_ENABLE_WB ((1ull << 11) | 6)

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI    4
#define APIC_MODE_EXTINT 7

sm_code vcpu_create(struct vcpu *v, struct vm *vm, int index, sm_error *err)
{
    memset(v, 0, sizeof *v);
    v->vm = vm;
    v->index = index;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, index);
    if (v->fd < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_CREATE_VCPU %d failed", index);
    int size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size < (int)sizeof(struct kvm_run))
        return error_set_errno(err, SM_E_KVM, errno, "KVM_GET_VCPU_MMAP_SIZE failed");
    v->run_size = (size_t)size;
    v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        return error_set_errno(err, SM_E_KVM, errno, "mmap of vCPU %d's run area failed", index);
    }
    return SM_OK;
}

void vcpu_destroy(struct vcpu *v)
{
    if (v->run)
        munmap(v->run, v->run_size);
    if (v->fd > 0)
        close(v->fd);
    v->run = NULL;
    v->fd = -1;
}

static sm_code set_cpuid(struct vcpu *v, const struct kvm_cpuid2 *base, int ncpus, sm_error *err)
{
    size_t bytes = sizeof *base + base->nent * sizeof base->entries[0];
    struct kvm_cpuid2 *mine = malloc(bytes);
    if (!mine)
        return error_set(err, SM_E_NOMEM, "out of memory for CPUID");
    memcpy(mine, base, bytes);
    cpuid_patch_for_vcpu(mine, v->index, ncpus, kvm_has_tsc_deadline(v->vm->kvm_fd));
    int rc = ioctl(v->fd, KVM_SET_CPUID2, mine);
    int e = errno;
    free(mine);
    if (rc < 0)
        return error_set_errno(err, SM_E_KVM, e, "KVM_SET_CPUID2 on vCPU %d failed", v->index);
    return SM_OK;
}

static void set_lvt_mode(struct kvm_lapic_state *lapic, int reg, uint32_t mode)
{
    uint32_t value;
    memcpy(&value, lapic->regs + reg, 4);
    value = (value & ~0x700u) | (mode << 8);
    memcpy(lapic->regs + reg, &value, 4);
}

/* LINT0 delivers the 8259's ExtINT, LINT1 NMIs, as on a PC. */
static sm_code set_lapic(struct vcpu *v, sm_error *err)
{
    struct kvm_lapic_state lapic;
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_GET_LAPIC failed");
    set_lvt_mode(&lapic, APIC_LVT_LINT0, APIC_MODE_EXTINT);
    set_lvt_mode(&lapic, APIC_LVT_LINT1, APIC_MODE_NMI);
    if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_LAPIC failed");
    return SM_OK;
}

static sm_code set_msrs(struct vcpu *v, sm_error *err)
{
    /* struct kvm_msrs ends in a flexible array: give it room in a union. */
    union {
        struct kvm_msrs hdr;
        uint8_t bytes[sizeof(struct kvm_msrs) + 2 * sizeof(struct kvm_msr_entry)];
    } msrs;
    memset(&msrs, 0, sizeof msrs);
    msrs.hdr.nmsrs = 2;
    msrs.hdr.entries[0] = (struct kvm_msr_entry){ .index = MSR_IA32_MISC_ENABLE, .data = MISC_ENABLE_FAST_STRING };
    msrs.hdr.entries[1] = (struct kvm_msr_entry){ .index = MSR_MTRR_DEF_TYPE, .data = MTRR_ENABLE_WB };
    int n = ioctl(v->fd, KVM_SET_MSRS, &msrs);
    if (n != 2)
        return error_set(err, SM_E_KVM, "KVM_SET_MSRS set %d of 2 boot MSRs", n);
    return SM_OK;
}

static struct kvm_segment flat_segment(uint16_t selector, uint8_t type, bool code)
{
    return (struct kvm_segment){
        .base = 0, .limit = 0xffffffff, .selector = selector, .type = type,
        .present = 1, .dpl = 0, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1,
    };
}

/* Long mode, paging on with the boot identity map, flat segments. */
static sm_code set_boot_registers(struct vcpu *v, uint64_t entry, sm_error *err)
{
    struct kvm_sregs s;
    if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_GET_SREGS failed");
    s.cs = flat_segment(BOOT_CS, 0xb, true);
    s.ds = s.es = s.fs = s.gs = s.ss = flat_segment(BOOT_DS, 0x3, false);
    s.tr = (struct kvm_segment){ .base = 0, .limit = 0xfff, .selector = BOOT_TSS, .type = 0xb, .present = 1 };
    s.ldt = (struct kvm_segment){ .type = 0x2, .present = 1, .unusable = 1 };
    s.gdt.base = BOOT_GDT_ADDR;
    s.gdt.limit = 5 * 8 - 1;
    s.idt.base = 0;
    s.idt.limit = 0;
    s.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
    s.cr3 = BOOT_PML4_ADDR;
    s.cr4 = CR4_PAE;
    s.efer = EFER_LME | EFER_LMA;
    if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_SREGS failed");

    struct kvm_regs r;
    memset(&r, 0, sizeof r);
    r.rip = entry;
    r.rsi = BOOT_ZERO_PAGE_ADDR;
    r.rflags = 0x2;
    if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_REGS failed");

    struct kvm_fpu fpu;
    memset(&fpu, 0, sizeof fpu);
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_FPU failed");
    return SM_OK;
}

sm_code vcpu_configure_for_boot(struct vcpu *v, const struct kvm_cpuid2 *cpuid, int ncpus, uint64_t entry,
                                sm_error *err)
{
    sm_code rc;
    if ((rc = set_cpuid(v, cpuid, ncpus, err)) || (rc = set_msrs(v, err)) || (rc = set_lapic(v, err)))
        return rc;
    /* Application processors wait in the in-kernel LAPIC for INIT/SIPI from
     * the boot processor; only the BSP gets an entry state. */
    if (v->index == 0)
        return set_boot_registers(v, entry, err);
    return SM_OK;
}

/* --- the run loop ----------------------------------------------------------- */

static void count_exit(struct vm *vm, enum vm_exit_kind kind)
{
    atomic_fetch_add_explicit(&vm->exits[kind], 1, memory_order_relaxed);
}

static void handle_io(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint32_t size = run->io.size;
    uint64_t count = run->io.count;
    /* data_offset and the repeat count come from KVM, but check they stay in
     * the run area rather than trusting the arithmetic. */
    if (size == 0 || size > 4 || run->io.data_offset >= v->run_size ||
        count * size > v->run_size - run->io.data_offset) {
        vm_fail(v->vm, "vCPU %d: malformed port I/O exit (port 0x%x size %u count %llu)", v->index, run->io.port,
                size, (unsigned long long)count);
        return;
    }
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    for (uint64_t i = 0; i < count; i++, data += size) {
        if (run->io.direction == KVM_EXIT_IO_OUT)
            bus_write(&v->vm->pio, run->io.port, data, size);
        else
            bus_read(&v->vm->pio, run->io.port, data, size);
    }
}

static void handle_mmio(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint32_t len = run->mmio.len;
    if (len == 0 || len > sizeof run->mmio.data) {
        vm_fail(v->vm, "vCPU %d: malformed MMIO exit (len %u)", v->index, len);
        return;
    }
    if (run->mmio.is_write)
        bus_write(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
    else
        bus_read(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
}

static void handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    struct vm *vm = v->vm;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        count_exit(vm, VM_EXIT_IO);
        handle_io(v);
        break;
    case KVM_EXIT_MMIO:
        count_exit(vm, VM_EXIT_MMIO);
        handle_mmio(v);
        break;
    case KVM_EXIT_INTR:
        count_exit(vm, VM_EXIT_INTR);
        break;
    case KVM_EXIT_SHUTDOWN: {
        /* A triple fault. Our guests reboot through the i8042 (reboot=k), so
         * this is always a crash, never a power off: say so and where. */
        count_exit(vm, VM_EXIT_SHUTDOWN);
        struct kvm_regs r;
        struct kvm_sregs sr;
        bool regs = ioctl(v->fd, KVM_GET_REGS, &r) == 0 && ioctl(v->fd, KVM_GET_SREGS, &sr) == 0;
        vm_fail(vm, "vCPU %d: the guest triple-faulted (a crash of the guest kernel; RIP 0x%llx, CPL %d)",
                v->index, regs ? (unsigned long long)r.rip : 0ull, regs ? sr.cs.dpl : -1);
        break;
    }
    case KVM_EXIT_SYSTEM_EVENT:
        count_exit(vm, VM_EXIT_OTHER);
        vm_request_stop(vm, VM_STOP_GUEST_RESET);
        break;
    case KVM_EXIT_HLT:
        count_exit(vm, VM_EXIT_OTHER);
        vm_fail(vm, "vCPU %d halted with interrupts off (the guest stopped itself)", v->index);
        break;
    case KVM_EXIT_FAIL_ENTRY:
        count_exit(vm, VM_EXIT_OTHER);
        vm_fail(vm, "vCPU %d: KVM could not enter the guest (hardware reason 0x%llx)", v->index,
                (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        count_exit(vm, VM_EXIT_OTHER);
        vm_fail(vm, "vCPU %d: KVM internal error (suberror %u)", v->index, run->internal.suberror);
        break;
    default:
        count_exit(vm, VM_EXIT_OTHER);
        vm_fail(vm, "vCPU %d: unexpected KVM exit reason %u", v->index, run->exit_reason);
        break;
    }
}

/* KVM finishes an I/O or MMIO exit only on the next KVM_RUN; entering with
 * immediate_exit completes it and returns at once, so that the registers a
 * snapshot reads are consistent. */
static bool complete_pending_exit(struct vcpu *v)
{
    for (int tries = 0; tries < 16; tries++) {
        v->run->immediate_exit = 1;
        int r = ioctl(v->fd, KVM_RUN, 0);
        v->run->immediate_exit = 0;
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            return true;
        if (r < 0) {
            vm_fail(v->vm, "vCPU %d: KVM_RUN failed while pausing: %s", v->index, strerror(errno));
            return false;
        }
        handle_exit(v);
    }
    vm_fail(v->vm, "vCPU %d would not pause", v->index);
    return false;
}

/* Waits, out of KVM_RUN, until the VM is resumed or stopped. */
static void park(struct vcpu *v)
{
    struct vm *vm = v->vm;
    bool consistent = complete_pending_exit(v);
    pthread_mutex_lock(&vm->pause_lock);
    vm->parked++;
    if (!consistent)
        vm->pause_failed = true;
    pthread_cond_broadcast(&vm->pause_cond);
    while (atomic_load(&vm->pause_requested) && !atomic_load(&vm->stopping))
        pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
    vm->parked--;
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vm *vm = v->vm;
    char name[16];
    snprintf(name, sizeof name, "vcpu%d", v->index);
    prctl(PR_SET_NAME, name);
    sm_error err = { 0 };
    if (vm->cfg.confine && confine_thread(CONFINE_VCPU, &err)) {
        vm_fail(vm, "vCPU %d: %s", v->index, err.message);
        return NULL;
    }
    while (!atomic_load(&vm->stopping)) {
        if (atomic_load(&vm->pause_requested)) {
            park(v);
            continue;
        }
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                count_exit(vm, VM_EXIT_INTR);
                v->run->immediate_exit = 0;
                continue;
            }
            vm_fail(vm, "vCPU %d: KVM_RUN failed: %s", v->index, strerror(errno));
            break;
        }
        handle_exit(v);
    }
    return NULL;
}

/* The kick signal only interrupts KVM_RUN; its handler does nothing. */
static void kick_handler(int sig)
{
    (void)sig;
}

int vcpu_kick_signal(void)
{
    return SIGRTMIN + 3;
}

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;
static void install_kick_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(vcpu_kick_signal(), &sa, NULL);
}

sm_code vcpu_start(struct vcpu *v, sm_error *err)
{
    pthread_once(&kick_once, install_kick_handler);
    int rc = pthread_create(&v->thread, NULL, vcpu_thread, v);
    if (rc)
        return error_set_errno(err, SM_E_IO, rc, "cannot start the thread of vCPU %d", v->index);
    v->thread_started = true;
    return SM_OK;
}

void vcpu_kick(struct vcpu *v)
{
    if (!v->thread_started)
        return;
    if (v->run)
        v->run->immediate_exit = 1;
    pthread_kill(v->thread, vcpu_kick_signal());
}

void vcpu_join(struct vcpu *v)
{
    if (!v->thread_started)
        return;
    /* A vCPU may be about to enter KVM_RUN when the first kick lands; keep
     * kicking until it has seen `stopping`. */
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (pthread_timedjoin_np(v->thread, NULL, &ts) == 0)
            break;
        vcpu_kick(v);
    }
    v->thread_started = false;
}
