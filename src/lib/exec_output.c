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

/* If the agent says nothing this long past the command's own timeout, the
 * agent (or its VM) is considered hung. */
#define HUNG_AGENT_SLACK_US (10u * 1000000u)
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

/* Appends with room for a NUL terminator. */
static bool append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *data, size_t n)
{
    if (*cap - *len <= n) {
        size_t ncap = *cap ? *cap : 4096;
        while (ncap - *len <= n) {
            if (ncap > SIZE_MAX / 2)
                return false;
            ncap *= 2;
        }
        uint8_t *nb = realloc(*buf, ncap);
        if (!nb)
            return false;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = 0;
    return true;
}

static sm_code collect(agent_reader *r, const sm_exec_builder *b, sm_cancel *cancel,
                       sm_exec_outcome *out, sm_error *err)
{
    size_t out_cap = 0, err_cap = 0;
    uint64_t deadline = b->timeout_ms ? clock_now_us() + (uint64_t)b->timeout_ms * 1000u +
                                        HUNG_AGENT_SLACK_US : 0;
    for (;;) {
        wire_frame f;
        sm_code rc = agent_read_frame(r, &f, cancel ? cancel->efd : -1, deadline, err);
        if (rc)
            return rc;
        wire_error we;
        switch (f.type) {
        case WIRE_STDOUT:
        case WIRE_STDERR: {
            bool is_out = f.type == WIRE_STDOUT;
            if (!append(is_out ? &out->stdout_buf : &out->stderr_buf,
                        is_out ? &out->stdout_len : &out->stderr_len,
                        is_out ? &out_cap : &err_cap, f.payload, f.length))
                return error_set(err, SM_E_NOMEM, "out of memory collecting the command's output");
            break;
        }
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

/* Buffers are never NULL on return, so callers can print them. */
static sm_code ensure_buffers(sm_exec_outcome *out, sm_code rc, sm_error *err)
{
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

static sm_code run_output(const sm_exec_builder *b, sm_cancel *cancel, sm_exec_outcome *out,
                          sm_error *err)
{
    if (!out)
        return error_set(err, SM_E_INVALID, "outcome pointer is NULL");
    memset(out, 0, sizeof *out);
    if (sm_cancel_fired(cancel))
        return ensure_buffers(out, error_set(err, SM_E_CANCELLED, "cancelled before starting"),
                              err);
    int fd;
    sm_code rc = exec_open_request(b, true, &fd, err);
    if (rc)
        return ensure_buffers(out, rc, err);
    agent_reader r;
    agent_reader_init(&r, fd, b->socket_path);
    rc = collect(&r, b, cancel, out, err);
    if (rc == SM_E_CANCELLED) {
        /* Best effort: kill through the agent, then drop the connection,
         * which makes the agent SIGHUP/SIGKILL the group even if the frame
         * could not be sent. */
        wire_buf kill_frame = { 0 };
        if (wire_put_signal(&kill_frame, SIGKILL, NULL))
            if (send(fd, kill_frame.data, kill_frame.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
                /* the drop below does it */
            }
        wire_buf_free(&kill_frame);
        shutdown(fd, SHUT_RDWR);
        error_set(err, SM_E_CANCELLED, "cancelled: the command was killed");
    }
    agent_reader_destroy(&r);
    close(fd);
    return ensure_buffers(out, rc, err);
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
