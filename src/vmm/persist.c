/*
 * Saving a paused VM into a snapshot folder, and building a VM from one.
 *
 * The state file's sections (src/snapshot/format.h) come in a fixed order:
 * VM (struct snap_vm_info), then the KVM-held state (src/snapshot/kvm_state.h),
 * then one DEVICE section per device: a u32 kind (enum device_kind), then
 * the state struct the device's device_state_ops describe. Which devices a
 * VM has, in which order, is device_table's business and nobody else's.
 */
#include "vmm/persist.h"

#include <errno.h>
#include <fcntl.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "devices/device_state.h"
#include "devices/i8042.h"
#include "devices/serial_8250.h"
#include "devices/virtio/mmio.h"
#include "snapshot/format.h"
#include "snapshot/kvm_state.h"
#include "protocol/vmm.h"
#include "machine/kvm.h"

#define PAGE 4096

/* ===== the device table ====================================================== */

/* A DEVICE section's first u32: which kind of device its state is for. The
 * values are the snapshot format's: never renumber or reuse one. */
enum device_kind {
    DEVICE_KIND_SERIAL = 1,
    DEVICE_KIND_I8042 = 2,
    DEVICE_KIND_VIRTIO_MMIO = 3,
};

/* Most devices of one kind a VM has. */
#define MAX_INSTANCES VM_MAX_VIRTIO

struct device_kind_row {
    uint32_t kind;
    const struct device_state_ops *ops;
    /* The VM's devices of this kind, in section order, into out; returns how many. */
    int (*instances)(struct vm *vm, void *out[MAX_INSTANCES]);
};

static int serial_of(struct vm *vm, void *out[MAX_INSTANCES])
{
    out[0] = vm->serial;
    return 1;
}

static int i8042_of(struct vm *vm, void *out[MAX_INSTANCES])
{
    out[0] = vm->i8042;
    return 1;
}

/* One transport per virtio device, in slot order (vsock, then the disk). */
static int virtio_transports_of(struct vm *vm, void *out[MAX_INSTANCES])
{
    for (int i = 0; i < vm->nvirtio; i++)
        out[i] = vm->virtio[i].transport;
    return vm->nvirtio;
}

/* DEVICE sections follow this order, each row's devices in turn, their
 * section index counting up from 0 across rows. Snapshots written earlier
 * have this same order: a new row goes last. */
static const struct device_kind_row device_table[] = {
    { DEVICE_KIND_SERIAL, &serial_state_ops, serial_of },
    { DEVICE_KIND_I8042, &i8042_state_ops, i8042_of },
    { DEVICE_KIND_VIRTIO_MMIO, &virtio_mmio_state_ops, virtio_transports_of },
};

#define DEVICE_KINDS (sizeof device_table / sizeof device_table[0])
#define MAX_DEVICES (DEVICE_KINDS * MAX_INSTANCES)

struct device_ref {
    const struct device_kind_row *row;
    void *dev;
};

struct device_list {
    struct device_ref at[MAX_DEVICES];
    uint32_t n;
};

/* Every device of vm, in section order. */
static void list_devices(struct vm *vm, struct device_list *out)
{
    out->n = 0;
    for (size_t k = 0; k < DEVICE_KINDS; k++) {
        void *found[MAX_INSTANCES];
        int n = device_table[k].instances(vm, found);
        for (int i = 0; i < n; i++)
            out->at[out->n++] = (struct device_ref){ &device_table[k], found[i] };
    }
}

/* A state buffer any device's state struct may be read from or written to. */
struct state_buffer {
    alignas(max_align_t) uint8_t bytes[DEVICE_STATE_MAX];
};

static sm_code check_state_size(const struct device_state_ops *ops, sm_error *err)
{
    if (ops->state_size > DEVICE_STATE_MAX)
        return error_set(err, SM_E_LIMIT, "device %s has %zu bytes of state; at most %u fit", ops->name,
                         ops->state_size, DEVICE_STATE_MAX);
    return SM_OK;
}

static sm_code save_device(struct snap_writer *w, uint32_t index, const struct device_ref *d, sm_error *err)
{
    const struct device_state_ops *ops = d->row->ops;
    sm_code rc = check_state_size(ops, err);
    if (rc)
        return rc;
    struct state_buffer state;
    memset(&state, 0, sizeof state);
    ops->save(d->dev, state.bytes);
    snap_begin_section(w, SNAP_SEC_DEVICE, index);
    snap_put(w, &d->row->kind, sizeof d->row->kind);
    snap_put(w, state.bytes, ops->state_size);
    snap_end_section(w);
    return SM_OK;
}

