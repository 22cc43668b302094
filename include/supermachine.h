/*
 * supermachine: run commands inside hardware-isolated Linux microVMs.
 *
 * The one public header of libsupermachine. Handles are opaque; options are
 * set through setters; every call that can fail returns an sm_code and fills
 * an optional sm_error with a message a person can act on.
 *
 * Names: public functions are sm_<object>_<verb>; types are sm_<object>.
 */
#ifndef SUPERMACHINE_H
#define SUPERMACHINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the library's API: libsupermachine.so exports these functions and
 * nothing else (it is built with -fvisibility=hidden). */
#if defined(__GNUC__)
#define SM_API __attribute__((visibility("default")))
#else
#define SM_API
#endif

#define SM_VERSION_MAJOR 0
#define SM_VERSION_MINOR 1
#define SM_VERSION_PATCH 0

/* ===== Errors ========================================================== */

typedef enum sm_code {
    SM_OK = 0,
    SM_E_INVALID     = -1,  /* a bad argument or option: fix the call */
    SM_E_NOMEM       = -2,  /* out of memory */
    SM_E_IO          = -3,  /* a host system call failed (errno in message) */
    SM_E_NOTFOUND    = -4,  /* a file, VM, socket or image does not exist */
    SM_E_UNSUPPORTED = -5,  /* this host cannot do it (e.g. no usable KVM) */
    SM_E_KVM         = -6,  /* KVM refused an operation */
    SM_E_GUEST       = -7,  /* the guest misbehaved (panic, bad device use) */
    SM_E_TIMEOUT     = -8,  /* a deadline passed */
    SM_E_PROTOCOL    = -9,  /* a peer sent a malformed or unexpected frame */
    SM_E_SETUP       = -10, /* the connection failed before the command ran */
    SM_E_DROPPED     = -11, /* the connection dropped after the command ran */
    SM_E_CANCELLED   = -12, /* the caller cancelled */
    SM_E_LIMIT       = -13, /* a size or count limit was exceeded */
    SM_E_BUSY        = -14, /* in use by another VM (a volume) or process */
} sm_code;

/* Filled by failing calls when non-NULL. `message` always ends in a NUL. */
typedef struct sm_error {
    sm_code code;
    char message[512];
} sm_error;

/* A short, static name of the code, e.g. "invalid argument". */
SM_API const char *sm_strerror(sm_code code);

/* ===== Host ============================================================ */
/* (section owned by: host detection / doctor)
 *
 * Can this host run a standard Linux guest through /dev/kvm? Hardware KVM
 * (VT-x/AMD-V) can; PVM (a paravirtual KVM for hosts without nested
 * virtualization) answers the same API but runs only guests patched for it. */

typedef enum sm_host_kind {
    SM_HOST_KVM_HARDWARE = 0, /* /dev/kvm on VT-x/AMD-V: guests run here */
    SM_HOST_KVM_PVM,          /* /dev/kvm is PVM: standard guests cannot run */
    SM_HOST_NO_KVM,           /* no /dev/kvm (module not loaded, or no VT-x/AMD-V) */
    SM_HOST_KVM_NO_ACCESS,    /* /dev/kvm exists but this user may not open it */
    SM_HOST_KVM_UNUSABLE,     /* it opens, but the API version or a capability is wrong */
} sm_host_kind;

/* What sm_host_check found. Strings always end in a NUL. */
typedef struct sm_host_report {
    sm_host_kind kind;
    bool kvm_present;        /* /dev/kvm exists */
    int kvm_open_errno;      /* 0 when /dev/kvm opened read-write */
    int api_version;         /* KVM_GET_API_VERSION, or -1 when not asked */
    char missing_caps[192];  /* KVM capabilities we need and lack, space-separated */
    bool cpu_vmx;            /* /proc/cpuinfo flags: Intel VT-x */
    bool cpu_svm;            /*                      AMD-V */
    bool cpu_hypervisor;     /*                      running under a hypervisor */
    char kvm_module[32];     /* "kvm_intel", "kvm_amd", "kvm_pvm" or "" */
    char summary[256];       /* one line: what this host is */
    char advice[512];        /* what to do when guests cannot run; "" when they can */
    char confinement[192];   /* how a VMM is confined here: seccomp filters, or why not */
    char limits[256];        /* where VMMs' resource limits go (a cgroup v2 folder), or why nowhere */
} sm_host_report;

/* Examines /dev/kvm, /proc/cpuinfo and /sys/module and fills *out. Returns
 * SM_OK when guests can run here (kind SM_HOST_KVM_HARDWARE); otherwise
 * SM_E_UNSUPPORTED with err->message saying what to do (out is filled either
 * way). SM_E_INVALID when out is NULL. Never exits; opens nothing it keeps. */
SM_API sm_code sm_host_check(sm_host_report *out, sm_error *err);

/* A short, static name of the kind, e.g. "hardware KVM". */
SM_API const char *sm_host_kind_name(sm_host_kind kind);

/* ===== Exec ============================================================ */
/* (section owned by: exec API, the spec's ExecBuilder)
 *
 * Run a command through a guest agent's exec socket (a Unix socket path; the
 * VM's own exec socket, or an agent run with --listen unix:PATH). Build a
 * request with sm_exec_builder_*, then either sm_exec_output (run, collect,
 * return) or sm_exec_spawn (stream stdin/stdout/stderr yourself).
 *
 *   sm_exec_builder *b = sm_exec_builder_new("/run/vm1/exec.sock");
 *   const char *argv[] = { "sh", "-c", "echo hi && exit 7" };
 *   sm_exec_builder_argv(b, 3, argv);
 *   sm_exec_builder_env(b, "FOO", "bar");
 *   sm_exec_outcome out;
 *   if (sm_exec_output(b, &out, &err) == SM_OK)   // out.status.code == 7
 *       sm_exec_outcome_free(&out);               // out.stdout_buf == "hi\n"
 *   sm_exec_builder_free(b);
 *
 * Errors: SM_E_SETUP means nothing of the command arrived (the socket was
 * absent or refused, or the agent closed before any output or exit): safe to
 * retry. SM_E_DROPPED means the connection broke after output arrived: the
 * command ran, at least partly. SM_E_GUEST: the agent refused the request
 * (staging a file failed, no pty...). SM_E_PROTOCOL: a peer sent nonsense.
 * SM_E_LIMIT: more output than the cap. SM_E_TIMEOUT: the agent stopped
 * answering (below).
 *
 * Limits. Whatever the guest's agent sends is untrusted, so what it can cost
 * the embedder is bounded:
 *
 * Output cap: sm_exec_output keeps at most SM_EXEC_MAX_OUTPUT_DEFAULT bytes
 * (64 MiB) of stdout and stderr together; sm_exec_builder_max_output sets
 * it. One cap for both streams, because what it bounds is the memory the
 * answer takes (a cap per stream would allow twice it; with a tty there is
 * one stream anyway); 64 MiB is far beyond what a command's collected
 * output normally is, and small for any host. A command that prints more is
 * killed (SIGKILL to its process group through the agent, then the
 * connection is dropped) and output fails with SM_E_LIMIT: *out then holds
 * the first cap bytes in the order they came, never a complete result, and
 * a status of code -1 (as after any failure: only SM_OK reports a status).
 * Streaming (sm_exec_spawn, which the CLI's exec and run use) has no cap:
 * the caller reads at its own pace.
 *
 * Agent timeout: how long a call waits for the agent where the agent must
 * act at once, SM_EXEC_AGENT_TIMEOUT_MS (30 s) unless
 * sm_exec_builder_agent_timeout_ms says otherwise; past it the call fails
 * with SM_E_TIMEOUT and a message that the agent stopped answering. 30 s:
 * the agent itself drops a peer that has not sent its request after 30 s,
 * a guest on an emulated KVM host (10-50x slower) answers well within it,
 * and a person notices it. Per call, "stopped answering" is:
 *   output, spawn   the agent took none of the request's bytes (staged
 *                   files included) for the timeout, or did not send its
 *                   HELLO (it does as it accepts) within it of the request. With a command
 *                   timeout (sm_exec_builder_timeout_ms), also: no exit
 *                   report within the agent timeout past the command's (the
 *                   agent kills the command at its timeout, then reports;
 *                   sm_exec_child_wait and the reads fail then). Without
 *                   one, nothing more: a command may run silently for as
 *                   long as it likes, and a guest that stops while it runs
 *                   looks just the same, so bound such a command with a
 *                   timeout, or give up through sm_exec_output_with_cancel
 *                   or sm_exec_child_abort. stdin goes at the command's
 *                   pace: sm_exec_child_stdin_write (and the close of stdin
 *                   by wait, queued behind it) waits as long as the command
 *                   leaves its stdin unread.
 *   write_file      the agent took none of the file's bytes for the timeout
 *                   (it stores them as they come), or did not answer within
 *                   it of the last byte.
 *   read_file       the agent did not take the request, or sent nothing for
 *                   the timeout (it streams the file without pauses).
 *   poweroff, sync  the agent did not take the request, or did not answer
 *                   within the timeout.
 * These four take no builder: they wait SM_EXEC_AGENT_TIMEOUT_MS. */
