/*
 * VMs in the library: each VM is a supermachine-vmm process (src/vmm/main.c)
 * with a state folder of its own (see the "VMs" section of supermachine.h).
 *
 * Start: find the assets, make the folder, spawn the VMM with stdin/stdout
 * on /dev/null, stderr in vmm.log and the write end of a pipe as fd 3
 * (--ready-fd 3), record its PID in vm.info, then wait for "ready <us>\n" on
 * the pipe. The pipe ends without it when the VMM exits: then its status and
 * the end of vmm.log say why, and everything is removed again.
 *
 * Volumes: the VMM takes their files (and their locks); once it is ready,
 * each is mounted in the guest through the agent (VOLUME, protocol/wire.h).
 *
 * Stop: SIGTERM (the VMM stops its guest and exits), a bounded wait, SIGKILL,
 * reap when it is our child, remove the folder. A VM with volumes is first
 * asked to power off (its agent syncs), so that what it wrote is in them.
 */
#include "lib/assets.h"
#include "lib/store.h"
#include "lib/vm_net.h"
#include "base/clock.h"
#include "base/file.h"
#include "lib/image.h"
#include "lib/image_info.h"
#include "base/error.h"
#include "lib/vm_state.h"
#include "lib/vm_cgroup.h"
#include "lib/volume.h"
#include "protocol/agent_conn.h"
#include "protocol/vmm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STOP_GRACE_MS 5000   /* SIGTERM to SIGKILL */
#define KILL_WAIT_MS 2000    /* SIGKILL to giving up */
#define READY_SLACK_S 15     /* beyond the VMM's own boot timeout */
#define LOG_TAIL_BYTES 320   /* of vmm.log, in a failed start's message */
#define VM_CONNECT_TIMEOUT_MS 15000 /* the agent gives up connecting after 10 s */
#define READY_FD 3
#define VOLUME_MOUNT_TIMEOUT_MS 30000 /* a journal replay may take a while */
#define POWEROFF_WAIT_MS 5000         /* a VM with volumes: poweroff to gone */
#define LIFELINE_FD 4

struct sm_vm_config {
    uint32_t memory_mib;
    uint32_t cpus;
    uint32_t boot_timeout_s;
    char *kernel;    /* NULL: looked up */
    char *initrd;
    char *console;   /* NULL: DIR/console.log */
    char *image;     /* a snapshot folder to restore, or NULL to boot */
    char *vms;       /* the store's VM folder (sm_vm_config_store), or NULL */
    char *image_vms; /* the image's store's, or NULL: used when vms is NULL */
    char *images;    /* likewise the store's images folder, where volumes are */
    char *image_images;
    bool detached;
    struct vm_net net;
    uint32_t max_memory_mib, max_cpus; /* a restored image's limits; 0: the host's */
    struct vm_limits limits;           /* the VMM's cgroup; none when both are 0 */
    struct config_volume {
        char *source;     /* a name or a path */
        char *guest_path;
        bool read_only;
    } volumes[SM_VM_MAX_VOLUMES];
    uint32_t nvolumes;
    uint64_t volume_size; /* of named volumes made on first use */
};

struct sm_vm {
    char id[16];
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char exec_socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct vm_record rec;
    bool our_child;   /* we spawned it: waitpid works, and must be done */
    bool reaped;      /* our child, and waited for */
    bool stop_on_free;
    int lifeline;     /* the write end of the VMM's lifeline (protocol/vmm.h), or -1 */
    bool removed;     /* stopped and its folder removed */
};

/* ---- config ------------------------------------------------------------ */

sm_vm_config *sm_vm_config_new(void)
{
    sm_vm_config *c = calloc(1, sizeof *c);
    if (c) {
        c->memory_mib = 256;
        c->cpus = 1;
        c->boot_timeout_s = 60;
        c->volume_size = SM_VOLUME_DEFAULT_SIZE;
        vm_net_init(&c->net);
    }
    return c;
}

void sm_vm_config_free(sm_vm_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->kernel);
    free(cfg->initrd);
    free(cfg->console);
    free(cfg->image);
    free(cfg->vms);
    free(cfg->image_vms);
    free(cfg->images);
    free(cfg->image_images);
    for (uint32_t i = 0; i < cfg->nvolumes; i++) {
        free(cfg->volumes[i].source);
        free(cfg->volumes[i].guest_path);
    }
    free(cfg);
}

sm_code sm_vm_config_memory_mib(sm_vm_config *cfg, uint32_t mib)
{
    if (!cfg || mib < VMM_MIN_MEM_MIB || mib > VMM_MAX_MEM_MIB)
        return SM_E_INVALID;
    cfg->memory_mib = mib;
    return SM_OK;
}

sm_code sm_vm_config_cpus(sm_vm_config *cfg, uint32_t cpus)
{
    if (!cfg || cpus < 1 || cpus > VMM_MAX_CPUS)
        return SM_E_INVALID;
    cfg->cpus = cpus;
    return SM_OK;
}

sm_code sm_vm_config_boot_timeout_s(sm_vm_config *cfg, uint32_t seconds)
{
    if (!cfg || seconds < 1 || seconds > 3600)
        return SM_E_INVALID;
    cfg->boot_timeout_s = seconds;
    return SM_OK;
}

sm_code sm_vm_config_net(sm_vm_config *cfg, bool on)
{
    if (!cfg)
        return SM_E_INVALID;
    cfg->net.policy.enabled = on;
    return SM_OK;
}

sm_code sm_vm_config_allow(sm_vm_config *cfg, const char *rule, sm_error *err)
{
    return cfg ? vm_net_add_rule(&cfg->net, NET_ALLOW, rule, err) : error_set(err, SM_E_INVALID, "NULL config");
}

sm_code sm_vm_config_deny(sm_vm_config *cfg, const char *rule, sm_error *err)
{
    return cfg ? vm_net_add_rule(&cfg->net, NET_DENY, rule, err) : error_set(err, SM_E_INVALID, "NULL config");
}

