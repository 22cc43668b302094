/*
 * supermachine-vmm: one VM in its own process, so that a VMM fault never
 * takes its embedder down. It boots (or restores), tells its parent when the
 * agent is ready (--ready-fd), serves the vsock, exec and control sockets,
 * and ends when the guest powers off or a signal stops it. Its arguments,
 * ready line, exit statuses and control requests are the contract in
 * src/protocol/vmm.h. With --probe it is `supermachine boot`: boot to the
 * agent's ready signal, print the time, let the guest power off.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "protocol/vmm.h"
#include "vmm/cell.h"
#include "vmm/persist.h"
#include "vmm/run.h"
#include "vmm/vm.h"

static void usage(FILE *out, const char *prog, bool probe)
{
    fprintf(out,
            "usage: %s --kernel BZIMAGE --initrd CPIO [options]\n"
            "\n"
            "%s"
            "\n"
            "  --kernel FILE        a bzImage (x86-64, boot protocol 2.12+)\n"
            "  --initrd FILE        the initramfs (cpio), whose /init is the agent\n"
            "  --cmdline S          extra kernel parameters, appended to the defaults\n"
            "  --memory MIB         guest memory, %d to %u (default 256)\n"
            "  --cpus N             vCPUs, 1 to %d (default 1)\n"
            "  --console FILE       write the guest console to FILE ('-' for stdout)\n"
            "  --disk FILE          a read-only disk image, /dev/vda in the guest (a restore\n"
            "                       needs the image its snapshot was baked with)\n"
            "  --timeout S          give up if not ready after S seconds (default 60)\n",
            prog,
            probe ? "Boots a microVM to its agent's ready signal, prints the time from start to\n"
                    "ready, and lets the guest power off.\n"
                  : "Runs one microVM in this process until the guest powers off or a\n"
                    "SIGTERM/SIGINT/SIGHUP stops it.\n",
            VMM_MIN_MEM_MIB, VMM_MAX_MEM_MIB, VMM_MAX_CPUS);
    if (!probe)
        fprintf(out,
                "  --vsock-socket PATH  Unix socket for host-to-guest vsock: send \"CONNECT <port>\\n\"\n"
                "  --exec-socket PATH   Unix socket whose connections reach the guest agent directly\n"
                "  --ready-fd N         write \"ready <microseconds>\\n\" to fd N once the agent is ready\n"
                "  --lifeline-fd N      stop the VM when fd N (a pipe's read end) reaches its end: the\n"
                "                       process holding the write end is gone or done with the VM\n"
                "  --restore DIR        restore the snapshot in DIR instead of booting (no --kernel)\n"
                "  --snapshot-when-ready DIR  boot, snapshot into DIR once the agent is ready, stop\n"
                "  --control-socket PATH  serve control requests (snapshot DIR, stop, stats)\n"
                "  --max-memory MIB     refuse a snapshot that asks for more memory (default: the host's)\n"
                "  --max-cpus N         refuse a snapshot that asks for more vCPUs (default: the host's)\n"
                "  --seccomp off        run without the seccomp filters or the cell (debugging only)\n"
                "  --cell DIR           live in a cell (namespaces, a root showing only DIR):\n"
                "                       DIR holds the sockets, which must all be in it\n"
                "  --cgroup DIR         move into this cgroup v2 folder (its limits) first\n"
                "  --volume FILE        a writable ext4 disk in the next volume slot, locked for\n"
                "                       this VM alone; the library mounts it (at most 4)\n"
                "  --volume-ro FILE     the same, read-only (shared with other readers)\n"
                "  --probe              be `supermachine boot` (the options above do not apply)\n");
    fprintf(out, "\nexit status: 0 ok, 1 error, 2 usage, 3 guest panic, 4 not ready in time\n");
}

/* The VM and how to run it, from the arguments. */
static void config_from_args(const struct vmm_args *a, const char *prog, struct vm_config *cfg,
                             struct vm_run_options *run)
{
    vm_config_init(cfg);
    cfg->kernel_path = a->restore_dir ? "(snapshot)" : a->kernel;
    cfg->initrd_path = a->initrd;
    cfg->cmdline_extra = a->cmdline;
    cfg->disk_path = a->disk;
    memcpy(cfg->volumes, a->volumes, sizeof cfg->volumes);
    cfg->nvolumes = a->nvolumes;
    cfg->vsock_socket = a->vsock_socket;
    cfg->exec_socket = a->exec_socket;
    if (a->memory_mib)
        cfg->mem_mib = a->memory_mib;
    if (a->cpus)
        cfg->cpus = a->cpus;
    cfg->net = a->net;
    cfg->ports = a->ports;
    cfg->confine = !a->no_seccomp;
    cfg->max_mem_mib = a->max_memory_mib;
    cfg->max_cpus = a->max_cpus;
    *run = (struct vm_run_options){
        .prog = prog,
        .timeout_s = a->timeout_s > 0 ? a->timeout_s : 60,
        .serve = !a->probe,
        .print_boot_time = a->probe,
        .ready_fd = a->ready_fd,
        .lifeline_fd = a->lifeline_fd,
        .restore_dir = a->restore_dir,
        .snapshot_when_ready = a->snapshot_when_ready,
        .control_socket = a->control_socket,
        .snapshot_dir_fd = -1,
    };
}

