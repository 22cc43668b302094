/*
 * supermachine expose ID [HOSTIP:]HOSTPORT:GUESTPORT
 *
 * Publishes a TCP port of a running VM on the host (sm_vm_expose_tcp), as
 * -p does when the VM starts; it lasts as long as the VM. Exit status 0; 1
 * when it could not be published (the host port is in use, the VM's
 * network is off, no such VM); 2 for a usage error.
 */
#include "base/number.h"
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "supermachine.h"

#include <stdio.h>
#include <string.h>

#define PROG "supermachine expose"

static void expose_usage(FILE *out)
{
    fprintf(out,
        "usage: supermachine expose ID [HOSTIP:]HOSTPORT:GUESTPORT\n"
        "  publishes TCP port GUESTPORT of a running VM on the host (HOSTIP defaults\n"
        "  to 127.0.0.1: this host only), as -p does at start\n");
}

int cmd_expose(int argc, char **argv)
{
    int first;
    int status = flags_help_only(PROG, argc, argv, expose_usage, &first);
    if (status != FLAGS_GO_ON)
        return status;
    if (argc - first != 2) {
        expose_usage(stderr);
        return 2;
    }
    /* HOSTIP:HOSTPORT is the library's to check; the guest port is ours. */
    char host[128];
    const char *spec = argv[first + 1], *colon = strrchr(spec, ':');
    uint32_t guest_port;
    size_t host_len = colon ? (size_t)(colon - spec) : 0;
    if (!colon || host_len == 0 || host_len >= sizeof host || !number_u32(colon + 1, &guest_port) ||
        guest_port == 0 || guest_port > 65535) {
        fprintf(stderr, "%s: '%s': expected [HOSTIP:]HOSTPORT:GUESTPORT\n", PROG, spec);
        return 2;
    }
    memcpy(host, spec, host_len);
    host[host_len] = 0;
    sm_vm *vm;
    sm_error err;
    sm_code rc = sm_vm_open(cli_store(), argv[first], &vm, &err);
    if (!rc) {
        rc = sm_vm_expose_tcp(vm, (uint16_t)guest_port, host, &err);
        sm_vm_free(vm);
    }
    if (rc) {
        fprintf(stderr, "%s: %s\n", PROG, err.message);
        return rc == SM_E_INVALID ? 2 : 1;
    }
    return 0;
}
