/*
 * supermachine ps [-q]
 *
 * Lists this user's VMs: id, state (running, paused, or dead when its VMM is gone),
 * VMM pid, memory, vCPUs and age. -q prints the ids only.
 */
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "supermachine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void format_age(int64_t seconds, char *out, size_t cap)
{
    if (seconds < 0)
        seconds = 0;
    if (seconds < 120)
        snprintf(out, cap, "%llds", (long long)seconds);
    else if (seconds < 2 * 3600)
        snprintf(out, cap, "%lldm", (long long)(seconds / 60));
    else if (seconds < 2 * 86400)
        snprintf(out, cap, "%lldh", (long long)(seconds / 3600));
    else
        snprintf(out, cap, "%lldd", (long long)(seconds / 86400));
}

static void ps_usage(FILE *out)
{
    fprintf(out, "usage: supermachine ps [-q]\n"
            "  lists VMs: id, state (running/paused/dead), VMM pid, memory, vCPUs, age\n"
            "  -q  ids only\n");
}

int cmd_ps(int argc, char **argv)
{
    static const struct option flags[] = { FLAG_HELP, FLAGS_TABLE_END };
    int first, quiet, status = flags_switches("supermachine ps", argc, argv, "qh", flags, ps_usage,
                                              &first, &quiet);
    if (status != FLAGS_GO_ON)
        return status;
    if (first < argc) {
        fprintf(stderr, "supermachine ps: unexpected argument '%s'\n", argv[first]);
        ps_usage(stderr);
        return 2;
    }
    sm_vm_info *list;
    size_t n;
    sm_error err;
    if (sm_vm_list(cli_store(), &list, &n, &err)) {
        fprintf(stderr, "supermachine ps: %s\n", err.message);
        return 1;
    }
    if (!quiet)
        printf("%-10s %-8s %8s %8s %5s %6s\n", "ID", "STATE", "PID", "MEMORY", "CPUS", "AGE");
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < n; i++) {
        const sm_vm_info *v = &list[i];
        if (quiet) {
            printf("%s\n", v->id);
            continue;
        }
        char age[32], mem[32];
        format_age(v->started_unix ? now - v->started_unix : 0, age, sizeof age);
        snprintf(mem, sizeof mem, "%uM", v->memory_mib);
        printf("%-10s %-8s %8d %8s %5u %6s%s%s\n", v->id, v->paused ? "paused" : v->running ? "running" : "dead", v->pid,
               mem, v->cpus, v->started_unix ? age : "?", v->ended[0] ? "  " : "", v->ended);
    }
    free(list);
    return fflush(stdout) == 0 ? 0 : 1;
}
