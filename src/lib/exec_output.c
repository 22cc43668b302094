/* Run to completion: output, output_resilient, output_with_cancel. */
#include "lib/exec_internal.h"
#include "base/clock.h"
#include "base/error.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RETRY_BACKOFF_MS 50u

struct sm_cancel {
    int efd;
    atomic_bool fired;
};

sm_cancel *sm_cancel_new(void)
{
    sm_cancel *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0) {
        free(c);
        return NULL;
    }
    return c;
}

void sm_cancel_fire(sm_cancel *c)
{
    if (!c)
        return;
    atomic_store(&c->fired, true);
    uint64_t one = 1;
    if (write(c->efd, &one, sizeof one) < 0) { /* already signalled: fine */ }
}

bool sm_cancel_fired(const sm_cancel *c)
{
    return c && atomic_load(&((sm_cancel *)c)->fired);
}

void sm_cancel_free(sm_cancel *c)
{
    if (!c)
        return;
    close(c->efd);
    free(c);
}

void sm_exec_outcome_free(sm_exec_outcome *out)
{
    if (!out)
        return;
    free(out->stdout_buf);
    free(out->stderr_buf);
    memset(out, 0, sizeof *out);
}

/* One stream being collected. */
typedef struct stream_buf {
    uint8_t **buf;
    size_t *len;
    size_t cap;
} stream_buf;

/* Appends n bytes with room for a NUL terminator; the buffer grows by
 * doubling but never past `most` bytes (+ the NUL): what the cap still
 * allows this stream, so a flood costs no more memory than the cap. */
static bool append(stream_buf *s, const uint8_t *data, size_t n, size_t most)
{
    if (n >= SIZE_MAX - *s->len)
        return false;
    if (s->cap - *s->len <= n) {
        size_t need = *s->len + n + 1;
        size_t ncap = s->cap ? s->cap : 4096;
        while (ncap < need)
            ncap = ncap > SIZE_MAX / 2 ? SIZE_MAX : ncap * 2;
        if (most < SIZE_MAX && ncap > most + 1)
            ncap = most + 1;
        uint8_t *nb = realloc(*s->buf, ncap);
        if (!nb)
            return false;
        *s->buf = nb;
        s->cap = ncap;
    }
    memcpy(*s->buf + *s->len, data, n);
    *s->len += n;
    (*s->buf)[*s->len] = 0;
    return true;
}

static sm_code over_cap(size_t max_output, sm_error *err)
{
    return error_set(err, SM_E_LIMIT, "the command printed more than the output cap of %zu bytes "
                     "(stdout and stderr together): it was killed and only the first %zu bytes "
                     "were kept; raise the cap with sm_exec_builder_max_output, or stream the "
                     "output with sm_exec_spawn", max_output, max_output);
}

/* Takes one STDOUT or STDERR frame, keeping at most what the cap allows. */
static sm_code take_output(const wire_frame *f, stream_buf *s, size_t used, size_t max_output,
                           sm_error *err)
{
    size_t room = max_output - used; /* used <= max_output always */
    size_t n = f->length <= room ? f->length : room;
    if (n && !append(s, f->payload, n, *s->len + room))
        return error_set(err, SM_E_NOMEM, "out of memory collecting the command's output");
    return n < f->length ? over_cap(max_output, err) : SM_OK;
}

sm_code exec_collect(agent_reader *r, size_t max_output, int wake_fd, uint64_t deadline_us,
                     sm_exec_outcome *out, sm_error *err)
{
    stream_buf so = { &out->stdout_buf, &out->stdout_len, 0 };
    stream_buf se = { &out->stderr_buf, &out->stderr_len, 0 };
    for (;;) {
        wire_frame f;
        sm_code rc = agent_read_frame(r, &f, wake_fd, deadline_us, err);
        if (rc)
            return rc;
        wire_error we;
        switch (f.type) {
        case WIRE_STDOUT:
        case WIRE_STDERR:
            rc = take_output(&f, f.type == WIRE_STDOUT ? &so : &se,
                             out->stdout_len + out->stderr_len, max_output, err);
            if (rc)
                return rc;
            break;
        case WIRE_EXIT: {
            wire_exit x;
            if (!wire_get_exit(&f, &x, &we))
                return error_set(err, SM_E_PROTOCOL, "bad EXIT from %s: %s", r->path, we.message);
            exec_status_from_wire(&x, &out->status);
            out->timed_out = x.timed_out;
            out->duration_us = x.duration_us;
            out->peak_rss_kib = x.peak_rss_kib;
            return SM_OK;
        }
        default:
            return agent_unexpected(r, &f, err);
        }
    }
}

