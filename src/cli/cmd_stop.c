/*
 * supermachine stop ID... | --all
 *
 * Stops each VM (SIGTERM to its VMM, SIGKILL after 5 s) and removes its
 * folder; a dead VM is only cleaned up. Exit status 0 when every VM is gone,
 * 1 otherwise, 2 for a usage error.
 */
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "supermachine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void stop_usage(FILE *out)
{
    fprintf(out,
        "usage: supermachine stop ID... | --all\n"
        "  stops VMs (or cleans up dead ones) and removes their state\n");
}

static int stop_one(const char *id)
{
    sm_vm *vm;
    sm_error err;
    sm_code rc = sm_vm_open(cli_store(), id, &vm, &err);
    if (!rc) {
        rc = sm_vm_stop(vm, &err);
        sm_vm_free(vm);
    }
    if (rc) {
        fprintf(stderr, "supermachine stop: %s\n", err.message);
        return 1;
    }
    return 0;
}

static int stop_all(void)
{
    sm_vm_info *list;
    size_t n;
    sm_error err;
    if (sm_vm_list(cli_store(), &list, &n, &err)) {
        fprintf(stderr, "supermachine stop: %s\n", err.message);
        return 1;
    }
    int status = 0;
    for (size_t i = 0; i < n; i++)
        status |= stop_one(list[i].id);
    free(list);
    return status;
}

int cmd_stop(int argc, char **argv)
{
    static const struct option flags[] = { { "all", no_argument, NULL, 'a' }, FLAG_HELP, FLAGS_TABLE_END };
    int first, all, status = flags_switches("supermachine stop", argc, argv, "h", flags, stop_usage,
                                            &first, &all);
    if (status != FLAGS_GO_ON)
        return status;
    if (!!all == (first < argc)) {   /* IDs or --all, one of them */
        stop_usage(stderr);
        return 2;
    }
    if (all)
        return stop_all();
    status = 0;
    for (int i = first; i < argc; i++)
        status |= stop_one(argv[i]);
    return status;
}
