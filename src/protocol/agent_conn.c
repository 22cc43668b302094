/*
 * A blocking connection to the agent through a Unix socket: the exec socket
 * that the VMM serves (src/devices/virtio/vsock.c), or an agent run on the
 * host with --listen. The library's exec client and the VMM's clock sync
 * both talk to the agent this way; the frames are those of wire.h.
 */
#include "protocol/agent_conn.h"
#include "base/clock.h"
#include "base/error.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (256u << 10)

sm_code agent_dial(const char *path, int *out, sm_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (!path || strlen(path) >= sizeof sa.sun_path)
        return error_set(err, SM_E_INVALID, "exec socket path is missing or longer than %zu bytes",
                       sizeof sa.sun_path - 1);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return error_set_errno(err, SM_E_SETUP, errno, "cannot create a socket");
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(fd);
        if (e == ENOENT)
            return error_set(err, SM_E_SETUP, "no exec socket at %s: is the agent or VM running?",
                           path);
        if (e == ECONNREFUSED)
            return error_set(err, SM_E_SETUP, "nothing listens on the exec socket %s: the agent "
                           "or VM has stopped (remove the stale socket)", path);
        return error_set_errno(err, SM_E_SETUP, e, "cannot connect to the exec socket %s", path);
    }
    int sz = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    *out = fd;
    return SM_OK;
}

/* Waits until fd takes bytes again, or gives up at give_up_us. */
static sm_code wait_writable(int fd, uint64_t give_up_us, uint32_t idle_ms, sm_error *err)
{
    for (;;) {
        uint64_t now = clock_now_us();
        if (now >= give_up_us)
            return error_set(err, SM_E_TIMEOUT, "the agent stopped answering: it took none of our "
                             "bytes for %u ms", idle_ms);
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int n = poll(&p, 1, (int)((give_up_us - now + 999) / 1000));
        if (n < 0 && errno != EINTR)
            return error_set_errno(err, SM_E_IO, errno, "poll");
        if (n > 0)
            return SM_OK; /* room, or an error the next send reports */
    }
}

sm_code agent_send_all(int fd, const void *data, size_t len, bool started, uint32_t idle_ms,
                       sm_error *err)
{
    const uint8_t *p = data;
    /* Without a limit this is a plain blocking send, as the VMM's confined
     * sync thread has always made it. */
    int flags = MSG_NOSIGNAL | (idle_ms ? MSG_DONTWAIT : 0);
    uint64_t give_up = idle_ms ? clock_now_us() + (uint64_t)idle_ms * 1000u : 0;
    while (len) {
        ssize_t n = send(fd, p, len, flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (idle_ms && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                sm_code rc = wait_writable(fd, give_up, idle_ms, err);
                if (rc)
                    return rc;
                continue;
            }
            return error_set_errno(err, started ? SM_E_DROPPED : SM_E_SETUP, errno,
                                 "sending to the agent failed");
        }
        p += n;
        len -= (size_t)n;
        if (idle_ms) /* progress: the agent reads, however slowly */
            give_up = clock_now_us() + (uint64_t)idle_ms * 1000u;
    }
    return SM_OK;
}

void agent_reader_init(agent_reader *r, int fd, const char *path)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->path = path;
    r->opened_us = r->last_rx_us = clock_now_us();
    wire_reader_init(&r->rd, WIRE_AT_HOST);
}

void agent_reader_destroy(agent_reader *r)
{
    wire_reader_destroy(&r->rd);
}

static sm_code error_from_agent(const agent_reader *r, const wire_frame *f, sm_error *err)
{
    wire_errmsg m;
    wire_error we;
    if (!wire_get_error(f, &m, &we))
        return error_set(err, SM_E_PROTOCOL, "agent at %s sent a malformed ERROR: %s", r->path,
                       we.message);
    sm_code code;
    switch (m.kind) {
    case WIRE_ERR_PROTOCOL:
    case WIRE_ERR_VERSION: code = SM_E_PROTOCOL; break;
    case WIRE_ERR_NOTFOUND: code = SM_E_NOTFOUND; break;
    case WIRE_ERR_LIMIT: code = SM_E_LIMIT; break;
    case WIRE_ERR_REFUSED: code = SM_E_INVALID; break;
    default: code = SM_E_GUEST; break;
    }
    return error_set(err, code, "the agent refused: %s", m.message);
}

/* Which of a reader's deadlines is the nearest (0 = none). */
enum reader_wait { WAIT_CALLER, WAIT_HELLO, WAIT_IDLE };