#define SM_EXEC_MAX_OUTPUT_DEFAULT ((size_t)64 << 20)
#define SM_EXEC_AGENT_TIMEOUT_MS 30000u

typedef struct sm_exec_builder sm_exec_builder;
typedef struct sm_exec_child sm_exec_child;
typedef struct sm_exec_signaller sm_exec_signaller;
typedef struct sm_cancel sm_cancel;

/* How a command ended. */
typedef struct sm_exec_status {
    int code;              /* exit code 0..255, or -1 if killed by a signal */
    int signal;            /* the signal that killed it, or 0 */
    bool timed_out;        /* the builder's timeout fired and SIGKILLed it */
    uint64_t duration_us;  /* from the first spawn to the last exit */
    uint64_t peak_rss_kib; /* largest resident set of a command (wait4) */
    unsigned steps_run;    /* how many argvs of the chain were started */
} sm_exec_status;

/* The shell's view of a status: the code, or 128+N for signal N. */
SM_API int sm_exec_status_shell_code(const sm_exec_status *st);

/* What sm_exec_output collects. Buffers are NUL-terminated for convenience
 * (the terminator is not counted in the lengths). */
typedef struct sm_exec_outcome {
    uint8_t *stdout_buf;
    size_t stdout_len;
    uint8_t *stderr_buf;   /* always empty with a tty (merged into stdout) */
    size_t stderr_len;
    sm_exec_status status;
    bool timed_out;        /* == status.timed_out */
    uint64_t duration_us;  /* == status.duration_us */
    uint64_t peak_rss_kib; /* == status.peak_rss_kib */
} sm_exec_outcome;
SM_API void sm_exec_outcome_free(sm_exec_outcome *out);

/* ---- builder: setters copy their arguments. A failing setter also records
 * its error in the builder, which spawn/output then report. */
SM_API sm_exec_builder *sm_exec_builder_new(const char *exec_socket_path); /* NULL: no memory/path */
SM_API sm_exec_builder *sm_exec_builder_copy(const sm_exec_builder *b);
SM_API void sm_exec_builder_free(sm_exec_builder *b);
/* The program and its arguments; argv[0] is looked up through the guest's
 * PATH (the agent's environment merged with env). Replaces earlier argv. */
SM_API sm_code sm_exec_builder_argv(sm_exec_builder *b, int argc, const char *const *argv);
/* Adds or replaces one variable on top of the agent's environment. */
SM_API sm_code sm_exec_builder_env(sm_exec_builder *b, const char *key, const char *value);
SM_API sm_code sm_exec_builder_cwd(sm_exec_builder *b, const char *guest_dir);
/* Runs the command (every command of a chain) as uid:gid with exactly
 * these supplementary groups (ngroups <= 256; groups may be NULL when 0).
 * Default: the agent's own identity (root in a guest, or the image's User).
 * An agent that may not take that identity (not root, and uid:gid or the
 * groups are not its own) runs nothing: the command fails with status 126
 * and stderr naming the call that failed (setgroups, setgid or setuid).
 * This, clear_env, rlimit and hostname need an agent as new as this
 * library: an image baked with an older one refuses the request (SM_E_PROTOCOL, "unknown flags"), so
 * re-bake it. */
SM_API sm_code sm_exec_builder_user(sm_exec_builder *b, uint32_t uid, uint32_t gid, size_t ngroups,
                                    const uint32_t *groups);
/* A resource limit for the command (and every step of a chain), as
 * setrlimit(2): resource is an RLIMIT_* (0..15), soft <= hard
 * (RLIM_INFINITY = UINT64_MAX). Up to 16; a resource given twice keeps the
 * last. SM_E_INVALID otherwise. The agent sets them before it takes the
 * user (so a root agent may raise hard limits for an unprivileged user); a
 * limit it may not set (not root, raising a hard limit) runs nothing: the
 * command fails with status 126 and stderr naming setrlimit and the
 * resource. */
SM_API sm_code sm_exec_builder_rlimit(sm_exec_builder *b, int resource, uint64_t soft,
                                      uint64_t hard);
/* Sets the guest's hostname (the whole VM's: a VM has one UTS namespace)
 * before the command starts, with its /etc/hostname and /etc/hosts when
 * the VM runs an image; 1..64 bytes of [A-Za-z0-9.-]. SM_E_INVALID
 * otherwise. Only a guest's agent (PID 1 of the VM) sets it: an agent on
 * the host or in a PID namespace refuses the request (SM_E_INVALID,
 * "hostname: only the guest's init sets it"), and a failing sethostname
 * fails it (SM_E_GUEST); either way nothing runs. */
SM_API sm_code sm_exec_builder_hostname(sm_exec_builder *b, const char *name);
/* true: the command's environment is exactly what sm_exec_builder_env set,
 * nothing inherited from the agent (argv[0] is then looked up through that
 * PATH, or a default PATH without one). Default false. */
