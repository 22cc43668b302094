/*
 * Building, running and stopping one microVM for boot.
 */
#include "vmm/vm.h"
#include "base/clock.h"
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devices/i8042.h"
#include "devices/serial_8250.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "base/error.h"
#include "protocol/guest_abi.h"
#include "vmm/boot.h"
#include "machine/kvm.h"
#include "vmm/mptable.h"
#include "vmm/network.h"
#include "vmm/vcpu.h"

/* Above the 3 GiB RAM ceiling, below the I/O APIC and LAPIC pages. */
#define KVM_TSS_ADDR        0xfffbd000ull
#define KVM_IDENTITY_MAP    0xfffbc000ull
#define MAX_KERNEL_BYTES    (64u << 20)
#define MAX_INITRD_BYTES    (1024u << 20)

/* Why each default parameter is there:
 *   console=ttyS0          the 8250 on COM1 is the only console
 *   reboot=k               reboot through the i8042 reset line: our clean exit
 *   panic=-1               a panic reboots at once, so the VMM ends, never hangs
 *   quiet                  the console is slow under emulation; errors still print
 *   lpj, tsc=reliable      skip delay-loop calibration and TSC watchdog work
 *   i8042.*                no AUX port, no multiplexer, no PnP probe: fewer exits
 * (No pci=off or nomodules: the kernel has neither, and would hand unknown
 * words to the agent as arguments.) */
static const char default_cmdline[] =
    "console=ttyS0 reboot=k panic=-1 quiet lpj=1000000 tsc=reliable "
    "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";

void vm_config_init(struct vm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->mem_mib = 256;
    cfg->cpus = 1;
    cfg->console_fd = -1;
    cfg->guest_cid = 3;
    net_policy_init(&cfg->net);
}

sm_code vm_config_validate(const struct vm_config *cfg, sm_error *err)
{
    if (!cfg->kernel_path || !*cfg->kernel_path)
        return error_set(err, SM_E_INVALID, "no kernel given");
    if (cfg->cpus < 1 || cfg->cpus > VMM_MAX_CPUS)
        return error_set(err, SM_E_INVALID, "--cpus %u is out of range: 1 to %d", cfg->cpus, VMM_MAX_CPUS);
    if (cfg->mem_mib < VMM_MIN_MEM_MIB || cfg->mem_mib > VMM_MAX_MEM_MIB)
        return error_set(err, SM_E_INVALID, "--memory %u MiB is out of range: %d to %u", cfg->mem_mib, VMM_MIN_MEM_MIB,
                       VMM_MAX_MEM_MIB);
    if (cfg->guest_cid < 3 || cfg->guest_cid > 0xfffffffeu)
        return error_set(err, SM_E_INVALID, "guest CID %llu is out of range: 3 to 4294967294",
                       (unsigned long long)cfg->guest_cid);
    return SM_OK;
}

/* --- stop and error reporting (any thread) ----------------------------------- */

static void wake_loop(struct vm *vm)
{
    uint64_t one = 1;
    ssize_t n = write(vm->wake_fd, &one, sizeof one);
    (void)n; /* a full counter already means "awake" */
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason why)
{
    int none = VM_STOP_NONE;
    /* A guest reset after a panic message is a panic, not a clean end. */
    if (why == VM_STOP_GUEST_RESET && vm->serial && serial_saw_panic(vm->serial))
        why = VM_STOP_PANIC;
    atomic_compare_exchange_strong(&vm->stop_reason, &none, (int)why);
    atomic_store(&vm->stopping, true);
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_kick(&vm->vcpus[i]);
    pthread_mutex_lock(&vm->pause_lock);
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
    wake_loop(vm);
}

#define PAUSE_TIMEOUT_S 5

