/*
 * The contract of the supermachine-vmm process, for both of its sides: the
 * library (src/lib), which starts one VMM per VM and talks to it, and the
 * VMM (src/vmm). Nothing else crosses that process boundary.
 *
 *   what              direction     form
 *   arguments         lib -> VMM    argv, struct vmm_args (vmm_args_format/parse),
 *                                   the network's as net_policy.h writes them
 *   ready line        VMM -> lib    "ready <us> <memory MiB> <vCPUs>\n" on --ready-fd, once
 *                                   (the VM's own size: a restored one has its snapshot's)
 *   lifeline          lib -> VMM    a pipe on --lifeline-fd that the library never writes:
 *                                   its end (EOF) stops the VM, as SIGTERM does
 *   exit status       VMM -> lib    enum vmm_exit_status
 *   control socket    lib <-> VMM   one line in, one line out (table below)
 *   snapshot folder   VMM -> lib    the files VMM_SNAPSHOT_*
 *
 * Control socket (--control-socket PATH; one client at a time):
 *
 *   request             reply                     effect
 *   "snapshot DIR\n"    "ok\n" | "error MSG\n"    pause, write a snapshot to DIR, resume (a
 *                                                 paused VM stays paused)
 *   "pause\n"           "ok\n" | "error MSG\n"    park every vCPU outside KVM_RUN and hold the
 *                                                 NAT's deliveries, until "resume"; an error
 *                                                 when it is paused already
 *   "resume\n"          "ok\n" | "error MSG\n"    let a paused VM run on; an error when it
 *                                                 is not paused
 *   "stop\n"            "ok\n"                    stop the VM (the process then exits 0)
 *   "stats\n"           "ok KEY=VALUE ...\n"      VM exits by kind, ready time
 *   "publish SPEC\n"    "ok\n" | "error MSG\n"    publish a guest port as -p SPEC
 *                                                 ("[HOSTIP:]HOSTPORT:GUESTPORT")
 *   "test-forbidden-syscall\n"  (none)            tests only: the VMM makes a call
 *                                                 its seccomp filter forbids, and dies
 *
 * A line is at most VMM_CONTROL_MAX_LINE bytes; a longer or unknown request
 * gets an error reply and the connection is closed.
 */
#ifndef SM_PROTOCOL_VMM_H
#define SM_PROTOCOL_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/guest_abi.h"
#include "protocol/net_policy.h"
#include "supermachine.h"

/* ---- limits ------------------------------------------------------------ */

#define VMM_MAX_CPUS 32
#define VMM_MIN_MEM_MIB 64
#define VMM_MAX_MEM_MIB (64u * 1024)

/* ---- exit statuses (also those of `supermachine boot`) ----------------- */

enum vmm_exit_status {
    VMM_EXIT_OK = 0,      /* ready, then a clean end (guest power off or a stop signal) */
    VMM_EXIT_ERROR = 1,   /* host or setup error, or the VM failed */
    VMM_EXIT_USAGE = 2,   /* bad arguments */
    VMM_EXIT_PANIC = 3,   /* the guest kernel panicked */
    VMM_EXIT_TIMEOUT = 4, /* the agent was not ready in time */
};

/* ---- snapshot folder -----------------------------------------------------
 * A snapshot is a folder; VMs restored from it map `memory` copy-on-write,
 * so a restore's cost does not grow with the guest's memory, and VMs of one
 * snapshot share its pages. It must not change while such VMs run.
 * src/vmm/persist.c writes and reads it (src/snapshot/format.h has the state
 * file's container). */

#define VMM_SNAPSHOT_STATE "state"   /* all of KVM's and the devices' state */
#define VMM_SNAPSHOT_MEMORY "memory" /* guest RAM, raw, sparse where zero */
#define VMM_SNAPSHOT_DISK "disk"     /* symlink to the VM's disk image, when it had one */

/* ---- arguments ------------------------------------------------------------ */

/* A writable disk (--volume FILE) or one mounted read-only (--volume-ro
 * FILE), in slot order (protocol/guest_abi.h): the library then mounts it
 * in the guest. The VMM locks the file (flock: exclusive, or shared for a
 * read-only one) for as long as it runs, so one VM at a time writes it. */
struct vmm_volume {
    const char *path;          /* absolute */
    bool read_only;
};

