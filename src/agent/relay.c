/*
 * CONNECT: a host connection becomes a TCP stream to a port on the guest's
 * own loopback (how sm_vm_connect reaches a guest service, network or not).
 *
 * Each relay is a forked process, not part of the event loop: connecting
 * may block (a listener with a full backlog), and two streams copied at full
 * speed must not slow every other exec. The process holds only its two
 * sockets (everything else inherited from the loop is closed: a copy of
 * another connection's socket would keep that connection from ending).
 *
 * What the host sees: the frames already queued (HELLO), then OK and the
 * raw stream, or ERROR (WIRE_ERR_CONNECT) and the end of the connection.
 * A half-close on either side is passed on to the other; an error on either
 * side ends both.
 */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RELAY_BUF (64u << 10)
#define CONNECT_TIMEOUT_S 10 /* a listener that never accepts: give up */
#define HOST_FD 3            /* where the host's socket is moved to */

/* One direction of the relay: bytes read from `from`, written to `to`. */
struct relay_half {
    int from, to;
    uint8_t buf[RELAY_BUF];
    size_t len, off;
    bool eof; /* `from` ended; `to` was half-closed once the buffer drained */
};

static void close_inherited_fds(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, HOST_FD + 1, ~0u, 0) == 0)
        return;
#endif
    struct rlimit rl;
    int top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = HOST_FD + 1; fd < top; fd++)
        close(fd);
}

static bool send_frame(int fd, wire_buf *b)
{
    bool ok = !b->failed && write_all(fd, b->data, b->len);
    wire_buf_free(b);
    return ok;
}

static void send_error(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_error(int fd, const char *fmt, ...)
{
    char msg[WIRE_MAX_MESSAGE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    wire_buf b = { 0 };
    wire_put_error(&b, WIRE_ERR_CONNECT, msg, NULL);
    send_frame(fd, &b);
}

static int connect_loopback(uint16_t port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct timeval tv = { .tv_sec = CONNECT_TIMEOUT_S };
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds connect(2) too */
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    while (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == EINTR)
            continue;
        int e = errno == EINPROGRESS ? ETIMEDOUT : errno;
        close(s);
        errno = e;
        return -1;
    }
    return s;
}

/* Reads into an empty buffer, or writes what it holds; false when the
 * relay must end (an error on either socket). */
static bool half_step(struct relay_half *h, short revents_from, short revents_to)
{
    if (h->len == 0 && !h->eof && revents_from) {
        ssize_t n = read(h->from, h->buf, sizeof h->buf);
        if (n < 0)
            return errno == EINTR || errno == EAGAIN;
        if (n == 0) {
            h->eof = true;
            shutdown(h->to, SHUT_WR);
            return true;
        }
        h->len = (size_t)n;
        h->off = 0;
    }
    if (h->len && revents_to) {
        ssize_t n = send(h->to, h->buf + h->off, h->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
            return errno == EINTR || errno == EAGAIN;
        h->off += (size_t)n;
        h->len -= (size_t)n;
    }
    return true;
}

static short half_wants_from(const struct relay_half *h)
{
    return h->len == 0 && !h->eof ? POLLIN : 0;
}

static short half_wants_to(const struct relay_half *h)
{
    return h->len ? POLLOUT : 0;
}

static struct relay_half up, down; /* host -> guest port, guest port -> host */

static void relay_streams(int host, int guest)
{
    up = (struct relay_half){ .from = host, .to = guest };
    down = (struct relay_half){ .from = guest, .to = host };
    while (!(up.eof && !up.len && down.eof && !down.len)) {
        struct pollfd p[2] = {
            { .fd = host, .events = (short)(half_wants_from(&up) | half_wants_to(&down)) },
            { .fd = guest, .events = (short)(half_wants_from(&down) | half_wants_to(&up)) },
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        short hin = p[0].revents & (POLLIN | POLLHUP | POLLERR), hout = p[0].revents & (POLLOUT | POLLERR);
        short gin = p[1].revents & (POLLIN | POLLHUP | POLLERR), gout = p[1].revents & (POLLOUT | POLLERR);
        if (!half_step(&up, hin, gout) || !half_step(&down, gin, hout))
            return;
    }
}

/* The child: never returns. */
static void relay_child(int host, const uint8_t *to_host, size_t to_host_len, const uint8_t *to_guest,
                        size_t to_guest_len, uint16_t port)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (host != HOST_FD) {
        if (dup2(host, HOST_FD) < 0)
            _exit(1);
        host = HOST_FD;
    }
    close_inherited_fds();
    fcntl(host, F_SETFL, fcntl(host, F_GETFL) & ~O_NONBLOCK);
    if (to_host_len && !write_all(host, to_host, to_host_len))
        _exit(1);
    int guest = connect_loopback(port);
    if (guest < 0) {
        send_error(host, "connecting to port %u in the guest failed: %s", (unsigned)port, strerror(errno));
        _exit(1);
    }
    wire_buf ok = { 0 };
    wire_put_empty(&ok, WIRE_OK, NULL);
    if (!send_frame(host, &ok) || (to_guest_len && !write_all(guest, to_guest, to_guest_len)))
        _exit(1);
    fcntl(host, F_SETFL, fcntl(host, F_GETFL) | O_NONBLOCK);
    fcntl(guest, F_SETFL, fcntl(guest, F_GETFL) | O_NONBLOCK);
    relay_streams(host, guest);
    _exit(0);
}

pid_t relay_spawn(int host_fd, const void *to_host, size_t to_host_len, const void *to_guest,
                  size_t to_guest_len, uint16_t port)
{
    pid_t pid = fork();
    if (pid == 0)
        relay_child(host_fd, to_host, to_host_len, to_guest, to_guest_len, port);
    return pid;
}
