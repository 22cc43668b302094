/*
 * supermachine-vmm: one VM in its own process, so that a VMM fault never
 * takes its embedder down. It boots, tells its parent when the agent is
 * ready (--ready-fd), serves the vsock and exec sockets, and ends when the
 * guest powers off or a signal stops it. `supermachine-vmm --help` lists the
 * options; the exit statuses are those of src/vmm/run.h.
 */
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "cli/vm_options.h"

int main(int argc, char **argv)
{
    struct vm_cli cli;
    argv[0] = "supermachine-vmm";
    int rc = vm_cli_parse(&cli, argc, argv, true);
    if (rc)
        return rc > 0 ? VM_EXIT_STATUS_OK : VM_EXIT_STATUS_USAGE;
    /* SIGTERM stops the VM cleanly (run.c watches it): the parent's death
     * becomes that signal. */
    if (cli.die_with_parent && (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() == 1))
        return VM_EXIT_STATUS_ERROR;
    if (!vm_cli_open_console(&cli))
        return VM_EXIT_STATUS_ERROR;
    int status = vm_run_to_exit(&cli.cfg, &cli.run);
    if (cli.cfg.console_fd >= 0)
        close(cli.cfg.console_fd);
    return status;
}
