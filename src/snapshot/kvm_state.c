/* The KVM-held part of a snapshot: see kvm_state.h for the payloads. */
#include "snapshot/kvm_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "base/error.h"
#include "machine/kvm.h"

#define MAX_MSRS 1024
#define MAX_CPUID_ENTRIES 4096

struct snap_vcpu {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_xcrs xcrs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    struct kvm_mp_state mp_state;
    struct kvm_debugregs debugregs;
    uint32_t xsave_size;
    uint32_t nmsrs;
};

/* ===== helpers ============================================================== */

static sm_code ioctl_fail(sm_error *err, const char *what, int index)
{
    return error_set_errno(err, SM_E_KVM, errno, "%s on vCPU %d failed", what, index);
}

/* Asked of the VM fd: the size covers the features this VM has enabled,
 * which the system fd's answer need not match. */
uint32_t kvm_state_xsave_size(int vm_fd)
{
    int n = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    return n > (int)sizeof(struct kvm_xsave) ? (uint32_t)n : (uint32_t)sizeof(struct kvm_xsave);
}

struct kvm_msr_list *kvm_state_msr_list(int kvm_fd, sm_error *err)
{
    struct kvm_msr_list probe = { .nmsrs = 0 };
    ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe); /* E2BIG, with nmsrs set */
    if (probe.nmsrs == 0 || probe.nmsrs > MAX_MSRS) {
        error_set(err, SM_E_KVM, "KVM_GET_MSR_INDEX_LIST reports %u MSRs", probe.nmsrs);
        return NULL;
    }
    struct kvm_msr_list *list = calloc(1, sizeof *list + probe.nmsrs * sizeof list->indices[0]);
    if (!list) {
        error_set(err, SM_E_NOMEM, "out of memory for the MSR list");
        return NULL;
    }
    list->nmsrs = probe.nmsrs;
    if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
        error_set_errno(err, SM_E_KVM, errno, "KVM_GET_MSR_INDEX_LIST failed");
        free(list);
        return NULL;
    }
    return list;
}

static struct kvm_msrs *alloc_msrs(uint32_t n)
{
    struct kvm_msrs *m = calloc(1, sizeof *m + n * sizeof m->entries[0]);
    if (m)
        m->nmsrs = n;
    return m;
}

static struct kvm_cpuid2 *copy_cpuid(const struct kvm_cpuid2 *c)
{
    size_t bytes = sizeof *c + c->nent * sizeof c->entries[0];
    struct kvm_cpuid2 *copy = malloc(bytes);
    if (copy)
        memcpy(copy, c, bytes);
    return copy;
}

/* ===== CPUID ================================================================ */

void kvm_state_cpu_vendor(const struct kvm_cpuid2 *c, char out[16])
{
    memset(out, 0, 16);
    for (uint32_t i = 0; i < c->nent; i++) {
        if (c->entries[i].function == 0) {
            memcpy(out, &c->entries[i].ebx, 4);
            memcpy(out + 4, &c->entries[i].edx, 4);
            memcpy(out + 8, &c->entries[i].ecx, 4);
        }
    }
}

/* The guest's view: vCPU 0's patched CPUID. */
sm_code kvm_state_save_cpuid(struct snap_writer *w, const struct kvm_cpuid2 *cpuid, int ncpus, bool tsc_deadline,
                             sm_error *err)
{
    struct kvm_cpuid2 *seen = copy_cpuid(cpuid);
    if (!seen)
        return error_set(err, SM_E_NOMEM, "out of memory for CPUID");
    cpuid_patch_for_vcpu(seen, 0, ncpus, tsc_deadline);
    snap_begin_section(w, SNAP_SEC_CPUID, 0);
    snap_put(w, &seen->nent, sizeof seen->nent);
    snap_put(w, seen->entries, seen->nent * sizeof seen->entries[0]);
    snap_end_section(w);
    free(seen);
    return SM_OK;
}

struct cpuid_check {
    uint32_t function, index;
    char reg;            /* 'a', 'b', 'c', 'd' */
    uint32_t ignore;     /* bits we set ourselves or the guest's OS sets */
};

/* Feature words the guest may rely on: each bit it saw must exist here. */
static const struct cpuid_check feature_words[] = {
    { 1, 0, 'c', (1u << 31) | (1u << 27) | (1u << 24) }, /* hypervisor, OSXSAVE, TSC deadline (checked apart) */
    { 1, 0, 'd', 1u << 28 },                             /* HTT */
    { 7, 0, 'b', 0 },
    { 7, 0, 'c', 1u << 4 },                              /* OSPKE */
    { 7, 0, 'd', 0 },
    { 0xd, 0, 'a', 0 },                                  /* XSAVE components */
    { 0xd, 1, 'a', 0 },
    { 0x80000001, 0, 'c', 0 },
    { 0x80000001, 0, 'd', 0 },
    { 0x40000001, 0, 'a', 0 },                           /* KVM paravirtual features */
};