SM_API sm_code sm_exec_builder_clear_env(sm_exec_builder *b, bool on);
/* A pseudo-terminal: stdin/stdout through it, stderr merged into stdout. */
SM_API sm_code sm_exec_builder_tty(sm_exec_builder *b, bool on);
SM_API sm_code sm_exec_builder_winsize(sm_exec_builder *b, uint16_t cols, uint16_t rows);
/* Wall-clock limit for the command (a whole chain), from its start: its
 * process group is SIGKILLed and the status says timed_out. 0 = none.
 * Honoured by output and by spawn alike. */
SM_API sm_code sm_exec_builder_timeout_ms(sm_exec_builder *b, uint32_t ms);
/* The output cap of sm_exec_output: at most `bytes` of stdout and stderr
 * together (SM_EXEC_MAX_OUTPUT_DEFAULT unless set; 0 allows no output at
 * all, SIZE_MAX is no cap). More fails with SM_E_LIMIT (see Limits). */
SM_API sm_code sm_exec_builder_max_output(sm_exec_builder *b, size_t bytes);
/* The agent timeout of output and spawn (see Limits); 0 is the default,
 * SM_EXEC_AGENT_TIMEOUT_MS. Raise it for a guest on a very slow host. */
SM_API sm_code sm_exec_builder_agent_timeout_ms(sm_exec_builder *b, uint32_t ms);
/* Writes bytes at an absolute guest path (atomically, parents created)
 * before the command runs; mode 0644 unless given. */
SM_API sm_code sm_exec_builder_stage_file(sm_exec_builder *b, const char *guest_path, const void *bytes,
                                   size_t len);
SM_API sm_code sm_exec_builder_stage_file_mode(sm_exec_builder *b, const char *guest_path,
                                        const void *bytes, size_t len, uint32_t mode);
/* Runs argv after the previous command exited 0 (&&); stops at the first
 * non-zero exit, whose status is reported. */
SM_API sm_code sm_exec_builder_chain(sm_exec_builder *b, int argc, const char *const *argv);

/* ---- run to completion */
/* Runs the command and collects its output (up to the cap) and status. On
 * any failure *out still holds what arrived (free it), with a status of
 * code -1 that never reads as success. */
SM_API sm_code sm_exec_output(const sm_exec_builder *b, sm_exec_outcome *out, sm_error *err);
/* Retries only SM_E_SETUP failures (nothing of the command arrived), up to
 * `retries` more times with a linear backoff of 50 ms per attempt; a run that
 * started is never re-run. At-least-once: use for idempotent commands. */
SM_API sm_code sm_exec_output_resilient(const sm_exec_builder *b, unsigned retries,
                                 sm_exec_outcome *out, sm_error *err);
/* Like sm_exec_output, but when `cancel` fires (from any thread) the command
 * is SIGKILLed through the agent and the connection is dropped; returns
 * SM_E_CANCELLED with what was collected so far in *out (free it). */
SM_API sm_code sm_exec_output_with_cancel(const sm_exec_builder *b, sm_cancel *cancel,
                                   sm_exec_outcome *out, sm_error *err);

SM_API sm_cancel *sm_cancel_new(void);
SM_API void sm_cancel_fire(sm_cancel *c); /* thread-safe and async-signal-safe */
SM_API bool sm_cancel_fired(const sm_cancel *c);
SM_API void sm_cancel_free(sm_cancel *c);

/* ---- streaming */
SM_API sm_code sm_exec_spawn(const sm_exec_builder *b, sm_exec_child **child, sm_error *err);
/* Blocks until all of len is sent (large input waits for the command). */
SM_API sm_code sm_exec_child_stdin_write(sm_exec_child *c, const void *buf, size_t len, sm_error *err);
SM_API sm_code sm_exec_child_stdin_close(sm_exec_child *c, sm_error *err);
/* Blocking reads. *got == 0 with SM_OK is the clean end of the stream: the
 * agent's exit report arrived. If the connection broke first, the reads give
 * every byte that did arrive and then fail with wait's error (SM_E_DROPPED
 * after output, SM_E_SETUP before any), never a clean end. */
SM_API sm_code sm_exec_child_stdout_read(sm_exec_child *c, void *buf, size_t cap, size_t *got,
                                  sm_error *err);
SM_API sm_code sm_exec_child_stderr_read(sm_exec_child *c, void *buf, size_t cap, size_t *got,
                                  sm_error *err);
/* Descriptors that poll readable when the read functions have data or EOF.
 * Owned by the child; do not close them. Reading them directly, EOF does not
 * say how the stream ended: sm_exec_child_wait does. */
SM_API int sm_exec_child_stdout_fd(const sm_exec_child *c);
SM_API int sm_exec_child_stderr_fd(const sm_exec_child *c);
/* Sends signo to the command's whole process group. */
SM_API sm_code sm_exec_child_signal(sm_exec_child *c, int signo, sm_error *err);
/* A handle that can signal from any thread, and stays valid (failing with
 * SM_E_INVALID once the command is gone) after the child is freed. Frames
 * to the agent are sent in order: a signal waits behind a stdin write that
 * is itself waiting for a command that does not read its stdin. */
SM_API sm_exec_signaller *sm_exec_child_signaller(sm_exec_child *c);
SM_API sm_code sm_exec_signaller_signal(sm_exec_signaller *s, int signo, sm_error *err);
SM_API void sm_exec_signaller_free(sm_exec_signaller *s);
SM_API sm_code sm_exec_child_resize(sm_exec_child *c, uint16_t cols, uint16_t rows, sm_error *err);
/* Drops the connection: the agent SIGHUPs then SIGKILLs the group. */
SM_API void sm_exec_child_abort(sm_exec_child *c);
/* Closes stdin if still open, then waits for the exit report. As with
 * pipes, read stdout and stderr meanwhile if the command may write more than
 * their capacity (1 MiB each), or it blocks. SM_OK means the exit report
 * arrived; the status may still say it was killed or timed out. Only the
 * exit report ends a command cleanly: any other end is an error, and then
 * *status has code -1 and signal 0, never a status that reads as success.
 * SM_E_TIMEOUT: the agent stopped answering (see Limits). */
SM_API sm_code sm_exec_child_wait(sm_exec_child *c, sm_exec_status *status, sm_error *err);
/* Aborts the command if it has not been waited for. */
SM_API void sm_exec_child_free(sm_exec_child *c);

/* ---- files and power, through the same exec socket */
/* Files and power wait for the agent as "Limits" says (SM_E_TIMEOUT: it
 * stopped answering). */
/* Writes len bytes at an absolute guest path atomically, streamed. */
SM_API sm_code sm_exec_write_file(const char *exec_socket_path, const char *guest_path,
                           const void *bytes, size_t len, uint32_t mode, sm_error *err);
/* Reads a guest file into a malloc'd buffer (*bytes, *len); SM_E_NOTFOUND if
 * it does not exist, SM_E_LIMIT if it is larger than max_len. */
SM_API sm_code sm_exec_read_file(const char *exec_socket_path, const char *guest_path, size_t max_len,
                          uint8_t **bytes, size_t *len, sm_error *err);
