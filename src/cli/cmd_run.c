/*
 * supermachine run [registry options] [IMAGE] [exec options] [-- ARGV...]
 *
 * Restores a VM from IMAGE, runs ARGV in it exactly as `supermachine exec`
 * does (the same exec options and exec_run), stops the VM, and exits with
 * the command's status. IMAGE is, in this order: a named image; a snapshot
 * folder; "default" (baked on first use, and what no IMAGE means); else an
 * OCI/Docker reference, pulled and baked the first time (sm_image_from_oci);
 * src/cli/cli_image.c reads it, for `start` too.
 * Without ARGV, an OCI image's Entrypoint and Cmd run. ARGV runs as given:
 * an Entrypoint is not put in front of it (this is exec, not `docker run`).
 */
#include <stdio.h>

#include "cli/cli_image.h"
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/exec_run.h"
#include "cli/flags.h"
#include "cli/pull_options.h"
#include "cli/vm_flags.h"
#include "supermachine.h"

#define PROG "supermachine run"

static void run_usage(FILE *out)
{
    fprintf(out, "usage: supermachine run [options] [IMAGE] [exec options] [-- ARGV...]\n\n"
                 "Starts a fresh VM from IMAGE, runs ARGV in it, stops it, and exits with\n"
                 "ARGV's status; without ARGV, an OCI image's Entrypoint and Cmd. The exec\n"
                 "options are `supermachine exec`'s: -e, -w, -t, -i, --timeout, --stage.\n"
                 CLI_IMAGE_HELP
                 "Without IMAGE: the image 'default', baked the first time.\n\n"
                 "network options (before or after IMAGE):\n" VM_FLAGS_NET_HELP "\n"
                 "resource limits (before or after IMAGE):\n" VM_FLAGS_LIMITS_HELP "\n"
                 "volumes (before or after IMAGE):\n" VM_FLAGS_VOLUMES_HELP "\n"
                 "options (before IMAGE):\n" PULL_OPTIONS_HELP);
}

struct run_args {
    const char *image;
    sm_vm_config *cfg;       /* the VM's network flags go here at once */
    sm_pull_options *pull;   /* NULL until a registry option */
    struct exec_opts exec;   /* exec.argv NULL: the image's own command */
};

/* The flag c with its value arg; FLAGS_GO_ON, or the exit status. */
static int take_flag(int c, const char *arg, struct run_args *a)
{
    if (c == 'h') {
        run_usage(stdout);
        return 0;
    }
    if (c == FLAG_BAD) {
        fputc('\n', stderr);
        run_usage(stderr);
        return EXIT_USAGE;
    }
    bool ok = is_pull_flag(c) ? pull_flag_apply(PROG, c, arg, &a->pull)
              : is_vm_flag(c) ? vm_flag_apply(PROG, a->cfg, c, arg)
                              : exec_flag_apply(PROG, &a->exec, c, arg);
    return ok ? FLAGS_GO_ON : EXIT_USAGE;
}

/*
 * [registry options] [IMAGE] [exec options] [-- ARGV...]. Parsing stops at
 * IMAGE and goes on after it, where registry options have no place. The
 * exec options may come before IMAGE too: with no IMAGE, that is the only
 * place they can be.
 */
static int parse(int argc, char **argv, struct run_args *a)
{
    static const struct option before_image[] = { PULL_FLAGS, VM_FLAGS_NET, VM_FLAGS_LIMITS, VM_FLAGS_VOLUMES, EXEC_FLAGS, FLAG_HELP,
                                                  FLAGS_TABLE_END };
    static const struct option after_image[] = { VM_FLAGS_NET, VM_FLAGS_LIMITS, VM_FLAGS_VOLUMES, EXEC_FLAGS, FLAG_HELP, FLAGS_TABLE_END };
    struct flag_parser p;
    flag_parser_start(&p, PROG, argc, argv, EXEC_SHORT_FLAGS VM_SHORT_FLAGS_NET "h", before_image);
    p.after_word = after_image;
    a->image = NULL;
    for (int c, status; (c = flag_next_or_word(&p, &a->image)) != FLAG_END;)
        if ((status = take_flag(c, optarg, a)) != FLAGS_GO_ON)
            return status;
    int rest = flag_rest(&p);
    if (!a->image)
        a->image = CLI_DEFAULT_IMAGE;
    if (!p.ended_at_dashes && rest < argc) {
        flag_unexpected(&p, argv[rest]);
        return EXIT_USAGE;
    }
    if (p.ended_at_dashes && rest >= argc) {
        fprintf(stderr, "%s: give the command after --\n", PROG);
        return EXIT_USAGE;
    }
    if (rest < argc) {
        a->exec.argc = argc - rest;
        a->exec.argv = argv + rest;
    }
    return FLAGS_GO_ON;
}

/* Restores a VM from a->image; it has *img (for its default command). */
static sm_code start_vm(struct run_args *a, sm_image **img, sm_vm **vm, sm_error *err)
{
    sm_code rc = cli_image_open(PROG, a->image, &a->pull, img, err);
    if (!rc)
        rc = sm_vm_config_image(a->cfg, *img);
    if (!rc)
        rc = sm_vm_start(a->cfg, vm, err);
    return rc;
}

static int count_argv(char *const *argv)
{
    int n = 0;
    while (argv[n])
        n++;
    return n;
}

/* Runs a->exec in a fresh VM, stopped after it; the exit status. */
static int run_in_fresh_vm(struct run_args *a)
{
    sm_error err = { 0 };
    sm_image *img = NULL;
    sm_vm *vm = NULL;
    sm_code rc = start_vm(a, &img, &vm, &err);
    if (rc) {
        sm_image_free(img);
        fprintf(stderr, "%s: %s\n", PROG, err.message[0] ? err.message : sm_strerror(rc));
        return rc == SM_E_INVALID ? EXIT_USAGE : EXIT_CANNOT;
    }
    char **image_argv = NULL;
    int status = EXIT_CANNOT;
    if (!a->exec.argv && sm_image_default_argv(img, &image_argv, &err)) {
        fprintf(stderr, "%s: %s\n", PROG, err.message[0] ? err.message : "out of memory");
    } else {
        if (image_argv) {
            a->exec.argc = count_argv(image_argv);
            a->exec.argv = image_argv;
        }
        a->exec.socket = sm_vm_exec_socket_path(vm);
        status = exec_run(PROG, &a->exec);
    }
    sm_image_free(img);
    sm_argv_free(image_argv);
    if (sm_vm_stop(vm, &err))
        fprintf(stderr, "%s: stopping the VM: %s\n", PROG, err.message);
    sm_vm_free(vm);
    return status;
}

int cmd_run(int argc, char **argv)
{
    struct run_args a = { .image = CLI_DEFAULT_IMAGE, .cfg = sm_vm_config_new() };
    int status = EXIT_CANNOT;
    if (!a.cfg || !exec_opts_init(&a.exec, argc))
        fprintf(stderr, "%s: out of memory\n", PROG);
    else if ((status = parse(argc, argv, &a)) == FLAGS_GO_ON)
        status = sm_vm_config_store(a.cfg, cli_store()) ? EXIT_CANNOT : run_in_fresh_vm(&a);
    exec_opts_free(&a.exec);
    sm_pull_options_free(a.pull);
    sm_vm_config_free(a.cfg);
    return status;
}