sm_code sm_vm_config_publish(sm_vm_config *cfg, const char *spec, sm_error *err)
{
    return cfg ? vm_net_publish(&cfg->net, spec, err) : error_set(err, SM_E_INVALID, "NULL config");
}

sm_code sm_vm_config_restore_limits(sm_vm_config *cfg, uint32_t max_memory_mib, uint32_t max_cpus)
{
    if (!cfg)
        return SM_E_INVALID;
    cfg->max_memory_mib = max_memory_mib;
    cfg->max_cpus = max_cpus;
    return SM_OK;
}

#define MIN_MEMORY_LIMIT (64ull << 20)
#define MIN_MILLICPUS 10u
#define MAX_MILLICPUS 1024000u

sm_code sm_vm_config_memory_limit(sm_vm_config *cfg, uint64_t memory_bytes)
{
    if (!cfg || (memory_bytes && memory_bytes < MIN_MEMORY_LIMIT))
        return SM_E_INVALID;
    cfg->limits.memory_bytes = memory_bytes;
    return SM_OK;
}

sm_code sm_vm_config_cpu_limit(sm_vm_config *cfg, uint32_t millicpus)
{
    if (!cfg || (millicpus && (millicpus < MIN_MILLICPUS || millicpus > MAX_MILLICPUS)))
        return SM_E_INVALID;
    cfg->limits.cpu_millis = millicpus;
    return SM_OK;
}

static bool guest_path_ok(const char *path)
{
    size_t n = strlen(path);
    return path[0] == '/' && n > 1 && n < WIRE_MAX_PATH;
}

