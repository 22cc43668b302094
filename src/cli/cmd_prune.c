/*
 * supermachine prune [--dry-run]
 *
 * Removes the root filesystems and blobs of the image store that no image
 * uses any more (sm_store_prune): those of images removed with rmi, or
 * pulled again since. A root filesystem a VM was started with stays while
 * the VM's folder does. Prints each file removed (or, with --dry-run, that
 * would be) and the space freed. Exit status 0; 1 when it could not (a
 * pull is under way, a file could not be removed); 2 for a usage error.
 */
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "supermachine.h"

#include <inttypes.h>
#include <stdio.h>

#define PROG "supermachine prune"

static void prune_usage(FILE *out)
{
    fprintf(out, "usage: supermachine prune [--dry-run]\n"
                 "  removes the root filesystems and blobs that no image uses any more (those\n"
                 "  of images deleted with rmi; a running VM's root filesystem stays), and\n"
                 "  prints each with the space freed\n"
                 "  -n, --dry-run  print what would be removed, remove nothing\n");
}

static void print_one(void *ctx, const char *path, uint64_t bytes)
{
    const char *verb = ctx;
    printf("%s %s (%.1f MiB)\n", verb, path, (double)bytes / (1024.0 * 1024.0));
}

int cmd_prune(int argc, char **argv)
{
    static const struct option flags[] = { { "dry-run", no_argument, NULL, 'n' }, FLAG_HELP, FLAGS_TABLE_END };
    int first, dry, status = flags_switches(PROG, argc, argv, "nh", flags, prune_usage, &first, &dry);
    if (status != FLAGS_GO_ON)
        return status;
    if (first < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", PROG, argv[first]);
        prune_usage(stderr);
        return 2;
    }
    sm_prune_report r;
    sm_error err = { 0 };
    sm_code rc = sm_store_prune(cli_store(), dry != 0, print_one, dry ? "would remove" : "removed", &r, &err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", PROG, err.message);
        return 1;
    }
    printf("%s %" PRIu64 " root filesystem%s and %" PRIu64 " blob%s: %.1f MiB%s\n", dry ? "would remove" : "removed",
           r.rootfs_removed, r.rootfs_removed == 1 ? "" : "s", r.blobs_removed, r.blobs_removed == 1 ? "" : "s",
           (double)r.bytes_freed / (1024.0 * 1024.0), dry ? " would be freed" : " freed");
    return fflush(stdout) == 0 ? 0 : 1;
}
