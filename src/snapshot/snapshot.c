/*
 * Saving a paused VM's state into the sections of format.h, and building a VM
 * back from them. Section payloads:
 *
 *   VM       struct snap_vm_info
 *   CPUID    u32 nent, nent x kvm_cpuid_entry2: what vCPU 0 saw (other vCPUs
 *            differ only in their APIC ids, re-derived on restore)
 *   VCPU i   struct snap_vcpu (KVM's own structs, fixed size), then
 *            xsave_size bytes of XSAVE area, then nmsrs x kvm_msr_entry
 *   IRQCHIP  kvm_irqchip x 3 (PIC master, PIC slave, IOAPIC)
 *   PIT      kvm_pit_state2
 *   CLOCK    kvm_clock_data
 *   DEVICE i u32 kind (enum snap_device_kind), then that device's state struct
 *
 * Every count and size read back is checked against what this build and
 * this host expect before it reaches KVM or a device.
 */
#include "snapshot/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devices/i8042.h"
#include "devices/serial_8250.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/vsock.h"
#include "base/error.h"
#include "base/file.h"
#include "snapshot/format.h"
#include "vmm/kvm.h"
#include "vmm/vcpu.h"

#define MAX_MSRS 1024
#define MAX_XSAVE (64u * 1024)
#define MAX_CPUID_ENTRIES 4096
#define PAGE 4096

enum snap_device_kind {
    SNAP_DEV_SERIAL = 1,
    SNAP_DEV_I8042 = 2,
    SNAP_DEV_VIRTIO_MMIO = 3,
};

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
static uint32_t xsave_size(int vm_fd)
{
    int n = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    return n > (int)sizeof(struct kvm_xsave) ? (uint32_t)n : (uint32_t)sizeof(struct kvm_xsave);
}

/* The MSRs KVM can save for a vCPU of this host. */
static struct kvm_msr_list *msr_index_list(int kvm_fd, sm_error *err)
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

/* ===== save ================================================================= */

/* Reads every listed MSR the vCPU has; KVM_GET_MSRS stops at the first it
 * cannot read, so skip that one and go on. */
static struct kvm_msrs *read_msrs(struct vcpu *v, const struct kvm_msr_list *list)
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
        int got = ioctl(v->fd, KVM_GET_MSRS, batch);
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

static sm_code save_vcpu(struct snap_writer *w, struct vcpu *v, const struct kvm_msr_list *list, uint32_t xsz,
                         sm_error *err)
{
    struct snap_vcpu s;
    memset(&s, 0, sizeof s);
    if (ioctl(v->fd, KVM_GET_MP_STATE, &s.mp_state) < 0)
        return ioctl_fail(err, "KVM_GET_MP_STATE", v->index);
    /*
     * Events before registers: without KVM_CAP_EXCEPTION_PAYLOAD, KVM may
     * write a pending #PF's address into CR2 (a #DB's bits into DR6) only
     * when the events are read, and registers read before that would keep
     * the old CR2. (Tried against the bakes whose restored PID 1 dies of
     * SIGSEGV at once, see image.c: it did not cure them.)
     */
    if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &s.events) < 0)
        return ioctl_fail(err, "KVM_GET_VCPU_EVENTS", v->index);
    if (ioctl(v->fd, KVM_GET_REGS, &s.regs) < 0)
        return ioctl_fail(err, "KVM_GET_REGS", v->index);
    if (ioctl(v->fd, KVM_GET_SREGS, &s.sregs) < 0)
        return ioctl_fail(err, "KVM_GET_SREGS", v->index);
    if (ioctl(v->fd, KVM_GET_XCRS, &s.xcrs) < 0)
        return ioctl_fail(err, "KVM_GET_XCRS", v->index);
    if (ioctl(v->fd, KVM_GET_LAPIC, &s.lapic) < 0)
        return ioctl_fail(err, "KVM_GET_LAPIC", v->index);
    if (ioctl(v->fd, KVM_GET_DEBUGREGS, &s.debugregs) < 0)
        return ioctl_fail(err, "KVM_GET_DEBUGREGS", v->index);
    uint8_t *xsave = calloc(1, xsz);
    struct kvm_msrs *msrs = read_msrs(v, list);
    sm_code rc = SM_OK;
    if (!xsave || !msrs)
        rc = error_set(err, SM_E_NOMEM, "out of memory saving vCPU %d", v->index);
    else if (ioctl(v->fd, xsz > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, xsave) < 0)
        rc = ioctl_fail(err, "KVM_GET_XSAVE", v->index);
    if (!rc) {
        s.xsave_size = xsz;
        s.nmsrs = msrs->nmsrs;
        snap_begin_section(w, SNAP_SEC_VCPU, (uint32_t)v->index);
        snap_put(w, &s, sizeof s);
        snap_put(w, xsave, xsz);
        snap_put(w, msrs->entries, msrs->nmsrs * sizeof msrs->entries[0]);
        snap_end_section(w);
    }
    free(xsave);
    free(msrs);
    return rc;
}