static sm_code save_devices(struct snap_writer *w, const struct device_list *devices, sm_error *err)
{
    sm_code rc = SM_OK;
    for (uint32_t i = 0; i < devices->n && !rc; i++)
        rc = save_device(w, i, &devices->at[i], err);
    return rc;
}

/* The section must be the state of the device this VM has at its index:
 * the same kind, exactly its state's size. */
static sm_code restore_device(struct snap_reader *r, uint32_t index, const struct device_ref *d, sm_error *err)
{
    const struct device_state_ops *ops = d->row->ops;
    struct snap_section sec;
    uint32_t kind;
    sm_code rc = check_state_size(ops, err);
    if (!rc)
        rc = snap_expect(r, SNAP_SEC_DEVICE, index, &sec, err);
    if (rc)
        return rc;
    if (sec.len < sizeof kind)
        return error_set(err, SM_E_INVALID, "snapshot DEVICE %u section is truncated", index);
    memcpy(&kind, sec.data, sizeof kind);
    if (kind != d->row->kind || sec.len != sizeof kind + ops->state_size)
        return error_set(err, SM_E_INVALID,
                         "snapshot DEVICE %u is not the device this VM has there (kind %u, %llu bytes; "
                         "this VM has %s there)",
                         index, kind, (unsigned long long)sec.len, ops->name);
    struct state_buffer state;
    memcpy(state.bytes, sec.data + sizeof kind, ops->state_size);
    return ops->restore(d->dev, state.bytes, err);
}

static void begin_device_restore(const struct device_list *devices)
{
    for (uint32_t i = 0; i < devices->n; i++)
        if (devices->at[i].row->ops->restore_begin)
            devices->at[i].row->ops->restore_begin(devices->at[i].dev);
}

static void end_device_restore(const struct device_list *devices)
{
    for (uint32_t i = 0; i < devices->n; i++)
        if (devices->at[i].row->ops->restore_end)
            devices->at[i].row->ops->restore_end(devices->at[i].dev);
}

/* Every device's section, then END; only then the devices' restore_end. */
static sm_code restore_devices(struct snap_reader *r, const struct device_list *devices, sm_error *err)
{
    struct snap_section sec;
    sm_code rc = SM_OK;
    begin_device_restore(devices);
    for (uint32_t i = 0; i < devices->n && !rc; i++)
        rc = restore_device(r, i, &devices->at[i], err);
    if (!rc)
        rc = snap_expect(r, SNAP_SEC_END, 0, &sec, err);
    if (!rc)
        end_device_restore(devices);
    return rc;
}

/* ===== save ================================================================= */

static void save_vm_info(struct snap_writer *w, struct vm *vm, uint32_t ndevices)
{
    struct snap_vm_info info;
    memset(&info, 0, sizeof info);
    info.mem_bytes = vm->mem.total;
    info.ncpus = (uint32_t)vm->ncpus;
    info.ndevices = ndevices;
    info.guest_cid = vm->cfg.guest_cid;
    info.created_unix_s = (uint64_t)time(NULL);
    kvm_state_cpu_vendor(vm->cpuid, info.cpu_vendor);
    info.tsc_khz = kvm_state_tsc_khz(vm->vcpus[0].fd);
    snap_begin_section(w, SNAP_SEC_VM, 0);
    snap_put(w, &info, sizeof info);
    snap_end_section(w);
}

static sm_code save_vcpus(struct snap_writer *w, struct vm *vm, sm_error *err)
{
    struct kvm_msr_list *list = kvm_state_msr_list(vm->kvm_fd, err);
    if (!list)
        return err ? err->code : SM_E_KVM;
    uint32_t xsz = kvm_state_xsave_size(vm->vm_fd);
    sm_code rc = SM_OK;
    for (int i = 0; i < vm->ncpus && !rc; i++)
        rc = kvm_state_save_vcpu(w, vm->vcpus[i].fd, i, list, xsz, err);
    free(list);
    return rc;
}

