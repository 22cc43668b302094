/*
 * supermachine start [--memory MIB] [--cpus N] [--kernel FILE] [--initrd FILE]
 *                    [--console FILE] [--timeout S]
 *
 * Boots a detached VM (its VMM runs on after this command exits, in its own
 * session) and prints its id once the guest's agent is ready. Exit status 0,
 * 1 when the VM did not start (with the reason), 2 for a usage error.
 */
#include "cli/commands.h"
#include "cli/options.h"
#include "supermachine.h"

#include <stdio.h>
#include <string.h>

static void start_usage(FILE *out)
{
    fprintf(out,
        "usage: supermachine start [--memory MIB] [--cpus N] [--kernel FILE] [--initrd FILE]\n"
        "                          [--console FILE] [--timeout S]\n"
        "  boots a VM that runs on in the background, and prints its id when it is ready\n"
        "  --memory MIB    guest memory, 64 to 65536 (default 256)\n"
        "  --cpus N        vCPUs, 1 to 32 (default 1)\n"
        "  --kernel FILE   the guest kernel (default: found as the library documents,\n"
        "                  $SUPERMACHINE_KERNEL first)\n"
        "  --initrd FILE   the initramfs with the agent ($SUPERMACHINE_INITRD first)\n"
        "  --console FILE  the guest console (default: console.log in the VM's folder)\n"
        "  --timeout S     give up if the agent is not ready after S seconds (default 60)\n"
        "then: supermachine exec ID -- ARGV..., supermachine cp, supermachine ps,\n"
        "supermachine stop ID\n");
}

/* Applies one option with its value; false after printing why not. */
static bool apply(sm_vm_config *cfg, const char *opt, const char *val)
{
    uint32_t n;
    double s;
    sm_code rc;
    if (!strcmp(opt, "--memory"))
        rc = parse_u32_option(opt, val, &n) ? sm_vm_config_memory_mib(cfg, n) : SM_E_INVALID;
    else if (!strcmp(opt, "--cpus"))
        rc = parse_u32_option(opt, val, &n) ? sm_vm_config_cpus(cfg, n) : SM_E_INVALID;
    else if (!strcmp(opt, "--kernel"))
        rc = sm_vm_config_kernel(cfg, val);
    else if (!strcmp(opt, "--initrd"))
        rc = sm_vm_config_initrd(cfg, val);
    else if (!strcmp(opt, "--console"))
        rc = sm_vm_config_console_path(cfg, val);
    else if (!strcmp(opt, "--timeout"))
        rc = parse_seconds_option(opt, val, &s) && s <= 3600
                 ? sm_vm_config_boot_timeout_s(cfg, s < 1 ? 1 : (uint32_t)(s + 0.999))
                 : SM_E_INVALID;
    else {
        fprintf(stderr, "supermachine start: unknown option '%s'\n\n", opt);
        start_usage(stderr);
        return false;
    }
    if (rc)
        fprintf(stderr, "supermachine start: bad value '%s' for %s\n", val, opt);
    return rc == SM_OK;
}

int cmd_start(int argc, char **argv)
{
    sm_vm_config *cfg = sm_vm_config_new();
    if (!cfg) {
        fprintf(stderr, "supermachine start: out of memory\n");
        return 1;
    }
    sm_vm_config_detached(cfg, true);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            start_usage(stdout);
            sm_vm_config_free(cfg);
            return 0;
        }
        if (i + 1 >= argc || !apply(cfg, argv[i], argv[i + 1])) {
            if (i + 1 >= argc) {
                fprintf(stderr, "supermachine start: '%s' needs a value\n\n", argv[i]);
                start_usage(stderr);
            }
            sm_vm_config_free(cfg);
            return 2;
        }
        i++;
    }
    sm_vm *vm;
    sm_error err;
    sm_code rc = sm_vm_start(cfg, &vm, &err);
    sm_vm_config_free(cfg);
    if (rc) {
        fprintf(stderr, "supermachine start: %s\n", err.message);
        return 1;
    }
    printf("%s\n", sm_vm_id(vm));
    sm_vm_free(vm);   /* detached: it runs on */
    return fflush(stdout) == 0 ? 0 : 1;
}
