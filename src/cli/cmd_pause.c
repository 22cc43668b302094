/*
 * supermachine pause ID...
 * supermachine resume ID...
 *
 * Pauses running VMs (their vCPUs stop, their memory stays; sm_vm_pause)
 * or lets paused ones run on (sm_vm_resume). While a VM is paused, `ps`
 * shows it "paused", `exec` refuses it (its agent cannot answer), and
 * `stop` and `snapshot` work on it. Exit status 0 when every VM was
 * paused (resumed), 1 otherwise, 2 for a usage error.
 */
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "supermachine.h"

#include <stdbool.h>
#include <stdio.h>

static void pause_usage(FILE *out)
{
    fprintf(out, "usage: supermachine pause ID...\n"
                 "  pauses running VMs: their vCPUs stop and their memory stays as it is,\n"
                 "  until `supermachine resume ID`; meanwhile exec refuses them, and stop and\n"
                 "  snapshot work on them\n");
}

static void resume_usage(FILE *out)
{
    fprintf(out, "usage: supermachine resume ID...\n"
                 "  lets paused VMs (`supermachine pause`) run on where they stopped\n");
}

static int pause_one(const char *prog, const char *id, bool pause)
{
    sm_vm *vm;
    sm_error err = { 0 };
    sm_code rc = sm_vm_open(cli_store(), id, &vm, &err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        return rc == SM_E_INVALID ? 2 : 1;   /* not an id at all: a usage error */
    }
    rc = pause ? sm_vm_pause(vm, &err) : sm_vm_resume(vm, &err);
    sm_vm_free(vm);   /* a handle only: the VM runs on */
    if (rc)
        fprintf(stderr, "%s: %s\n", prog, err.message);
    return rc ? 1 : 0;
}

static int pause_or_resume(int argc, char **argv, bool pause)
{
    const char *prog = pause ? "supermachine pause" : "supermachine resume";
    void (*usage)(FILE *) = pause ? pause_usage : resume_usage;
    int first, status = flags_help_only(prog, argc, argv, usage, &first);
    if (status != FLAGS_GO_ON)
        return status;
    if (first >= argc) {
        usage(stderr);
        return 2;
    }
    status = 0;
    for (int i = first; i < argc; i++) {
        int one = pause_one(prog, argv[i], pause);
        if (one > status)
            status = one;
    }
    return status;
}

int cmd_pause(int argc, char **argv)
{
    return pause_or_resume(argc, argv, true);
}

int cmd_resume(int argc, char **argv)
{
    return pause_or_resume(argc, argv, false);
}