/* Asks the agent (PID 1 only) to power the guest off. */
SM_API sm_code sm_exec_poweroff(const char *exec_socket_path, sm_error *err);
/* Gives a guest's agent (PID 1) the host's wall clock and fresh entropy; the
 * VMM does it after every snapshot restore, before reporting ready, so VMs
 * restored from one snapshot never share random state or a stale clock. */
SM_API sm_code sm_exec_sync(const char *exec_socket_path, sm_error *err);

/* ===== VMs ============================================================= */
/* (section owned by: VM lifecycle)
 *
 * A VM is a supermachine-vmm process: one per VM, so that a VMM fault never
 * takes the embedding program down. sm_vm_start spawns it, waits for its
 * agent to be ready and returns a handle; commands run through the VM's exec
 * socket (sm_vm_exec_builder); sm_vm_stop ends it, reaps it and removes its
 * state folder.
 *
 *   sm_vm_config *cfg = sm_vm_config_new();
 *   sm_vm_config_memory_mib(cfg, 512);
 *   sm_vm *vm;
 *   if (sm_vm_start(cfg, &vm, &err) == SM_OK) {
 *       sm_exec_builder *b = sm_vm_exec_builder(vm);   // then as in "Exec"
 *       ...
 *       sm_vm_stop(vm, &err);
 *       sm_vm_free(vm);
 *   }
 *   sm_vm_config_free(cfg);
 *
 * State: each VM has a folder RUNTIME/supermachine/vms/ID/ (mode 0700), where
 * RUNTIME is $XDG_RUNTIME_DIR, or /tmp/supermachine-UID when that is unset.
 * It holds exec.sock, vsock.sock, control.sock, console.log (the guest
 * console unless sm_vm_config_console_path says otherwise), vmm.log (the
 * VMM's stderr) and vm.info (what `supermachine ps` shows). IDs are 8
 * lowercase hex digits.
 *
 * Assets: without sm_vm_config_kernel/_initrd, the guest kernel (bzImage) and
 * initramfs (initramfs.cpio) are looked for, in order, in: the environment
 * ($SUPERMACHINE_KERNEL and $SUPERMACHINE_INITRD, or the folder
 * $SUPERMACHINE_ASSETS), beside the running executable, in the installed
 * asset folder (`make install`'s PKGLIBDIR) found from the executable's
 * folder (../lib/supermachine by default: the path from BINDIR is compiled
 * in) and then from libsupermachine.so's folder when the program uses the
 * shared library (LIBDIR/supermachine), in
 * ${XDG_DATA_HOME:-~/.local/share}/supermachine, and in the build tree
 * (BUILD/guest when the executable is in BUILD/bin or BUILD/tests). The VMM
 * program: $SUPERMACHINE_VMM, beside the executable, the same two installed
 * asset folders, BUILD/bin, then $PATH. A failure names every place looked. */

/* Stores. A store is where named images live and where running VMs keep
 * their state folders. Every call that names an image or a VM takes one;
 * NULL is the default store: images in ${XDG_DATA_HOME:-~/.local/share}/
 * supermachine/images, VM folders as described above. An embedder may hold
 * several (each user's images, a test's private folders). */
typedef struct sm_store sm_store;

/* A store with these folders (absolute paths; NULL or "" keeps that one's
 * default). Folders are created when first used. */
SM_API sm_code sm_store_new(const char *images_dir, const char *vms_dir, sm_store **out, sm_error *err);
/* NULL is fine. Images and VM configs keep what they need of a store, so it
 * may be freed while they live. */
SM_API void sm_store_free(sm_store *s);
/* Where the store's named images live (created if missing). */
SM_API sm_code sm_store_images_dir(const sm_store *s, char *out, size_t cap, sm_error *err);
/* Where the store's VMs keep their state folders. */
SM_API sm_code sm_store_vms_dir(const sm_store *s, char *out, size_t cap, sm_error *err);

typedef enum sm_asset {
    SM_ASSET_KERNEL, /* the guest kernel, bzImage */
    SM_ASSET_INITRD, /* the initramfs with the agent, initramfs.cpio */
    SM_ASSET_VMM,    /* the VMM program, supermachine-vmm */
} sm_asset;

/* Finds an asset by the search above and writes its path to out (cap bytes).
 * SM_E_NOTFOUND names every place looked. */
SM_API sm_code sm_asset_find(sm_asset which, char *out, size_t cap, sm_error *err);

typedef struct sm_vm_config sm_vm_config;
typedef struct sm_vm sm_vm;

/* Defaults: 256 MiB, 1 vCPU, the assets found as above, console to the
 * state folder, attached (see sm_vm_config_detached). NULL: no memory. */
SM_API sm_vm_config *sm_vm_config_new(void);
SM_API void sm_vm_config_free(sm_vm_config *cfg);
/* 64 to 65536 MiB. */
SM_API sm_code sm_vm_config_memory_mib(sm_vm_config *cfg, uint32_t mib);
/* 1 to 32. */
SM_API sm_code sm_vm_config_cpus(sm_vm_config *cfg, uint32_t cpus);
/* A bzImage, or NULL for the default lookup. Copied. */
SM_API sm_code sm_vm_config_kernel(sm_vm_config *cfg, const char *path);
/* The initramfs whose /init is the agent, or NULL for the default lookup. */
SM_API sm_code sm_vm_config_initrd(sm_vm_config *cfg, const char *path);
/* Where the guest console goes (created or truncated), or NULL for
 * console.log in the state folder. */
SM_API sm_code sm_vm_config_console_path(sm_vm_config *cfg, const char *path);
/* Seconds to wait for the agent to be ready, 1 to 3600 (default 60). */
SM_API sm_code sm_vm_config_boot_timeout_s(sm_vm_config *cfg, uint32_t seconds);
/* Detached: the VM outlives this process (its VMM runs in its own session,
 * with stdio on /dev/null), sm_vm_free leaves it running, and only
 * sm_vm_stop (from any process, through sm_vm_open) ends it. Attached (the
 * default): sm_vm_free stops it, and so does the end of this process (the
 * VMM holds a pipe whose other end only this process has: any thread may
 * start the VM, and it outlives that thread). A child forked without exec
 * holds that end too, and keeps such VMs alive while it lives. */
SM_API sm_code sm_vm_config_detached(sm_vm_config *cfg, bool detached);

/* The guest's network: eth0 (10.0.2.15) behind a NAT of the VM's own. By
 * default the public internet is reachable and the host (10.0.2.2, named
 * host.internal in the guest), link-local (cloud metadata), private and
 * shared ranges are not; DNS goes through the NAT to the host's resolver.
 * A denied connection fails at once (TCP reset, ICMP prohibited). */
SM_API sm_code sm_vm_config_net(sm_vm_config *cfg, bool on);
/* Rules, tried in the order given before the defaults (the first that
 * matches decides): "ADDR[/PREFIX][:PORT]" (IPv6 in brackets when a port
 * follows), or "NAME[:PORT]", resolved here to its IPv4 addresses; e.g.
 * "10.0.2.2:8080" opens one port of the host's loopback. */
