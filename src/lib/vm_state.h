/* A VM's state folder: its vm.info file, whether its VMM lives, removal. */
#ifndef SM_LIB_VM_STATE_H
#define SM_LIB_VM_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "supermachine.h"

#define VM_ID_LEN 8          /* hex digits */
#define VM_INFO_FILE "vm.info"
/* The VMM's sockets live in the VM folder's cell/, the one host folder its
 * cell shows it (vmm/cell.h); vm.info and the logs stay out of its reach. */
#define VM_CELL_DIR "cell"
#define VM_CONTROL_SOCKET VM_CELL_DIR "/control.sock" /* the VMM's (protocol/vmm.h) */
#define VM_EXEC_SOCKET VM_CELL_DIR "/exec.sock"
#define VM_VSOCK_SOCKET VM_CELL_DIR "/vsock.sock"
/* Present while the VM is paused (sm_vm_pause, until sm_vm_resume): the
 * library's record, so that ps and exec know without asking the VMM. */
#define VM_PAUSED_FILE "paused"
/* A VM restored from an image with a root filesystem: a symlink to that
 * file (absolute), so that sm_store_prune keeps it while the VM runs. */
#define VM_DISK_LINK "disk"

/* What vm.info records (the format is documented in vm_state.c). */
struct vm_record {
    pid_t pid;                /* 0: unknown (no file yet, or unreadable) */
    uint64_t start_ticks;     /* /proc/PID/stat field 22: tells a reused PID apart */
    uint32_t memory_mib;
    uint32_t cpus;
    int64_t started_unix;
    uint32_t volumes;         /* mounted in the guest */
};

/* True for 1..15 lowercase hex digits: the only names we ever make (and so
 * the only ones we touch). */
bool vm_id_valid(const char *id);

/* $SUPERMACHINE_VMM_SECCOMP=off: VMMs run without their seccomp filters
 * (for debugging a kill by the filter, and for bench/restore's price of
 * confinement). Anything else, or unset: confined. */
bool vm_seccomp_off(void);

/* A VMM's environment, for every VMM the library starts (VMs and bakes):
 * nothing of the embedder's (credentials, proxies and paths are no business
 * of a process a guest faces) but the sanitizer runtimes' options of the
 * tests' builds and SM_ALLOW_PVM. out ends with NULL. */
#define VMM_ENV_MAX 16
void vmm_environment(char *out[VMM_ENV_MAX]);

/* When process pid started, in clock ticks since boot; 0 if it is gone or a
 * zombie (a dead VMM awaiting its reaper counts as gone). */
uint64_t vm_process_start_ticks(pid_t pid);
/* The recorded VMM is alive: the PID exists, is not a zombie, and started
 * when recorded (not a reused PID). */
bool vm_record_alive(const struct vm_record *r);

/* Writes dir/vm.info atomically (temporary file, rename). */
sm_code vm_record_write(const char *dir, const struct vm_record *r, sm_error *err);
/* Reads dir/vm.info; SM_E_NOTFOUND when absent, SM_E_PROTOCOL when garbled. */
sm_code vm_record_read(const char *dir, struct vm_record *r, sm_error *err);

/* Removes the files in dir (no subfolders: we make none) and dir itself.
 * An already missing dir is fine. */
sm_code vm_dir_remove(const char *dir, sm_error *err);

#endif
