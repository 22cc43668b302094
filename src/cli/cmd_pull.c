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
#include "cli/options.h"
#include "cli/pull_options.h"
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

int cmd_pull(int argc, char **argv)
{
    sm_pull_options *opt = NULL;
    uint32_t mem = 256, cpus = 1;
    const char *ref = NULL;
    int status = EXIT_USAGE;
    for (int i = 1; i < argc;) {
        int r = pull_option("supermachine pull", argc, argv, &i, &opt);
        if (r < 0)
            goto out;
        if (r > 0)
            continue;
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            pull_usage(stdout);
            status = 0;
            goto out;
        }
        if ((!strcmp(a, "--memory") || !strcmp(a, "--cpus")) && i + 1 < argc) {
            if (!parse_u32_option(a, argv[i + 1], a[2] == 'm' ? &mem : &cpus))
                goto out;
            i += 2;
            continue;
        }
        if (a[0] == '-' || ref) {
            fprintf(stderr, "supermachine pull: unexpected '%s'\n", a);
            pull_usage(stderr);
            goto out;
        }
        ref = a;
        i++;
    }
    if (!ref) {
        pull_usage(stderr);
        goto out;
    }
    if (!opt && !(opt = sm_pull_options_new())) {
        fprintf(stderr, "supermachine pull: out of memory\n");
        status = 1;
        goto out;
    }
    sm_vm_config *cfg = sm_vm_config_new();
    sm_error err = { 0 };
    sm_image *img = NULL;
    sm_code rc = !cfg ? SM_E_NOMEM : sm_vm_config_memory_mib(cfg, mem);
    if (!rc)
        rc = sm_vm_config_cpus(cfg, cpus);
    if (rc) {
        fprintf(stderr, "supermachine pull: --memory is 64 to 65536 MiB and --cpus 1 to 32\n");
        sm_vm_config_free(cfg);
        goto out;
    }
    sm_pull_options_refresh(opt, true);
    pull_progress_attach(opt);
    rc = sm_image_from_oci(cli_store(), ref, opt, cfg, &img, &err);
    pull_progress_done();
    sm_vm_config_free(cfg);
    if (rc) {
        fprintf(stderr, "supermachine pull: %s\n", err.message[0] ? err.message : sm_strerror(rc));
        status = rc == SM_E_INVALID ? EXIT_USAGE : 1;
        goto out;
    }
    const char *dir = sm_image_dir(img);
    const char *slash = strrchr(dir, '/');
    printf("%s\n", slash ? slash + 1 : dir);
    sm_image_free(img);
    status = 0;
out:
    sm_pull_options_free(opt);
    return status;
}