SM_API sm_code sm_vm_config_allow(sm_vm_config *cfg, const char *rule, sm_error *err);
SM_API sm_code sm_vm_config_deny(sm_vm_config *cfg, const char *rule, sm_error *err);
/* Publishes a guest port on the host, docker's "[HOSTIP:]HOSTPORT:GUESTPORT"
 * (HOSTIP default 127.0.0.1; "/udp" for UDP). A host port already taken
 * fails the start, naming it. */
SM_API sm_code sm_vm_config_publish(sm_vm_config *cfg, const char *spec, sm_error *err);

/* Boots a VM and waits until its agent is ready (or the boot timeout). On
 * failure nothing is left behind (process, sockets, folder), and the message
 * carries the end of the VMM's own error output. SM_E_NOTFOUND: an asset or
 * the VMM program was not found; SM_E_TIMEOUT: not ready in time; SM_E_GUEST:
 * the guest panicked; SM_E_IO/SM_E_KVM...: see the message. */
SM_API sm_code sm_vm_start(const sm_vm_config *cfg, sm_vm **out, sm_error *err);
/* A handle on a VM that another process started (detached), by its ID.
 * SM_E_NOTFOUND when no such VM folder exists. The VM may be dead: see
 * sm_vm_running. */
SM_API sm_code sm_vm_open(const sm_store *store, const char *id, sm_vm **out, sm_error *err);

SM_API const char *sm_vm_id(const sm_vm *vm);
SM_API const char *sm_vm_exec_socket_path(const sm_vm *vm);
/* The VM's state folder (see above). */
SM_API const char *sm_vm_state_dir(const sm_vm *vm);
/* Whether the VM's VMM process is still alive (a crashed or powered-off VM
 * is not). */
SM_API bool sm_vm_running(sm_vm *vm);

/* A builder for a command in this VM: as sm_exec_builder_new with the VM's
 * exec socket. NULL: no memory. Free it with sm_exec_builder_free. */
SM_API sm_exec_builder *sm_vm_exec_builder(const sm_vm *vm);
/* Writes len bytes at an absolute guest path: written to a temporary file
 * beside it and renamed, so readers see the old file or the whole new one;
 * missing parent folders are created. Binary-safe; up to SM_VM_FILE_MAX. */
SM_API sm_code sm_vm_write_file(const sm_vm *vm, const char *guest_path, const void *bytes, size_t len,
                         uint32_t mode, sm_error *err);
/* Reads a guest file into a malloc'd buffer (NUL-terminated, not counted in
 * *len). SM_E_NOTFOUND: it does not exist; SM_E_LIMIT: it is larger than
 * max_len (0 means SM_VM_FILE_MAX). The agent streams it; this side holds
 * it whole. */
SM_API sm_code sm_vm_read_file(const sm_vm *vm, const char *guest_path, size_t max_len, uint8_t **bytes,
                        size_t *len, sm_error *err);
#define SM_VM_FILE_MAX ((size_t)1 << 30) /* 1 GiB: the largest file sm_vm_*_file moves */

/* Connects to TCP port guest_port on the guest's loopback (127.0.0.1 in
 * the guest) and gives back a connected stream socket in *fd, the caller's
 * to close: bytes written to it reach the guest's service, its replies are
 * read from it, and shutdown(SHUT_WR) is passed on as a half-close. It goes
 * through the guest's agent, not the guest's network: it works with the
 * network off, and the egress policy does not apply. Nothing listening
 * there is SM_E_GUEST with the guest's reason; a guest that does not answer
 * within 15 s is SM_E_TIMEOUT. The guest relays up to 128 such streams at
 * once. */
SM_API sm_code sm_vm_connect(const sm_vm *vm, uint16_t guest_port, int *fd, sm_error *err);

/* Publishes TCP port guest_port of a running VM on the host at host_addr,
 * "[HOSTIP:]HOSTPORT" (HOSTIP an IPv4 address, default 127.0.0.1: only this
 * host), as `-p HOSTPORT:GUESTPORT` does at start: connections to it reach
 * the guest's eth0 through the VM's network, which must be on. A host port
 * already in use is SM_E_IO; the published port lasts as long as the VM. */
SM_API sm_code sm_vm_expose_tcp(const sm_vm *vm, uint16_t guest_port, const char *host_addr, sm_error *err);

/* Pauses a running VM: its vCPUs stop (outside the guest, as for a
 * snapshot) and its network delivers nothing, until sm_vm_resume; its
 * memory stays as it is. The guest's clock is told it was stopped, so it
 * does not take the gap for a hang. Meanwhile the guest's agent does not
 * answer: an exec, a file or a connect waits for the resume (or for its
 * agent timeout, SM_E_TIMEOUT), so check sm_vm_info's paused first (the
 * CLI's exec refuses a paused VM). sm_vm_snapshot and sm_vm_stop work on a
 * paused VM (a snapshot leaves it paused; a stop of a VM with volumes
 * resumes it first, so that its guest can power off). SM_E_INVALID when it
 * is paused already (resume: when it is not paused), SM_E_NOTFOUND when
 * it is not running. */
SM_API sm_code sm_vm_pause(const sm_vm *vm, sm_error *err);
SM_API sm_code sm_vm_resume(const sm_vm *vm, sm_error *err);

/* Stops the VM: SIGTERM, up to 5 s for a clean end, then SIGKILL; reaps the
 * VMM when it is this process's child; removes the state folder. Works on a
 * dead VM too (it only cleans up). Calling it again is harmless. */
SM_API sm_code sm_vm_stop(sm_vm *vm, sm_error *err);
/* Stops an attached VM this handle started (see sm_vm_config_detached), then
 * frees the handle. NULL is fine. */
SM_API void sm_vm_free(sm_vm *vm);

/* What `supermachine ps` shows of one VM. */
typedef struct sm_vm_info {
    char id[16];
    bool running;        /* its VMM is alive */
    int pid;             /* of its VMM: the process the library started, which signals reach */
    int vmm_pid;         /* the process that runs the VM: in its cell, pid's one child (pid
                            stays behind as its stand-in, passing signals on); else pid.
                            Its memory, CPU time and descriptors are the VM's. 0: not running */
    uint32_t memory_mib;
    uint32_t cpus;
    int64_t started_unix; /* seconds since 1970 when it was started */
    /* Not running: why it ended, when its VMM said so at the end of its
     * log, e.g. "killed by its seccomp filter: syscall 101 (thread main)";
     * otherwise "". */
    char ended[96];
    bool paused;         /* running, and paused by sm_vm_pause until sm_vm_resume */
} sm_vm_info;

SM_API sm_code sm_vm_get_info(sm_vm *vm, sm_vm_info *info, sm_error *err);
/* Every VM of the store, dead ones included, sorted by start time. Free
 * *list with free(). */
SM_API sm_code sm_vm_list(const sm_store *store, sm_vm_info **list, size_t *count, sm_error *err);

/* ===== Images ========================================================== */
/*
 * An image is a baked VM: a folder holding a snapshot taken once the guest's
 * agent was ready (files `state` and `memory`, plus `image.info`). VMs start
 * from it by restoring, in milliseconds instead of a boot, and share its
 * memory pages until they write them. Named images live in a store (NULL:
 * the default one); a VM restored from a store's image keeps its state
 * folder in that store unless its config names another.
 *
 *   sm_image *img;
 *   sm_image_open(NULL, "default", &img, &err);    // or sm_image_from_snapshot(dir, ...)
 *   sm_vm_config_image(cfg, img);                  // then sm_vm_start as usual
 */
