/*
 * supermachine connect ID PORT
 *
 * Connects to TCP port PORT on the guest's loopback (sm_vm_connect) and
 * joins it to this command's stdin and stdout, as `nc` would: stdin's end
 * is passed on as a half-close, and the command ends when the guest's side
 * does. Exit status 0; 1 when the connection failed (nothing listens
 * there, no such VM); 2 for a usage error.
 */
#include "base/number.h"
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "supermachine.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROG "supermachine connect"

static void connect_usage(FILE *out)
{
    fprintf(out,
        "usage: supermachine connect ID PORT\n"
        "  joins stdin and stdout to TCP port PORT on the VM's loopback (127.0.0.1\n"
        "  in the guest), through its agent: no network needed, no policy applies\n");
}

/* Copies what one read gives; false at the end of `from` or on an error.
 * Towards the socket, send(2): a guest that closed must not SIGPIPE us. */
static bool copy_once(int from, int to, bool to_socket, bool *failed)
{
    char buf[64 << 10];
    ssize_t n = read(from, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0) {
        *failed = n < 0;
        return false;
    }
    for (ssize_t off = 0; off < n;) {
        size_t left = (size_t)(n - off);
        ssize_t w = to_socket ? send(to, buf + off, left, MSG_NOSIGNAL) : write(to, buf + off, left);
        if (w < 0 && errno != EINTR) {
            *failed = true;
            return false;
        }
        if (w > 0)
            off += w;
    }
    return true;
}

static int join_stdio(int sock)
{
    bool stdin_open = true, failed = false;
    for (;;) {
        struct pollfd p[2] = { { .fd = sock, .events = POLLIN }, { .fd = stdin_open ? 0 : -1, .events = POLLIN } };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (p[1].revents && !copy_once(0, sock, true, &failed)) {
            if (failed)
                break;
            stdin_open = false;
            shutdown(sock, SHUT_WR);
        }
        if (p[0].revents && !copy_once(sock, 1, false, &failed))
            break;
    }
    if (failed)
        fprintf(stderr, "%s: the connection broke: %s\n", PROG, strerror(errno));
    return failed;
}

int cmd_connect(int argc, char **argv)
{
    int first;
    int status = flags_help_only(PROG, argc, argv, connect_usage, &first);
    if (status != FLAGS_GO_ON)
        return status;
    uint32_t port;
    if (argc - first != 2 || !number_u32(argv[first + 1], &port) || port == 0 || port > 65535) {
        if (argc - first == 2)
            fprintf(stderr, "%s: PORT must be 1..65535, not '%s'\n", PROG, argv[first + 1]);
        connect_usage(stderr);
        return 2;
    }
    sm_vm *vm;
    sm_error err;
    int sock = -1;
    sm_code rc = sm_vm_open(cli_store(), argv[first], &vm, &err);
    if (!rc) {
        rc = sm_vm_connect(vm, (uint16_t)port, &sock, &err);
        sm_vm_free(vm);
    }
    if (rc) {
        fprintf(stderr, "%s: %s\n", PROG, err.message);
        return 1;
    }
    status = join_stdio(sock);
    close(sock);
    return status;
}