struct vmm_args {
    const char *kernel;        /* bzImage; NULL with restore_dir */
    const char *initrd;        /* initramfs (cpio) whose /init is the agent */
    const char *cmdline;       /* extra kernel parameters */
    const char *disk;          /* read-only disk image, /dev/vda */
    struct vmm_volume volumes[SM_MAX_VOLUMES];
    uint32_t nvolumes;
    const char *console;       /* file for the guest console; "-" is stdout */
    uint32_t memory_mib;       /* 0: the VMM's default */
    uint32_t cpus;             /* 0: the VMM's default */
    double timeout_s;          /* boot-to-ready limit; 0: the VMM's default */
    /* The process's own (not `supermachine boot`'s): */
    const char *vsock_socket;  /* host-to-guest vsock ("CONNECT <port>\n") */
    const char *exec_socket;   /* connections reach the agent directly */
    const char *control_socket;
    const char *restore_dir;   /* restore this snapshot instead of booting */
    const char *snapshot_when_ready; /* boot, snapshot here once ready, stop */
    int ready_fd;              /* -1: none */
    int lifeline_fd;           /* --lifeline-fd: the read end of a pipe whose write end the
                                  starting process holds; its end (that process gone, or
                                  done with the VM) stops the VM as SIGTERM does; -1: none */
    bool no_seccomp;           /* --seccomp off: run unconfined (debugging, the bench) */
    uint32_t max_memory_mib;   /* --max-memory: a snapshot asking for more is refused; 0: the host's */
    uint32_t max_cpus;         /* --max-cpus: likewise for vCPUs; 0: the host's */
    const char *cell_dir;      /* --cell: the folder of the VMM's sockets, the only host folder its
                                  cell shows it (vmm/cell.h); every socket path must be inside */
    const char *cgroup_dir;    /* --cgroup: a cgroup v2 folder the VMM moves itself into first */
    /* The guest's network: its egress policy (--allow, --deny, --net off)
     * and the guest ports published on the host (--publish). */
    struct net_policy net;
    struct net_ports ports;
    /* `supermachine boot`: print the boot time, let the guest power off. */
    bool probe;
};

void vmm_args_init(struct vmm_args *a);

/* An argv for execve: pointers into `a` and into `numbers`. */
#define VMM_ARGV_MAX (40 + 2 * (int)SM_MAX_VOLUMES + NET_POLICY_ARGV_MAX + 2 * NET_MAX_PORTS)
struct vmm_argv {
    char *argv[VMM_ARGV_MAX];
    char numbers[7][24];
    struct net_policy_argv net;
    char ports[NET_MAX_PORTS][NET_PORT_TEXT_MAX];
};
/* argv[0] is program; false (nothing to run) only if `a` cannot be written. */
bool vmm_args_format(const struct vmm_args *a, const char *program, struct vmm_argv *out);

/* Parses argv[1..]. Returns 0 (go on), 1 (--help asked: print usage), or -1
 * with why filled (a usage error). Checks the arguments' combinations, not
 * whether files exist. */
int vmm_args_parse(struct vmm_args *a, int argc, char **argv, char *why, size_t whylen);

/* ---- ready line ------------------------------------------------------------ */

#define VMM_READY_LINE_MAX 64
struct vmm_ready {
    int64_t us;           /* start to ready, microseconds */
    uint32_t memory_mib;  /* the guest's memory and vCPUs, as running */
    uint32_t cpus;
};
/* "ready <us> <memory_mib> <cpus>\n" into buf; returns its length. */
int vmm_ready_line_format(char *buf, size_t size, const struct vmm_ready *r);
/* True for a whole ready line (newline included), with memory and vCPUs in
 * range; fills *r. */
bool vmm_ready_line_parse(const char *buf, size_t len, struct vmm_ready *r);

/* ---- vmm.log ------------------------------------------------------------------ */

/* The VMM's stderr is its VM's vmm.log. When its seccomp filter kills it,
 * its last line there is "supermachine-vmm: " VMM_SECCOMP_KILLED "N (thread
 * ROLE)", N the forbidden system call's number. */
#define VMM_SECCOMP_KILLED "killed by its seccomp filter: syscall "

/* ---- control socket -------------------------------------------------------- */

#define VMM_CONTROL_MAX_LINE 4096

enum vmm_control_verb {
    VMM_CONTROL_SNAPSHOT, VMM_CONTROL_STOP, VMM_CONTROL_STATS, VMM_CONTROL_PUBLISH, VMM_CONTROL_TEST_FORBIDDEN,
    VMM_CONTROL_PAUSE, VMM_CONTROL_RESUME,
};

struct vmm_control_request {
    enum vmm_control_verb verb;
    const char *dir;  /* SNAPSHOT only: points into the parsed line */
    const char *port; /* PUBLISH only: a -p spec, checked by the VMM */
};

/* One request line, newline excluded; false with why for anything else. */
bool vmm_control_request_parse(const char *line, struct vmm_control_request *req, const char **why);

/* Sends one request to the VMM at socket_path and waits for its reply. An
 * "error" reply is SM_E_IO with the VMM's message; the text after "ok " goes
 * to reply (may be NULL). */
sm_code vmm_control_call(const char *socket_path, const struct vmm_control_request *req, char *reply,
                         size_t reply_cap, sm_error *err);

/* The same, with a descriptor sent along (SCM_RIGHTS): a snapshot's
 * folder, which a VMM in its cell cannot open by name. */
sm_code vmm_control_call_fd(const char *socket_path, const struct vmm_control_request *req, int pass_fd,
                            char *reply, size_t reply_cap, sm_error *err);

#endif