typedef struct sm_image sm_image;

typedef struct sm_image_info {
    char name[72];
    uint32_t memory_mib;   /* 0 when unknown */
    uint32_t cpus;
    int64_t created_unix;
    uint64_t disk_bytes;   /* space the image takes (its memory file is sparse) */
    char ref[256];         /* an OCI image's reference ("" for others) */
    char digest[72];       /* an OCI image's manifest digest ("" for others) */
} sm_image_info;

/* An image from any snapshot folder (state + memory). SM_E_NOTFOUND when the
 * folder lacks them. The snapshot itself is checked when a VM restores it. */
SM_API sm_code sm_image_from_snapshot(const char *dir, sm_image **out, sm_error *err);
/* A named image. SM_E_NOTFOUND: none by that name. */
SM_API sm_code sm_image_open(const sm_store *store, const char *name, sm_image **out, sm_error *err);
/* Boots the guest of cfg (NULL: defaults), snapshots it once its agent is
 * ready, and stores it under name (replacing an older one only when the new
 * one is complete). out may be NULL. */
SM_API sm_code sm_image_bake(const sm_store *store, const char *name, const sm_vm_config *cfg, sm_image **out,
                             sm_error *err);
SM_API const char *sm_image_dir(const sm_image *img);
SM_API void sm_image_free(sm_image *img);
/* Snapshots the running VM vm (as sm_vm_snapshot: it pauses for the copy
 * of its memory and goes on) into the named image name, from which VMs
 * start where vm was: its processes, its memory, the files written in it
 * (they live in its memory: the root filesystem is read-only under an
 * overlay). A VM restored from an OCI image keeps that image's root
 * filesystem (the image's `disk` link, and its digest in image.info). An
 * existing image of that name is SM_E_INVALID unless replace (then it is
 * replaced only once the new one is whole). A VM with volumes is
 * SM_E_UNSUPPORTED. memory and vCPUs are the VM's; an OCI image's default
 * command is not carried over (sm_image_default_argv: SM_E_NOTFOUND).
 * out may be NULL. */
SM_API sm_code sm_image_from_vm(const sm_store *store, const char *name, const sm_vm *vm, bool replace,
                                sm_image **out, sm_error *err);
/* Deletes a named image; VMs running from it are not affected. */
SM_API sm_code sm_image_remove(const sm_store *store, const char *name, sm_error *err);
/* Removes what no image uses any more: the root filesystems of OCI images
 * (IMAGES/.oci/rootfs) that no image folder and no VM folder of the store
 * links to (a VM restored from an image keeps its root filesystem while it
 * runs, also after an rmi of the image; a dead VM's until it is stopped),
 * and the blobs (IMAGES/.oci/blobs) that no named image's digest leads to
 * (its manifest, config and layers). Nothing else is touched: no image
 * folder, no download in progress, no link, nothing outside those two
 * folders. With dry_run nothing is removed, and each and *report say what
 * would be. each (may be NULL) is called for every file removed, with its
 * path and the bytes it took on disk; report (may be NULL) gets the totals.
 * SM_E_BUSY while an image is being pulled into the store (nothing
 * removed). Removed blobs are fetched again when an image needs them. */
typedef struct sm_prune_report {
    uint64_t rootfs_removed; /* root filesystems removed (dry run: to remove) */
    uint64_t blobs_removed;  /* blobs removed */
    uint64_t bytes_freed;    /* the disk space they took */
} sm_prune_report;
typedef void (*sm_prune_fn)(void *ctx, const char *path, uint64_t bytes);
SM_API sm_code sm_store_prune(const sm_store *store, bool dry_run, sm_prune_fn each, void *ctx,
                              sm_prune_report *report, sm_error *err);
/* Every named image. Free *list with free(). */
SM_API sm_code sm_image_list(const sm_store *store, sm_image_info **list, size_t *count, sm_error *err);

/* ---- Images from OCI/Docker images ----
 * Any linux/amd64 image from a registry (docker.io/library/debian:bookworm,
 * 127.0.0.1:5000/app:1, name@sha256:...), an OCI layout folder (oci:PATH[:TAG])
 * or a `docker save` tar (docker-archive:PATH): pulled (every blob verified,
 * cached by digest), turned into a read-only root filesystem that every VM of
 * the image shares, booted with the image's Env, WorkingDir and User, and
 * baked. Later calls with the same reference and VM settings open the baked
 * image without asking the registry (unless refresh is set).
 *
 *   sm_image *img;
 *   sm_image_from_oci("debian:bookworm", NULL, NULL, &img, &err);
 *   sm_vm_config_image(cfg, img);                   // then sm_vm_start */
typedef struct sm_pull_options sm_pull_options;
/* Progress: what is happening ("sha256:ab12…", "building the root
 * filesystem", ...) and, for downloads, bytes done of total (total 0: unknown). */
typedef void (*sm_progress_fn)(void *ctx, const char *what, uint64_t done, uint64_t total);
SM_API sm_pull_options *sm_pull_options_new(void); /* NULL: out of memory */
SM_API void sm_pull_options_free(sm_pull_options *o);
/* Talk plain http:// to the registry (a local test registry). Default off. */
SM_API sm_code sm_pull_options_plain_http(sm_pull_options *o, bool on);
/* A CA bundle to trust besides the system's, for a registry's HTTPS. */
SM_API sm_code sm_pull_options_ca_file(sm_pull_options *o, const char *path);
/* Basic-auth credentials (both or neither); without them, those of
 * $DOCKER_CONFIG/config.json or ~/.docker/config.json, else anonymous. */
SM_API sm_code sm_pull_options_credentials(sm_pull_options *o, const char *user, const char *password);
/* Ask the registry what the reference names now, even when it was pulled
 * before (`supermachine pull`). Default off. */
SM_API sm_code sm_pull_options_refresh(sm_pull_options *o, bool on);
SM_API sm_code sm_pull_options_progress(sm_pull_options *o, sm_progress_fn fn, void *ctx);
/* Caps on what one image may cost, so that a hostile or mistaken image
 * cannot fill the disk (SM_E_LIMIT names the cap when one is passed):
 *  - compressed: the sum of the image's layer sizes as its manifest gives
 *    them (a docker-archive: as its tar gives them), checked before any
 *    layer is fetched, and the layer bytes that arrive (a registry that
 *    sends more than a layer's size, or more in all than the cap, is
 *    stopped). Default SM_PULL_DEFAULT_MAX_COMPRESSED, 8 GiB: above all but
 *    the very largest images (those with GPU toolkits run to a few GiB),
 *    and small enough that a runaway pull stops long before most disks
 *    fill.
 *  - unpacked: the sum of the sizes of the files in all the layers, as
 *    their tar headers give them, counted while the layers are flattened
 *    and before each file's data is decompressed (so a decompression bomb
 *    stops at once, naming the layer). Default SM_PULL_DEFAULT_MAX_UNPACKED,
 *    32 GiB: four times the compressed cap, as gzip'd layers commonly
 *    unpack to two or three times their size (a bomb, to a thousand).
 * Free space is checked too: the image store's file system must hold the
 * layers still to be fetched, and twice their compressed total before the
 * root filesystem is built; a full disk is reported as "No space left on
 * device" and leaves no image behind. 0 is SM_E_INVALID. */
