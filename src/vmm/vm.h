/*
 * A microVM: guest memory, vCPU threads, devices, and the event loop that
 * serves them. This is the VMM core that `supermachine boot`, the
 * supermachine-vmm process and the host library drive.
 *
 * Lifecycle: vm_create() builds everything for boot (nothing runs yet);
 * vm_start() starts the vCPU threads; vm_run_until() serves devices on the
 * calling thread until the agent is ready, the guest stops, or a deadline;
 * vm_destroy() stops and frees. The caller's thread is the event loop.
 */
#ifndef SM_VMM_VM_H
#define SM_VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "protocol/net_policy.h"
#include "protocol/vmm.h"
#include "supermachine.h"
#include "devices/bus.h"
#include "devices/irq.h"
#include "devices/signal_port.h"
#include "machine/event_loop.h"
#include "machine/guest_memory.h"

#define VM_MAX_VIRTIO 8
#define VM_VIRTIO_MMIO_BASE 0xd0000000ull
#define VM_VIRTIO_MMIO_STRIDE 0x1000ull
#define VM_VIRTIO_FIRST_IRQ 5
/* Volumes have slots of their own (protocol/guest_abi.h), past ours, named
 * on every command line after ours. */
_Static_assert(SM_VOLUME_MMIO_BASE >= VM_VIRTIO_MMIO_BASE + VM_VIRTIO_MMIO_STRIDE * VM_MAX_VIRTIO,
               "volume slots overlap the VMM's virtio slots");
_Static_assert(SM_VOLUME_FIRST_IRQ >= VM_VIRTIO_FIRST_IRQ + VM_MAX_VIRTIO &&
               SM_VOLUME_FIRST_IRQ + SM_MAX_VOLUMES <= 24, "volume IRQs must be free I/O APIC pins");
#define VM_SERIAL_IRQ 4

struct vm_network;

struct vm_config {
    const char *kernel_path;
    const char *initrd_path;    /* may be NULL */
    const char *cmdline_extra;  /* appended to the default command line; may be NULL */
    uint32_t mem_mib;
    uint32_t cpus;
    int console_fd;             /* guest console output; -1 discards (the tail is kept) */
    bool confine;               /* each thread loads its seccomp filter (confine.h) */
    bool in_cell;               /* its root shows no host folder but its cell's (cell.h) */
    uint32_t max_mem_mib, max_cpus; /* what a snapshot may ask for; 0: the host's */
    bool poweroff_when_ready;   /* tell the agent to power off once it is ready */
    uint64_t guest_cid;         /* vsock address of the guest (default 3) */
    const char *vsock_socket;   /* host Unix socket for `CONNECT <port>` dials; may be NULL */
    const char *exec_socket;    /* host Unix socket wired straight to the agent; may be NULL */
    const char *disk_path;      /* read-only virtio-blk image (/dev/vda); may be NULL. A VM
                                   restored from a snapshot needs the same image as its bake */
    struct vmm_volume volumes[SM_MAX_VOLUMES]; /* writable disks in the volume slots; such a VM
                                   is never snapshotted */
    uint32_t nvolumes;
    /* The guest's network. Every VM has the network device (eth0), so that
     * any snapshot restores with or without a network; off, nothing behind
     * it answers and the agent keeps eth0 down. */
    struct net_policy net;
    struct net_ports ports;     /* guest ports published on the host */
};

/* Fills defaults: 256 MiB, 1 vCPU, console discarded. */
void vm_config_init(struct vm_config *cfg);
/* Checks ranges; the message says which option is wrong. */
sm_code vm_config_validate(const struct vm_config *cfg, sm_error *err);

enum vm_stop_reason {
    VM_STOP_NONE = 0,
    VM_STOP_GUEST_RESET,   /* reboot or poweroff requested by the guest: a clean end */
    VM_STOP_PANIC,         /* the guest kernel panicked */
    VM_STOP_ERROR,         /* KVM or the VMM failed; see the error text */
    VM_STOP_HOST,          /* stopped by the host (vm_stop) */
};

enum vm_wait_result {
    VM_WAIT_READY,
    VM_WAIT_STOPPED,
    VM_WAIT_TIMEOUT,
    VM_WAIT_ERROR,
};

/* VM exits by reason: the cost of a workload in exits does not depend on the
 * machine's speed. */