sm_code sm_vm_config_volume(sm_vm_config *cfg, const char *source, const char *guest_path, bool read_only,
                            sm_error *err)
{
    if (!cfg || !source || !guest_path)
        return error_set(err, SM_E_INVALID, "sm_vm_config_volume: NULL argument");
    if (!strchr(source, '/') && !store_name_valid(source))
        return error_set(err, SM_E_INVALID, "volume '%s' is neither a name (1-64 of [A-Za-z0-9._-], not starting "
                         "with '.') nor a file's path (with a '/')", source);
    if (!guest_path_ok(guest_path))
        return error_set(err, SM_E_INVALID, "a volume's guest path must be absolute and not /, not '%.100s'",
                         guest_path);
    if (cfg->nvolumes >= SM_VM_MAX_VOLUMES)
        return error_set(err, SM_E_LIMIT, "a VM has at most %d volumes", SM_VM_MAX_VOLUMES);
    for (uint32_t i = 0; i < cfg->nvolumes; i++)
        if (!strcmp(cfg->volumes[i].guest_path, guest_path))
            return error_set(err, SM_E_INVALID, "two volumes at %s", guest_path);
    struct config_volume v = { strdup(source), strdup(guest_path), read_only };
    if (!v.source || !v.guest_path) {
        free(v.source);
        free(v.guest_path);
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    cfg->volumes[cfg->nvolumes++] = v;
    return SM_OK;
}

sm_code sm_vm_config_volume_size(sm_vm_config *cfg, uint64_t bytes)
{
    if (!cfg || !volume_size_ok(bytes))
        return SM_E_INVALID;
    cfg->volume_size = bytes;
    return SM_OK;
}

sm_code sm_vm_config_detached(sm_vm_config *cfg, bool detached)
{
    if (!cfg)
        return SM_E_INVALID;
    cfg->detached = detached;
    return SM_OK;
}

static sm_code set_path(char **slot, const char *path)
{
    char *copy = NULL;
    if (path && !*path)
        return SM_E_INVALID;
    if (path && !(copy = strdup(path)))
        return SM_E_NOMEM;
    free(*slot);
    *slot = copy;
    return SM_OK;
}

sm_code sm_vm_config_kernel(sm_vm_config *cfg, const char *path)
{
    return cfg ? set_path(&cfg->kernel, path) : SM_E_INVALID;
}

sm_code sm_vm_config_initrd(sm_vm_config *cfg, const char *path)
{
    return cfg ? set_path(&cfg->initrd, path) : SM_E_INVALID;
}

sm_code vm_config_set_image(sm_vm_config *cfg, const char *dir, const char *vms, const char *images)
{
    if (!cfg)
        return SM_E_INVALID;
    sm_code rc = set_path(&cfg->image, dir);
    if (!rc)
        rc = set_path(&cfg->image_vms, vms);
    return rc ? rc : set_path(&cfg->image_images, images);
}

sm_code sm_vm_config_store(sm_vm_config *cfg, const sm_store *store)
{
    if (!cfg)
        return SM_E_INVALID;
    const char *vms = store_vms_choice(store), *images = store_images_choice(store);
    sm_code rc = set_path(&cfg->vms, *vms ? vms : NULL);
    return rc ? rc : set_path(&cfg->images, *images ? images : NULL);
}

/* The store a VM of cfg lives in (its VM folder) and takes its volumes
 * from: the config's own, else its image's, else the default. */
static const sm_store *config_store(const sm_vm_config *cfg, sm_store *scratch)
{
    const char *vms = cfg->vms ? cfg->vms : cfg->image_vms;
    const char *images = cfg->images ? cfg->images : cfg->image_images;
    if (!vms && !images)
        return NULL;
    memset(scratch, 0, sizeof *scratch);
    snprintf(scratch->vms, sizeof scratch->vms, "%s", vms ? vms : "");
    snprintf(scratch->images, sizeof scratch->images, "%s", images ? images : "");
    return scratch;
}

uint32_t vm_config_memory_mib(const sm_vm_config *cfg) { return cfg->memory_mib; }
uint32_t vm_config_cpus(const sm_vm_config *cfg) { return cfg->cpus; }
uint32_t vm_config_volume_count(const sm_vm_config *cfg) { return cfg->nvolumes; }
uint32_t vm_volume_count(const sm_vm *vm) { return vm->rec.volumes; }

sm_code vm_config_kernel_path(const sm_vm_config *cfg, char *out, size_t cap, sm_error *err)
{
    if (!cfg->kernel)
        return assets_find(ASSET_KERNEL, out, cap, err);
    snprintf(out, cap, "%s", cfg->kernel);
    return SM_OK;
}

sm_code vm_config_initrd_path(const sm_vm_config *cfg, char *out, size_t cap, sm_error *err)
{
    if (!cfg->initrd)
        return assets_find(ASSET_INITRD, out, cap, err);
    snprintf(out, cap, "%s", cfg->initrd);
    return SM_OK;
}

sm_code sm_vm_config_console_path(sm_vm_config *cfg, const char *path)
{
    return cfg ? set_path(&cfg->console, path) : SM_E_INVALID;
}

/* ---- small helpers ------------------------------------------------------ */

/* A descriptor at 10 or above, close-on-exec, so that the child's dup2 onto
 * 0..3 can never overwrite another of ours (the embedder may have closed its
 * stdio, making our fds small). Closes fd. */
static int high_fd(int fd)
{
    if (fd < 0)
        return -1;
    int h = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    close(fd);
    return h;
}

static sm_code new_id(char out[16], sm_error *err)
{
    uint8_t b[VM_ID_LEN / 2];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return error_set_errno(err, SM_E_IO, errno, "cannot draw a VM id (getrandom)");
    for (size_t i = 0; i < sizeof b; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return SM_OK;
}

/* The longest socket name in a VM folder: a guest's vsock connection to
 * host port P reaches vsock.sock_P (devices/virtio/vsock.h). */
#define LONGEST_SOCKET "/" VM_VSOCK_SOCKET "_4294967295"

/* Fills vm->id/dir/exec_socket for an existing or new folder of id. */
static sm_code set_paths(sm_vm *vm, const char *vms, const char *id, sm_error *err)
{
    snprintf(vm->id, sizeof vm->id, "%s", id);
    /* The longest socket name must fit a sockaddr_un. */
    int n = snprintf(vm->dir, sizeof vm->dir, "%s/%s", vms, id);
    int m = snprintf(vm->exec_socket, sizeof vm->exec_socket, "%s/" VM_EXEC_SOCKET, vm->dir);
    if (n < 0 || m < 0 || (size_t)n + sizeof LONGEST_SOCKET > sizeof vm->exec_socket)
        return error_set(err, SM_E_INVALID, "the runtime folder %s is too long for Unix socket "
                       "paths (%zu bytes at most); set $XDG_RUNTIME_DIR to a shorter one", vms,
                       sizeof vm->exec_socket - sizeof LONGEST_SOCKET - VM_ID_LEN - 1);
    return SM_OK;
}

/* Makes the store's VMS/ID with a fresh ID. */
static sm_code make_state_dir(sm_vm *vm, const sm_store *store, sm_error *err)
{
    char vms[PATH_MAX];
    sm_code rc = store_vms_dir(store, vms, sizeof vms, true, err);
    for (int attempt = 0; !rc && attempt < 16; attempt++) {
        char id[16];
        rc = new_id(id, err);
        if (!rc)
            rc = set_paths(vm, vms, id, err);
        if (rc)
            return rc;
        if (mkdir(vm->dir, 0700) == 0) {
            char cell[PATH_MAX];
            snprintf(cell, sizeof cell, "%s/" VM_CELL_DIR, vm->dir);
            if (mkdir(cell, 0700) == 0)
                return SM_OK;
            rc = error_set_errno(err, SM_E_IO, errno, "cannot create %s", cell);
            rmdir(vm->dir);
            return rc;
        }
        if (errno != EEXIST)
            return error_set_errno(err, SM_E_IO, errno, "cannot create %s", vm->dir);
    }
    return rc ? rc : error_set(err, SM_E_IO, "no free VM id in %s", vms);
}

/* The last lines of DIR/vmm.log, on one line, for an error message. */
static void log_tail(const sm_vm *vm, char *out, size_t cap)
{
    char path[PATH_MAX], buf[LOG_TAIL_BYTES + 1];
    snprintf(path, sizeof path, "%s/vmm.log", vm->dir);
    out[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > LOG_TAIL_BYTES ? end - LOG_TAIL_BYTES : 0;
    ssize_t n = pread(fd, buf, LOG_TAIL_BYTES, from);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    char *p = buf;
    if (from > 0 && (p = strchr(buf, '\n')))   /* start at a whole line */
        p++;
    else
        p = buf;
    for (char *q = p; *q; q++)
        if (*q == '\n')
            *q = '|';
        else if ((unsigned char)*q < 0x20)
            *q = ' ';
    snprintf(out, cap, "%s", p);
}

/* Why the VMM ended, where it was not the guest's or the user's doing: a
 * kill by its seccomp filter (its last words say so), or by the kernel for
 * going over its memory limit (its cgroup counts those). */
static void why_it_ended(const sm_vm *vm, char *out, size_t cap)
{
    char tail[LOG_TAIL_BYTES + 1], cgroup[PATH_MAX];
    log_tail(vm, tail, sizeof tail);
    const char *at = strstr(tail, VMM_SECCOMP_KILLED);
    out[0] = 0;
    if (at) {
        snprintf(out, cap, "%.*s", (int)strcspn(at, "|"), at);
        return;
    }
    int dfd = open(vm->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return;
    if (vm_cgroup_recorded(dfd, cgroup, sizeof cgroup) && vm_cgroup_oom_kills(cgroup))
        snprintf(out, cap, "killed by the kernel: over its memory limit");
    close(dfd);
}

/* ---- the VMM process ---------------------------------------------------- */

/* Is the VMM gone? For our child this reaps it. */
static bool vmm_gone(sm_vm *vm, int *wstatus)
{
    if (vm->reaped || vm->rec.pid <= 0)
        return true;
    if (vm->our_child) {
        int st;
        pid_t r = waitpid(vm->rec.pid, &st, WNOHANG);
        if (r == vm->rec.pid) {
            vm->reaped = true;
            if (wstatus)
                *wstatus = st;
            return true;
        }
        if (r < 0 && errno == ECHILD) {  /* SIGCHLD ignored: reaped for us */
            vm->reaped = true;
            return true;
        }
        if (r < 0)
            return !vm_record_alive(&vm->rec);
        return false;
    }
    return !vm_record_alive(&vm->rec);
}

static bool wait_gone(sm_vm *vm, unsigned ms, int *wstatus)
{
    uint64_t deadline = clock_now_ms() + ms;
    for (unsigned step = 1;; step = step < 50 ? step * 2 : 50) {
        if (vmm_gone(vm, wstatus))
            return true;
        if (clock_now_ms() >= deadline)
            return false;
        clock_sleep_ms(step);
    }
}

/* Signals the VMM, but only if the recorded process is still the VMM. */
static void signal_vmm(sm_vm *vm, int signo)
{
    if (vm->rec.pid <= 0 || vm->reaped)
        return;
    if (vm->our_child || vm_record_alive(&vm->rec))
        kill(vm->rec.pid, signo);
}

/* Asks the guest to power off, which makes its agent sync the file systems
 * first, and waits a while for the VMM to end. A guest that does not answer
 * is stopped the usual way by the caller. */
static void power_off(sm_vm *vm)
{
    if (vmm_gone(vm, NULL))
        return;
    if (agent_poweroff(vm->exec_socket, POWEROFF_WAIT_MS, NULL) == SM_OK)
        wait_gone(vm, POWEROFF_WAIT_MS, NULL);
}

/* SIGTERM, grace, SIGKILL; true once it is gone. */
static bool end_vmm(sm_vm *vm, int *wstatus)
{
    if (vmm_gone(vm, wstatus))
        return true;
    signal_vmm(vm, SIGTERM);
    if (wait_gone(vm, STOP_GRACE_MS, wstatus))
        return true;
    signal_vmm(vm, SIGKILL);
    return wait_gone(vm, KILL_WAIT_MS, wstatus);
}

struct spawn_files {
    int devnull;
    int log;
    int ready_w;
    int lifeline_r;   /* -1: a detached VM has none */
};

static sm_code open_spawn_files(const sm_vm *vm, bool want_lifeline, struct spawn_files *f, int *ready_r,
                                int *lifeline_w, sm_error *err)
{
    char path[PATH_MAX];
    int p[2] = { -1, -1 };
    snprintf(path, sizeof path, "%s/vmm.log", vm->dir);
    f->devnull = high_fd(open("/dev/null", O_RDWR | O_CLOEXEC));
    f->log = high_fd(open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (pipe2(p, O_CLOEXEC) == 0) {
        *ready_r = high_fd(p[0]);
        f->ready_w = high_fd(p[1]);
    }
    bool lifeline_ok = true;
    if (want_lifeline && (lifeline_ok = pipe2(p, O_CLOEXEC) == 0)) {
        f->lifeline_r = high_fd(p[0]);
        *lifeline_w = high_fd(p[1]);
        lifeline_ok = f->lifeline_r >= 0 && *lifeline_w >= 0;
    }
    if (f->devnull >= 0 && f->log >= 0 && *ready_r >= 0 && f->ready_w >= 0 && lifeline_ok)
        return SM_OK;
    return error_set_errno(err, SM_E_IO, errno, "cannot set up the VMM's files in %s", vm->dir);
}

static void close_spawn_files(struct spawn_files *f)
{
    int *fds[] = { &f->devnull, &f->log, &f->ready_w, &f->lifeline_r };
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
}

/* The paths a VMM is given, beside its arguments (protocol/vmm.h). */
struct vmm_launch {
    struct vmm_args args;
    struct vmm_argv argv;
    char console[PATH_MAX], vsock_sock[PATH_MAX], control_sock[PATH_MAX], cell[PATH_MAX];
    char volumes[SM_VM_MAX_VOLUMES][PATH_MAX]; /* the volumes' files */
    char cgroup[PATH_MAX]; /* "": none */
};

static void build_launch(struct vmm_launch *l, const sm_vm_config *cfg, const sm_vm *vm,
                         const char *kernel, const char *initrd, const char *disk)
{
    struct vmm_args *a = &l->args;
    vmm_args_init(a);
    if (cfg->console)
        snprintf(l->console, sizeof l->console, "%s", cfg->console);
    else
        snprintf(l->console, sizeof l->console, "%s/console.log", vm->dir);
    snprintf(l->vsock_sock, sizeof l->vsock_sock, "%s/" VM_VSOCK_SOCKET, vm->dir);
    snprintf(l->control_sock, sizeof l->control_sock, "%s/" VM_CONTROL_SOCKET, vm->dir);
    snprintf(l->cell, sizeof l->cell, "%s/" VM_CELL_DIR, vm->dir);
    if (cfg->image) {
        a->restore_dir = cfg->image; /* memory and vCPUs come from the snapshot */
        a->disk = disk[0] ? disk : NULL;
    } else {
        a->kernel = kernel;
        a->initrd = initrd;
        a->memory_mib = cfg->memory_mib;
        a->cpus = cfg->cpus;
    }
    a->timeout_s = cfg->boot_timeout_s;
    a->control_socket = l->control_sock;
    a->console = l->console;
    a->exec_socket = vm->exec_socket;
    a->vsock_socket = l->vsock_sock;
    a->cell_dir = l->cell;
    a->cgroup_dir = l->cgroup[0] ? l->cgroup : NULL;
    a->ready_fd = READY_FD;
    /* An attached VM lives while this process holds its lifeline. */
    a->lifeline_fd = cfg->detached ? -1 : LIFELINE_FD;
    a->net = cfg->net.policy;
    a->ports = cfg->net.ports;
    a->no_seccomp = vm_seccomp_off();
    a->max_memory_mib = cfg->max_memory_mib;
    a->max_cpus = cfg->max_cpus;
    for (uint32_t i = 0; i < cfg->nvolumes; i++)
        a->volumes[i] = (struct vmm_volume){ l->volumes[i], cfg->volumes[i].read_only };
    a->nvolumes = cfg->nvolumes;
}

/* Each volume's file, made first when it is a new named one. */
static sm_code resolve_volumes(const sm_vm_config *cfg, const sm_store *store, struct vmm_launch *l, sm_error *err)
{
    sm_code rc = SM_OK;
    for (uint32_t i = 0; i < cfg->nvolumes && !rc; i++)
        rc = volume_resolve(store, cfg->volumes[i].source, cfg->volumes[i].read_only, cfg->volume_size,
                            l->volumes[i], sizeof l->volumes[i], err);
    return rc;
}

/* Mounts the volumes in the ready guest, in slot order. */
static sm_code mount_volumes(const sm_vm *vm, const sm_vm_config *cfg, sm_error *err)
{
    for (uint32_t i = 0; i < cfg->nvolumes; i++) {
        const struct config_volume *v = &cfg->volumes[i];
        wire_volume w = { .slot = i, .read_only = v->read_only, .path = v->guest_path };
        sm_code rc = agent_mount_volume(vm->exec_socket, &w, VOLUME_MOUNT_TIMEOUT_MS, err);
        if (rc) {
            error_prefix(err, "volume %s at %s", v->source, v->guest_path);
            return rc;
        }
    }
    return SM_OK;
}

/* posix_spawn with fds 0-2 on /dev/null and vmm.log, the ready pipe on fd 3,
 * an attached VM's lifeline on fd 4,
 * nothing else inherited, default signal dispositions, nothing blocked, and
 * an environment of its own. */
static sm_code spawn_vmm(sm_vm *vm, const sm_vm_config *cfg, char *const argv[],
                         const struct spawn_files *f, sm_error *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, f->devnull, 0);
    posix_spawn_file_actions_adddup2(&fa, f->devnull, 1);
    posix_spawn_file_actions_adddup2(&fa, f->log, 2);
    posix_spawn_file_actions_adddup2(&fa, f->ready_w, READY_FD);
    if (f->lifeline_r >= 0)
        posix_spawn_file_actions_adddup2(&fa, f->lifeline_r, LIFELINE_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, (f->lifeline_r >= 0 ? LIFELINE_FD : READY_FD) + 1);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    int defaulted[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2 };
    for (size_t i = 0; i < sizeof defaulted / sizeof defaulted[0]; i++)
        sigaddset(&defaults, defaulted[i]);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (cfg->detached)
        flags |= POSIX_SPAWN_SETSID;   /* no terminal signals from our session */
    posix_spawnattr_setflags(&attr, flags);
    pid_t pid;
    char *env[VMM_ENV_MAX];
    vmm_environment(env);
    int e = posix_spawn(&pid, argv[0], &fa, &attr, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (e)
        return error_set_errno(err, SM_E_IO, e, "cannot run %s", argv[0]);
    vm->rec.pid = pid;
    vm->our_child = true;
    vm->rec.start_ticks = vm_process_start_ticks(pid);
    vm->rec.memory_mib = cfg->memory_mib;
    vm->rec.cpus = cfg->cpus;
    vm->rec.started_unix = (int64_t)time(NULL);
    return SM_OK;
}

/* wstatus when the VMM's status was collected by someone else (an embedder
 * that reaps every child, or ignores SIGCHLD). */
#define STATUS_UNKNOWN (-1)

/* Why the VMM ended before it was ready, from its exit status. */
static sm_code explain_exit(sm_vm *vm, int wstatus, sm_error *err)
{
    char tail[LOG_TAIL_BYTES + 1];
    log_tail(vm, tail, sizeof tail);
    if (wstatus == STATUS_UNKNOWN)
        return error_set(err, SM_E_IO, "the VM did not start: supermachine-vmm ended before the "
                       "guest was ready (its exit status went elsewhere)%s%s",
                       tail[0] ? ": " : "", tail);
    if (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGSYS)
        return error_set(err, SM_E_IO, "the VMM (%s) was killed by its seccomp filter before the guest was "
                       "ready (a bug of ours: please report it with this message)%s%s", vm->id,
                       tail[0] ? ": " : "", tail);
    if (WIFSIGNALED(wstatus))
        return error_set(err, SM_E_IO, "the VMM (%s) was killed by signal %d before the guest was "
                       "ready%s%s", vm->id, WTERMSIG(wstatus), tail[0] ? ": " : "", tail);
    int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    sm_code rc = code == VMM_EXIT_USAGE     ? SM_E_INVALID
                 : code == VMM_EXIT_PANIC   ? SM_E_GUEST
                 : code == VMM_EXIT_TIMEOUT ? SM_E_TIMEOUT
                                                  : SM_E_IO;
    return error_set(err, rc, "the VM did not start: supermachine-vmm exited with status %d "
                   "(%s)%s%s", code, sm_strerror(rc), tail[0] ? ": " : "", tail);
}

/* The VMM's cgroup when it has limits, its path kept in the VM folder
 * (which removes it with itself: vm_dir_remove). */
static sm_code make_cgroup(const sm_vm *vm, const struct vm_limits *l, char *path, size_t cap, sm_error *err)
{
    path[0] = 0;
    if (!l->memory_bytes && !l->cpu_millis)
        return SM_OK;
    char home[PATH_MAX], file[PATH_MAX];
    sm_code rc = vm_cgroup_home(NULL, true, home, sizeof home, err);
    if (rc) {
        error_prefix(err, "the VM's resource limits need a cgroup");
        return rc;
    }
    rc = vm_cgroup_create(home, vm->id, l, path, cap, err);
    snprintf(file, sizeof file, "%s/" VM_CGROUP_FILE, vm->dir);
    if (!rc && !write_file_atomic(file, path, strlen(path), 0600)) {
        rc = error_set_errno(err, SM_E_IO, errno, "cannot write %s", file);
        vm_cgroup_remove(path);
    }
    if (rc)
        path[0] = 0;
    return rc;
}

/* Reads the ready pipe until "ready <us>\n", its end, or the deadline. */
static sm_code wait_ready(sm_vm *vm, int ready_r, uint32_t timeout_s, sm_error *err)
{
    char line[VMM_READY_LINE_MAX];
    size_t got = 0;
    uint64_t deadline = clock_now_ms() + (uint64_t)(timeout_s + READY_SLACK_S) * 1000u;
    for (;;) {
        uint64_t now = clock_now_ms();
        if (now >= deadline)
            return error_set(err, SM_E_TIMEOUT, "the VM %s was not ready after %u s (its VMM "
                           "did not say ready, nor exit)", vm->id, timeout_s + READY_SLACK_S);
        struct pollfd p = { .fd = ready_r, .events = POLLIN };
        int r = poll(&p, 1, (int)(deadline - now));
        if (r < 0 && errno != EINTR)
            return error_set_errno(err, SM_E_IO, errno, "waiting for the VM to be ready");
        if (r <= 0)
            continue;
        ssize_t n = read(ready_r, line + got, sizeof line - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            got += (size_t)n;
            line[got] = 0;
            struct vmm_ready ready;
            if (strchr(line, '\n') && !vmm_ready_line_parse(line, got, &ready))
                return error_set(err, SM_E_PROTOCOL, "the VMM said '%.40s', not ready", line);
            if (strchr(line, '\n')) { /* a restored VM's size is its snapshot's */
                vm->rec.memory_mib = ready.memory_mib;
                vm->rec.cpus = ready.cpus;
                return SM_OK;
            }
            if (got < sizeof line - 1)
                continue;
        }
        /* The pipe ended (the VMM exits) or overflowed without a line. */
        int wstatus = STATUS_UNKNOWN;
        if (!wait_gone(vm, 3000, &wstatus) && !end_vmm(vm, &wstatus))
            return error_set(err, SM_E_IO, "the VMM %d of VM %s closed its ready pipe but does "
                           "not exit", (int)vm->rec.pid, vm->id);
        return explain_exit(vm, wstatus, err);
    }
}

/* Records the root filesystem the VM is given (VM_DISK_LINK), before its
 * VMM starts, so that a prune of the store sees it in use. */
static sm_code link_disk(const sm_vm *vm, const char *disk, sm_error *err)
{
    char link[PATH_MAX];
    if ((size_t)snprintf(link, sizeof link, "%s/" VM_DISK_LINK, vm->dir) >= sizeof link)
        return error_set(err, SM_E_LIMIT, "VM folder path too long");
    if (symlink(disk, link) < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot write %s", link);
    return SM_OK;
}

sm_code sm_vm_start(const sm_vm_config *cfg, sm_vm **out, sm_error *err)
{
    if (!cfg || !out)
        return error_set(err, SM_E_INVALID, "sm_vm_start: NULL config or out");
    *out = NULL;
    char vmm[PATH_MAX], kernel[PATH_MAX], initrd[PATH_MAX], disk[PATH_MAX];
    sm_code rc = assets_find(ASSET_VMM, vmm, sizeof vmm, err);
    kernel[0] = initrd[0] = disk[0] = 0;
    if (!rc && cfg->image)
        rc = image_disk_for_restore(cfg->image, disk, sizeof disk, err);
    if (!rc && !cfg->image)
        rc = vm_config_kernel_path(cfg, kernel, sizeof kernel, err);
    if (!rc && !cfg->image)
        rc = vm_config_initrd_path(cfg, initrd, sizeof initrd, err);
    if (rc)
        return rc;
    sm_vm *vm = calloc(1, sizeof *vm);
    struct vmm_launch *launch = calloc(1, sizeof *launch);
    if (!vm || !launch) {
        free(vm);
        free(launch);
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    struct spawn_files files = { -1, -1, -1, -1 };
    int ready_r = -1;
    vm->lifeline = -1;
    sm_store scratch;
    const sm_store *store = config_store(cfg, &scratch);
    rc = resolve_volumes(cfg, store, launch, err);
    if (!rc)
        rc = make_state_dir(vm, store, err);
    bool made_dir = !rc;
    if (!rc && disk[0])
        rc = link_disk(vm, disk, err);
    vm->rec.volumes = cfg->nvolumes;
    if (!rc)
        rc = make_cgroup(vm, &cfg->limits, launch->cgroup, sizeof launch->cgroup, err);
    if (!rc)
        rc = open_spawn_files(vm, !cfg->detached, &files, &ready_r, &vm->lifeline, err);
    if (!rc) {
        build_launch(launch, cfg, vm, kernel, initrd, disk);
        rc = vmm_args_format(&launch->args, vmm, &launch->argv)
                 ? spawn_vmm(vm, cfg, launch->argv.argv, &files, err)
                 : error_set(err, SM_E_INVALID, "too many arguments for the VMM");
    }
    close_spawn_files(&files);   /* the pipe ends when the VMM closes fd 3 */
    if (!rc)
        rc = vm_record_write(vm->dir, &vm->rec, err);
    struct vm_record written = vm->rec;
    if (!rc)
        rc = wait_ready(vm, ready_r, cfg->boot_timeout_s, err);
    /* A restored VM's size is its image's: recorded again only when the
     * ready line says other than the config did (no second write otherwise). */
    if (!rc && (vm->rec.memory_mib != written.memory_mib || vm->rec.cpus != written.cpus))
        rc = vm_record_write(vm->dir, &vm->rec, err);
    if (!rc)
        rc = mount_volumes(vm, cfg, err);
    if (ready_r >= 0)
        close(ready_r);
    free(launch);
    if (rc) {
        end_vmm(vm, NULL);
        if (made_dir)
            vm_dir_remove(vm->dir, NULL);
        if (vm->lifeline >= 0)
            close(vm->lifeline);
        free(vm);
        return rc;
    }
    vm->stop_on_free = !cfg->detached;
    *out = vm;
    return SM_OK;
}

sm_code sm_vm_open(const sm_store *store, const char *id, sm_vm **out, sm_error *err)
{
    if (!out)
        return error_set(err, SM_E_INVALID, "sm_vm_open: NULL out");
    *out = NULL;
    if (!vm_id_valid(id))
        return error_set(err, SM_E_INVALID, "'%s' is not a VM id (hex digits, as `supermachine "
                       "start` prints)", id ? id : "(null)");
    char vms[PATH_MAX];
    sm_code rc = store_vms_dir(store, vms, sizeof vms, false, err);
    if (rc)
        return rc;
    sm_vm *vm = calloc(1, sizeof *vm);
    if (!vm)
        return error_set(err, SM_E_NOMEM, "out of memory");
    vm->lifeline = -1;
    rc = set_paths(vm, vms, id, err);
    struct stat st;
    if (!rc && (lstat(vm->dir, &st) < 0 || !S_ISDIR(st.st_mode)))
        rc = error_set(err, SM_E_NOTFOUND, "no VM %s (no folder %s; `supermachine ps` lists VMs)",
                     id, vm->dir);
    if (rc) {
        free(vm);
        return rc;
    }
    /* A folder without a readable vm.info is a VM that never got going (or
     * is starting right now): dead, as far as stop is concerned. */
    vm_record_read(vm->dir, &vm->rec, NULL);
    *out = vm;
    return SM_OK;
}

const char *sm_vm_id(const sm_vm *vm)
{
    return vm ? vm->id : NULL;
}

const char *sm_vm_exec_socket_path(const sm_vm *vm)
{
    return vm ? vm->exec_socket : NULL;
}

const char *sm_vm_state_dir(const sm_vm *vm)
{
    return vm ? vm->dir : NULL;
}

bool sm_vm_running(sm_vm *vm)
{
    return vm && !vm->removed && !vmm_gone(vm, NULL);
}

sm_exec_builder *sm_vm_exec_builder(const sm_vm *vm)
{
    return vm ? sm_exec_builder_new(vm->exec_socket) : NULL;
}

sm_code sm_vm_write_file(const sm_vm *vm, const char *guest_path, const void *bytes, size_t len,
                         uint32_t mode, sm_error *err)
{
    if (!vm)
        return error_set(err, SM_E_INVALID, "write_file: NULL VM");
    if (len > SM_VM_FILE_MAX)
        return error_set(err, SM_E_LIMIT, "write_file %s: %zu bytes, more than the %zu allowed",
                       guest_path ? guest_path : "", len, SM_VM_FILE_MAX);
    return sm_exec_write_file(vm->exec_socket, guest_path, bytes, len, mode, err);
}

sm_code sm_vm_connect(const sm_vm *vm, uint16_t guest_port, int *fd, sm_error *err)
{
    if (!vm || !fd)
        return error_set(err, SM_E_INVALID, "connect: NULL VM or fd");
    *fd = -1;
    if (guest_port == 0)
        return error_set(err, SM_E_INVALID, "connect: guest port 0");
    sm_code rc = agent_connect_port(vm->exec_socket, guest_port, VM_CONNECT_TIMEOUT_MS, fd, err);
    if (rc)
        error_prefix(err, "connect to guest port %u", (unsigned)guest_port);
    return rc;
}

sm_code sm_vm_expose_tcp(const sm_vm *vm, uint16_t guest_port, const char *host_addr, sm_error *err)
{
    if (!vm || !host_addr || guest_port == 0)
        return error_set(err, SM_E_INVALID, "expose_tcp: NULL VM or host address, or guest port 0");
    char spec[NET_PORT_TEXT_MAX + 8], why[256], sock[sizeof vm->dir + sizeof VM_CONTROL_SOCKET + 1];
    struct net_port port;
    int n = snprintf(spec, sizeof spec, "%s:%u", host_addr, (unsigned)guest_port);
    if (n < 0 || (size_t)n >= sizeof spec || !net_port_parse(spec, &port, why, sizeof why))
        return error_set(err, SM_E_INVALID, "expose_tcp %s -> guest port %u: expected [HOSTIP:]HOSTPORT",
                         host_addr, (unsigned)guest_port);
    snprintf(sock, sizeof sock, "%s/" VM_CONTROL_SOCKET, vm->dir);
    struct vmm_control_request req = { .verb = VMM_CONTROL_PUBLISH, .port = spec };
    sm_code rc = vmm_control_call(sock, &req, NULL, 0, err);
    if (rc)
        error_prefix(err, "expose_tcp %s -> guest port %u", host_addr, (unsigned)guest_port);
    return rc;
}

/* Where the VM folder's paused file (VM_PAUSED_FILE) is. */
static bool paused_path(const sm_vm *vm, char *out, size_t cap)
{
    return (size_t)snprintf(out, cap, "%s/" VM_PAUSED_FILE, vm->dir) < cap;
}

static bool vm_paused(const sm_vm *vm)
{
    char p[PATH_MAX];
    struct stat st;
    return paused_path(vm, p, sizeof p) && lstat(p, &st) == 0;
}

/* One pause or resume request; the paused file follows the VMM's answer. */
static sm_code pause_or_resume(const sm_vm *vm, bool pause, sm_error *err)
{
    const char *what = pause ? "pause" : "resume";
    if (!vm)
        return error_set(err, SM_E_INVALID, "sm_vm_%s: NULL VM", what);
    if (vm->removed || !vm_record_alive(&vm->rec))
        return error_set(err, SM_E_NOTFOUND, "VM %s is not running: nothing to %s", vm->id, what);
    if (vm_paused(vm) == pause)
        return error_set(err, SM_E_INVALID, "VM %s is %s", vm->id, pause ? "paused already" : "not paused");
    char sock[PATH_MAX], paused[PATH_MAX];
    if (!paused_path(vm, paused, sizeof paused) ||
        (size_t)snprintf(sock, sizeof sock, "%s/" VM_CONTROL_SOCKET, vm->dir) >= sizeof sock)
        return error_set(err, SM_E_LIMIT, "VM folder path too long");
    struct vmm_control_request req = { .verb = pause ? VMM_CONTROL_PAUSE : VMM_CONTROL_RESUME };
    sm_code rc = vmm_control_call(sock, &req, NULL, 0, err);
    if (rc) {
        error_prefix(err, "cannot %s VM %s", what, vm->id);
        return rc;
    }
    if (!pause) {
        unlink(paused);
        return SM_OK;
    }
    if (!write_file_atomic(paused, "", 0, 0600))
        return error_set_errno(err, SM_E_IO, errno, "VM %s is paused, but %s cannot be written", vm->id, paused);
    return SM_OK;
}

sm_code sm_vm_pause(const sm_vm *vm, sm_error *err)
{
    return pause_or_resume(vm, true, err);
}

sm_code sm_vm_resume(const sm_vm *vm, sm_error *err)
{
    return pause_or_resume(vm, false, err);
}

sm_code sm_vm_read_file(const sm_vm *vm, const char *guest_path, size_t max_len, uint8_t **bytes,
                        size_t *len, sm_error *err)
{
    if (!vm)
        return error_set(err, SM_E_INVALID, "read_file: NULL VM");
    if (max_len == 0 || max_len > SM_VM_FILE_MAX)
        max_len = SM_VM_FILE_MAX;
    return sm_exec_read_file(vm->exec_socket, guest_path, max_len, bytes, len, err);
}

sm_code sm_vm_stop(sm_vm *vm, sm_error *err)
{
    if (!vm)
        return error_set(err, SM_E_INVALID, "sm_vm_stop: NULL VM");
    if (vm->removed)
        return SM_OK;
    /* A paused guest cannot power off: it runs on for that. */
    if (vm->rec.volumes && vm_paused(vm))
        pause_or_resume(vm, false, NULL);
    if (vm->rec.volumes)
        power_off(vm);
    if (!end_vmm(vm, NULL))
        return error_set(err, SM_E_IO, "the VMM %d of VM %s did not end, even after SIGKILL",
                       (int)vm->rec.pid, vm->id);
    sm_code rc = vm_dir_remove(vm->dir, err);
    if (!rc)
        vm->removed = true;
    return rc;
}

void sm_vm_free(sm_vm *vm)
{
    if (!vm)
        return;
    if (vm->stop_on_free)
        sm_vm_stop(vm, NULL);
    else if (vm->our_child && !vm->reaped)
        vmm_gone(vm, NULL);   /* reap it if it already ended; else init will */
    if (vm->lifeline >= 0)
        close(vm->lifeline);
    free(vm);
}

/* In its cell, the VMM is the one child of the process we started. */
static int vmm_proper_pid(pid_t pid)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "re");
    int child = 0;
    if (f) {
        if (fscanf(f, "%d", &child) != 1)
            child = 0;
        fclose(f);
    }
    return child > 0 ? child : (int)pid;
}

static void fill_info(sm_vm *vm, sm_vm_info *info)
{
    memset(info, 0, sizeof *info);
    snprintf(info->id, sizeof info->id, "%s", vm->id);
    info->running = sm_vm_running(vm);
    info->pid = (int)vm->rec.pid;
    info->memory_mib = vm->rec.memory_mib;
    info->cpus = vm->rec.cpus;
    info->started_unix = vm->rec.started_unix;
    if (info->running)
        info->vmm_pid = vmm_proper_pid(vm->rec.pid);
    else
        why_it_ended(vm, info->ended, sizeof info->ended);
    info->paused = info->running && vm_paused(vm);
}

sm_code sm_vm_get_info(sm_vm *vm, sm_vm_info *info, sm_error *err)
{
    if (!vm || !info)
        return error_set(err, SM_E_INVALID, "sm_vm_get_info: NULL argument");
    fill_info(vm, info);
    return SM_OK;
}

static int by_start(const void *a, const void *b)
{
    const sm_vm_info *x = a, *y = b;
    if (x->started_unix != y->started_unix)
        return x->started_unix < y->started_unix ? -1 : 1;
    return strcmp(x->id, y->id);
}

sm_code sm_vm_list(const sm_store *store, sm_vm_info **list, size_t *count, sm_error *err)
{
    if (!list || !count)
        return error_set(err, SM_E_INVALID, "sm_vm_list: NULL argument");
    *list = NULL;
    *count = 0;
    char vms[PATH_MAX];
    sm_code rc = store_vms_dir(store, vms, sizeof vms, false, err);
    if (rc)
        return rc;
    DIR *d = opendir(vms);
    if (!d)
        return errno == ENOENT ? SM_OK : error_set_errno(err, SM_E_IO, errno, "cannot list %s", vms);
    sm_vm_info *v = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        if (!vm_id_valid(e->d_name))
            continue;
        sm_vm *vm;
        if (sm_vm_open(store, e->d_name, &vm, NULL))
            continue;   /* removed meanwhile */
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            sm_vm_info *nv = realloc(v, ncap * sizeof *nv);
            if (!nv)
                rc = error_set(err, SM_E_NOMEM, "out of memory");
            else {
                v = nv;
                cap = ncap;
            }
        }
        if (!rc)
            fill_info(vm, &v[n++]);
        sm_vm_free(vm);
    }
    closedir(d);
    if (rc) {
        free(v);
        return rc;
    }
    if (n)
        qsort(v, n, sizeof *v, by_start);
    *list = v;
    *count = n;
    return SM_OK;
}