#define SM_PULL_DEFAULT_MAX_COMPRESSED (8ull << 30)
#define SM_PULL_DEFAULT_MAX_UNPACKED (32ull << 30)
SM_API sm_code sm_pull_options_max_compressed_bytes(sm_pull_options *o, uint64_t bytes);
SM_API sm_code sm_pull_options_max_unpacked_bytes(sm_pull_options *o, uint64_t bytes);
/* Pulls ref as needed and bakes it with cfg's memory and vCPUs (NULL:
 * defaults). opt may be NULL. */
SM_API sm_code sm_image_from_oci(const sm_store *store, const char *ref, const sm_pull_options *opt,
                                 const sm_vm_config *cfg, sm_image **out, sm_error *err);
/* An image from a root filesystem folder (an OCI bundle's root.path):
 * packed into a read-only squashfs by squashfs-tools-ng's gensquashfs
 * (owners, modes, mtimes and readable xattrs kept; symlinks stored, not
 * followed; mount points below dir not entered), then baked with cfg's
 * memory and vCPUs (NULL: defaults) as sm_image_from_oci bakes. No image
 * settings: env, cwd and user come with each exec. Cached by content:
 * the key is a sha256 over a sorted walk of the tree's metadata (path,
 * type, mode, owner, size, mtime, symlink target, device number), not of
 * file contents, so a second call for the same tree neither packs nor
 * bakes; an edit in place that keeps a file's size and mtime is NOT seen.
 * Errors: SM_E_INVALID when dir is not a folder; SM_E_IO for an unreadable
 * entry (the message names it) or a full disk ("No space left on device",
 * nothing left behind); SM_E_LIMIT past 128 nested folders or 2,000,000
 * entries; SM_E_UNSUPPORTED when gensquashfs is not installed. */
SM_API sm_code sm_image_from_rootfs(const sm_store *store, const char *dir, const sm_vm_config *cfg,
                                    sm_image **out, sm_error *err);
/* An OCI image's default command, Entrypoint then Cmd, as a NULL-terminated
 * array (free with sm_argv_free). SM_E_NOTFOUND when it has none. */
SM_API sm_code sm_image_default_argv(const sm_image *img, char ***argv, sm_error *err);
SM_API void sm_argv_free(char **argv);

/* Start VMs from this image (restore) instead of booting. The image must
 * outlive the config; memory and vCPUs come from the image. NULL: boot. */
SM_API sm_code sm_vm_config_image(sm_vm_config *cfg, const sm_image *img);
/* The most memory (MiB) and vCPUs an image may ask for: one that asks for
 * more is refused before anything is mapped. 0 keeps the default, this
 * host's memory and CPU count. */
SM_API sm_code sm_vm_config_restore_limits(sm_vm_config *cfg, uint32_t max_memory_mib, uint32_t max_cpus);
/* Resource limits of the VMM process (guest RAM included), enforced by a
 * cgroup v2 of its own, made where this process has been delegated one
 * (the nearest cgroup at or above its own that it may write, whose children
 * get memory, cpu and pids; sm_host_check's `limits` says where, or why
 * none). memory_bytes: memory.max (swap 0), at least 64 MiB; millicpus: CPU
 * time, 1000 = one CPU (cpu.max), 10 to 1024000. 0 leaves either unlimited;
 * with either, pids.max is 64 too. Where no cgroup can be made, sm_vm_start
 * fails with SM_E_UNSUPPORTED and the reason (nothing runs unlimited). */
SM_API sm_code sm_vm_config_memory_limit(sm_vm_config *cfg, uint64_t memory_bytes);
SM_API sm_code sm_vm_config_cpu_limit(sm_vm_config *cfg, uint32_t millicpus);
/* Keep the VM's state folder in this store's, and take named volumes from
 * its images folder (copied; NULL: the image's store, else the default). */
SM_API sm_code sm_vm_config_store(sm_vm_config *cfg, const sm_store *store);
/* Snapshots a running VM into dest_dir (created if missing), which then is
 * an image: sm_image_from_snapshot(dest_dir). The VM pauses for the copy of
 * its memory and goes on. A VM with volumes is refused (SM_E_UNSUPPORTED):
 * a volume is not part of a snapshot. */
SM_API sm_code sm_vm_snapshot(const sm_vm *vm, const char *dest_dir, sm_error *err);

/* ===== Volumes ========================================================= */
/*
 * A volume is a writable disk that outlives VMs: an ext4 file system in a
 * file, mounted in the guest at a path of the caller's choice. What a VM
 * writes there is in the file once the guest writes it back (a `sync` in
 * the guest, or sm_vm_stop, which powers a VM with volumes off cleanly); a
 * VM that is killed loses what its guest still held, as a machine that
 * loses power does, and the journal keeps the file system whole.
 *
 *   sm_vm_config_volume(cfg, "work", "/work", false, &err); // named: made on first use
 *   sm_vm_config_volume(cfg, "/srv/data.ext4", "/data", true, &err);  // a file, read-only
 *
 * A named volume (1-64 of [A-Za-z0-9._-], not starting with '.') lives in
 * the store's images folder, under .volumes/NAME.ext4; a source with a '/'
 * is an existing ext4 file of the caller's. One VM at a time may mount a
 * volume read-write, and none may read it meanwhile; several may mount it
 * read-only at once. Another VM's hold is SM_E_BUSY. A VM has at most
 * SM_VM_MAX_VOLUMES, and its snapshots are refused (a volume is not part
 * of one). The VMs of a pool share one config: there, a read-write volume
 * is held by the first VM and the others fail to start.
 */
#define SM_VM_MAX_VOLUMES 4
#define SM_VOLUME_DEFAULT_SIZE (1ull << 30) /* a named volume made on first use */

typedef struct sm_volume_info {
    char name[72];
    uint64_t size_bytes;   /* the file system's size */
    uint64_t disk_bytes;   /* space the file takes (it is sparse) */
    bool in_use;           /* a running VM holds it */
} sm_volume_info;

/* Mounts source (a volume name or an ext4 file's path) at guest_path, an
 * absolute path other than /, made if missing. The VM's start fails when
 * the volume cannot be mounted. */
SM_API sm_code sm_vm_config_volume(sm_vm_config *cfg, const char *source, const char *guest_path, bool read_only,
                                   sm_error *err);
/* The size of named volumes that this config makes on first use (default
 * SM_VOLUME_DEFAULT_SIZE; 16 MiB to 16 TiB). A volume that exists keeps its size. */
SM_API sm_code sm_vm_config_volume_size(sm_vm_config *cfg, uint64_t bytes);
/* Makes the named volume, an empty ext4 of size bytes (0: the default size;
 * needs mkfs.ext4, from e2fsprogs). SM_E_INVALID if it exists already. */
