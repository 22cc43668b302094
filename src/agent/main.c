/*
 * supermachine-agent: the guest's PID 1, or an ordinary process for tests.
 *
 *   supermachine-agent [--no-vm] [--listen unix:PATH | --listen vsock:PORT]...
 *
 * As PID 1 it sets up the guest, listens on vsock port SM_AGENT_VSOCK_PORT as
 * well, signals readiness to the VMM and never exits. Otherwise it serves the
 * given listeners until SIGTERM/SIGINT, then kills what still runs.
 *
 * --no-vm: PID 1 of a PID namespace or container rather than of a guest: the
 * mounts are made, but no signal port, no console, no implicit vsock
 * listener, and power off ends the namespace. The tests use it to run the
 * PID 1 code paths (tests/exec/run-pid1.sh).
 */
#include "agent/agent.h"
#include "protocol/guest_abi.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1u << 2)
#endif

static void usage(FILE *out)
{
    fprintf(out, "usage: supermachine-agent [--no-vm] [--listen unix:PATH | --listen vsock:PORT]...\n"
                 "Serves supermachine exec requests. As PID 1 of a guest it also listens on\n"
                 "vsock port %u and sets the guest up. --no-vm: PID 1 of a PID namespace,\n"
                 "not of a guest (no signal port, no console, no implicit vsock).\n",
            SM_AGENT_VSOCK_PORT);
}

/* No descriptor we inherited may reach a command; 0-2 must exist. */
static void sanitize_fds(void)
{
    if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) < 0)
        for (int fd = 3; fd < 1024; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            break;
}

int main(int argc, char **argv)
{
    const char *listens[AGENT_MAX_LISTENERS];
    int nlistens = 0;
    bool in_vm = true;
    if (argc > 1 && !strcmp(argv[1], "--exec-as") && getpid() != 1)
        return exec_as_main(argc, argv);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--listen") && i + 1 < argc && nlistens < AGENT_MAX_LISTENERS - 1) {
            listens[nlistens++] = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--no-vm")) {
            in_vm = false;
            continue;
        }
        if (getpid() == 1)
            continue; /* the kernel may pass us its leftovers: never fail as PID 1 */
        fprintf(stderr, "supermachine-agent: bad argument '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }
    bool pid1 = getpid() == 1;
    sanitize_fds();
    if (pid1) {
        pid1_setup(in_vm);
    } else {
        /* Orphaned grandchildren come back to us to be reaped. */
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 0);
    }
    agent ag;
    if (!agent_init(&ag, pid1)) {
        if (pid1)
            pid1_poweroff("the event loop could not start");
        return 1;
    }
    int listening = 0;
    for (int i = 0; i < nlistens; i++)
        listening += agent_listen(&ag, listens[i]);
    if (pid1 && in_vm) {
        char spec[32];
        snprintf(spec, sizeof spec, "vsock:%u", SM_AGENT_VSOCK_PORT);
        listening += agent_listen(&ag, spec);
        if (pid1_signal_ready())
            pid1_poweroff("the VMM asked for power off at boot");
    } else if (pid1) {
        dprintf(1, "supermachine-agent: ready\n");
    } else if (listening < nlistens || !listening) {
        fprintf(stderr, "supermachine-agent: %s\n",
                nlistens ? "cannot listen on every address given" : "nothing to listen on: "
                "give --listen unix:PATH or --listen vsock:PORT");
        return 2;
    }
    ag.in_vm = in_vm;
    agent_run(&ag);
    if (pid1)
        pid1_poweroff("the event loop ended");
    agent_shutdown(&ag);
    return 0;
}