static sm_code build_state(struct vm *vm, struct snap_writer *w, sm_error *err)
{
    struct device_list devices;
    list_devices(vm, &devices);
    save_vm_info(w, vm, devices.n);
    sm_code rc = kvm_state_save_cpuid(w, vm->cpuid, vm->ncpus, kvm_has_tsc_deadline(vm->kvm_fd), err);
    if (!rc)
        rc = save_vcpus(w, vm, err);
    if (!rc)
        rc = kvm_state_save_vm(w, vm->vm_fd, err);
    if (!rc)
        rc = save_devices(w, &devices, err);
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

/* The snapshot folder: an open descriptor, since a VMM in its cell cannot
 * name folders outside it (the library hands it one), and its name for
 * messages. */
struct snapshot_dir {
    int fd;
    const char *name;
};

/* dir/name replaced atomically by the whole of data (src/base/file.h). */
static sm_code replace_file(const struct snapshot_dir *dir, const char *name, const uint8_t *data, size_t len,
                            sm_error *err)
{
    if (!write_file_atomic_at(dir->fd, name, data, len, 0600))
        return error_set_errno(err, SM_E_IO, errno, "cannot write %s/%s", dir->name, name);
    return SM_OK;
}

/* Guest RAM into dir/memory, replaced atomically. */
static sm_code replace_memory(struct vm *vm, const struct snapshot_dir *dir, sm_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir->name, VMM_SNAPSHOT_MEMORY);
    struct atomic_file f;
    if (!atomic_file_begin_at(&f, dir->fd, VMM_SNAPSHOT_MEMORY, 0600))
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
static sm_code link_disk(struct vm *vm, const struct snapshot_dir *dir, sm_error *err)
{
    if (!vm->disk_real)
        return SM_OK;
    const char *tmp = "." VMM_SNAPSHOT_DISK ".tmp";
    unlinkat(dir->fd, tmp, 0);
    if (symlinkat(vm->disk_real, dir->fd, tmp) < 0 || renameat(dir->fd, tmp, dir->fd, VMM_SNAPSHOT_DISK) < 0) {
        int e = errno;
        unlinkat(dir->fd, tmp, 0);
        return error_set_errno(err, SM_E_IO, e, "cannot link the disk image into %s", dir->name);
    }
    return SM_OK;
}

sm_code persist_save(struct vm *vm, int dir_fd, const char *dir_name, sm_error *err)
{
    /* A snapshot would hold the guest's page cache and ext4 state of a
     * volume whose file goes on changing without it: a VM restored from it
     * would see a disk other than the one it remembers. */
    if (vm->nvolumes)
        return error_set(err, SM_E_UNSUPPORTED, "a VM with volumes cannot be snapshotted: a volume is not part "
                         "of a snapshot, and the guest's view of it would not match the volume later");
    const struct snapshot_dir dir = { dir_fd, dir_name };
    struct snap_writer w;
    snap_writer_init(&w);
    sm_code rc = build_state(vm, &w, err);
    if (!rc)
        rc = snap_finish(&w, err);
    /* Memory first, state last: a folder with a state file is complete. */
    if (!rc)
        rc = replace_memory(vm, &dir, err);
    if (!rc)
        rc = link_disk(vm, &dir, err);
    if (!rc)
        rc = replace_file(&dir, VMM_SNAPSHOT_STATE, w.buf, w.len, err);
    snap_writer_free(&w);
    if (rc)
        error_prefix(err, "snapshot to %s", dir_name);
    return rc;
}

int persist_open_dir(const char *dir, sm_error *err)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        error_set_errno(err, SM_E_IO, errno, "cannot create the snapshot folder %s", dir);
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        error_set_errno(err, SM_E_IO, errno, "cannot open the snapshot folder %s", dir);
    return fd;
}

/* ===== restore =============================================================== */

static sm_code open_memory(const char *dir, uint64_t expect, int *fd_out, sm_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, VMM_SNAPSHOT_MEMORY);
    struct stat st;
    int fd = file_open_read(path, false, false, &st);
    if (fd < 0 && (errno == ELOOP || errno == EINVAL))
        return error_set(err, SM_E_INVALID, "snapshot memory %s is %s", path,
                         errno == ELOOP ? "a symbolic link" : "not a regular file");
    if (fd < 0)
        return error_set_errno(err, SM_E_NOTFOUND, errno, "cannot open the snapshot's memory %s", path);
    if ((uint64_t)st.st_size != expect) {
        close(fd);
        return error_set(err, SM_E_INVALID, "snapshot memory %s is %lld bytes; the state says %llu (truncated?)", path,
                       (long long)st.st_size, (unsigned long long)expect);
    }
    *fd_out = fd;
    return SM_OK;
}

/* The most a snapshot may ask for: the caller's limits, else the host's
 * memory and CPUs. Checked before anything is mapped or created. */