sm_code vm_pause(struct vm *vm, sm_error *err)
{
    pthread_mutex_lock(&vm->pause_lock);
    atomic_store(&vm->pause_requested, true);
    vm->pause_failed = false;
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_kick(&vm->vcpus[i]);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += PAUSE_TIMEOUT_S;
    int running = 0;
    for (int i = 0; i < vm->ncpus; i++)
        running += vm->vcpus[i].thread_started;
    while (vm->parked < running && !atomic_load(&vm->stopping)) {
        if (pthread_cond_timedwait(&vm->pause_cond, &vm->pause_lock, &deadline) != 0)
            break;
    }
    bool ok = vm->parked == running && !vm->pause_failed && !atomic_load(&vm->stopping);
    pthread_mutex_unlock(&vm->pause_lock);
    if (!ok) {
        vm_resume(vm);
        return error_set(err, SM_E_KVM, "could not pause every vCPU within %d s (the VM is stopping or failed)",
                       PAUSE_TIMEOUT_S);
    }
    /* Tell the guest's kvmclock it was stopped (a flag in its own memory,
     * so a snapshot keeps it): after a resume or a restore, however late,
     * its soft-lockup watchdog does not take the gap for a hang. EINVAL
     * just means the guest does not use kvmclock. */
    for (int i = 0; i < vm->ncpus; i++)
        if (vm->vcpus[i].thread_started)
            (void)ioctl(vm->vcpus[i].fd, KVM_KVMCLOCK_CTRL, 0);
    /* The NAT's thread must not write the guest's memory while it is saved. */
    if (vm->network)
        vm_network_hold(vm->network, true);
    return SM_OK;
}

void vm_resume(struct vm *vm)
{
    if (vm->network)
        vm_network_hold(vm->network, false);
    pthread_mutex_lock(&vm->pause_lock);
    atomic_store(&vm->pause_requested, false);
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
}

void vm_fail(struct vm *vm, const char *fmt, ...)
{
    pthread_mutex_lock(&vm->error_lock);
    if (!vm->error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(vm->error, sizeof vm->error, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&vm->error_lock);
    vm_request_stop(vm, VM_STOP_ERROR);
}

/* --- interrupt backings -------------------------------------------------------- */

static void kvm_irq_set_level(struct irq_line *line, bool high)
{
    struct vm *vm = line->ctx;
    struct kvm_irq_level lvl = { .irq = line->gsi, .level = high ? 1 : 0 };
    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &lvl) < 0)
        vm_fail(vm, "KVM_IRQ_LINE %u failed: %s", line->gsi, strerror(errno));
}

static void irqfd_pulse(struct irq_line *line)
{
    uint64_t one = 1;
    ssize_t n = write(line->fd, &one, sizeof one);
    (void)n; /* EAGAIN: an interrupt is already pending, which is enough */
}

static sm_code irqfd_line(struct vm *vm, struct irq_line *line, uint32_t gsi, sm_error *err)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "eventfd for IRQ %u", gsi);
    struct kvm_irqfd req = { .fd = (uint32_t)fd, .gsi = gsi };
    if (ioctl(vm->vm_fd, KVM_IRQFD, &req) < 0) {
        int e = errno;
        close(fd);
        return error_set_errno(err, SM_E_KVM, e, "KVM_IRQFD for IRQ %u", gsi);
    }
    *line = (struct irq_line){ .pulse = irqfd_pulse, .gsi = gsi, .fd = fd, .ctx = vm };
    return SM_OK;
}

/* --- device callbacks ---------------------------------------------------------- */

static void on_guest_reset(void *ctx)
{
    vm_request_stop(ctx, VM_STOP_GUEST_RESET);
}

void vm_mark_ready(struct vm *vm)
{
    int64_t expected = 0;
    atomic_compare_exchange_strong(&vm->ready_ns, &expected, clock_now_ns());
    wake_loop(vm);
}

static void on_agent_ready(void *ctx)
{
    vm_mark_ready(ctx);
}

static void on_wake(void *opaque, uint32_t events)
{
    struct vm *vm = opaque;
    uint64_t v;
    (void)events;
    ssize_t n = read(vm->wake_fd, &v, sizeof v);
    (void)n;
}