static sm_code save_vm_level(struct snap_writer *w, struct vm *vm, sm_error *err)
{
    struct kvm_irqchip chips[3];
    memset(chips, 0, sizeof chips);
    for (uint32_t i = 0; i < 3; i++) {
        chips[i].chip_id = i;
        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chips[i]) < 0)
            return error_set_errno(err, SM_E_KVM, errno, "KVM_GET_IRQCHIP %u failed", i);
    }
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
    memset(&pit, 0, sizeof pit);
    memset(&clock, 0, sizeof clock);
    if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_GET_PIT2 failed");
    if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
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

static void put_device(struct snap_writer *w, uint32_t index, uint32_t kind, const void *state, size_t len)
{
    snap_begin_section(w, SNAP_SEC_DEVICE, index);
    snap_put(w, &kind, sizeof kind);
    snap_put(w, state, len);
    snap_end_section(w);
}

static uint32_t device_count(const struct vm *vm)
{
    return 2 + (uint32_t)vm->nvirtio;
}

static void save_devices(struct snap_writer *w, struct vm *vm)
{
    struct serial_state ss;
    struct i8042_state ks;
    struct virtio_mmio_state vs;
    serial_save(vm->serial, &ss);
    put_device(w, 0, SNAP_DEV_SERIAL, &ss, sizeof ss);
    i8042_save(vm->i8042, &ks);
    put_device(w, 1, SNAP_DEV_I8042, &ks, sizeof ks);
    for (int i = 0; i < vm->nvirtio; i++) {
        virtio_mmio_save(vm->virtio[i].transport, &vs);
        put_device(w, 2 + (uint32_t)i, SNAP_DEV_VIRTIO_MMIO, &vs, sizeof vs);
    }
}

static void cpu_vendor(const struct kvm_cpuid2 *c, char out[16])
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

static sm_code build_state(struct vm *vm, struct snap_writer *w, sm_error *err)
{
    struct snap_vm_info info;
    memset(&info, 0, sizeof info);
    info.mem_bytes = vm->mem.total;
    info.ncpus = (uint32_t)vm->ncpus;
    info.ndevices = device_count(vm);
    info.guest_cid = vm->cfg.guest_cid;
    info.created_unix_s = (uint64_t)time(NULL);
    cpu_vendor(vm->cpuid, info.cpu_vendor);
    int khz = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
    info.tsc_khz = khz > 0 ? (uint32_t)khz : 0;
    snap_begin_section(w, SNAP_SEC_VM, 0);
    snap_put(w, &info, sizeof info);
    snap_end_section(w);

    /* The guest's view: vCPU 0's patched CPUID. */
    size_t bytes = vm->cpuid->nent * sizeof vm->cpuid->entries[0];
    struct kvm_cpuid2 *seen = malloc(sizeof *seen + bytes);
    if (!seen)
        return error_set(err, SM_E_NOMEM, "out of memory for CPUID");
    memcpy(seen, vm->cpuid, sizeof *seen + bytes);
    cpuid_patch_for_vcpu(seen, 0, vm->ncpus, kvm_has_tsc_deadline(vm->kvm_fd));
    snap_begin_section(w, SNAP_SEC_CPUID, 0);
    snap_put(w, &seen->nent, sizeof seen->nent);
    snap_put(w, seen->entries, bytes);
    snap_end_section(w);
    free(seen);

    struct kvm_msr_list *list = msr_index_list(vm->kvm_fd, err);
    if (!list)
        return err ? err->code : SM_E_KVM;
    uint32_t xsz = xsave_size(vm->vm_fd);
    sm_code rc = SM_OK;
    for (int i = 0; i < vm->ncpus && !rc; i++)
        rc = save_vcpu(w, &vm->vcpus[i], list, xsz, err);
    free(list);
    if (!rc)
        rc = save_vm_level(w, vm, err);
    if (!rc)
        save_devices(w, vm);
    return rc;
}

