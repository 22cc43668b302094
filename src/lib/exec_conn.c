/* Talking to an agent: dial, send, read frames, turn agent errors into codes. */
#include "lib/exec_internal.h"
#include "base/clock.h"
#include "base/error.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (256u << 10)

sm_code exec_dial(const char *path, int *out, sm_error *err)
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

sm_code exec_send_all(int fd, const void *data, size_t len, bool started, sm_error *err)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return error_set_errno(err, started ? SM_E_DROPPED : SM_E_SETUP, errno,
                                 "sending to the agent failed");
        }
        p += n;
        len -= (size_t)n;
    }
    return SM_OK;
}

static void to_wire_argv(const exec_argv *a, wire_argv *w)
{
    w->argc = (uint32_t)a->argc;
    w->argv = (const char **)a->argv;
}

sm_code exec_open_request(const sm_exec_builder *b, bool close_stdin, int *out, sm_error *err)
{
    if (!b)
        return error_set(err, SM_E_INVALID, "exec builder is NULL");
    if (b->failed) {
        if (err)
            *err = b->first_error;
        return b->first_error.code;
    }
    if (!b->argv.argc)
        return error_set(err, SM_E_INVALID, "exec builder has no argv: call sm_exec_builder_argv");
    wire_request req = {
        .flags = b->tty ? WIRE_REQ_TTY : 0,
        .cols = b->cols,
        .rows = b->rows,
        .timeout_ms = b->timeout_ms,
        .env = { .argc = (uint32_t)b->nenv, .argv = (const char **)b->env },
        .cwd = b->cwd ? b->cwd : "",
        .nfiles = (uint32_t)b->nfiles,
        .nchain = (uint32_t)b->nchain,
    };
    to_wire_argv(&b->argv, &req.argv);
    wire_file *files = calloc(b->nfiles ? b->nfiles : 1, sizeof *files);
    wire_argv *chain = calloc(b->nchain ? b->nchain : 1, sizeof *chain);
    wire_buf buf = { 0 };
    wire_error we;
    sm_code rc = SM_OK;
    if (!files || !chain) {
        rc = error_set(err, SM_E_NOMEM, "out of memory encoding the request");
        goto out;
    }
    for (size_t i = 0; i < b->nfiles; i++) {
        if (b->files[i].len > UINT32_MAX) {
            rc = error_set(err, SM_E_LIMIT, "staged file %s is too large", b->files[i].path);
            goto out;
        }
        files[i] = (wire_file){ b->files[i].path, b->files[i].data, (uint32_t)b->files[i].len,
                                   b->files[i].mode };
    }
    for (size_t i = 0; i < b->nchain; i++)
        to_wire_argv(&b->chain[i], &chain[i]);
    req.files = files;
    req.chain = chain;
    if (!wire_put_hello(&buf, &we) || !wire_put_request(&buf, &req, &we) ||
        (close_stdin && !wire_put_empty(&buf, WIRE_STDIN_CLOSE, &we))) {
        rc = error_set(err, buf.failed ? SM_E_NOMEM : SM_E_LIMIT, "cannot send this request: %s",
                     we.message);
        goto out;
    }
    int fd;
    rc = exec_dial(b->socket_path, &fd, err);
    if (rc)
        goto out;
    /* A failed send is not final: the agent may have said why (e.g. a
     * version mismatch) before closing, and reading the reply reports it. */
    (void)exec_send_all(fd, buf.data, buf.len, false, NULL);
    *out = fd;
    rc = SM_OK;
out:
    free(files);
    free(chain);
    wire_buf_free(&buf);
    return rc;
}

void exec_reader_init(exec_reader *r, int fd, const char *path)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->path = path;
    wire_reader_init(&r->rd, WIRE_AT_HOST);
}

void exec_reader_destroy(exec_reader *r)
{
    wire_reader_destroy(&r->rd);
}

static sm_code agent_error(const exec_reader *r, const wire_frame *f, sm_error *err)
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

/* Blocks until the fd is readable, the wake fd fires or the deadline passes. */
static sm_code wait_readable(exec_reader *r, int wake_fd, uint64_t deadline_us, sm_error *err)
{
    for (;;) {
        struct pollfd p[2] = { { .fd = r->fd, .events = POLLIN }, { .fd = wake_fd, .events = POLLIN } };
        int timeout = -1;
        if (deadline_us) {
            uint64_t now = clock_now_us();
            if (now >= deadline_us)
                return error_set(err, SM_E_TIMEOUT, "the agent at %s sent no exit report in time "
                               "(it may be hung): gave up", r->path);
            timeout = (int)((deadline_us - now + 999) / 1000);
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

sm_code exec_read_frame(exec_reader *r, wire_frame *f, int wake_fd, uint64_t deadline_us,
                        sm_error *err)
{
    for (;;) {
        wire_error we;
        int got = wire_reader_next(&r->rd, f, &we);
        if (got < 0)
            return error_set(err, SM_E_PROTOCOL, "agent at %s sent a bad frame: %s", r->path,
                           we.message);
        if (got > 0) {
            if (!r->got_hello) {
                if (!wire_check_hello(f, "agent", &we))
                    return error_set(err, SM_E_PROTOCOL, "%s (socket %s)", we.message, r->path);
                r->got_hello = true;
                continue;
            }
            if (f->type == WIRE_ERROR)
                return agent_error(r, f, err);
            r->got_output = true;
            return SM_OK;
        }
        if (wake_fd >= 0 || deadline_us) {
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
        if (n <= 0) {
            int e = n < 0 ? errno : 0;
            const char *why = e ? strerror(e) : "connection closed";
            if (!r->got_output)
                return error_set(err, SM_E_SETUP, "the agent at %s closed the connection before "
                               "the command produced anything (%s): safe to retry", r->path, why);
            return error_set(err, SM_E_DROPPED, "the connection to the agent at %s dropped "
                           "mid-stream (%s): the command ran, at least partly", r->path, why);
        }
        wire_reader_commit(&r->rd, (size_t)n);
    }
}

sm_code exec_unexpected(const exec_reader *r, const wire_frame *f, sm_error *err)
{
    return error_set(err, SM_E_PROTOCOL, "agent at %s sent an unexpected %s frame", r->path,
                   wire_type_name(f->type));
}

void exec_status_from_wire(const wire_exit *x, sm_exec_status *st)
{
    st->code = x->code;
    st->signal = x->signal;
    st->timed_out = x->timed_out;
    st->duration_us = x->duration_us;
    st->peak_rss_kib = x->peak_rss_kib;
    st->steps_run = x->steps_run;
}

int sm_exec_status_shell_code(const sm_exec_status *st)
{
    if (!st)
        return 255;
    return st->signal ? 128 + st->signal : st->code;
}