static const struct kvm_cpuid_entry2 *find_leaf(const struct kvm_cpuid_entry2 *e, uint32_t n, uint32_t fn,
                                                uint32_t idx)
{
    for (uint32_t i = 0; i < n; i++)
        if (e[i].function == fn && (e[i].index == idx || !(e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX)))
            return &e[i];
    return NULL;
}

static uint32_t reg_of(const struct kvm_cpuid_entry2 *e, char r)
{
    return r == 'a' ? e->eax : r == 'b' ? e->ebx : r == 'c' ? e->ecx : e->edx;
}

/* Fail closed: refuse a snapshot whose guest saw a CPU feature this host's
 * KVM does not offer, or another vendor's CPU. */
static sm_code check_cpuid(const struct kvm_cpuid_entry2 *saved, uint32_t n, int kvm_fd, sm_error *err)
{
    struct kvm_cpuid2 *host = kvm_supported_cpuid(kvm_fd, err);
    if (!host)
        return err ? err->code : SM_E_KVM;
    sm_code rc = SM_OK;
    const struct kvm_cpuid_entry2 *s0 = find_leaf(saved, n, 0, 0), *h0 = find_leaf(host->entries, host->nent, 0, 0);
    if (!s0 || !h0 || s0->ebx != h0->ebx || s0->ecx != h0->ecx || s0->edx != h0->edx)
        rc = error_set(err, SM_E_UNSUPPORTED, "snapshot was taken on another CPU vendor; it cannot run here");
    for (size_t i = 0; !rc && i < sizeof feature_words / sizeof feature_words[0]; i++) {
        const struct cpuid_check *c = &feature_words[i];
        const struct kvm_cpuid_entry2 *s = find_leaf(saved, n, c->function, c->index);
        if (!s)
            continue;
        const struct kvm_cpuid_entry2 *h = find_leaf(host->entries, host->nent, c->function, c->index);
        uint32_t missing = (reg_of(s, c->reg) & ~c->ignore) & ~(h ? reg_of(h, c->reg) : 0);
        if (missing)
            rc = error_set(err, SM_E_UNSUPPORTED,
                         "this host's CPU lacks features the snapshot's guest saw: CPUID.(EAX=0x%x,ECX=%u):E%cX "
                         "bits 0x%08x; restore it on the kind of CPU that took it, or re-bake here",
                         c->function, c->index, c->reg - 'a' + 'A', missing);
    }
    const struct kvm_cpuid_entry2 *s1 = find_leaf(saved, n, 1, 0);
    if (!rc && s1 && (s1->ecx & (1u << 24)) && !kvm_has_tsc_deadline(kvm_fd))
        rc = error_set(err, SM_E_UNSUPPORTED, "the snapshot's guest uses the TSC-deadline timer, which this host's KVM "
                                            "does not emulate");
    free(host);
    return rc;
}

struct kvm_cpuid2 *kvm_state_restore_cpuid(const struct snap_section *sec, int kvm_fd, sm_error *err)
{
    uint32_t nent;
    if (sec->len < 4) {
        error_set(err, SM_E_INVALID, "snapshot CPUID section is truncated");
        return NULL;
    }
    memcpy(&nent, sec->data, 4);
    if (nent == 0 || nent > MAX_CPUID_ENTRIES || sec->len != 4 + (uint64_t)nent * sizeof(struct kvm_cpuid_entry2)) {
        error_set(err, SM_E_INVALID, "snapshot CPUID section has a bad size (%u entries in %llu bytes)", nent,
                  (unsigned long long)sec->len);
        return NULL;
    }
    struct kvm_cpuid2 *cpuid = malloc(sizeof *cpuid + nent * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid) {
        error_set(err, SM_E_NOMEM, "out of memory for CPUID");
        return NULL;
    }
    cpuid->nent = nent;
    cpuid->padding = 0;
    memcpy(cpuid->entries, sec->data + 4, nent * sizeof(struct kvm_cpuid_entry2));
    if (check_cpuid(cpuid->entries, nent, kvm_fd, err)) {
        free(cpuid);
        return NULL;
    }
    return cpuid;
}