static uint64_t nearest_deadline(const agent_reader *r, uint64_t caller_us, enum reader_wait *which)
{
    uint64_t d = caller_us;
    *which = WAIT_CALLER;
    if (r->hello_ms && !r->got_hello) {
        uint64_t h = r->opened_us + (uint64_t)r->hello_ms * 1000u;
        if (!d || h < d) {
            d = h;
            *which = WAIT_HELLO;
        }
    }
    if (r->idle_ms) {
        uint64_t i = r->last_rx_us + (uint64_t)r->idle_ms * 1000u;
        if (!d || i < d) {
            d = i;
            *which = WAIT_IDLE;
        }
    }
    return d;
}

static sm_code stalled(const agent_reader *r, enum reader_wait which, sm_error *err)
{
    switch (which) {
    case WAIT_HELLO:
        return error_set(err, SM_E_TIMEOUT, "the agent at %s stopped answering: no HELLO within "
                         "%u ms", r->path, r->hello_ms);
    case WAIT_IDLE:
        return error_set(err, SM_E_TIMEOUT, "the agent at %s stopped answering: nothing from it "
                         "for %u ms", r->path, r->idle_ms);
    default:
        return error_set(err, SM_E_TIMEOUT, "the agent at %s stopped answering: %s", r->path,
                         r->deadline_what ? r->deadline_what : "no answer in time");
    }
}

/* Blocks until the fd is readable, the wake fd fires or a deadline passes. */
static sm_code wait_readable(agent_reader *r, int wake_fd, uint64_t deadline_us, sm_error *err)
{
    for (;;) {
        struct pollfd p[2] = { { .fd = r->fd, .events = POLLIN }, { .fd = wake_fd, .events = POLLIN } };
        enum reader_wait which;
        uint64_t d = nearest_deadline(r, deadline_us, &which);
        int timeout = -1;
        if (d) {
            uint64_t now = clock_now_us();
            if (now >= d)
                return stalled(r, which, err);
            timeout = (int)((d - now + 999) / 1000);
        }
        int n = poll(p, wake_fd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR)
            return error_set_errno(err, SM_E_IO, errno, "poll");
        if (n > 0 && wake_fd >= 0 && (p[1].revents & POLLIN))
            return error_set(err, SM_E_CANCELLED, "cancelled");
        if (n > 0 && p[0].revents)
            return SM_OK;
    }
}

/* The end of the connection: before any output the command did not start. */
static sm_code closed(const agent_reader *r, int e, sm_error *err)
{
    const char *why = e ? strerror(e) : "connection closed";
    if (!r->got_output)
        return error_set(err, SM_E_SETUP, "the agent at %s closed the connection before "
                       "the command produced anything (%s): safe to retry", r->path, why);
    return error_set(err, SM_E_DROPPED, "the connection to the agent at %s dropped "
                   "mid-stream (%s): the command ran, at least partly", r->path, why);
}

/* One frame already buffered: HELLO is checked and swallowed (0), ERROR
 * becomes its code, anything else is the caller's (1). */
static int take_frame(agent_reader *r, wire_frame *f, sm_code *rc, sm_error *err)
{
    wire_error we;
    if (!r->got_hello) {
        if (!wire_check_hello(f, "agent", &we)) {
            *rc = error_set(err, SM_E_PROTOCOL, "%s (socket %s)", we.message, r->path);
            return -1;
        }
        r->got_hello = true;
        return 0;
    }
    if (f->type == WIRE_ERROR) {
        *rc = error_from_agent(r, f, err);
        return -1;
    }
    r->got_output = true;
    *rc = SM_OK;
    return 1;
}

