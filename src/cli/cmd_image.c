/*
 * Images from the command line:
 *   supermachine bake [--memory MIB] [--cpus N] NAME   boot, snapshot once ready, keep as NAME
 *   supermachine images                                list the named images
 *   supermachine rmi NAME...                           delete named images
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/vm_flags.h"
#include "supermachine.h"

#define EXIT_USAGE 2

#define BAKE_USAGE "usage: supermachine bake [--memory MIB] [--cpus N] NAME\n"

/* [--memory MIB] [--cpus N] NAME, flags on either side of NAME, into cfg
 * and *name; FLAGS_GO_ON, or the exit status. */
static int parse_bake(int argc, char **argv, sm_vm_config *cfg, const char **name)
{
    static const struct option flags[] = { VM_FLAGS_SIZE, FLAG_HELP, FLAGS_TABLE_END };
    struct flag_parser p;
    flag_parser_start(&p, "supermachine bake", argc, argv, "h", flags);
    *name = NULL;
    for (int c; (c = flag_next_or_word(&p, name)) != FLAG_END;) {
        if (c == 'h') {
            printf(BAKE_USAGE "\n"
                   "Boots the default guest, snapshots it once its agent is ready, and keeps\n"
                   "the snapshot as the image NAME (`supermachine run NAME -- ...`).\n");
            return 0;
        }
        if (c == FLAG_BAD || !vm_flag_apply(p.prog, cfg, c, optarg))
            return EXIT_USAGE;
    }
    if (!*name || flag_rest(&p) < argc) {
        fprintf(stderr, BAKE_USAGE);
        return EXIT_USAGE;
    }
    return FLAGS_GO_ON;
}

int cmd_bake(int argc, char **argv)
{
    sm_vm_config *cfg = sm_vm_config_new();
    if (!cfg) {
        fprintf(stderr, "supermachine bake: out of memory\n");
        return 1;
    }
    const char *name;
    int status = parse_bake(argc, argv, cfg, &name);
    if (status != FLAGS_GO_ON) {
        sm_vm_config_free(cfg);
        return status;
    }
    sm_error err = { 0 };
    sm_code rc = sm_image_bake(cli_store(), name, cfg, NULL, &err);
    sm_vm_config_free(cfg);
    if (rc) {
        fprintf(stderr, "supermachine bake: %s\n", err.message);
        return rc == SM_E_INVALID ? EXIT_USAGE : 1;
    }
    printf("%s\n", name);
    return 0;
}

static void images_usage(FILE *out)
{
    fprintf(out, "usage: supermachine images\n");
    if (out == stdout)
        printf("\nLists the named images: memory, vCPUs, disk use (an OCI image's\n"
               "root filesystem included), age, and for OCI images the reference and digest.\n");
}

int cmd_images(int argc, char **argv)
{
    int first, status = flags_help_only("supermachine images", argc, argv, images_usage, &first);
    if (status != FLAGS_GO_ON)
        return status;
    if (first != argc) {
        images_usage(stderr);
        return EXIT_USAGE;
    }
    sm_image_info *list;
    size_t n;
    sm_error err = { 0 };
    if (sm_image_list(cli_store(), &list, &n, &err)) {
        fprintf(stderr, "supermachine images: %s\n", err.message);
        return 1;
    }
    printf("%-28s %8s %5s %10s  %-16s  %s\n", "NAME", "MEMORY", "CPUS", "DISK", "CREATED", "FROM");
    for (size_t i = 0; i < n; i++) {
        char when[32] = "-";
        time_t t = (time_t)list[i].created_unix;
        struct tm tm;
        if (t && localtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        printf("%-28s %6uMi %5u %8.1fMi  %-16s  %s%s%.19s\n", list[i].name, list[i].memory_mib, list[i].cpus,
               (double)list[i].disk_bytes / (1024.0 * 1024.0), when, list[i].ref[0] ? list[i].ref : "-",
               list[i].digest[0] ? " " : "", list[i].digest);
    }
    free(list);
    return 0;
}

static void rmi_usage(FILE *out)
{
    fprintf(out, "usage: supermachine rmi NAME...\n");
    if (out == stdout)
        printf("\nDeletes named images; VMs running from them go on. An OCI image's root\n"
               "filesystem and blobs stay until `supermachine prune`.\n");
}

int cmd_rmi(int argc, char **argv)
{
    int first, status = flags_help_only("supermachine rmi", argc, argv, rmi_usage, &first);
    if (status != FLAGS_GO_ON)
        return status;
    if (first >= argc) {
        rmi_usage(stderr);
        return EXIT_USAGE;
    }
    status = 0;
    for (int i = first; i < argc; i++) {
        sm_error err = { 0 };
        if (sm_image_remove(cli_store(), argv[i], &err)) {
            fprintf(stderr, "supermachine rmi: %s\n", err.message);
            status = 1;
        }
    }
    return status;
}