static bool page_is_zero(const uint8_t *p)
{
    static const uint8_t zero[PAGE];
    return memcmp(p, zero, PAGE) == 0;
}

/* Guest RAM as one file, holes where pages are zero (most of a fresh guest). */
static sm_code write_memory(struct vm *vm, int fd, const char *path, sm_error *err)
{
    sm_code rc = SM_OK;
    uint64_t off = 0;
    for (int r = 0; r < vm->mem.nregions && !rc; r++) {
        const uint8_t *base = vm->mem.regions[r].host;
        uint64_t size = vm->mem.regions[r].size;
        for (uint64_t p = 0; p < size && !rc;) {
            uint64_t run = p;
            bool zero = page_is_zero(base + p);
            while (run < size && page_is_zero(base + run) == zero && run - p < (64u << 20))
                run += PAGE;
            if (!zero) {
                if (lseek(fd, (off_t)(off + p), SEEK_SET) < 0)
                    rc = error_set_errno(err, SM_E_IO, errno, "seek in %s", path);
                else if (!write_all(fd, base + p, run - p))
                    rc = error_set_errno(err, SM_E_IO, errno, "cannot write %s", path);
            }
            p = run;
        }
        off += size;
    }
    if (!rc && ftruncate(fd, (off_t)off) < 0)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot size %s", path);
    return rc;
}

/* dir/name replaced atomically by the whole of data (src/base/file.h). */
static sm_code replace_file(const char *dir, const char *name, const uint8_t *data, size_t len, sm_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!write_file_atomic(path, data, len, 0644))
        return error_set_errno(err, SM_E_IO, errno, "cannot write %s", path);
    return SM_OK;
}

/* Guest RAM into dir/memory, replaced atomically. */
static sm_code replace_memory(struct vm *vm, const char *dir, sm_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, VMM_SNAPSHOT_MEMORY);
    struct atomic_file f;
    if (!atomic_file_begin(&f, path, 0644))
        return error_set_errno(err, SM_E_IO, errno, "cannot create a file beside %s", path);
    sm_code rc = write_memory(vm, f.fd, path, err);
    if (rc)
        atomic_file_abort(&f);
    else if (!atomic_file_commit(&f))
        rc = error_set_errno(err, SM_E_IO, errno, "cannot write %s", path);
    return rc;
}

/*
 * A VM with a disk: DIR/disk, a symlink to the image (absolute), so that a
 * restore of DIR finds the disk its guest had mounted. The image must not
 * change after this (the library keeps them by digest).
 */
static sm_code link_disk(struct vm *vm, const char *dir, sm_error *err)
{
    if (!vm->disk_real)
        return SM_OK;
    char link[4096], tmp[4096];
    snprintf(link, sizeof link, "%s/%s", dir, VMM_SNAPSHOT_DISK);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, VMM_SNAPSHOT_DISK);
    unlink(tmp);
    if (symlink(vm->disk_real, tmp) < 0 || rename(tmp, link) < 0) {
        int e = errno;
        unlink(tmp);
        return error_set_errno(err, SM_E_IO, e, "cannot link the disk image into %s", dir);
    }
    return SM_OK;
}