static sm_code set_vcpu_cpuid(int vcpu_fd, int index, int ncpus, const struct kvm_cpuid2 *cpuid, sm_error *err)
{
    struct kvm_cpuid2 *mine = copy_cpuid(cpuid);
    if (!mine)
        return error_set(err, SM_E_NOMEM, "out of memory for CPUID");
    const struct kvm_cpuid_entry2 *l1 = find_leaf(mine->entries, mine->nent, 1, 0);
    cpuid_patch_for_vcpu(mine, index, ncpus, l1 && (l1->ecx & (1u << 24)));
    int rc = ioctl(vcpu_fd, KVM_SET_CPUID2, mine);
    free(mine);
    return rc < 0 ? ioctl_fail(err, "KVM_SET_CPUID2", index) : SM_OK;
}

/* ===== vCPUs ================================================================ */

/* Reads every listed MSR the vCPU has; KVM_GET_MSRS stops at the first it
 * cannot read, so skip that one and go on. */
static struct kvm_msrs *read_msrs(int vcpu_fd, const struct kvm_msr_list *list)
{
    struct kvm_msrs *all = alloc_msrs(list->nmsrs);
    struct kvm_msrs *batch = alloc_msrs(list->nmsrs);
    if (!all || !batch) {
        free(all);
        free(batch);
        return NULL;
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < list->nmsrs;) {
        uint32_t n = list->nmsrs - i;
        batch->nmsrs = n;
        for (uint32_t j = 0; j < n; j++)
            batch->entries[j] = (struct kvm_msr_entry){ .index = list->indices[i + j] };
        int got = ioctl(vcpu_fd, KVM_GET_MSRS, batch);
        if (got < 0)
            got = 0;
        for (int j = 0; j < got; j++)
            all->entries[kept++] = batch->entries[j];
        i += (uint32_t)got + ((uint32_t)got < n ? 1 : 0);
    }
    all->nmsrs = kept;
    free(batch);
    return all;
}

sm_code kvm_state_save_vcpu(struct snap_writer *w, int vcpu_fd, int index, const struct kvm_msr_list *list,
                            uint32_t xsz, sm_error *err)
{
    struct snap_vcpu s;
    memset(&s, 0, sizeof s);
    if (ioctl(vcpu_fd, KVM_GET_MP_STATE, &s.mp_state) < 0)
        return ioctl_fail(err, "KVM_GET_MP_STATE", index);
    /*
     * Events before registers: without KVM_CAP_EXCEPTION_PAYLOAD, KVM may
     * write a pending #PF's address into CR2 (a #DB's bits into DR6) only
     * when the events are read, and registers read before that would keep
     * the old CR2. (Tried against the bakes whose restored PID 1 dies of
     * SIGSEGV at once, see image.c: it did not cure them.)
     */
    if (ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &s.events) < 0)
        return ioctl_fail(err, "KVM_GET_VCPU_EVENTS", index);
    if (ioctl(vcpu_fd, KVM_GET_REGS, &s.regs) < 0)
        return ioctl_fail(err, "KVM_GET_REGS", index);
    if (ioctl(vcpu_fd, KVM_GET_SREGS, &s.sregs) < 0)
        return ioctl_fail(err, "KVM_GET_SREGS", index);
    if (ioctl(vcpu_fd, KVM_GET_XCRS, &s.xcrs) < 0)
        return ioctl_fail(err, "KVM_GET_XCRS", index);
    if (ioctl(vcpu_fd, KVM_GET_LAPIC, &s.lapic) < 0)
        return ioctl_fail(err, "KVM_GET_LAPIC", index);
    if (ioctl(vcpu_fd, KVM_GET_DEBUGREGS, &s.debugregs) < 0)
        return ioctl_fail(err, "KVM_GET_DEBUGREGS", index);
    uint8_t *xsave = calloc(1, xsz);
    struct kvm_msrs *msrs = read_msrs(vcpu_fd, list);
    sm_code rc = SM_OK;
    if (!xsave || !msrs)
        rc = error_set(err, SM_E_NOMEM, "out of memory saving vCPU %d", index);
    else if (ioctl(vcpu_fd, xsz > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, xsave) < 0)
        rc = ioctl_fail(err, "KVM_GET_XSAVE", index);
    if (!rc) {
        s.xsave_size = xsz;
        s.nmsrs = msrs->nmsrs;
        snap_begin_section(w, SNAP_SEC_VCPU, (uint32_t)index);
        snap_put(w, &s, sizeof s);
        snap_put(w, xsave, xsz);
        snap_put(w, msrs->entries, msrs->nmsrs * sizeof msrs->entries[0]);
        snap_end_section(w);
    }
    free(xsave);
    free(msrs);
    return rc;
}

