/*
 * supermachine exec ID [-e K=V]... [-w DIR] [-t] [-i]
 *                   [--timeout SECONDS] [--stage GUEST_PATH=HOST_FILE[:MODE]]...
 *                   -- ARGV...
 * supermachine exec --socket PATH [options] -- ARGV...
 *
 * ID is a VM that `supermachine start` started (its exec socket is found
 * through the runtime folder); --socket names any agent's exec socket. The
 * run itself, with its streams, terminal, signals and exit status, is
 * exec_run's (src/cli/exec_run.c), which `supermachine run` shares.
 */
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/exec_run.h"
#include "cli/flags.h"
#include "supermachine.h"

#include <stdio.h>

#define PROG "supermachine exec"

static void exec_usage(FILE *out)
{
    fprintf(out,
        "usage: supermachine exec ID [-e K=V]... [-w DIR] [-t] [-i]\n"
        "                         [--timeout SECONDS] [--stage GUEST_PATH=HOST_FILE[:MODE]]...\n"
        "                         -- ARGV...\n"
        "       supermachine exec --socket PATH [options] -- ARGV...\n"
        "  runs ARGV in the VM ID (see supermachine start, supermachine ps), or through\n"
        "  the agent behind the exec socket PATH\n"
        EXEC_FLAGS_HELP
        "exit status: the command's, 128+N if killed by signal N, 124 on timeout,\n"
        "125 if it could not be run (also: the VM is paused), 2 for a usage error\n");
}

static int usage_error(const char *why)
{
    if (why)
        fprintf(stderr, "%s: %s\n", PROG, why);
    fputc('\n', stderr);
    exec_usage(stderr);
    return EXIT_USAGE;
}

enum { EXEC_FLAG_SOCKET = FLAG_BLOCK_COMMAND };

/* Reads [ID] [flags] -- ARGV into o and *vm_id; FLAGS_GO_ON, or the exit status. */
static int parse(int argc, char **argv, struct exec_opts *o, const char **vm_id)
{
    static const struct option flags[] = {
        EXEC_FLAGS,
        { "socket", required_argument, NULL, EXEC_FLAG_SOCKET },
        FLAG_HELP,
        FLAGS_TABLE_END,
    };
    /* The ID comes before the flags: they are parsed from after it. */
    int skip = argc > 1 && argv[1][0] != '-' ? 1 : 0;
    *vm_id = skip ? argv[1] : NULL;
    struct flag_parser p;
    flag_parser_start(&p, PROG, argc - skip, argv + skip, EXEC_SHORT_FLAGS "h", flags);
    for (int c; (c = flag_next(&p)) != FLAG_END;) {
        if (c == 'h') {
            exec_usage(stdout);
            return 0;
        }
        if (c == FLAG_BAD)
            return usage_error(NULL);
        if (c == EXEC_FLAG_SOCKET)
            o->socket = optarg;
        else if (!exec_flag_apply(PROG, o, c, optarg))
            return EXIT_USAGE;
    }
    int rest = skip + flag_rest(&p);
    if (!o->socket == !*vm_id)
        return usage_error("give a VM id or --socket PATH (one of them)");
    if (!p.ended_at_dashes && rest < argc) {
        flag_unexpected(&p, argv[rest]);
        return usage_error(NULL);
    }
    if (!p.ended_at_dashes || rest >= argc)
        return usage_error("give the command after --");
    o->argc = argc - rest;
    o->argv = argv + rest;
    return FLAGS_GO_ON;
}

/* Opens the VM vm_id, which must be running, for its exec socket; 0 or the
 * exit status. */
static int open_vm(const char *vm_id, sm_vm **vm)
{
    sm_error err;
    sm_code rc = sm_vm_open(cli_store(), vm_id, vm, &err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", PROG, err.message);
        return rc == SM_E_INVALID ? EXIT_USAGE : EXIT_CANNOT;
    }
    if (!sm_vm_running(*vm)) {
        fprintf(stderr, "%s: VM %s is dead (its VMM is gone); `supermachine stop %s` cleans it up\n",
                PROG, vm_id, vm_id);
        return EXIT_CANNOT;
    }
    /* Its agent cannot answer until it runs again: say so rather than hang. */
    sm_vm_info info;
    if (sm_vm_get_info(*vm, &info, NULL) == SM_OK && info.paused) {
        fprintf(stderr, "%s: VM %s is paused: `supermachine resume %s` lets it run on\n", PROG, vm_id, vm_id);
        return EXIT_CANNOT;
    }
    return 0;
}

int cmd_exec(int argc, char **argv)
{
    struct exec_opts o;
    if (!exec_opts_init(&o, argc)) {
        exec_opts_free(&o);
        fprintf(stderr, "%s: out of memory\n", PROG);
        return EXIT_CANNOT;
    }
    const char *vm_id;
    sm_vm *vm = NULL;
    int status = parse(argc, argv, &o, &vm_id);
    if (status == FLAGS_GO_ON && vm_id && (status = open_vm(vm_id, &vm)) == 0) {
        o.socket = sm_vm_exec_socket_path(vm);
        status = FLAGS_GO_ON;
    }
    if (status == FLAGS_GO_ON)
        status = exec_run(PROG, &o);
    sm_vm_free(vm);   /* a handle only: the VM runs on */
    exec_opts_free(&o);
    return status;
}