sm_code snapshot_save(struct vm *vm, const char *dir, sm_error *err)
{
    if (strlen(dir) > 3000)
        return error_set(err, SM_E_INVALID, "snapshot folder path is too long");
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return error_set_errno(err, SM_E_IO, errno, "cannot create the snapshot folder %s", dir);
    struct snap_writer w;
    snap_writer_init(&w);
    sm_code rc = build_state(vm, &w, err);
    if (!rc)
        rc = snap_finish(&w, err);
    /* Memory first, state last: a folder with a state file is complete. */
    if (!rc)
        rc = replace_memory(vm, dir, err);
    if (!rc)
        rc = link_disk(vm, dir, err);
    if (!rc)
        rc = replace_file(dir, VMM_SNAPSHOT_STATE, w.buf, w.len, err);
    snap_writer_free(&w);
    if (rc)
        error_prefix(err, "snapshot to %s", dir);
    return rc;
}

/* ===== restore =============================================================== */

static sm_code read_state_file(const char *path, uint8_t **out, size_t *len, sm_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > SNAP_MAX_FILE) {
        close(fd);
        return error_set(err, SM_E_INVALID, "%s is not a snapshot state file (not a file, or over %u MiB)", path,
                       SNAP_MAX_FILE >> 20);
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != (size_t)st.st_size) {
        free(buf);
        return error_set(err, SM_E_IO, "cannot read %s", path);
    }
    *out = buf;
    *len = got;
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

static sm_code restore_cpuid(struct vm *vm, const struct snap_section *sec, sm_error *err)
{
    uint32_t nent;
    if (sec->len < 4)
        return error_set(err, SM_E_INVALID, "snapshot CPUID section is truncated");
    memcpy(&nent, sec->data, 4);
    if (nent == 0 || nent > MAX_CPUID_ENTRIES || sec->len != 4 + (uint64_t)nent * sizeof(struct kvm_cpuid_entry2))
        return error_set(err, SM_E_INVALID, "snapshot CPUID section has a bad size (%u entries in %llu bytes)", nent,
                       (unsigned long long)sec->len);
    vm->cpuid = malloc(sizeof *vm->cpuid + nent * sizeof(struct kvm_cpuid_entry2));
    if (!vm->cpuid)
        return error_set(err, SM_E_NOMEM, "out of memory for CPUID");
    vm->cpuid->nent = nent;
    vm->cpuid->padding = 0;
    memcpy(vm->cpuid->entries, sec->data + 4, nent * sizeof(struct kvm_cpuid_entry2));
    return check_cpuid(vm->cpuid->entries, nent, vm->kvm_fd, err);
}

static sm_code set_vcpu_cpuid(struct vm *vm, struct vcpu *v, sm_error *err)
{
    size_t bytes = sizeof *vm->cpuid + vm->cpuid->nent * sizeof vm->cpuid->entries[0];
    struct kvm_cpuid2 *mine = malloc(bytes);
    if (!mine)
        return error_set(err, SM_E_NOMEM, "out of memory for CPUID");
    memcpy(mine, vm->cpuid, bytes);
    const struct kvm_cpuid_entry2 *l1 = find_leaf(mine->entries, mine->nent, 1, 0);
    cpuid_patch_for_vcpu(mine, v->index, vm->ncpus, l1 && (l1->ecx & (1u << 24)));
    int rc = ioctl(v->fd, KVM_SET_CPUID2, mine);
    free(mine);
    return rc < 0 ? ioctl_fail(err, "KVM_SET_CPUID2", v->index) : SM_OK;
}

