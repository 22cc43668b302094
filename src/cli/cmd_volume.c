/*
 * Volumes from the command line:
 *   supermachine volume ls                          list the named volumes
 *   supermachine volume create [--size SIZE] NAME   make an empty one
 *   supermachine volume rm NAME...                  delete them and their data
 * (`run`/`start --volume NAME:PATH` mount them, making a missing one.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/number.h"
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "supermachine.h"

#define EXIT_USAGE 2
#define PROG "supermachine volume"

static void volume_usage(FILE *out)
{
    fprintf(out, "usage: supermachine volume ls\n"
                 "       supermachine volume create [--size SIZE] NAME\n"
                 "       supermachine volume rm NAME...\n");
    if (out == stdout)
        printf("\nA volume is an ext4 disk that outlives VMs: `run` and `start` mount it with\n"
               "--volume NAME:GUEST_PATH[:ro], making it (1G, or --volume-size) on first use.\n"
               "One VM at a time writes a volume; several may read it when none writes.\n"
               "  ls       name, size, space it takes on the host's disk, whether a VM holds it\n"
               "  create   an empty volume of SIZE (bytes or K/M/G/T, 16M to 16T; default 1G)\n"
               "  rm       delete volumes and their data (refused while a VM holds one)\n");
}

static int usage_error(void)
{
    volume_usage(stderr);
    return EXIT_USAGE;
}

static int volume_ls(int argc)
{
    if (argc != 2)
        return usage_error();
    sm_volume_info *list;
    size_t n;
    sm_error err = { 0 };
    if (sm_volume_list(cli_store(), &list, &n, &err)) {
        fprintf(stderr, PROG ": %s\n", err.message);
        return 1;
    }
    printf("%-28s %10s %10s  %s\n", "NAME", "SIZE", "DISK", "IN USE");
    for (size_t i = 0; i < n; i++)
        printf("%-28s %8.1fMi %8.1fMi  %s\n", list[i].name, (double)list[i].size_bytes / (1024.0 * 1024.0),
               (double)list[i].disk_bytes / (1024.0 * 1024.0), list[i].in_use ? "yes" : "no");
    free(list);
    return 0;
}

static int volume_create(int argc, char **argv)
{
    static const struct option flags[] = { { "size", required_argument, NULL, 's' }, FLAG_HELP, FLAGS_TABLE_END };
    struct flag_parser p;
    flag_parser_start(&p, PROG " create", argc - 1, argv + 1, "h", flags);
    const char *name = NULL;
    uint64_t size = 0;
    for (int c; (c = flag_next_or_word(&p, &name)) != FLAG_END;) {
        if (c == 'h') {
            volume_usage(stdout);
            return 0;
        }
        if (c == FLAG_BAD)
            return usage_error();
        if (!number_bytes(optarg, &size) || !size) {
            fprintf(stderr, PROG " create: --size wants a size from 16M to 16T (bytes, or with K, M, G, T), "
                            "not '%s'\n", optarg);
            return EXIT_USAGE;
        }
    }
    if (!name || flag_rest(&p) < argc - 1)
        return usage_error();
    sm_error err = { 0 };
    sm_code rc = sm_volume_create(cli_store(), name, size, &err);
    if (rc) {
        fprintf(stderr, PROG " create: %s\n", err.message);
        return rc == SM_E_INVALID ? EXIT_USAGE : 1;
    }
    printf("%s\n", name);
    return 0;
}

static int volume_rm(int argc, char **argv)
{
    if (argc < 3)
        return usage_error();
    int status = 0;
    for (int i = 2; i < argc; i++) {
        sm_error err = { 0 };
        if (sm_volume_remove(cli_store(), argv[i], &err)) {
            fprintf(stderr, PROG " rm: %s\n", err.message);
            status = 1;
        }
    }
    return status;
}

int cmd_volume(int argc, char **argv)
{
    if (argc < 2)
        return usage_error();
    const char *verb = argv[1];
    if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
        volume_usage(stdout);
        return 0;
    }
    if (!strcmp(verb, "ls"))
        return volume_ls(argc);
    if (!strcmp(verb, "create"))
        return volume_create(argc, argv);
    if (!strcmp(verb, "rm"))
        return volume_rm(argc, argv);
    fprintf(stderr, PROG ": unknown verb '%s'\n\n", verb);
    return usage_error();
}
