/*
 * supermachine start [--memory MIB] [--cpus N] [--kernel FILE] [--initrd FILE]
 *                    [--console FILE] [--timeout S]
 *
 * Boots a detached VM (its VMM runs on after this command exits, in its own
 * session) and prints its id once the guest's agent is ready. Exit status 0,
 * 1 when the VM did not start (with the reason), 2 for a usage error.
 */
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/vm_flags.h"
#include "supermachine.h"

#include <stdio.h>

static void start_usage(FILE *out)
{
    fprintf(out,
        "usage: supermachine start [--memory MIB] [--cpus N] [--kernel FILE] [--initrd FILE]\n"
        "                          [--console FILE] [--timeout S] [network options]\n"
        "  boots a VM that runs on in the background, and prints its id when it is ready\n"
        "  --memory MIB    guest memory, 64 to 65536 (default 256)\n"
        "  --cpus N        vCPUs, 1 to 32 (default 1)\n"
        "  --kernel FILE   the guest kernel (default: found as the library documents,\n"
        "                  $SUPERMACHINE_KERNEL first)\n"
        "  --initrd FILE   the initramfs with the agent ($SUPERMACHINE_INITRD first)\n"
        "  --console FILE  the guest console (default: console.log in the VM's folder)\n"
        "  --timeout S     give up if the agent is not ready after S seconds (default 60)\n"
        VM_FLAGS_NET_HELP
        "then: supermachine exec ID -- ARGV..., supermachine cp, supermachine ps,\n"
        "supermachine stop ID\n");
}

#define PROG "supermachine start"

static int usage_error(void)
{
    fputc('\n', stderr);
    start_usage(stderr);
    return 2;
}

/* Reads the flags into cfg; FLAGS_GO_ON, or the exit status. */
static int parse(int argc, char **argv, sm_vm_config *cfg)
{
    static const struct option flags[] = { VM_FLAGS_SIZE, VM_FLAGS_BOOT, VM_FLAGS_NET, FLAG_HELP, FLAGS_TABLE_END };
    struct flag_parser p;
    flag_parser_start(&p, PROG, argc, argv, VM_SHORT_FLAGS_NET "h", flags);
    for (int c; (c = flag_next(&p)) != FLAG_END;) {
        if (c == 'h') {
            start_usage(stdout);
            return 0;
        }
        if (c == FLAG_BAD)
            return usage_error();
        if (!vm_flag_apply(PROG, cfg, c, optarg))
            return 2;
    }
    int rest = flag_rest(&p);
    if (rest < argc) {
        flag_unexpected(&p, argv[rest]);
        return usage_error();
    }
    return FLAGS_GO_ON;
}

int cmd_start(int argc, char **argv)
{
    sm_vm_config *cfg = sm_vm_config_new();
    if (!cfg) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return 1;
    }
    sm_vm_config_detached(cfg, true);
    int status = parse(argc, argv, cfg);
    if (status != FLAGS_GO_ON) {
        sm_vm_config_free(cfg);
        return status;
    }
    sm_vm *vm;
    sm_error err;
    sm_code rc = sm_vm_start(cfg, &vm, &err);
    sm_vm_config_free(cfg);
    if (rc) {
        fprintf(stderr, "%s: %s\n", PROG, err.message);
        return 1;
    }
    printf("%s\n", sm_vm_id(vm));
    sm_vm_free(vm);   /* detached: it runs on */
    return fflush(stdout) == 0 ? 0 : 1;
}