static sm_code restore_vcpu(struct vm *vm, struct vcpu *v, const struct snap_section *sec, uint32_t xsz,
                            sm_error *err)
{
    struct snap_vcpu s;
    if (sec->len < sizeof s)
        return error_set(err, SM_E_INVALID, "snapshot VCPU %d section is truncated", v->index);
    memcpy(&s, sec->data, sizeof s);
    if (s.xsave_size != xsz)
        return error_set(err, SM_E_UNSUPPORTED, "snapshot's XSAVE area is %u bytes; this host's is %u", s.xsave_size,
                       xsz);
    if (s.nmsrs > MAX_MSRS ||
        sec->len != sizeof s + (uint64_t)s.xsave_size + (uint64_t)s.nmsrs * sizeof(struct kvm_msr_entry))
        return error_set(err, SM_E_INVALID, "snapshot VCPU %d section has a bad size", v->index);
    if (s.mp_state.mp_state > KVM_MP_STATE_AP_RESET_HOLD)
        return error_set(err, SM_E_INVALID, "snapshot VCPU %d has an unknown run state %u", v->index,
                       s.mp_state.mp_state);
    const uint8_t *xsave = sec->data + sizeof s;
    struct kvm_msrs *msrs = alloc_msrs(s.nmsrs);
    uint8_t *xbuf = calloc(1, xsz < sizeof(struct kvm_xsave) ? sizeof(struct kvm_xsave) : xsz);
    sm_code rc = SM_OK;
    if (!msrs || !xbuf) {
        rc = error_set(err, SM_E_NOMEM, "out of memory restoring vCPU %d", v->index);
        goto out;
    }
    memcpy(xbuf, xsave, xsz);
    memcpy(msrs->entries, xsave + s.xsave_size, s.nmsrs * sizeof msrs->entries[0]);
    /* KVM's own order: CPUID before anything that depends on it, the LAPIC
     * before MSRs (TSC deadline), events last. */
    if ((rc = set_vcpu_cpuid(vm, v, err)))
        goto out;
    if (ioctl(v->fd, KVM_SET_MP_STATE, &s.mp_state) < 0) { rc = ioctl_fail(err, "KVM_SET_MP_STATE", v->index); goto out; }
    if (ioctl(v->fd, KVM_SET_REGS, &s.regs) < 0) { rc = ioctl_fail(err, "KVM_SET_REGS", v->index); goto out; }
    if (ioctl(v->fd, KVM_SET_SREGS, &s.sregs) < 0) { rc = ioctl_fail(err, "KVM_SET_SREGS", v->index); goto out; }
    if (ioctl(v->fd, KVM_SET_XSAVE, xbuf) < 0) { rc = ioctl_fail(err, "KVM_SET_XSAVE", v->index); goto out; }
    if (ioctl(v->fd, KVM_SET_XCRS, &s.xcrs) < 0) { rc = ioctl_fail(err, "KVM_SET_XCRS", v->index); goto out; }
    if (ioctl(v->fd, KVM_SET_DEBUGREGS, &s.debugregs) < 0) { rc = ioctl_fail(err, "KVM_SET_DEBUGREGS", v->index); goto out; }
    if (ioctl(v->fd, KVM_SET_LAPIC, &s.lapic) < 0) { rc = ioctl_fail(err, "KVM_SET_LAPIC", v->index); goto out; }
    int set = ioctl(v->fd, KVM_SET_MSRS, msrs);
    if (set != (int)s.nmsrs) {
        rc = error_set(err, SM_E_KVM, "vCPU %d: KVM took %d of %u saved MSRs (stopped at 0x%x)", v->index, set, s.nmsrs,
                     set >= 0 && (uint32_t)set < s.nmsrs ? msrs->entries[set].index : 0);
        goto out;
    }
    if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &s.events) < 0) { rc = ioctl_fail(err, "KVM_SET_VCPU_EVENTS", v->index); goto out; }
out:
    free(msrs);
    free(xbuf);
    return rc;
}

static sm_code restore_vm_level(struct vm *vm, struct snap_reader *r, sm_error *err)
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
        if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0)
            return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_IRQCHIP %u failed", i);
    }
    if ((rc = snap_expect(r, SNAP_SEC_PIT, 0, &sec, err)))
        return rc;
    struct kvm_pit_state2 pit;
    if (sec.len != sizeof pit)
        return error_set(err, SM_E_INVALID, "snapshot PIT section has a bad size");
    memcpy(&pit, sec.data, sizeof pit);
    if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_PIT2 failed");
    if ((rc = snap_expect(r, SNAP_SEC_CLOCK, 0, &sec, err)))
        return rc;
    struct kvm_clock_data clock;
    if (sec.len != sizeof clock)
        return error_set(err, SM_E_INVALID, "snapshot CLOCK section has a bad size");
    memcpy(&clock, sec.data, sizeof clock);
    /* Only the guest's clock value: the host-specific flags do not carry over. */
    struct kvm_clock_data set = { .clock = clock.clock };
    if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &set) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_CLOCK failed");
    return SM_OK;
}

