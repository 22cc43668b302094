/*
 * supermachine boot: boot a kernel and initramfs to the agent's ready
 * signal, report the time, and let the guest power itself off.
 *
 * The VMM program does the work (`supermachine-vmm --probe`, the same code
 * that runs every VM): this command finds it as the library does and
 * becomes it, so its options, messages and exit statuses are the VMM's:
 * 0 ready and powered off; 1 host or setup error; 2 usage; 3 the guest
 * kernel panicked; 4 not ready in time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/commands.h"
#include "supermachine.h"

#define EXIT_USAGE 2
#define EXIT_ERROR 1

int cmd_boot(int argc, char **argv)
{
    char vmm[4096];
    sm_error err = { 0 };
    if (sm_asset_find(SM_ASSET_VMM, vmm, sizeof vmm, &err) != SM_OK) {
        fprintf(stderr, "supermachine boot: %s\n", err.message);
        return EXIT_ERROR;
    }
    /* argv[0] names the command in the VMM's messages; --probe first. */
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) {
        fprintf(stderr, "supermachine boot: out of memory\n");
        return EXIT_ERROR;
    }
    args[0] = "supermachine boot";
    args[1] = "--probe";
    for (int i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    fflush(NULL);
    execv(vmm, args);
    perror("supermachine boot: cannot run the VMM");
    free(args);
    return EXIT_ERROR;
}
