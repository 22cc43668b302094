/*
 * spawn: a running command the caller streams.
 *
 * One pump thread per child reads the agent's frames and writes STDOUT and
 * STDERR payloads into two pipes; the caller reads (or polls) the pipes'
 * read ends, so each stream has its own real, pollable descriptor and the
 * pipes' capacity is the flow control back to the command. Writes towards
 * the agent (stdin, signals, resizes) come from caller threads and go
 * through a shared "link" under a mutex; signallers hold a reference to the
 * link, so they stay valid after the child is freed.
 */
#include "lib/exec_internal.h"
#include "base/file.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define STDIN_CHUNK (256u << 10)
#define PIPE_SIZE   (1 << 20)

/* The sending half of the connection, shared with signallers. */
typedef struct exec_link {
    pthread_mutex_t lock;
    int fd;       /* -1 once the child is freed */
    bool done;    /* the exit report or an error arrived */
    int refs;
} exec_link;

struct sm_exec_signaller {
    exec_link *link;
};

struct sm_exec_child {
    exec_link *link;
    char *path;
    int out_r, out_w, err_r, err_w;
    pthread_t pump;
    bool pump_running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    sm_code result;
    sm_error error;
    sm_exec_status status;
    bool stdin_closed;
    agent_reader reader;      /* the pump's, set up by spawn from the builder */
    char why[EXEC_WHY_MAX];   /* what reader's deadline waits for */
    uint64_t deadline_us;     /* the exit report's, with a command timeout */
};

static void link_unref(exec_link *l)
{
    pthread_mutex_lock(&l->lock);
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&l->lock);
    if (last) {
        if (l->fd >= 0)
            close(l->fd);
        pthread_mutex_destroy(&l->lock);
        free(l);
    }
}

/* Sends iov (one frame of this type, up to two pieces) whole, under the
 * link's lock, so that frames from several threads never interleave. */
static sm_code link_send_iov(exec_link *l, uint8_t type, const struct iovec iov[2], sm_error *err)
{
    size_t total = iov[0].iov_len + iov[1].iov_len, sent = 0;
    pthread_mutex_lock(&l->lock);
    sm_code rc = SM_OK;
    if (l->fd < 0 || l->done) {
        rc = error_set(err, SM_E_INVALID, "the command has finished: nothing to send %s to",
                     wire_type_name(type));
        goto out;
    }
    while (sent < total) {
        struct msghdr mh = { 0 };
        struct iovec cur[2];
        int n = 0;
        size_t skip = sent;
        for (int i = 0; i < 2; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            cur[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
            cur[n].iov_len = iov[i].iov_len - skip;
            skip = 0;
            n++;
        }
        mh.msg_iov = cur;
        mh.msg_iovlen = (size_t)n;
        ssize_t w = sendmsg(l->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = error_set_errno(err, SM_E_DROPPED, errno, "sending %s to the agent failed",
                               wire_type_name(type));
            break;
        }
        sent += (size_t)w;
    }
out:
    pthread_mutex_unlock(&l->lock);
    return rc;
}

/* Sends one frame: a header made here, then the payload. */
static sm_code link_send(exec_link *l, uint8_t type, const void *payload, size_t len,
                         sm_error *err)
{
    uint8_t header[WIRE_HEADER_SIZE];
    wire_header_encode(header, type, (uint32_t)len);
    const struct iovec iov[2] = { { header, sizeof header }, { (void *)payload, len } };
    return link_send_iov(l, type, iov, err);
}

/* Sends a frame that wire.c's encoder wrote into b (built: it succeeded). */
static sm_code link_send_encoded(exec_link *l, uint8_t type, wire_buf *b, bool built,
                                 const wire_error *we, sm_error *err)
{
    sm_code rc;
    if (!built)
        rc = b->failed ? error_set(err, SM_E_NOMEM, "out of memory")
                       : error_set(err, SM_E_INVALID, "%s", we->message);
    else
        rc = link_send_iov(l, type, (const struct iovec[2]){ { b->data, b->len }, { NULL, 0 } }, err);
    wire_buf_free(b);
    return rc;
}

static sm_code link_signal(exec_link *l, int signo, sm_error *err)
{
    wire_buf b = { 0 };
    wire_error we;
    bool built = wire_put_signal(&b, signo, &we);
    return link_send_encoded(l, WIRE_SIGNAL, &b, built, &we, err);
}

/* ---- the pump thread ------------------------------------------------------ */

static void *pump_main(void *arg)
{
    sm_exec_child *c = arg;
    agent_reader *r = &c->reader;
    sm_code rc;
    sm_error error = { 0 };
    sm_exec_status status = { 0 };
    bool out_open = true, err_open = true;
    for (;;) {
        wire_frame f;
        rc = agent_read_frame(r, &f, -1, c->deadline_us, &error);
        if (rc) {
            exec_timeout_hint(&error, true);
            break;
        }
        if (f.type == WIRE_STDOUT && out_open) {
            out_open = write_all(c->out_w, f.payload, f.length); /* false: the caller stopped reading, drop the rest */
        } else if (f.type == WIRE_STDERR && err_open) {
            err_open = write_all(c->err_w, f.payload, f.length);
        } else if (f.type == WIRE_EXIT) {
            wire_exit x;
            wire_error we;
            if (wire_get_exit(&f, &x, &we))
                exec_status_from_wire(&x, &status);
            else
                rc = error_set(&error, SM_E_PROTOCOL, "bad EXIT from %s: %s", c->path, we.message);
            break;
        } else if (f.type != WIRE_STDOUT && f.type != WIRE_STDERR) {
            rc = agent_unexpected(r, &f, &error);
            break;
        }
    }
    agent_reader_destroy(r);
    if (rc)
        status = (sm_exec_status){ .code = -1 }; /* no exit report: nothing that reads as success */
    pthread_mutex_lock(&c->link->lock);
    c->link->done = true;
    pthread_mutex_unlock(&c->link->lock);
    /* The result is in place before the pipes close, so a reader that meets
     * their end can tell an exit report from a broken connection. */
    pthread_mutex_lock(&c->lock);
    c->result = rc;
    c->error = error;
    c->status = status;
    c->done = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    close(c->out_w);
    close(c->err_w);
    c->out_w = c->err_w = -1;
    return NULL;
}

/* ---- spawn ------------------------------------------------------------------ */

static bool make_pipe(int *r, int *w)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return false;
    fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE); /* best effort */
    *r = p[0];
    *w = p[1];
    return true;
}

