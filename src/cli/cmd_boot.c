/*
 * supermachine boot: boot a kernel and initramfs to the agent's ready
 * signal, report the time, and let the guest power itself off.
 *
 * Exit status: 0 ready and powered off; 1 host or setup error; 2 usage;
 * 3 the guest kernel panicked; 4 not ready in time.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "vmm/vm.h"

enum { BOOT_OK = 0, BOOT_ERROR = 1, BOOT_USAGE = 2, BOOT_PANIC = 3, BOOT_TIMEOUT = 4 };

#define POWEROFF_GRACE_NS (15ll * 1000000000)

static void boot_usage(FILE *out)
{
    fprintf(out,
            "usage: supermachine boot --kernel BZIMAGE --initrd CPIO [options]\n"
            "\n"
            "Boots a microVM to its agent's ready signal, prints the time from start to\n"
            "ready, and lets the guest power off.\n"
            "\n"
            "  --kernel FILE     a bzImage (x86-64, boot protocol 2.12+)\n"
            "  --initrd FILE     the initramfs (cpio), whose /init is the agent\n"
            "  --cmdline S       extra kernel parameters, appended to the defaults\n"
            "  --memory MIB      guest memory, %d to %u (default 256)\n"
            "  --cpus N          vCPUs, 1 to %d (default 1)\n"
            "  --console FILE    write the guest console to FILE ('-' for this terminal)\n"
            "  --timeout S       give up if not ready after S seconds (default 60)\n"
            "\n"
            "exit status: 0 ready, 1 error, 2 usage, 3 guest panic, 4 not ready in time\n",
            VM_MIN_MEM_MIB, VM_MAX_MEM_MIB, VM_MAX_CPUS);
}

static void print_console_tail(struct vm *vm)
{
    char tail[4096];
    vm_console_tail(vm, tail, sizeof tail, 20);
    if (tail[0])
        fprintf(stderr, "--- last lines of the guest console ---\n%s%s---\n", tail,
                tail[strlen(tail) - 1] == '\n' ? "" : "\n");
    else
        fprintf(stderr, "(the guest console printed nothing)\n");
}

static int report_stop(struct vm *vm, bool was_ready)
{
    char detail[256];
    enum vm_stop_reason why = vm_get_stop_reason(vm, detail, sizeof detail);
    switch (why) {
    case VM_STOP_GUEST_RESET:
        if (was_ready)
            return BOOT_OK;
        fprintf(stderr, "supermachine boot: the guest reset itself before its agent was ready\n");
        print_console_tail(vm);
        return BOOT_ERROR;
    case VM_STOP_PANIC:
        fprintf(stderr, "supermachine boot: the guest kernel panicked%s\n",
                was_ready ? " after its agent was ready" : " before its agent was ready");
        print_console_tail(vm);
        return BOOT_PANIC;
    case VM_STOP_ERROR:
        fprintf(stderr, "supermachine boot: the VM failed: %s\n", detail);
        print_console_tail(vm);
        return BOOT_ERROR;
    case VM_STOP_NONE:
    case VM_STOP_HOST:
        break;
    }
    return BOOT_OK;
}

static int run_boot(struct vm_config *cfg, double timeout_s)
{
    sm_error err = { 0 };
    struct vm *vm = vm_create(cfg, &err);
    if (!vm) {
        fprintf(stderr, "supermachine boot: %s\n", err.message);
        return BOOT_ERROR;
    }
    if (vm_start(vm, &err)) {
        fprintf(stderr, "supermachine boot: %s\n", err.message);
        vm_destroy(vm);
        return BOOT_ERROR;
    }
    int64_t deadline = vm->created_ns + (int64_t)(timeout_s * 1e9);
    enum vm_wait_result w = vm_run_until(vm, true, deadline);
    int status;
    if (w == VM_WAIT_READY) {
        printf("boot-to-ready: %.1f ms\n", (double)vm_ready_us(vm) / 1000.0);
        fflush(stdout);
        w = vm_run_until(vm, false, vm_now_ns() + POWEROFF_GRACE_NS);
        if (w == VM_WAIT_TIMEOUT) {
            fprintf(stderr, "supermachine boot: the agent was ready but the guest did not power off within %lld s\n",
                    POWEROFF_GRACE_NS / 1000000000);
            print_console_tail(vm);
            status = BOOT_ERROR;
        } else {
            status = report_stop(vm, true);
        }
    } else if (w == VM_WAIT_TIMEOUT) {
        fprintf(stderr, "supermachine boot: the guest was not ready within %g s (timeout)\n", timeout_s);
        print_console_tail(vm);
        status = BOOT_TIMEOUT;
    } else if (w == VM_WAIT_STOPPED) {
        status = report_stop(vm, false);
    } else {
        fprintf(stderr, "supermachine boot: the event loop failed: %s\n", strerror(errno));
        status = BOOT_ERROR;
    }
    vm_destroy(vm);
    return status;
}

static int open_console(const char *path)
{
    if (!path)
        return -1;
    if (!strcmp(path, "-"))
        return dup(STDOUT_FILENO);
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

int cmd_boot(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "kernel", required_argument, NULL, 'k' }, { "initrd", required_argument, NULL, 'i' },
        { "cmdline", required_argument, NULL, 'c' }, { "memory", required_argument, NULL, 'm' },
        { "cpus", required_argument, NULL, 'n' },   { "console", required_argument, NULL, 'o' },
        { "timeout", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct vm_config cfg;
    vm_config_init(&cfg);
    const char *console = NULL;
    double timeout_s = 60;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'k': cfg.kernel_path = optarg; break;
        case 'i': cfg.initrd_path = optarg; break;
        case 'c': cfg.cmdline_extra = optarg; break;
        case 'm': ok = parse_u32_option("--memory", optarg, &cfg.mem_mib); break;
        case 'n': ok = parse_u32_option("--cpus", optarg, &cfg.cpus); break;
        case 'o': console = optarg; break;
        case 't': ok = parse_seconds_option("--timeout", optarg, &timeout_s); break;
        case 'h': boot_usage(stdout); return BOOT_OK;
        default:
            fprintf(stderr, "supermachine boot: unknown or incomplete option '%s'\n", argv[optind - 1]);
            boot_usage(stderr);
            return BOOT_USAGE;
        }
        if (!ok)
            return BOOT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "supermachine boot: unexpected argument '%s'\n", argv[optind]);
        return BOOT_USAGE;
    }
    if (!cfg.kernel_path) {
        fprintf(stderr, "supermachine boot: --kernel is required\n");
        boot_usage(stderr);
        return BOOT_USAGE;
    }
    sm_error err = { 0 };
    if (vm_config_validate(&cfg, &err)) {
        fprintf(stderr, "supermachine boot: %s\n", err.message);
        return BOOT_USAGE;
    }
    cfg.poweroff_when_ready = true;
    cfg.console_fd = open_console(console);
    if (console && cfg.console_fd < 0) {
        fprintf(stderr, "supermachine boot: cannot write the console to %s: %s\n", console, strerror(errno));
        return BOOT_ERROR;
    }
    int status = run_boot(&cfg, timeout_s);
    if (cfg.console_fd >= 0)
        close(cfg.console_fd);
    return status;
}