static void on_queue_notify(void *opaque, uint32_t events)
{
    struct vm_notify_ctx *nc = opaque;
    uint64_t v;
    (void)events;
    if (read(nc->slot->notify_fds[nc->queue], &v, sizeof v) == sizeof v)
        virtio_mmio_queue_notify(nc->slot->transport, nc->queue);
}

/* --- construction ------------------------------------------------------------ */

static sm_code read_file(const char *what, const char *path, size_t max, uint8_t **out, size_t *len,
                         sm_error *err)
{
    struct stat st;
    int fd = file_open_read(path, true, false, &st);
    if (fd < 0 && errno == EINVAL)
        return error_set(err, SM_E_INVALID, "%s %s is not a regular file", what, path);
    if (fd < 0)
        return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno, "cannot open %s %s", what, path);
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return error_set(err, SM_E_LIMIT, "%s %s is %lld bytes; the limit is %zu", what, path, (long long)st.st_size,
                       max);
    }
    uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf) {
        close(fd);
        return error_set(err, SM_E_NOMEM, "out of memory reading %s", path);
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return error_set_errno(err, SM_E_IO, e, "cannot read %s %s", what, path);
        }
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *len = got;
    return SM_OK;
}

static sm_code create_kvm_vm(struct vm *vm, sm_error *err)
{
    /* PVM accepts every ioctl we make, then a standard kernel hangs silently:
     * say so now rather than after a timeout. */
    if (kvm_host_is_pvm() && !getenv("SM_ALLOW_PVM"))
        return error_set(err, SM_E_UNSUPPORTED,
                       "this host's /dev/kvm is PVM (kvm_pvm), which runs only PVM-patched guest kernels; "
                       "run through tools/kvmbox, or on a host with VT-x/AMD-V (see `supermachine doctor`)");
    sm_code rc = kvm_open_checked(&vm->kvm_fd, err);
    if (rc)
        return rc;
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_CREATE_VM failed");
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_TSS_ADDR failed");
    uint64_t identity = KVM_IDENTITY_MAP;
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_IDENTITY_MAP_ADDR failed");
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_CREATE_IRQCHIP failed");
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return error_set_errno(err, SM_E_KVM, errno, "KVM_CREATE_PIT2 failed");
    return SM_OK;
}

static sm_code create_memory(struct vm *vm, int memory_fd, sm_error *err)
{
    uint64_t bytes = (uint64_t)vm->cfg.mem_mib << 20;
    if (memory_fd >= 0 ? gm_create_from_file(&vm->mem, memory_fd, bytes) < 0 : gm_create(&vm->mem, bytes) < 0)
        return error_set_errno(err, SM_E_NOMEM, errno, "cannot map %u MiB of guest memory", vm->cfg.mem_mib);
    for (int i = 0; i < vm->mem.nregions; i++) {
        struct kvm_userspace_memory_region r = {
            .slot = (uint32_t)i,
            .guest_phys_addr = vm->mem.regions[i].gpa,
            .memory_size = vm->mem.regions[i].size,
            .userspace_addr = (uint64_t)(uintptr_t)vm->mem.regions[i].host,
        };
        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
            return error_set_errno(err, SM_E_KVM, errno, "KVM_SET_USER_MEMORY_REGION slot %d failed", i);
    }
    return SM_OK;
}

static sm_code add_legacy_devices(struct vm *vm, sm_error *err)
{
    vm->serial_irq = (struct irq_line){ .set_level = kvm_irq_set_level, .gsi = VM_SERIAL_IRQ, .fd = -1, .ctx = vm };
    vm->serial = serial_create(vm->cfg.console_fd, &vm->serial_irq);
    vm->i8042 = i8042_create(on_guest_reset, vm);
    if (!vm->serial || !vm->i8042)
        return error_set(err, SM_E_NOMEM, "out of memory for legacy devices");
    vm->signal = (struct signal_port){ .on_ready = on_agent_ready, .ctx = vm };
    atomic_store(&vm->signal.command, vm->cfg.poweroff_when_ready ? SM_SIGNAL_CMD_POWEROFF : SM_SIGNAL_CMD_SERVE);
    if (bus_add(&vm->pio, SERIAL_COM1_BASE, SERIAL_PORT_COUNT, &serial_bus_ops, vm->serial) < 0 ||
        bus_add(&vm->pio, I8042_BASE, I8042_PORT_COUNT, &i8042_bus_ops, vm->i8042) < 0 ||
        bus_add(&vm->pio, SM_SIGNAL_PORT, 4, &signal_port_bus_ops, &vm->signal) < 0)
        return error_set(err, SM_E_INVALID, "legacy device ports overlap");
    return SM_OK;
}