static sm_code device_payload(const struct snap_section *sec, uint32_t kind, size_t size, const void **out,
                              sm_error *err)
{
    uint32_t found;
    if (sec->len < 4)
        return error_set(err, SM_E_INVALID, "snapshot DEVICE %u section is truncated", sec->index);
    memcpy(&found, sec->data, 4);
    if (found != kind || sec->len != 4 + size)
        return error_set(err, SM_E_INVALID, "snapshot DEVICE %u is not the device this VM has there (kind %u, %llu bytes)",
                       sec->index, found, (unsigned long long)sec->len);
    *out = sec->data + 4;
    return SM_OK;
}

static sm_code restore_devices(struct vm *vm, struct snap_reader *r, sm_error *err)
{
    struct snap_section sec;
    const void *p;
    sm_code rc;
    struct serial_state ss;
    struct i8042_state ks;
    struct virtio_mmio_state vs;
    if ((rc = snap_expect(r, SNAP_SEC_DEVICE, 0, &sec, err)) ||
        (rc = device_payload(&sec, SNAP_DEV_SERIAL, sizeof ss, &p, err)))
        return rc;
    memcpy(&ss, p, sizeof ss);
    if ((rc = serial_restore(vm->serial, &ss, err)))
        return rc;
    if ((rc = snap_expect(r, SNAP_SEC_DEVICE, 1, &sec, err)) ||
        (rc = device_payload(&sec, SNAP_DEV_I8042, sizeof ks, &p, err)))
        return rc;
    memcpy(&ks, p, sizeof ks);
    if ((rc = i8042_restore(vm->i8042, &ks, err)))
        return rc;
    for (int i = 0; i < vm->nvirtio; i++) {
        if ((rc = snap_expect(r, SNAP_SEC_DEVICE, 2 + (uint32_t)i, &sec, err)) ||
            (rc = device_payload(&sec, SNAP_DEV_VIRTIO_MMIO, sizeof vs, &p, err)))
            return rc;
        memcpy(&vs, p, sizeof vs);
        if ((rc = virtio_mmio_restore(vm->virtio[i].transport, &vs, err)))
            return rc;
    }
    return SM_OK;
}

static sm_code open_memory(const char *dir, uint64_t expect, int *fd_out, sm_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, VMM_SNAPSHOT_MEMORY);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, SM_E_NOTFOUND, errno, "cannot open the snapshot's memory %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != expect) {
        close(fd);
        return error_set(err, SM_E_INVALID, "snapshot memory %s is %lld bytes; the state says %llu (truncated?)", path,
                       (long long)st.st_size, (unsigned long long)expect);
    }
    *fd_out = fd;
    return SM_OK;
}

/* The guest calibrated its clocks against the TSC rate it booted with: on a
 * host whose rate differs, KVM must scale it, or the restore is refused. */
static sm_code restore_tsc_khz(struct vm *vm, uint32_t khz, sm_error *err)
{
    if (!khz)
        return SM_OK; /* the saving host could not say */
    for (int i = 0; i < vm->ncpus; i++) {
        int here = ioctl(vm->vcpus[i].fd, KVM_GET_TSC_KHZ, 0);
        if (here == (int)khz)
            continue;
        if (ioctl(vm->vcpus[i].fd, KVM_SET_TSC_KHZ, (unsigned long)khz) < 0)
            return error_set_errno(err, SM_E_UNSUPPORTED, errno,
                                 "the snapshot's guest TSC runs at %u kHz, this host's at %d kHz, and KVM "
                                 "cannot scale it (KVM_SET_TSC_KHZ)", khz, here);
    }
    return SM_OK;
}

