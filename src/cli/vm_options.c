#include "cli/vm_options.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/options.h"

static void usage(FILE *out, const char *prog, bool process)
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
            process ? "Runs one microVM in this process until the guest powers off or a\n"
                      "SIGTERM/SIGINT/SIGHUP stops it.\n"
                    : "Boots a microVM to its agent's ready signal, prints the time from start to\n"
                      "ready, and lets the guest power off.\n",
            VM_MIN_MEM_MIB, VM_MAX_MEM_MIB, VM_MAX_CPUS);
    if (process)
        fprintf(out,
                "  --vsock-socket PATH  Unix socket for host-to-guest vsock: send \"CONNECT <port>\\n\"\n"
                "  --exec-socket PATH   Unix socket whose connections reach the guest agent directly\n"
                "  --ready-fd N         write \"ready <microseconds>\\n\" to fd N once the agent is ready\n"
                "  --die-with-parent    stop the VM when the process that started this one dies\n"
                "  --restore DIR        restore the snapshot in DIR instead of booting (no --kernel)\n"
                "  --snapshot-when-ready DIR  boot, snapshot into DIR once the agent is ready, stop\n"
                "  --control-socket PATH  serve control requests (snapshot DIR, stop, stats)\n");
    fprintf(out, "\nexit status: 0 ok, 1 error, 2 usage, 3 guest panic, 4 not ready in time\n");
}

int vm_cli_parse(struct vm_cli *cli, int argc, char **argv, bool process)
{
    static const struct option longopts[] = {
        { "kernel", required_argument, NULL, 'k' },       { "initrd", required_argument, NULL, 'i' },
        { "cmdline", required_argument, NULL, 'c' },      { "memory", required_argument, NULL, 'm' },
        { "cpus", required_argument, NULL, 'n' },         { "console", required_argument, NULL, 'o' },
        { "timeout", required_argument, NULL, 't' },      { "help", no_argument, NULL, 'h' },
        { "vsock-socket", required_argument, NULL, 'V' }, { "exec-socket", required_argument, NULL, 'E' },
        { "ready-fd", required_argument, NULL, 'R' },     { "die-with-parent", no_argument, NULL, 'D' },
        { "restore", required_argument, NULL, 'S' },      { "snapshot-when-ready", required_argument, NULL, 'W' },
        { "control-socket", required_argument, NULL, 'C' }, { "disk", required_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 },
    };
    const char *prog = argv[0];
    memset(cli, 0, sizeof *cli);
    vm_config_init(&cli->cfg);
    cli->run = (struct vm_run_options){ .prog = prog, .timeout_s = 60, .serve = process,
                                        .print_boot_time = !process, .ready_fd = -1 };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        bool ok = true;
        uint32_t fd;
        if (!process && strchr("VERDSWC", c)) {
            fprintf(stderr, "%s: unknown option '%s'\n", prog, argv[optind - 1]);
            return -1;
        }
        switch (c) {
        case 'k': cli->cfg.kernel_path = optarg; break;
        case 'i': cli->cfg.initrd_path = optarg; break;
        case 'c': cli->cfg.cmdline_extra = optarg; break;
        case 'm': ok = parse_u32_option("--memory", optarg, &cli->cfg.mem_mib); break;
        case 'n': ok = parse_u32_option("--cpus", optarg, &cli->cfg.cpus); break;
        case 'o': cli->console_path = optarg; break;
        case 'd': cli->cfg.disk_path = optarg; break;
        case 't': ok = parse_seconds_option("--timeout", optarg, &cli->run.timeout_s); break;
        case 'V': cli->cfg.vsock_socket = optarg; break;
        case 'E': cli->cfg.exec_socket = optarg; break;
        case 'R':
            ok = parse_u32_option("--ready-fd", optarg, &fd) && fd <= 65535;
            cli->run.ready_fd = (int)fd;
            break;
        case 'D': cli->die_with_parent = true; break;
        case 'S': cli->run.restore_dir = optarg; break;
        case 'W': cli->run.snapshot_when_ready = optarg; break;
        case 'C': cli->run.control_socket = optarg; break;
        case 'h': usage(stdout, prog, process); return 1;
        default:
            fprintf(stderr, "%s: unknown or incomplete option '%s'\n", prog, argv[optind - 1]);
            usage(stderr, prog, process);
            return -1;
        }
        if (!ok)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
        return -1;
    }
    if (cli->run.restore_dir) {
        if (cli->cfg.kernel_path || cli->run.snapshot_when_ready) {
            fprintf(stderr, "%s: --restore takes the VM from the snapshot: no --kernel or --snapshot-when-ready\n",
                    prog);
            return -1;
        }
        if (!cli->cfg.exec_socket) {
            fprintf(stderr, "%s: --restore needs --exec-socket: the restored guest gets the host's clock and fresh "
                            "entropy through it before it is ready\n", prog);
            return -1;
        }
        cli->cfg.kernel_path = "(snapshot)";
    }
    if (!cli->cfg.kernel_path) {
        fprintf(stderr, "%s: --kernel is required\n", prog);
        usage(stderr, prog, process);
        return -1;
    }
    sm_error err = { 0 };
    if (vm_config_validate(&cli->cfg, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        return -1;
    }
    return 0;
}

bool vm_cli_open_console(struct vm_cli *cli)
{
    const char *path = cli->console_path;
    if (!path)
        return true;
    cli->cfg.console_fd = !strcmp(path, "-") ? dup(STDOUT_FILENO)
                                              : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (cli->cfg.console_fd < 0) {
        fprintf(stderr, "%s: cannot write the console to %s: %s\n", cli->run.prog, path, strerror(errno));
        return false;
    }
    return true;
}