SM_API sm_code sm_volume_create(const sm_store *store, const char *name, uint64_t size_bytes, sm_error *err);
/* Deletes the named volume and its data. SM_E_BUSY while a VM holds it,
 * SM_E_NOTFOUND if there is none. */
SM_API sm_code sm_volume_remove(const sm_store *store, const char *name, sm_error *err);
/* Every named volume, by name. Free *list with free(). */
SM_API sm_code sm_volume_list(const sm_store *store, sm_volume_info **list, size_t *count, sm_error *err);

/* ===== Pool ============================================================ */
/* (section owned by: VM pool)
 *
 * A pool of VMs restored from one image, ready before they are needed, so
 * that sm_pool_acquire hands one out in microseconds instead of a restore.
 *
 *   sm_pool_config *pc = sm_pool_config_new();
 *   sm_pool_config_min(pc, 2);                     // kept idle and ready
 *   sm_pool_config_max(pc, 8);                     // never more at once
 *   sm_pool *pool;
 *   if (sm_pool_new(img, pc, &pool, &err) == SM_OK) {   // 2 VMs ready now
 *       sm_vm *vm;
 *       if (sm_pool_acquire(pool, &vm, &err) == SM_OK) {  // from any thread
 *           sm_exec_builder *b = sm_vm_exec_builder(vm);  // use it as any VM
 *           ...
 *           sm_pool_release(pool, vm);             // thrown away, replaced
 *       }
 *       sm_pool_free(pool);
 *   }
 *   sm_pool_config_free(pc);
 *
 * Threads: the pool has two of its own. One starts (restores) every VM of
 * the pool; the other stops released, surplus and dead VMs. Every sm_pool_*
 * call except sm_pool_free may be made from many threads at once.
 *
 * What the pool does by itself:
 *   - keeps `min` VMs idle and ready (restoring more as they are taken);
 *   - with restore-on-release (the default), stops each released VM and
 *     restores a fresh one in its place;
 *   - stops idle VMs beyond `min` once they have been idle for the idle
 *     timeout;
 *   - throws away VMs found dead (their VMM crashed or was killed): checked
 *     on every acquire and every second in the background; a dead VM is never
 *     handed out.
 * `max` bounds idle + in use + starting VMs; a released VM may overlap its
 * replacement for the moment it takes to stop.
 */
typedef struct sm_pool sm_pool;
typedef struct sm_pool_config sm_pool_config;

#define SM_POOL_MAX_VMS 256 /* the largest max */

/* Defaults: min 1, max 4, idle timeout 300000 ms (5 min), acquire timeout
 * 30000 ms, restore-on-release on. NULL: no memory. Setters fail with
 * SM_E_INVALID on a NULL config or a value out of range. */
SM_API sm_pool_config *sm_pool_config_new(void);
SM_API void sm_pool_config_free(sm_pool_config *cfg);
/* VMs kept idle and ready: 0 to SM_POOL_MAX_VMS, at most max (checked by
 * sm_pool_new). 0 makes a lazy pool: VMs are restored on demand. */
SM_API sm_code sm_pool_config_min(sm_pool_config *cfg, uint32_t n);
/* VMs at most (idle + in use + starting): 1 to SM_POOL_MAX_VMS. */
SM_API sm_code sm_pool_config_max(sm_pool_config *cfg, uint32_t n);
/* How long a VM beyond min stays idle before it is stopped; 0: at once. */
SM_API sm_code sm_pool_config_idle_timeout_ms(sm_pool_config *cfg, uint32_t ms);
/* How long sm_pool_acquire waits for a VM when none is idle (for one to be
 * restored, or released); 0: never wait, fail at once. At most 3600000. */
SM_API sm_code sm_pool_config_acquire_timeout_ms(sm_pool_config *cfg, uint32_t ms);
/* On (the default): a released VM is stopped and a fresh one restored from
 * the image in the background, so every acquire gets a VM no one used
 * before. Off: a released VM goes back to the idle set as it is, with the
 * files, processes and memory the last user left in it: faster, but users
 * of the pool are not isolated from each other. */
SM_API sm_code sm_pool_config_restore_on_release(sm_pool_config *cfg, bool on);

/* Makes a pool of VMs restored from img, and waits until min of them are
 * ready (synchronously: each restore is done by the pool's own thread, one
 * after another), so that errors of the image show here. On failure nothing
 * is left (no VM, no thread) and err says why: SM_E_INVALID for a bad config
 * (min > max), else the error of the failed restore. img may be freed once
 * this returns (the pool keeps its own reference to the image folder). */
SM_API sm_code sm_pool_new(const sm_image *img, const sm_pool_config *cfg, sm_pool **out,
                    sm_error *err);
/* Hands out a running VM: an idle one at once if there is one (the most
 * recently readied); else, under max, one is restored for this call; else
 * it waits for a release, up to the acquire timeout: then SM_E_TIMEOUT,
 * saying how many VMs are in use. When a restore fails while waiting, its
 * error is returned. The VM is the caller's until given back with
 * sm_pool_release; do not sm_vm_stop or sm_vm_free it while the pool lives. */
SM_API sm_code sm_pool_acquire(sm_pool *pool, sm_vm **vm, sm_error *err);
/* Gives back a VM from sm_pool_acquire (see restore-on-release for what
 * happens to it); the handle must not be used after. A dead VM is thrown
 * away. NULL, or a VM this pool did not hand out, is ignored. */
SM_API void sm_pool_release(sm_pool *pool, sm_vm *vm);

typedef struct sm_pool_stats {
    uint32_t alive;            /* idle + in_use: running VMs of the pool */
    uint32_t idle;             /* ready to be acquired */
    uint32_t in_use;           /* acquired, not yet released */
    uint32_t starting;         /* being restored now */
    uint32_t min;
    uint32_t max;
    uint64_t restored;         /* VMs the pool has restored, ever */
    uint64_t acquire_waits;    /* acquires that found no idle VM and waited */
    uint64_t acquire_timeouts; /* acquires that failed with SM_E_TIMEOUT */
    uint64_t dead_discarded;   /* VMs found dead and thrown away */
    uint64_t start_failures;   /* restores that failed */
} sm_pool_stats;

/* A consistent snapshot of the pool's counts (taken under the pool's lock).
 * alive leaves out VMs being restored (starting) and released VMs still
 * being stopped. SM_E_INVALID on NULL. (Named _get: sm_pool_stats is the
 * type.) */
SM_API sm_code sm_pool_stats_get(sm_pool *pool, sm_pool_stats *out);
/* Stops every idle VM and the pool's threads, and frees the pool. Acquires
 * waiting at that moment return SM_E_CANCELLED; no call on the pool may
 * start once this has begun. VMs still acquired are not freed by the pool:
 * their handles stay valid and become the caller's to free with sm_vm_free
 * (not sm_pool_release), and their VMs run until then. NULL is fine. */
SM_API void sm_pool_free(sm_pool *pool);

#ifdef __cplusplus
}
#endif
#endif /* SUPERMACHINE_H */