bool kvm_state_msrs_listed(const struct kvm_msr_entry *entries, uint32_t n, const struct kvm_msr_list *list,
                           uint32_t *unlisted)
{
    for (uint32_t i = 0; i < n; i++) {
        bool found = false;
        for (uint32_t j = 0; j < list->nmsrs && !found; j++)
            found = list->indices[j] == entries[i].index;
        if (!found) {
            *unlisted = entries[i].index;
            return false;
        }
    }
    return true;
}

sm_code kvm_state_restore_vcpu(int vcpu_fd, int index, int ncpus, const struct kvm_cpuid2 *cpuid,
                               const struct kvm_msr_list *msr_list, const struct snap_section *sec, uint32_t xsz,
                               sm_error *err)
{
    struct snap_vcpu s;
    if (sec->len < sizeof s)
        return error_set(err, SM_E_INVALID, "snapshot VCPU %d section is truncated", index);
    memcpy(&s, sec->data, sizeof s);
    if (s.xsave_size != xsz)
        return error_set(err, SM_E_UNSUPPORTED, "snapshot's XSAVE area is %u bytes; this host's is %u", s.xsave_size,
                       xsz);
    if (s.nmsrs > MAX_MSRS ||
        sec->len != sizeof s + (uint64_t)s.xsave_size + (uint64_t)s.nmsrs * sizeof(struct kvm_msr_entry))
        return error_set(err, SM_E_INVALID, "snapshot VCPU %d section has a bad size", index);
    if (s.mp_state.mp_state > KVM_MP_STATE_AP_RESET_HOLD)
        return error_set(err, SM_E_INVALID, "snapshot VCPU %d has an unknown run state %u", index,
                       s.mp_state.mp_state);
    const uint8_t *xsave = sec->data + sizeof s;
    struct kvm_msrs *msrs = alloc_msrs(s.nmsrs);
    uint8_t *xbuf = calloc(1, xsz < sizeof(struct kvm_xsave) ? sizeof(struct kvm_xsave) : xsz);
    sm_code rc = SM_OK;
    if (!msrs || !xbuf) {
        rc = error_set(err, SM_E_NOMEM, "out of memory restoring vCPU %d", index);
        goto out;
    }
    memcpy(xbuf, xsave, xsz);
    memcpy(msrs->entries, xsave + s.xsave_size, s.nmsrs * sizeof msrs->entries[0]);
    uint32_t unlisted;
    if (!kvm_state_msrs_listed(msrs->entries, s.nmsrs, msr_list, &unlisted)) {
        rc = error_set(err, SM_E_INVALID, "snapshot VCPU %d sets MSR 0x%x, which is not in KVM's list of MSRs to "
                       "save and restore", index, unlisted);
        goto out;
    }
    /* KVM's own order: CPUID before anything that depends on it, the LAPIC
     * before MSRs (TSC deadline), events last. */
    if ((rc = set_vcpu_cpuid(vcpu_fd, index, ncpus, cpuid, err)))
        goto out;
    if (ioctl(vcpu_fd, KVM_SET_MP_STATE, &s.mp_state) < 0) { rc = ioctl_fail(err, "KVM_SET_MP_STATE", index); goto out; }
    if (ioctl(vcpu_fd, KVM_SET_REGS, &s.regs) < 0) { rc = ioctl_fail(err, "KVM_SET_REGS", index); goto out; }
    if (ioctl(vcpu_fd, KVM_SET_SREGS, &s.sregs) < 0) { rc = ioctl_fail(err, "KVM_SET_SREGS", index); goto out; }
    if (ioctl(vcpu_fd, KVM_SET_XSAVE, xbuf) < 0) { rc = ioctl_fail(err, "KVM_SET_XSAVE", index); goto out; }
    if (ioctl(vcpu_fd, KVM_SET_XCRS, &s.xcrs) < 0) { rc = ioctl_fail(err, "KVM_SET_XCRS", index); goto out; }
    if (ioctl(vcpu_fd, KVM_SET_DEBUGREGS, &s.debugregs) < 0) { rc = ioctl_fail(err, "KVM_SET_DEBUGREGS", index); goto out; }
    if (ioctl(vcpu_fd, KVM_SET_LAPIC, &s.lapic) < 0) { rc = ioctl_fail(err, "KVM_SET_LAPIC", index); goto out; }
    int set = ioctl(vcpu_fd, KVM_SET_MSRS, msrs);
    if (set != (int)s.nmsrs) {
        rc = error_set(err, SM_E_KVM, "vCPU %d: KVM took %d of %u saved MSRs (stopped at 0x%x)", index, set, s.nmsrs,
                     set >= 0 && (uint32_t)set < s.nmsrs ? msrs->entries[set].index : 0);
        goto out;
    }
    if (ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &s.events) < 0) { rc = ioctl_fail(err, "KVM_SET_VCPU_EVENTS", index); goto out; }
