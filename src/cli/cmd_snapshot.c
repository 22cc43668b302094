/*
 * supermachine snapshot [--force] ID NAME
 *
 * Keeps the running VM ID as the named image NAME (sm_image_from_vm): VMs
 * started from NAME (`run NAME`, `start NAME`) begin where ID was, with
 * the files written in it. ID pauses for the copy of its memory and runs
 * on. An existing NAME is refused unless --force. Exit status 0; 1 when
 * it could not be made (no such VM, a VM with volumes, NAME exists); 2 for
 * a usage error.
 */
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "supermachine.h"

#include <stdio.h>

#define PROG "supermachine snapshot"

static void snapshot_usage(FILE *out)
{
    fprintf(out, "usage: supermachine snapshot [--force] ID NAME\n"
                 "  keeps the running VM ID as the image NAME: `supermachine run NAME` and\n"
                 "  `start NAME` begin where ID was, with the files written in it (ID pauses\n"
                 "  for the copy and runs on; an OCI image's VM keeps its root filesystem)\n"
                 "  -f, --force  replace an image NAME that exists\n");
}

int cmd_snapshot(int argc, char **argv)
{
    static const struct option flags[] = { { "force", no_argument, NULL, 'f' }, FLAG_HELP, FLAGS_TABLE_END };
    int first, force, status = flags_switches(PROG, argc, argv, "fh", flags, snapshot_usage, &first, &force);
    if (status != FLAGS_GO_ON)
        return status;
    if (argc - first != 2) {
        snapshot_usage(stderr);
        return 2;
    }
    const char *id = argv[first], *name = argv[first + 1];
    sm_vm *vm;
    sm_error err = { 0 };
    sm_code rc = sm_vm_open(cli_store(), id, &vm, &err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", PROG, err.message);
        return rc == SM_E_INVALID ? 2 : 1;
    }
    if (!sm_vm_running(vm)) {
        fprintf(stderr, "%s: VM %s is dead (its VMM is gone); `supermachine stop %s` cleans it up\n", PROG, id, id);
        sm_vm_free(vm);
        return 1;
    }
    rc = sm_image_from_vm(cli_store(), name, vm, force != 0, NULL, &err);
    sm_vm_free(vm);   /* a handle only: the VM runs on */
    if (rc) {
        fprintf(stderr, "%s: %s\n", PROG, err.message);
        return 1;
    }
    printf("%s\n", name);
    return 0;
}