/* Opens the console file ('-' is stdout); false after printing an error. */
static bool open_console(const char *path, const char *prog, struct vm_config *cfg)
{
    if (!path)
        return true;
    cfg->console_fd = !strcmp(path, "-") ? dup(STDOUT_FILENO)
                                         : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (cfg->console_fd < 0) {
        fprintf(stderr, "%s: cannot write the console to %s: %s\n", prog, path, strerror(errno));
        return false;
    }
    return true;
}

#if defined(__SANITIZE_ADDRESS__)
/* The tests' sanitizer builds: LeakSanitizer stops the world with ptrace
 * at exit, which the seccomp filters forbid (and must). The VMM's code is
 * leak-checked where it is unconfined: the unit tests link it. */
__attribute__((visibility("default"))) int __lsan_is_turned_off(void);
__attribute__((visibility("default"))) int __lsan_is_turned_off(void)
{
    return 1;
}
#endif

int main(int argc, char **argv)
{
    /* `supermachine boot` runs this program with argv[0] set to its name,
     * so that messages name the command the user typed. */
    const char *prog = argv[0] && !strcmp(argv[0], "supermachine boot") ? argv[0] : "supermachine-vmm";
    struct vmm_args a;
    char why[512];
    int rc = vmm_args_parse(&a, argc, argv, why, sizeof why);
    if (rc > 0) {
        usage(stdout, prog, a.probe);
        return VMM_EXIT_OK;
    }
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", prog, why);
        if (strstr(why, "unknown") || strstr(why, "--kernel is required"))
            usage(stderr, prog, a.probe);
        return VMM_EXIT_USAGE;
    }
    struct vm_config cfg;
    struct vm_run_options run;
    config_from_args(&a, prog, &cfg, &run);
    sm_error err = { 0 };
    if (vm_config_validate(&cfg, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        return VMM_EXIT_USAGE;
    }
    if (a.cgroup_dir && !a.probe && cell_join_cgroup(a.cgroup_dir, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        return VMM_EXIT_ERROR;
    }
    struct cell cell = { .dir = a.cell_dir, .host_network = cfg.net.enabled, .keep_fds = { a.ready_fd, a.lifeline_fd } };
    if (cell.dir && cfg.confine && !a.probe) {
        if (!cell_enter(&cell, &err)) {
            fprintf(stderr, "%s: %s\n", prog, err.message);
            return VMM_EXIT_ERROR;
        }
        run.cell = &cell;
        cfg.in_cell = cell.namespaces;
    }
    if (!open_console(a.console, prog, &cfg))
        return VMM_EXIT_ERROR;
    if (run.snapshot_when_ready && (run.snapshot_dir_fd = persist_open_dir(run.snapshot_when_ready, &err)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        return VMM_EXIT_ERROR;
    }
    int status = vm_run_to_exit(&cfg, &run);
    if (cfg.console_fd >= 0)
        close(cfg.console_fd);
    if (run.snapshot_dir_fd >= 0)
        close(run.snapshot_dir_fd);
    return status;
}
