/*
 * supermachine pull [registry options] [--memory MIB] [--cpus N] REF
 *
 * Asks the registry what REF names now, downloads what is not cached yet,
 * builds the root filesystem and bakes the image, so that `supermachine run
 * REF -- ...` restores it without the network. Prints the baked image's name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/pull_options.h"
#include "cli/vm_flags.h"
#include "supermachine.h"

#define EXIT_USAGE 2

static void pull_usage(FILE *out)
{
    fprintf(out, "usage: supermachine pull [options] REF\n\n"
                 "Pulls an OCI/Docker image (linux/amd64) and bakes it. REF is\n"
                 "[REGISTRY/]NAME[:TAG|@DIGEST] (Docker Hub by default), oci:PATH[:TAG]\n"
                 "or docker-archive:PATH.\n\n"
                 PULL_OPTIONS_HELP
                 "  --memory MIB         the baked VM's memory (default 256)\n"
                 "  --cpus N             its vCPUs (default 1)\n");
}

#define PROG "supermachine pull"

struct pull_args {
    const char *ref;
    sm_pull_options *pull;   /* NULL until a registry option */
    sm_vm_config *cfg;       /* what to bake with */
};

/* The flag c with its value arg; FLAGS_GO_ON, or the exit status. */
static int take_flag(int c, const char *arg, struct pull_args *a)
{
    if (c == 'h') {
        pull_usage(stdout);
        return 0;
    }
    if (c == FLAG_BAD) {
        pull_usage(stderr);
        return EXIT_USAGE;
    }
    bool ok = is_pull_flag(c) ? pull_flag_apply(PROG, c, arg, &a->pull) : vm_flag_apply(PROG, a->cfg, c, arg);
    return ok ? FLAGS_GO_ON : EXIT_USAGE;
}

/* [options] REF [options]: flags may stand on either side of REF. */
static int parse(int argc, char **argv, struct pull_args *a)
{
    static const struct option flags[] = { PULL_FLAGS, VM_FLAGS_SIZE, FLAG_HELP, FLAGS_TABLE_END };
    struct flag_parser p;
    flag_parser_start(&p, PROG, argc, argv, "h", flags);
    for (int c, status; (c = flag_next_or_word(&p, &a->ref)) != FLAG_END;)
        if ((status = take_flag(c, optarg, a)) != FLAGS_GO_ON)
            return status;
    int rest = flag_rest(&p);
    if (rest < argc)
        flag_unexpected(&p, argv[rest]);
    if (rest < argc || !a->ref) {
        pull_usage(stderr);
        return EXIT_USAGE;
    }
    return FLAGS_GO_ON;
}

/* Pulls and bakes a->ref; prints the image's name. The exit status. */
static int pull_and_bake(struct pull_args *a)
{
    sm_error err = { 0 };
    sm_image *img = NULL;
    sm_pull_options_refresh(a->pull, true);
    pull_progress_attach(a->pull);
    sm_code rc = sm_image_from_oci(cli_store(), a->ref, a->pull, a->cfg, &img, &err);
    pull_progress_done();
    if (rc) {
        fprintf(stderr, "%s: %s\n", PROG, err.message[0] ? err.message : sm_strerror(rc));
        return rc == SM_E_INVALID ? EXIT_USAGE : 1;
    }
    const char *dir = sm_image_dir(img);
    const char *slash = strrchr(dir, '/');
    printf("%s\n", slash ? slash + 1 : dir);
    sm_image_free(img);
    return 0;
}

int cmd_pull(int argc, char **argv)
{
    struct pull_args a = { .cfg = sm_vm_config_new() };
    int status = 1;
    if (!a.cfg)
        fprintf(stderr, "%s: out of memory\n", PROG);
    else if ((status = parse(argc, argv, &a)) == FLAGS_GO_ON && !a.pull && !(a.pull = sm_pull_options_new())) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        status = 1;
    } else if (status == FLAGS_GO_ON) {
        status = pull_and_bake(&a);
    }
    sm_vm_config_free(a.cfg);
    sm_pull_options_free(a.pull);
    return status;
}
