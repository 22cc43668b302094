/*
 * supermachine boot: boot a kernel and initramfs to the agent's ready
 * signal, report the time, and let the guest power itself off.
 *
 * Exit status: 0 ready and powered off; 1 host or setup error; 2 usage;
 * 3 the guest kernel panicked; 4 not ready in time.
 */
#include <unistd.h>

#include "cli/commands.h"
#include "cli/vm_options.h"

int cmd_boot(int argc, char **argv)
{
    struct vm_cli cli;
    argv[0] = "supermachine boot";
    int rc = vm_cli_parse(&cli, argc, argv, false);
    if (rc)
        return rc > 0 ? VM_EXIT_STATUS_OK : VM_EXIT_STATUS_USAGE;
    if (!vm_cli_open_console(&cli))
        return VM_EXIT_STATUS_ERROR;
    int status = vm_run_to_exit(&cli.cfg, &cli.run);
    if (cli.cfg.console_fd >= 0)
        close(cli.cfg.console_fd);
    return status;
}