enum vm_exit_kind {
    VM_EXIT_IO, VM_EXIT_MMIO, VM_EXIT_INTR, VM_EXIT_SHUTDOWN, VM_EXIT_OTHER,
    VM_EXIT_KINDS
};

struct vm;

struct vcpu {
    struct vm *vm;
    int index;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    pthread_t thread;
    bool thread_started;
};

struct vm_virtio_slot {
    struct virtio_mmio *transport;   /* owns its device */
    struct irq_line irq;
    int notify_fds[16];
    int nqueues;
    struct vm_notify_ctx {
        struct vm_virtio_slot *slot;
        uint16_t queue;
    } notify_ctx[16];
};

struct vm {
    struct vm_config cfg;
    char *disk_real;            /* cfg.disk_path resolved (malloc'd), for snapshots; or NULL */
    int kvm_fd;
    int vm_fd;
    struct guest_memory mem;
    struct vcpu vcpus[VMM_MAX_CPUS];
    int ncpus;
    uint64_t entry;

    struct bus pio;
    struct bus mmio;
    struct event_loop loop;
    int wake_fd;                 /* eventfd: vCPU threads wake the event loop */
    int signal_fd;               /* signalfd of stop signals, when the VM is a process's (-1 otherwise) */

    struct serial *serial;
    struct irq_line serial_irq;
    struct i8042 *i8042;
    struct signal_port signal;
    struct vm_virtio_slot virtio[VM_MAX_VIRTIO];
    int nvirtio;
    struct vm_virtio_slot volumes[SM_MAX_VOLUMES]; /* not in snapshots: see persist.c */
    uint32_t nvolumes;
    struct virtio_device *vsock;     /* owned by its transport */
    struct virtio_device *net;       /* owned by its transport */
    struct vm_network *network;      /* the NAT behind net; NULL when off */

    int64_t created_ns;          /* CLOCK_MONOTONIC when vm_create began */
    _Atomic int64_t ready_ns;    /* when the agent signalled ready; 0 before */
    _Atomic int stop_reason;     /* enum vm_stop_reason */
    _Atomic bool stopping;
    pthread_mutex_t error_lock;
    char error[256];             /* why, for VM_STOP_ERROR */
    _Atomic uint64_t exits[VM_EXIT_KINDS];

    /* Pausing: vCPU threads park outside KVM_RUN while pause_requested. */
    _Atomic bool pause_requested;
    pthread_mutex_t pause_lock;
    pthread_cond_t pause_cond;
    int parked;                  /* under pause_lock */
    bool pause_failed;           /* a vCPU could not reach a consistent state */

    struct kvm_cpuid2 *cpuid;    /* what KVM supports, before per-vCPU patching: the guest's view */
};

struct vm *vm_create(const struct vm_config *cfg, sm_error *err);
/* A VM with memory mapped copy-on-write from memory_fd and its devices and
 * vCPUs created but in their reset state: persist.c fills them in. */
struct vm *vm_create_restored(const struct vm_config *cfg, int memory_fd, sm_error *err);
sm_code vm_start(struct vm *vm, sm_error *err);
/* Serves the VM on this thread until (want_ready and the agent is ready), the
 * guest stops, or deadline_ns (CLOCK_MONOTONIC; 0 = none) passes. */
enum vm_wait_result vm_run_until(struct vm *vm, bool want_ready, int64_t deadline_ns);
/* Parks every vCPU outside KVM_RUN with its exit completed (for a
 * snapshot); vm_resume lets them go on. */
sm_code vm_pause(struct vm *vm, sm_error *err);
void vm_resume(struct vm *vm);
/* Stops the vCPUs (idempotent) and joins their threads. */
void vm_stop(struct vm *vm);
void vm_destroy(struct vm *vm);

enum vm_stop_reason vm_get_stop_reason(struct vm *vm, char *detail, size_t detail_len);
/* The console's last lines, NUL-terminated. */
size_t vm_console_tail(struct vm *vm, char *buf, size_t len, int max_lines);
/* Microseconds from vm_create to the ready signal; -1 if not ready. */
int64_t vm_ready_us(struct vm *vm);

/* Records that the guest is ready (first call wins) and wakes the loop. */
void vm_mark_ready(struct vm *vm);

/* Internal, shared by vm.c and vcpu.c. */
void vm_fail(struct vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vm_request_stop(struct vm *vm, enum vm_stop_reason why);

#endif