sm_code agent_read_frame(agent_reader *r, wire_frame *f, int wake_fd, uint64_t deadline_us,
                        sm_error *err)
{
    for (;;) {
        wire_error we;
        int got = wire_reader_next(&r->rd, f, &we);
        if (got < 0)
            return error_set(err, SM_E_PROTOCOL, "agent at %s sent a bad frame: %s", r->path,
                           we.message);
        if (got > 0) {
            sm_code rc;
            int taken = take_frame(r, f, &rc, err);
            if (taken)
                return rc;
            continue;
        }
        if (r->fd < 0)
            return closed(r, 0, err); /* a fed reader: its bytes are all there is */
        enum reader_wait which;
        if (wake_fd >= 0 || nearest_deadline(r, deadline_us, &which)) {
            sm_code rc = wait_readable(r, wake_fd, deadline_us, err);
            if (rc)
                return rc;
        }
        size_t avail;
        uint8_t *dst = wire_reader_space(&r->rd, READ_CHUNK, &avail);
        if (!dst)
            return error_set(err, SM_E_NOMEM, "out of memory reading from the agent");
        ssize_t n = recv(r->fd, dst, avail, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return closed(r, n < 0 ? errno : 0, err);
        wire_reader_commit(&r->rd, (size_t)n);
        if (r->idle_ms)
            r->last_rx_us = clock_now_us();
    }
}

sm_code agent_unexpected(const agent_reader *r, const wire_frame *f, sm_error *err)
{
    return error_set(err, SM_E_PROTOCOL, "agent at %s sent an unexpected %s frame", r->path,
                   wire_type_name(f->type));
}

/* Reads the one-frame answer (OK) of a WRITE_FILE, POWEROFF or SYNC; gives
 * up when wake_fd (if >= 0) becomes readable or timeout_ms (if any) passes. */
sm_code agent_expect_ok(int fd, const char *path, const char *what, int wake_fd,
                        uint32_t timeout_ms, sm_error *err)
{
    agent_reader r;
    agent_reader_init(&r, fd, path);
    char why[64];
    snprintf(why, sizeof why, "no answer within %u ms", timeout_ms);
    r.deadline_what = why;
    uint64_t deadline = timeout_ms ? clock_now_us() + (uint64_t)timeout_ms * 1000u : 0;
    wire_frame f;
    sm_code rc = agent_read_frame(&r, &f, wake_fd, deadline, err);
    if (!rc && f.type != WIRE_OK)
        rc = agent_unexpected(&r, &f, err);
    if (rc && err)
        error_prefix(err, "%s", what);
    agent_reader_destroy(&r);
    return rc;
}

sm_code agent_call(const char *path, const void *data, size_t len, const char *what, int wake_fd,
                   uint32_t timeout_ms, sm_error *err)
{
    int fd;
    sm_code rc = agent_dial(path, &fd, err);
    if (rc)
        return rc;
    /* A broken pipe is not final: the agent may have said why before it
     * closed, and its answer reports that. A stall is. */
    sm_error send_err;
    rc = agent_send_all(fd, data, len, false, timeout_ms, &send_err);
    if (rc == SM_E_TIMEOUT) {
        if (err) {
            *err = send_err;
            error_prefix(err, "%s (socket %s)", what, path);
        }
    } else {
        rc = agent_expect_ok(fd, path, what, wake_fd, timeout_ms, err);
    }
    close(fd);
    return rc;
}

sm_code agent_netconf(const char *exec_socket_path, bool on, int wake_fd, sm_error *err)
{
    wire_buf buf = { 0 };
    wire_put_hello(&buf, NULL);
    wire_put_netconf(&buf, on, NULL);
    sm_code rc = buf.failed ? error_set(err, SM_E_NOMEM, "out of memory")
                            : agent_call(exec_socket_path, buf.data, buf.len, "netconf", wake_fd, 0, err);
    wire_buf_free(&buf);
    return rc;
}

sm_code agent_poweroff(const char *exec_socket_path, uint32_t timeout_ms, sm_error *err)
{
    wire_buf buf = { 0 };
    wire_put_hello(&buf, NULL);
    wire_put_empty(&buf, WIRE_POWEROFF, NULL);
    sm_code rc = buf.failed ? error_set(err, SM_E_NOMEM, "out of memory")
                            : agent_call(exec_socket_path, buf.data, buf.len, "poweroff", -1, timeout_ms, err);
    wire_buf_free(&buf);
    return rc;
}

sm_code agent_mount_volume(const char *exec_socket_path, const wire_volume *v, uint32_t timeout_ms,
                           sm_error *err)
{
    wire_buf buf = { 0 };
    wire_error we;
    wire_put_hello(&buf, NULL);
    sm_code rc = SM_OK;
    if (!wire_put_volume(&buf, v, &we))
        rc = error_set(err, SM_E_INVALID, "%s", we.message);
    else if (buf.failed)
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    else
        rc = agent_call(exec_socket_path, buf.data, buf.len, "mounting a volume", -1, timeout_ms, err);
    wire_buf_free(&buf);
    return rc;
}

sm_code agent_sync_within(const char *exec_socket_path, int wake_fd, uint32_t timeout_ms, sm_error *err)
{
    wire_sync sync;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    sync.realtime_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    if (getrandom(sync.entropy, sizeof sync.entropy, 0) != (ssize_t)sizeof sync.entropy)
        return error_set_errno(err, SM_E_IO, errno, "getrandom for the guest's entropy");
    wire_buf buf = { 0 };
    wire_put_hello(&buf, NULL);
    wire_put_sync(&buf, &sync, NULL);
    explicit_bzero(&sync, sizeof sync);
    sm_code rc = buf.failed ? error_set(err, SM_E_NOMEM, "out of memory")
                            : agent_call(exec_socket_path, buf.data, buf.len, "sync", wake_fd, timeout_ms, err);
    explicit_bzero(buf.data, buf.len);
    wire_buf_free(&buf);
    return rc;
}

sm_code agent_sync(const char *exec_socket_path, int wake_fd, sm_error *err)
{
    return agent_sync_within(exec_socket_path, wake_fd, 0, err);
}

/* ---- CONNECT --------------------------------------------------------------- */

/* Reads exactly len bytes before the deadline. The answer to CONNECT must
 * not be read past: what follows it belongs to the caller's stream. */
static sm_code read_exact(int fd, const char *path, void *buf, size_t len, uint64_t deadline_us,
                          sm_error *err)
{
    uint8_t *p = buf;
    while (len) {
        uint64_t now = clock_now_us();
        if (now >= deadline_us)
            return error_set(err, SM_E_TIMEOUT, "the agent at %s did not answer CONNECT in time", path);
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        int n = poll(&pf, 1, (int)((deadline_us - now + 999) / 1000));
        if (n < 0 && errno != EINTR)
            return error_set_errno(err, SM_E_IO, errno, "poll");
        if (n <= 0)
            continue;
        ssize_t got = recv(fd, p, len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return error_set(err, SM_E_SETUP, "the agent at %s closed the connection before answering "
                             "CONNECT", path);
        p += got;
        len -= (size_t)got;
    }
    return SM_OK;
}

/* One frame towards the host, read header then payload, nothing more. */
static sm_code read_one_frame(int fd, const char *path, uint8_t *payload, size_t cap, wire_frame *f,
                              uint64_t deadline_us, sm_error *err)
{
    uint8_t head[WIRE_HEADER_SIZE];
    wire_header h;
    wire_error we;
    sm_code rc = read_exact(fd, path, head, sizeof head, deadline_us, err);
    if (rc)
        return rc;
    if (!wire_header_decode(head, WIRE_AT_HOST, &h, &we))
        return error_set(err, SM_E_PROTOCOL, "agent at %s sent a bad frame: %s", path, we.message);
    if (h.length > cap)
        return error_set(err, SM_E_PROTOCOL, "agent at %s answered CONNECT with a %u-byte %s frame", path,
                         h.length, wire_type_name(h.type));
    rc = read_exact(fd, path, payload, h.length, deadline_us, err);
    *f = (wire_frame){ .type = h.type, .length = h.length, .payload = payload };
    return rc;
}

sm_code agent_connect_port(const char *exec_socket_path, uint16_t port, uint32_t timeout_ms, int *out,
                           sm_error *err)
{
    *out = -1;
    if (port == 0)
        return error_set(err, SM_E_INVALID, "connect: port 0 is not a port to connect to");
    wire_buf buf = { 0 };
    wire_put_hello(&buf, NULL);
    if (!wire_put_connect(&buf, port, NULL) || buf.failed) {
        wire_buf_free(&buf);
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    int fd;
    sm_code rc = agent_dial(exec_socket_path, &fd, err);
    if (!rc)
        rc = agent_send_all(fd, buf.data, buf.len, false, 0, err);
    wire_buf_free(&buf);
    if (rc)
        return rc;
    /* The largest frame that may answer: ERROR. */
    uint8_t payload[8 + WIRE_MAX_MESSAGE];
    agent_reader r; /* for error_from_agent's messages only */
    agent_reader_init(&r, fd, exec_socket_path);
    uint64_t deadline = clock_now_us() + (uint64_t)timeout_ms * 1000u;
    wire_frame f;
    wire_error we;
    rc = read_one_frame(fd, exec_socket_path, payload, sizeof payload, &f, deadline, err);
    if (!rc && !wire_check_hello(&f, "agent", &we))
        rc = error_set(err, SM_E_PROTOCOL, "%s (socket %s)", we.message, exec_socket_path);
    if (!rc)
        rc = read_one_frame(fd, exec_socket_path, payload, sizeof payload, &f, deadline, err);
    if (!rc && f.type == WIRE_ERROR)
        rc = error_from_agent(&r, &f, err);
    else if (!rc && f.type != WIRE_OK)
        rc = agent_unexpected(&r, &f, err);
    agent_reader_destroy(&r);
    if (rc) {
        close(fd);
        return rc;
    }
    *out = fd;
    return SM_OK;
}