/* Plugs a virtio device into a slot at base: window, IRQ gsi via irqfd, one
 * ioeventfd per queue served by the event loop. The slot is counted in use
 * by the caller before: vm_destroy then tears down what was made. */
static sm_code plug_virtio(struct vm *vm, struct vm_virtio_slot *slot, uint64_t base, uint32_t gsi,
                           struct virtio_device *dev, sm_error *err)
{
    sm_code rc = irqfd_line(vm, &slot->irq, gsi, err);
    if (rc) {
        virtio_device_destroy(dev);
        return rc;
    }
    /* The transport owns the device from here on, even when it fails. */
    slot->transport = virtio_mmio_create(dev, &vm->mem, &slot->irq);
    if (!slot->transport)
        return error_set(err, SM_E_NOMEM, "out of memory for a virtio transport");
    if (bus_add(&vm->mmio, base, VIRTIO_MMIO_WINDOW, &virtio_mmio_bus_ops, slot->transport) < 0)
        return error_set(err, SM_E_INVALID, "virtio MMIO windows overlap");
    slot->nqueues = virtio_mmio_num_queues(slot->transport);
    if (slot->nqueues > 16)
        return error_set(err, SM_E_LIMIT, "virtio device with %d queues; at most 16", slot->nqueues);
    for (int q = 0; q < slot->nqueues; q++) {
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
            return error_set_errno(err, SM_E_IO, errno, "eventfd for a virtio queue");
        slot->notify_fds[q] = fd;
        struct kvm_ioeventfd io = {
            .datamatch = (uint64_t)q,
            .addr = base + VIRTIO_MMIO_QUEUE_NOTIFY_OFFSET,
            .len = 4,
            .fd = fd,
            .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
        };
        if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
            return error_set_errno(err, SM_E_KVM, errno, "KVM_IOEVENTFD for a virtio queue");
        slot->notify_ctx[q] = (struct vm_notify_ctx){ .slot = slot, .queue = (uint16_t)q };
        if (evl_add(&vm->loop, fd, EPOLLIN, on_queue_notify, &slot->notify_ctx[q]) < 0)
            return error_set_errno(err, SM_E_IO, errno, "event loop registration");
    }
    return SM_OK;
}

static void clear_slot(struct vm_virtio_slot *slot)
{
    for (int q = 0; q < 16; q++)
        slot->notify_fds[q] = -1;
    slot->irq.fd = -1;
}

/* Plugs a virtio device into the next slot named on the command line. */
static sm_code add_virtio_device(struct vm *vm, struct virtio_device *dev, sm_error *err)
{
    if (!dev)
        return error_set(err, SM_E_NOMEM, "out of memory for a virtio device");
    if (vm->nvirtio >= VM_MAX_VIRTIO) {
        virtio_device_destroy(dev);
        return error_set(err, SM_E_LIMIT, "too many virtio devices");
    }
    struct vm_virtio_slot *slot = &vm->virtio[vm->nvirtio];
    uint64_t base = VM_VIRTIO_MMIO_BASE + VM_VIRTIO_MMIO_STRIDE * (uint64_t)vm->nvirtio;
    uint32_t gsi = VM_VIRTIO_FIRST_IRQ + (uint32_t)vm->nvirtio;
    clear_slot(slot);
    vm->nvirtio++;
    return plug_virtio(vm, slot, base, gsi, dev, err);
}