static void child_destroy(sm_exec_child *c)
{
    int fds[4] = { c->out_r, c->out_w, c->err_r, c->err_w };
    for (int i = 0; i < 4; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (c->link) {
        pthread_mutex_lock(&c->link->lock);
        if (c->link->fd >= 0) {
            close(c->link->fd);
            c->link->fd = -1;
        }
        pthread_mutex_unlock(&c->link->lock);
        link_unref(c->link);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c->path);
    free(c);
}

sm_code sm_exec_spawn(const sm_exec_builder *b, sm_exec_child **out, sm_error *err)
{
    if (!out)
        return error_set(err, SM_E_INVALID, "child pointer is NULL");
    *out = NULL;
    sm_exec_child *c = calloc(1, sizeof *c);
    exec_link *l = calloc(1, sizeof *l);
    if (!c || !l || !b || !(c->path = strdup(b->socket_path))) {
        free(l);
        if (c)
            free(c->path);
        free(c);
        return error_set(err, b ? SM_E_NOMEM : SM_E_INVALID, "cannot spawn: %s",
                       b ? "out of memory" : "builder is NULL");
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_mutex_init(&l->lock, NULL);
    l->fd = -1;
    l->refs = 1;
    c->link = l;
    c->out_r = c->out_w = c->err_r = c->err_w = -1;
    if (!make_pipe(&c->out_r, &c->out_w) || !make_pipe(&c->err_r, &c->err_w)) {
        sm_code rc = error_set_errno(err, SM_E_IO, errno, "cannot create pipes for the child");
        child_destroy(c);
        return rc;
    }
    sm_code rc = exec_open_request(b, false, &l->fd, err);
    if (rc) {
        child_destroy(c);
        return rc;
    }
    exec_reader_init(&c->reader, l->fd, b, c->why, &c->deadline_us);
    c->reader.path = c->path; /* the builder's may be freed before the pump ends */
    /* The pump runs with every signal blocked: the caller's handlers never
     * run on it, and writing to a pipe whose reader was closed gives EPIPE
     * instead of a SIGPIPE that would kill the caller's process. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&c->pump, NULL, pump_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        child_destroy(c);
        return error_set_errno(err, SM_E_IO, e, "cannot start the child's pump thread");
    }
    c->pump_running = true;
    *out = c;
    return SM_OK;
}

/* ---- the child's API -------------------------------------------------------- */

sm_code sm_exec_child_stdin_write(sm_exec_child *c, const void *buf, size_t len, sm_error *err)
{
    if (!c || (!buf && len))
        return error_set(err, SM_E_INVALID, "child or buffer is NULL");
    if (c->stdin_closed)
        return error_set(err, SM_E_INVALID, "stdin was already closed");
    const uint8_t *p = buf;
    while (len) {
        size_t n = len < STDIN_CHUNK ? len : STDIN_CHUNK;
        sm_code rc = link_send(c->link, WIRE_STDIN, p, n, err);
        if (rc)
            return rc;
        p += n;
        len -= n;
    }
    return SM_OK;
}

sm_code sm_exec_child_stdin_close(sm_exec_child *c, sm_error *err)
{
    if (!c)
        return error_set(err, SM_E_INVALID, "child is NULL");
    if (c->stdin_closed)
        return SM_OK;
    c->stdin_closed = true;
    return link_send(c->link, WIRE_STDIN_CLOSE, NULL, 0, err);
}

/* The end of a stream is clean only if the exit report arrived; after a
 * broken connection the reader gets the pump's error instead, once every
 * byte that did arrive has been read. */
static sm_code end_of_stream(sm_exec_child *c, sm_error *err)
{
    pthread_mutex_lock(&c->lock);
    while (!c->done)
        pthread_cond_wait(&c->cond, &c->lock);
    sm_code rc = c->result;
    if (rc && err)
        *err = c->error;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static sm_code read_stream(sm_exec_child *c, int fd, const char *name, void *buf, size_t cap,
                           size_t *got, sm_error *err)
{
    if (!buf || !got)
        return error_set(err, SM_E_INVALID, "buffer or length pointer is NULL");
    *got = 0;
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n > 0 || (n == 0 && cap == 0)) {
            *got = (size_t)n;
            return SM_OK;
        }
        if (n == 0)
            return end_of_stream(c, err);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) { /* the caller made it non-blocking: wait here */
            struct pollfd p = { .fd = fd, .events = POLLIN };
            poll(&p, 1, -1);
            continue;
        }
        return error_set_errno(err, SM_E_IO, errno, "reading the command's %s", name);
    }
}

sm_code sm_exec_child_stdout_read(sm_exec_child *c, void *buf, size_t cap, size_t *got,
                                  sm_error *err)
{
    if (!c)
        return error_set(err, SM_E_INVALID, "child is NULL");
    return read_stream(c, c->out_r, "stdout", buf, cap, got, err);
}

sm_code sm_exec_child_stderr_read(sm_exec_child *c, void *buf, size_t cap, size_t *got,
                                  sm_error *err)
{
    if (!c)
        return error_set(err, SM_E_INVALID, "child is NULL");
    return read_stream(c, c->err_r, "stderr", buf, cap, got, err);
}

int sm_exec_child_stdout_fd(const sm_exec_child *c)
{
    return c ? c->out_r : -1;
}

int sm_exec_child_stderr_fd(const sm_exec_child *c)
{
    return c ? c->err_r : -1;
}

sm_code sm_exec_child_signal(sm_exec_child *c, int signo, sm_error *err)
{
    if (!c)
        return error_set(err, SM_E_INVALID, "child is NULL");
    return link_signal(c->link, signo, err);
}

sm_exec_signaller *sm_exec_child_signaller(sm_exec_child *c)
{
    if (!c)
        return NULL;
    sm_exec_signaller *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_lock(&c->link->lock);
    c->link->refs++;
    pthread_mutex_unlock(&c->link->lock);
    s->link = c->link;
    return s;
}

sm_code sm_exec_signaller_signal(sm_exec_signaller *s, int signo, sm_error *err)
{
    if (!s)
        return error_set(err, SM_E_INVALID, "signaller is NULL");
    return link_signal(s->link, signo, err);
}

void sm_exec_signaller_free(sm_exec_signaller *s)
{
    if (!s)
        return;
    link_unref(s->link);
    free(s);
}

sm_code sm_exec_child_resize(sm_exec_child *c, uint16_t cols, uint16_t rows, sm_error *err)
{
    if (!c)
        return error_set(err, SM_E_INVALID, "child is NULL");
    wire_buf b = { 0 };
    wire_error we;
    bool built = wire_put_resize(&b, cols, rows, &we);
    return link_send_encoded(c->link, WIRE_RESIZE, &b, built, &we, err);
}

void sm_exec_child_abort(sm_exec_child *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->link->lock);
    if (c->link->fd >= 0)
        shutdown(c->link->fd, SHUT_RDWR); /* the pump sees EOF and finishes */
    pthread_mutex_unlock(&c->link->lock);
}

sm_code sm_exec_child_wait(sm_exec_child *c, sm_exec_status *status, sm_error *err)
{
    if (!c)
        return error_set(err, SM_E_INVALID, "child is NULL");
    if (!c->stdin_closed)
        sm_exec_child_stdin_close(c, NULL); /* a command reading stdin would wait forever */
    pthread_mutex_lock(&c->lock);
    while (!c->done)
        pthread_cond_wait(&c->cond, &c->lock);
    sm_code rc = c->result;
    if (rc && err)
        *err = c->error;
    if (status)
        *status = c->status;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void sm_exec_child_free(sm_exec_child *c)
{
    if (!c)
        return;
    if (c->pump_running) {
        pthread_mutex_lock(&c->lock);
        bool done = c->done;
        pthread_mutex_unlock(&c->lock);
        if (!done)
            sm_exec_child_abort(c);
        /* The pump may block writing to a full pipe nobody reads: close our
         * read ends so its writes fail and it finishes. */
        close(c->out_r);
        close(c->err_r);
        c->out_r = c->err_r = -1;
        pthread_join(c->pump, NULL);
    }
    child_destroy(c);
}