/* Buffers are never NULL on return, so callers can print them; after a
 * failure the status is one that cannot read as success. */
static sm_code finish_outcome(sm_exec_outcome *out, sm_code rc, sm_error *err)
{
    if (rc) {
        out->status = (sm_exec_status){ .code = -1 };
        out->timed_out = false;
        out->duration_us = out->peak_rss_kib = 0;
    }
    if (!out->stdout_buf)
        out->stdout_buf = calloc(1, 1);
    if (!out->stderr_buf)
        out->stderr_buf = calloc(1, 1);
    if (!out->stdout_buf || !out->stderr_buf) {
        sm_exec_outcome_free(out);
        return rc ? rc : error_set(err, SM_E_NOMEM, "out of memory");
    }
    return rc;
}

/* Best effort: kill through the agent, then drop the connection, which
 * makes the agent SIGHUP/SIGKILL the group even if the frame could not be
 * sent. */
static void kill_and_drop(int fd)
{
    wire_buf kill_frame = { 0 };
    if (wire_put_signal(&kill_frame, SIGKILL, NULL))
        if (send(fd, kill_frame.data, kill_frame.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* the drop below does it */
        }
    wire_buf_free(&kill_frame);
    shutdown(fd, SHUT_RDWR);
}

static sm_code run_output(const sm_exec_builder *b, sm_cancel *cancel, sm_exec_outcome *out,
                          sm_error *err)
{
    if (!out)
        return error_set(err, SM_E_INVALID, "outcome pointer is NULL");
    memset(out, 0, sizeof *out);
    if (sm_cancel_fired(cancel))
        return finish_outcome(out, error_set(err, SM_E_CANCELLED, "cancelled before starting"),
                              err);
    int fd;
    sm_code rc = exec_open_request(b, true, &fd, err);
    if (rc)
        return finish_outcome(out, rc, err);
    agent_reader r;
    char why[EXEC_WHY_MAX];
    uint64_t deadline;
    exec_reader_init(&r, fd, b, why, &deadline);
    rc = exec_collect(&r, b->max_output, cancel ? cancel->efd : -1, deadline, out, err);
    if (rc == SM_E_CANCELLED || rc == SM_E_LIMIT || rc == SM_E_TIMEOUT)
        kill_and_drop(fd); /* the command may still run: it must not outlive the call */
    if (rc == SM_E_CANCELLED)
        error_set(err, SM_E_CANCELLED, "cancelled: the command was killed");
    if (rc == SM_E_TIMEOUT)
        exec_timeout_hint(err, true);
    agent_reader_destroy(&r);
    close(fd);
    return finish_outcome(out, rc, err);
}

sm_code sm_exec_output(const sm_exec_builder *b, sm_exec_outcome *out, sm_error *err)
{
    return run_output(b, NULL, out, err);
}

sm_code sm_exec_output_with_cancel(const sm_exec_builder *b, sm_cancel *cancel,
                                   sm_exec_outcome *out, sm_error *err)
{
    if (!cancel)
        return error_set(err, SM_E_INVALID, "cancel handle is NULL: use sm_exec_output");
    return run_output(b, cancel, out, err);
}

sm_code sm_exec_output_resilient(const sm_exec_builder *b, unsigned retries,
                                 sm_exec_outcome *out, sm_error *err)
{
    for (unsigned attempt = 0;; attempt++) {
        sm_code rc = run_output(b, NULL, out, err);
        /* Only a setup failure is retried: nothing of the command arrived,
         * so it did not (visibly) start. Anything later could re-run it. */
        if (rc != SM_E_SETUP || attempt >= retries) {
            if (rc == SM_E_SETUP && retries && err)
                error_prefix(err, "gave up after %u attempts", attempt + 1);
            return rc;
        }
        sm_exec_outcome_free(out);
        clock_sleep_ms(RETRY_BACKOFF_MS * (attempt + 1));
    }
}