static sm_code add_vsock(struct vm *vm, sm_error *err)
{
    struct vsock_config vc = {
        .guest_cid = vm->cfg.guest_cid,
        .uds_path = vm->cfg.vsock_socket,
        .exec_path = vm->cfg.exec_socket,
        .exec_port = SM_AGENT_VSOCK_PORT,
        .log_fd = STDERR_FILENO,
    };
    vm->vsock = virtio_vsock_create(&vc, &vm->loop, err);
    if (!vm->vsock)
        return err ? err->code : SM_E_IO;
    return add_virtio_device(vm, vm->vsock, err);
}

/* The read-only root disk, after vsock: slot 2, /dev/vda in the guest. */
static sm_code add_disk(struct vm *vm, sm_error *err)
{
    if (!vm->cfg.disk_path)
        return SM_OK;
    struct stat st;
    int fd = file_open_read(vm->cfg.disk_path, true, true, &st);
    if (fd < 0 && errno == EINVAL)
        return error_set(err, SM_E_INVALID, "%s cannot be a disk (a regular file or block device, read-only)",
                         vm->cfg.disk_path);
    if (fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot open the disk image %s", vm->cfg.disk_path);
    if (!(vm->disk_real = realpath(vm->cfg.disk_path, NULL))) {
        int e = errno;
        close(fd);
        return error_set_errno(err, SM_E_IO, e, "cannot resolve the disk image path %s", vm->cfg.disk_path);
    }
    struct virtio_device *blk = virtio_blk_create(fd, "supermachine-root");
    if (!blk)
        return error_set_errno(err, SM_E_INVALID, errno,
                             "%s cannot be a disk (a regular file or block device, read-only)", vm->cfg.disk_path);
    return add_virtio_device(vm, blk, err);
}

/* Opens a volume's file and locks it for this VM: exclusive for a writable
 * one, shared for a read-only one, so that no two VMs write one file and
 * none reads it while another writes. The lock lasts as long as the VMM. */
static int open_volume(const struct vmm_volume *v, sm_error *err)
{
    int fd = open(v->path, (v->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0) {
        error_set_errno(err, SM_E_IO, errno, "cannot open the volume %s", v->path);
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || fcntl(fd, F_SETFL, 0) < 0) {
        close(fd);
        error_set(err, SM_E_INVALID, "the volume %s is not a regular file", v->path);
        return -1;
    }
    if (flock(fd, (v->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            error_set(err, SM_E_BUSY, "the volume %s is in use by another VM%s", v->path,
                      v->read_only ? " that writes it" : "");
        else
            error_set_errno(err, SM_E_IO, e, "cannot lock the volume %s", v->path);
        return -1;
    }
    return fd;
}

/* The volume slots (protocol/guest_abi.h), every VM's, so that any
 * snapshot can take volumes: a volume's disk in its slot, the rest empty
 * (the guest skips those at boot; the agent binds a slot when told,
 * VOLUME in wire.h). */
static sm_code add_volumes(struct vm *vm, sm_error *err)
{
    for (uint32_t i = vm->cfg.nvolumes; i < SM_MAX_VOLUMES; i++)
        if (bus_add(&vm->mmio, SM_VOLUME_MMIO_BASE + SM_VOLUME_MMIO_STRIDE * i, VIRTIO_MMIO_WINDOW,
                    &virtio_mmio_empty_slot_bus_ops, NULL) < 0)
            return error_set(err, SM_E_INVALID, "volume slot %u overlaps another device", i);
    for (uint32_t i = 0; i < vm->cfg.nvolumes && i < SM_MAX_VOLUMES; i++) {
        const struct vmm_volume *v = &vm->cfg.volumes[i];
        char serial[VIRTIO_BLK_ID_BYTES + 1];
        snprintf(serial, sizeof serial, SM_VOLUME_SERIAL, i);
        int fd = open_volume(v, err);
        if (fd < 0)
            return err ? err->code : SM_E_IO;
        struct virtio_device *blk = v->read_only ? virtio_blk_create(fd, serial) : virtio_blk_create_writable(fd, serial);
        if (!blk)
            return error_set_errno(err, SM_E_INVALID, errno, "the volume %s cannot be a disk", v->path);
        struct vm_virtio_slot *slot = &vm->volumes[i];
        clear_slot(slot);
        vm->nvolumes++;
        sm_code rc = plug_virtio(vm, slot, SM_VOLUME_MMIO_BASE + SM_VOLUME_MMIO_STRIDE * i,
                                 SM_VOLUME_FIRST_IRQ + i, blk, err);
        if (rc)
            return rc;
    }
    return SM_OK;
}

static sm_code build_cmdline(struct vm *vm, char *out, size_t len, sm_error *err)
{
    size_t used = (size_t)snprintf(out, len, "%s", default_cmdline);
    for (int i = 0; i < vm->nvirtio && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, " virtio_mmio.device=4K@0x%llx:%d",
                                 (unsigned long long)(VM_VIRTIO_MMIO_BASE + VM_VIRTIO_MMIO_STRIDE * (uint64_t)i),
                                 VM_VIRTIO_FIRST_IRQ + i);
    for (uint32_t i = 0; i < SM_MAX_VOLUMES && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, " virtio_mmio.device=4K@0x%llx:%u",
                                 (unsigned long long)(SM_VOLUME_MMIO_BASE + SM_VOLUME_MMIO_STRIDE * i),
                                 SM_VOLUME_FIRST_IRQ + i);
    /* The agent configures eth0 at boot unless told (protocol/guest_abi.h). */
    if (!vm->cfg.net.enabled && used < len)
        used += (size_t)snprintf(out + used, len - used, " " SM_CMDLINE_NET_OFF);
    if (vm->cfg.cmdline_extra && *vm->cfg.cmdline_extra && used < len)
        used += (size_t)snprintf(out + used, len - used, " %s", vm->cfg.cmdline_extra);
    if (used >= len)
        return error_set(err, SM_E_LIMIT, "kernel command line is longer than %zu bytes", len - 1);
    return SM_OK;
}

static sm_code load_guest(struct vm *vm, sm_error *err)
{
    uint8_t *kernel = NULL, *initrd = NULL;
    size_t kernel_len = 0, initrd_len = 0;
    char cmdline[4096];
    sm_code rc = read_file("kernel", vm->cfg.kernel_path, MAX_KERNEL_BYTES, &kernel, &kernel_len, err);
    if (!rc && vm->cfg.initrd_path)
        rc = read_file("initrd", vm->cfg.initrd_path, MAX_INITRD_BYTES, &initrd, &initrd_len, err);
    if (!rc)
        rc = build_cmdline(vm, cmdline, sizeof cmdline, err);
    if (!rc) {
        struct boot_images in = { .kernel = kernel, .kernel_size = kernel_len, .initrd = initrd,
                                  .initrd_size = initrd_len, .cmdline = cmdline };
        rc = boot_load(&vm->mem, &in, &vm->entry, err);
    }
    if (!rc)
        rc = mptable_write(&vm->mem, BOOT_MPTABLE_ADDR, vm->ncpus, err);
    free(kernel);
    free(initrd);
    return rc;
}

static sm_code create_vcpus(struct vm *vm, sm_error *err)
{
    vm->cpuid = kvm_supported_cpuid(vm->kvm_fd, err);
    if (!vm->cpuid)
        return err ? err->code : SM_E_KVM;
    sm_code rc = SM_OK;
    for (int i = 0; i < vm->ncpus && !rc; i++) {
        rc = vcpu_create(&vm->vcpus[i], vm, i, err);
        if (!rc)
            rc = vcpu_configure_for_boot(&vm->vcpus[i], vm->cpuid, vm->ncpus, vm->entry, err);
    }
    return rc;
}

static sm_code init_host_side(struct vm *vm, sm_error *err)
{
    if (evl_init(&vm->loop) < 0)
        return error_set_errno(err, SM_E_IO, errno, "epoll_create1");
    vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->wake_fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "eventfd");
    if (evl_add(&vm->loop, vm->wake_fd, EPOLLIN, on_wake, vm) < 0)
        return error_set_errno(err, SM_E_IO, errno, "event loop registration");
    return SM_OK;
}

static struct vm *vm_alloc(const struct vm_config *cfg, sm_error *err)
{
    if (vm_config_validate(cfg, err))
        return NULL;
    struct vm *vm = calloc(1, sizeof *vm);
    if (!vm) {
        error_set(err, SM_E_NOMEM, "out of memory for a VM");
        return NULL;
    }
    vm->created_ns = clock_now_ns();
    vm->cfg = *cfg;
    vm->kvm_fd = vm->vm_fd = vm->wake_fd = vm->signal_fd = -1;
    vm->loop.epfd = -1;
    vm->ncpus = (int)cfg->cpus;
    for (int i = 0; i < VMM_MAX_CPUS; i++)
        vm->vcpus[i].fd = -1;
    pthread_mutex_init(&vm->error_lock, NULL);
    pthread_mutex_init(&vm->pause_lock, NULL);
    pthread_cond_init(&vm->pause_cond, NULL);
    return vm;
}

/* The guest's network: the device, and the NAT behind it when on. A frame
 * the guest sends goes to the NAT (dropped when off); the NAT's frames go
 * to the device from the network's thread. */
static void net_to_nat(void *ctx, const uint8_t *frame, size_t len)
{
    struct vm *vm = ctx;
    if (vm->network)
        vm_network_send(vm->network, frame, len);
}

static void nat_to_guest(void *ctx, const uint8_t *frame, size_t len)
{
    struct vm *vm = ctx;
    virtio_net_receive(vm->net, frame, len);
}

static sm_code add_net(struct vm *vm, sm_error *err)
{
    static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 }; /* every VM's: each has its own NAT */
    const struct net_backend backend = { .send = net_to_nat, .ctx = vm };
    vm->net = virtio_net_create(mac, &backend);
    if (!vm->net)
        return error_set(err, SM_E_NOMEM, "out of memory for the network device");
    sm_code rc = add_virtio_device(vm, vm->net, err);
    if (rc || !vm->cfg.net.enabled)
        return rc;
    const struct vm_network_config nc = { .policy = &vm->cfg.net, .ports = &vm->cfg.ports, .deliver = nat_to_guest,
                                          .deliver_ctx = vm, .log_fd = STDERR_FILENO,
                                          .confine = vm->cfg.confine };
    return vm_network_open(&nc, &vm->network, err);
}

/* What every VM has, booted or restored: KVM, memory, devices. */
static sm_code build_machine(struct vm *vm, int memory_fd, sm_error *err)
{
    sm_code rc;
    if ((rc = init_host_side(vm, err)) || (rc = create_kvm_vm(vm, err)) || (rc = create_memory(vm, memory_fd, err)) ||
        (rc = add_legacy_devices(vm, err)) || (rc = add_virtio_device(vm, virtio_rng_create(), err)) ||
        (rc = add_vsock(vm, err)) || (rc = add_net(vm, err)) || (rc = add_disk(vm, err)) ||
        (rc = add_volumes(vm, err)))
        return rc;
    return SM_OK;
}

struct vm *vm_create(const struct vm_config *cfg, sm_error *err)
{
    struct vm *vm = vm_alloc(cfg, err);
    if (!vm)
        return NULL;
    if (build_machine(vm, -1, err) || load_guest(vm, err) || create_vcpus(vm, err)) {
        vm_destroy(vm);
        return NULL;
    }
    return vm;
}

struct vm *vm_create_restored(const struct vm_config *cfg, int memory_fd, sm_error *err)
{
    struct vm *vm = vm_alloc(cfg, err);
    if (!vm)
        return NULL;
    sm_code rc = build_machine(vm, memory_fd, err);
    for (int i = 0; i < vm->ncpus && !rc; i++)
        rc = vcpu_create(&vm->vcpus[i], vm, i, err);
    if (rc) {
        vm_destroy(vm);
        return NULL;
    }
    return vm;
}

sm_code vm_start(struct vm *vm, sm_error *err)
{
    for (int i = 0; i < vm->ncpus; i++) {
        sm_code rc = vcpu_start(&vm->vcpus[i], err);
        if (rc) {
            vm_request_stop(vm, VM_STOP_ERROR);
            return rc;
        }
    }
    return SM_OK;
}

enum vm_wait_result vm_run_until(struct vm *vm, bool want_ready, int64_t deadline_ns)
{
    for (;;) {
        if (atomic_load(&vm->stopping))
            return VM_WAIT_STOPPED;
        if (want_ready && atomic_load(&vm->ready_ns))
            return VM_WAIT_READY;
        int timeout_ms = -1;
        if (deadline_ns) {
            int64_t left = deadline_ns - clock_now_ns();
            if (left <= 0)
                return VM_WAIT_TIMEOUT;
            timeout_ms = (int)((left + 999999) / 1000000);
        }
        if (evl_run_once(&vm->loop, timeout_ms) < 0)
            return VM_WAIT_ERROR;
    }
}

void vm_stop(struct vm *vm)
{
    int none = VM_STOP_NONE;
    atomic_compare_exchange_strong(&vm->stop_reason, &none, VM_STOP_HOST);
    atomic_store(&vm->stopping, true);
    /* Parked vCPUs wait on the condition, not in KVM_RUN: wake them too. */
    pthread_mutex_lock(&vm->pause_lock);
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_join(&vm->vcpus[i]);
}

static void destroy_virtio(struct vm_virtio_slot *slot)
{
    for (int q = 0; q < 16; q++)
        if (slot->notify_fds[q] >= 0)
            close(slot->notify_fds[q]);
    if (slot->transport)
        virtio_mmio_destroy(slot->transport);
    if (slot->irq.fd >= 0)
        close(slot->irq.fd);
}

void vm_destroy(struct vm *vm)
{
    if (!vm)
        return;
    vm_stop(vm);
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_destroy(&vm->vcpus[i]);
    vm_network_close(vm->network); /* its thread delivers to the device: first */
    free(vm->disk_real);
    for (int i = 0; i < vm->nvirtio; i++)
        destroy_virtio(&vm->virtio[i]);
    for (uint32_t i = 0; i < vm->nvolumes; i++)
        destroy_virtio(&vm->volumes[i]);
    if (vm->serial)
        serial_destroy(vm->serial);
    if (vm->i8042)
        i8042_destroy(vm->i8042);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    gm_destroy(&vm->mem);
    if (vm->wake_fd >= 0)
        close(vm->wake_fd);
    if (vm->signal_fd >= 0)
        close(vm->signal_fd);
    evl_destroy(&vm->loop);
    pthread_mutex_destroy(&vm->error_lock);
    pthread_mutex_destroy(&vm->pause_lock);
    pthread_cond_destroy(&vm->pause_cond);
    free(vm->cpuid);
    free(vm);
}

enum vm_stop_reason vm_get_stop_reason(struct vm *vm, char *detail, size_t detail_len)
{
    enum vm_stop_reason why = (enum vm_stop_reason)atomic_load(&vm->stop_reason);
    if (why == VM_STOP_GUEST_RESET && vm->serial && serial_saw_panic(vm->serial))
        why = VM_STOP_PANIC;
    if (detail && detail_len) {
        pthread_mutex_lock(&vm->error_lock);
        snprintf(detail, detail_len, "%s", vm->error);
        pthread_mutex_unlock(&vm->error_lock);
    }
    return why;
}

size_t vm_console_tail(struct vm *vm, char *buf, size_t len, int max_lines)
{
    if (!vm->serial) {
        if (len)
            buf[0] = 0;
        return 0;
    }
    return serial_tail(vm->serial, buf, len, max_lines);
}

int64_t vm_ready_us(struct vm *vm)
{
    int64_t ready = atomic_load(&vm->ready_ns);
    return ready ? (ready - vm->created_ns) / 1000 : -1;
}