out:
    free(msrs);
    free(xbuf);
    return rc;
}

uint32_t kvm_state_tsc_khz(int vcpu_fd)
{
    int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
    return khz > 0 ? (uint32_t)khz : 0;
}

/* The guest calibrated its clocks against the TSC rate it booted with: on a
 * host whose rate differs, KVM must scale it, or the restore is refused. */
sm_code kvm_state_restore_tsc_khz(int vcpu_fd, uint32_t khz, sm_error *err)
{
    if (!khz)
        return SM_OK; /* the saving host could not say */
    int here = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
    if (here == (int)khz)
        return SM_OK;
    if (ioctl(vcpu_fd, KVM_SET_TSC_KHZ, (unsigned long)khz) < 0)
        return error_set_errno(err, SM_E_UNSUPPORTED, errno,
                               "the snapshot's guest TSC runs at %u kHz, this host's at %d kHz, and KVM "
                               "cannot scale it (KVM_SET_TSC_KHZ)", khz, here);
    return SM_OK;
}

/* ===== VM level ============================================================= */

sm_code kvm_state_save_vm(struct snap_writer *w, int vm_fd, sm_error *err)
{
    struct kvm_irqchip chips[3];
    memset(chips, 0, sizeof chips);
    for (uint32_t i = 0; i < 3; i++) {
        chips[i].chip_id = i;
        if (ioctl(vm_fd, KVM_GET_IRQCHIP, &chips[i]) < 0)
            return error_set_errno(err, SM_E_KVM, errno, "KVM_GET_IRQCHIP %u failed", i);
    }
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
    memset(&pit, 0, sizeof pit);
    memset(&clock, 0, sizeof clock);
    if (ioctl(vm_fd, KVM_GET_PIT2, &pit) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_GET_PIT2 failed");
    if (ioctl(vm_fd, KVM_GET_CLOCK, &clock) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_GET_CLOCK failed");
    snap_begin_section(w, SNAP_SEC_IRQCHIP, 0);
    snap_put(w, chips, sizeof chips);
    snap_end_section(w);
    snap_begin_section(w, SNAP_SEC_PIT, 0);
    snap_put(w, &pit, sizeof pit);
    snap_end_section(w);
    snap_begin_section(w, SNAP_SEC_CLOCK, 0);
    snap_put(w, &clock, sizeof clock);
    snap_end_section(w);
    return SM_OK;
}

sm_code kvm_state_restore_vm(struct snap_reader *r, int vm_fd, sm_error *err)
{
    struct snap_section sec;
    sm_code rc;
    if ((rc = snap_expect(r, SNAP_SEC_IRQCHIP, 0, &sec, err)))
        return rc;
    struct kvm_irqchip chips[3];
    if (sec.len != sizeof chips)
        return error_set(err, SM_E_INVALID, "snapshot IRQCHIP section has a bad size");
    memcpy(chips, sec.data, sizeof chips);
    for (uint32_t i = 0; i < 3; i++) {
        if (chips[i].chip_id != i)
            return error_set(err, SM_E_INVALID, "snapshot IRQCHIP section names chip %u in slot %u", chips[i].chip_id, i);
        if (ioctl(vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0)
            return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_IRQCHIP %u failed", i);
    }
    if ((rc = snap_expect(r, SNAP_SEC_PIT, 0, &sec, err)))
        return rc;
    struct kvm_pit_state2 pit;
    if (sec.len != sizeof pit)
        return error_set(err, SM_E_INVALID, "snapshot PIT section has a bad size");
    memcpy(&pit, sec.data, sizeof pit);
    if (ioctl(vm_fd, KVM_SET_PIT2, &pit) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_PIT2 failed");
    if ((rc = snap_expect(r, SNAP_SEC_CLOCK, 0, &sec, err)))
        return rc;
    struct kvm_clock_data clock;
    if (sec.len != sizeof clock)
        return error_set(err, SM_E_INVALID, "snapshot CLOCK section has a bad size");
    memcpy(&clock, sec.data, sizeof clock);
    /* Only the guest's clock value: the host-specific flags do not carry over. */
    struct kvm_clock_data set = { .clock = clock.clock };
    if (ioctl(vm_fd, KVM_SET_CLOCK, &set) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_CLOCK failed");
    return SM_OK;
}