static sm_code within_limits(const struct snap_vm_info *info, const struct vm_config *cfg, sm_error *err)
{
    uint64_t host_mib = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) >> 20;
    long host_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t max_mib = cfg->max_mem_mib ? cfg->max_mem_mib : host_mib;
    uint64_t max_cpus = cfg->max_cpus ? cfg->max_cpus : (uint64_t)(host_cpus > 0 ? host_cpus : 1);
    if ((info->mem_bytes >> 20) > max_mib)
        return error_set(err, SM_E_LIMIT, "the snapshot asks for %llu MiB of memory; at most %llu MiB allowed (%s)",
                         (unsigned long long)(info->mem_bytes >> 20), (unsigned long long)max_mib,
                         cfg->max_mem_mib ? "--max-memory" : "this host's memory");
    if (info->ncpus > max_cpus)
        return error_set(err, SM_E_LIMIT, "the snapshot asks for %u vCPUs; at most %llu allowed (%s)", info->ncpus,
                         (unsigned long long)max_cpus, cfg->max_cpus ? "--max-cpus" : "this host's CPU count");
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

/* The VM the snapshot describes, its devices and vCPUs in their reset state. */
static struct vm *create_vm(const char *dir, const struct vm_config *cfg, const struct snap_vm_info *info,
                            sm_error *err)
{
    int memfd = -1;
    if (open_memory(dir, info->mem_bytes, &memfd, err))
        return NULL;
    struct vm_config c = *cfg;
    /* The disk the snapshot was taken with, unless the caller names one. */
    char disk[4096];
    snprintf(disk, sizeof disk, "%s/%s", dir, VMM_SNAPSHOT_DISK);
    if (!c.disk_path && access(disk, F_OK) == 0)
        c.disk_path = disk;
    c.mem_mib = (uint32_t)(info->mem_bytes >> 20);
    c.cpus = info->ncpus;
    c.guest_cid = info->guest_cid;
    c.kernel_path = "(snapshot)";
    struct vm *vm = vm_create_restored(&c, memfd, err);
    close(memfd); /* the mapping keeps the file */
    return vm;
}

static sm_code restore_vcpus(struct vm *vm, struct snap_reader *r, uint32_t tsc_khz, sm_error *err)
{
    struct snap_section sec;
    sm_code rc = snap_expect(r, SNAP_SEC_CPUID, 0, &sec, err);
    if (!rc && !(vm->cpuid = kvm_state_restore_cpuid(&sec, vm->kvm_fd, err)))
        rc = err ? err->code : SM_E_INVALID;
    for (int i = 0; !rc && i < vm->ncpus; i++)
        rc = kvm_state_restore_tsc_khz(vm->vcpus[i].fd, tsc_khz, err);
    uint32_t xsz = kvm_state_xsave_size(vm->vm_fd);
    struct kvm_msr_list *msr_list = rc ? NULL : kvm_state_msr_list(vm->kvm_fd, err);
    if (!rc && !msr_list)
        rc = err ? err->code : SM_E_KVM;
    for (int i = 0; !rc && i < vm->ncpus; i++) {
        rc = snap_expect(r, SNAP_SEC_VCPU, (uint32_t)i, &sec, err);
        if (!rc)
            rc = kvm_state_restore_vcpu(vm->vcpus[i].fd, i, vm->ncpus, vm->cpuid, msr_list, &sec, xsz, err);
    }
    free(msr_list);
    return rc;
}

/* Everything after the VM section, into a VM built for it. */
static sm_code restore_state(struct vm *vm, struct snap_reader *r, const struct snap_vm_info *info, sm_error *err)
{
    struct device_list devices;
    list_devices(vm, &devices);
    if (info->ndevices != devices.n)
        return error_set(err, SM_E_INVALID, "snapshot has %u devices; this VMM builds %u", info->ndevices,
                         devices.n);
    sm_code rc = restore_vcpus(vm, r, info->tsc_khz, err);
    if (!rc)
        rc = kvm_state_restore_vm(r, vm->vm_fd, err);
    if (!rc)
        rc = restore_devices(r, &devices, err);
    return rc;
}

struct vm *persist_restore(const char *dir, const struct vm_config *cfg, sm_error *err)
{
    char path[4096];
    uint8_t *buf = NULL;
    size_t len = 0;
    struct snap_reader r;
    struct snap_vm_info info;
    struct vm *vm = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, VMM_SNAPSHOT_STATE);
    sm_code rc = snap_read_file(path, &buf, &len, err);
    if (!rc)
        rc = snap_reader_open(&r, buf, len, err);
    if (!rc)
        rc = read_vm_info(&r, &info, err);
    if (!rc)
        rc = within_limits(&info, cfg, err);
    if (!rc && !(vm = create_vm(dir, cfg, &info, err)))
        rc = err ? err->code : SM_E_KVM;
    if (!rc)
        rc = restore_state(vm, &r, &info, err);
    free(buf);
    if (rc) {
        vm_destroy(vm);
        error_prefix(err, "cannot restore %s", dir);
        return NULL;
    }
    return vm;
}