static sm_code read_vm_info(struct snap_reader *r, struct snap_vm_info *info, sm_error *err)
{
    struct snap_section sec;
    sm_code rc = snap_expect(r, SNAP_SEC_VM, 0, &sec, err);
    if (rc)
        return rc;
    if (sec.len != sizeof *info)
        return error_set(err, SM_E_INVALID, "snapshot VM section has a bad size");
    memcpy(info, sec.data, sizeof *info);
    if (info->ncpus < 1 || info->ncpus > VMM_MAX_CPUS)
        return error_set(err, SM_E_INVALID, "snapshot says %u vCPUs", info->ncpus);
    if (info->mem_bytes % (1u << 20) || info->mem_bytes < ((uint64_t)VMM_MIN_MEM_MIB << 20) ||
        info->mem_bytes > ((uint64_t)VMM_MAX_MEM_MIB << 20))
        return error_set(err, SM_E_INVALID, "snapshot says %llu bytes of memory", (unsigned long long)info->mem_bytes);
    return SM_OK;
}

struct vm *snapshot_restore(const char *dir, const struct vm_config *cfg, sm_error *err)
{
    char path[4096];
    uint8_t *buf = NULL;
    size_t len = 0;
    struct snap_reader r;
    struct snap_vm_info info;
    struct snap_section sec;
    int memfd = -1;
    struct vm *vm = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, VMM_SNAPSHOT_STATE);
    sm_code rc = read_state_file(path, &buf, &len, err);
    if (!rc)
        rc = snap_reader_open(&r, buf, len, err);
    if (!rc)
        rc = read_vm_info(&r, &info, err);
    if (!rc)
        rc = open_memory(dir, info.mem_bytes, &memfd, err);
    if (!rc) {
        struct vm_config c = *cfg;
        /* The disk the snapshot was taken with, unless the caller names one. */
        char disk[4096];
        snprintf(disk, sizeof disk, "%s/%s", dir, VMM_SNAPSHOT_DISK);
        if (!c.disk_path && access(disk, F_OK) == 0)
            c.disk_path = disk;
        c.mem_mib = (uint32_t)(info.mem_bytes >> 20);
        c.cpus = info.ncpus;
        c.guest_cid = info.guest_cid;
        c.kernel_path = "(snapshot)";
        vm = vm_create_restored(&c, memfd, err);
        if (!vm)
            rc = err ? err->code : SM_E_KVM;
    }
    if (!rc && info.ndevices != device_count(vm))
        rc = error_set(err, SM_E_INVALID, "snapshot has %u devices; this VMM builds %u", info.ndevices,
                     device_count(vm));
    if (!rc && !(rc = snap_expect(&r, SNAP_SEC_CPUID, 0, &sec, err)))
        rc = restore_cpuid(vm, &sec, err);
    if (!rc)
        rc = restore_tsc_khz(vm, info.tsc_khz, err);
    uint32_t xsz = vm ? xsave_size(vm->vm_fd) : 0;
    for (int i = 0; !rc && i < vm->ncpus; i++) {
        rc = snap_expect(&r, SNAP_SEC_VCPU, (uint32_t)i, &sec, err);
        if (!rc)
            rc = restore_vcpu(vm, &vm->vcpus[i], &sec, xsz, err);
    }
    if (!rc)
        rc = restore_vm_level(vm, &r, err);
    if (!rc && vm->vsock)
        virtio_vsock_begin_restore(vm->vsock);
    if (!rc)
        rc = restore_devices(vm, &r, err);
    if (!rc)
        rc = snap_expect(&r, SNAP_SEC_END, 0, &sec, err);
    /* Host connections did not survive; tell the guest's vsock driver so its
     * sockets reset and listeners take new connections at once. */
    if (!rc && vm->vsock)
        virtio_vsock_transport_reset(vm->vsock);
    if (memfd >= 0)
        close(memfd);   /* the mapping keeps the file */
    free(buf);
    if (rc) {
        vm_destroy(vm);
        error_prefix(err, "cannot restore %s", dir);
        return NULL;
    }
    return vm;
}
