/*
 * Images from the command line:
 *   supermachine bake [--memory MIB] [--cpus N] NAME   boot, snapshot once ready, keep as NAME
 *   supermachine images                                list the named images
 *   supermachine rmi NAME...                           delete named images
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "supermachine.h"

#define EXIT_USAGE 2

int cmd_bake(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "memory", required_argument, NULL, 'm' }, { "cpus", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
    };
    uint32_t mem = 256, cpus = 1;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: supermachine bake [--memory MIB] [--cpus N] NAME\n\n"
                   "Boots the default guest, snapshots it once its agent is ready, and keeps\n"
                   "the snapshot as the image NAME (`supermachine run NAME -- ...`).\n");
            return 0;
        }
        if ((c == 'm' && !parse_u32_option("--memory", optarg, &mem)) ||
            (c == 'n' && !parse_u32_option("--cpus", optarg, &cpus)))
            return EXIT_USAGE;
        if (c != 'm' && c != 'n') {
            fprintf(stderr, "supermachine bake: unknown or incomplete option '%s'\n", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: supermachine bake [--memory MIB] [--cpus N] NAME\n");
        return EXIT_USAGE;
    }
    sm_vm_config *cfg = sm_vm_config_new();
    sm_error err = { 0 };
    sm_code rc = !cfg ? SM_E_NOMEM : sm_vm_config_memory_mib(cfg, mem);
    if (!rc)
        rc = sm_vm_config_cpus(cfg, cpus);
    if (rc) {
        fprintf(stderr, "supermachine bake: --memory is 64 to 65536 MiB and --cpus 1 to 32\n");
        sm_vm_config_free(cfg);
        return EXIT_USAGE;
    }
    rc = sm_image_bake(cli_store(), argv[optind], cfg, NULL, &err);
    sm_vm_config_free(cfg);
    if (rc) {
        fprintf(stderr, "supermachine bake: %s\n", err.message);
        return rc == SM_E_INVALID ? EXIT_USAGE : 1;
    }
    printf("%s\n", argv[optind]);
    return 0;
}

int cmd_images(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: supermachine images\n\nLists the named images: memory, vCPUs, disk use (an OCI image's\n"
               "root filesystem included), age, and for OCI images the reference and digest.\n");
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: supermachine images\n");
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

int cmd_rmi(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: supermachine rmi NAME...\n\nDeletes named images; VMs running from them go on.\n");
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: supermachine rmi NAME...\n");
        return EXIT_USAGE;
    }
    int status = 0;
    for (int i = 1; i < argc; i++) {
        sm_error err = { 0 };
        if (sm_image_remove(cli_store(), argv[i], &err)) {
            fprintf(stderr, "supermachine rmi: %s\n", err.message);
            status = 1;
        }
    }
    return status;
}
