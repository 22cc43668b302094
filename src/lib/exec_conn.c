/* Talking to an agent: dial, send, read frames, turn agent errors into codes. */
#include "lib/exec_internal.h"
#include "base/clock.h"
#include "base/error.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (256u << 10)

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
        .flags = (b->tty ? WIRE_REQ_TTY : 0) | (b->has_user ? WIRE_REQ_USER : 0) |
                 (b->clear_env ? WIRE_REQ_CLEAR_ENV : 0) |
                 (b->nrlimits ? WIRE_REQ_RLIMITS : 0) | (b->hostname[0] ? WIRE_REQ_HOSTNAME : 0),
        .cols = b->cols,
        .rows = b->rows,
        .timeout_ms = b->timeout_ms,
        .env = { .argc = (uint32_t)b->nenv, .argv = (const char **)b->env },
        .cwd = b->cwd ? b->cwd : "",
        .nfiles = (uint32_t)b->nfiles,
        .nchain = (uint32_t)b->nchain,
        .uid = b->uid,
        .gid = b->gid,
        .ngroups = (uint32_t)b->ngroups,
        .groups = b->groups,
        .nrlimits = (uint32_t)b->nrlimits,
        .rlimits = (wire_rlimit *)b->rlimits, /* only read by the encoder */
        .hostname = b->hostname,
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
    rc = agent_dial(b->socket_path, &fd, err);
    if (rc)
        goto out;
    /* A broken pipe is not final: the agent may have said why (e.g. a
     * version mismatch) before closing, and reading the reply reports it.
     * An agent that stops taking the request is. */
    sm_error send_err;
    if (agent_send_all(fd, buf.data, buf.len, false, exec_agent_timeout_ms(b), &send_err) ==
        SM_E_TIMEOUT) {
        close(fd);
        if (err) {
            *err = send_err;
            error_prefix(err, "sending the request to %s", b->socket_path);
            exec_timeout_hint(err, true);
        }
        rc = SM_E_TIMEOUT;
        goto out;
    }
    *out = fd;
    rc = SM_OK;
out:
    free(files);
    free(chain);
    wire_buf_free(&buf);
    return rc;
}

static _Atomic uint32_t default_agent_timeout_ms = SM_EXEC_AGENT_TIMEOUT_MS;

void exec_set_default_agent_timeout_ms(uint32_t ms)
{
    default_agent_timeout_ms = ms ? ms : SM_EXEC_AGENT_TIMEOUT_MS;
}

uint32_t exec_agent_timeout_ms(const sm_exec_builder *b)
{
    return b && b->agent_timeout_ms ? b->agent_timeout_ms : default_agent_timeout_ms;
}

void exec_timeout_hint(sm_error *err, bool has_builder)
{
    if (!err || err->code != SM_E_TIMEOUT)
        return;
    size_t n = strlen(err->message);
    snprintf(err->message + n, sizeof err->message - n, "%s",
             has_builder ? " (sm_exec_builder_agent_timeout_ms sets how long to wait)"
                         : " (its VM may be hung or paused)");
}

void exec_reader_init(agent_reader *r, int fd, const sm_exec_builder *b, char *why,
                      uint64_t *deadline_us)
{
    uint32_t grace = exec_agent_timeout_ms(b);
    agent_reader_init(r, fd, b->socket_path);
    r->hello_ms = grace;
    *deadline_us = 0;
    if (!b->timeout_ms)
        return; /* a command without a timeout may run, silent, for ever */
    /* The agent kills the command at its timeout and then reports: the
     * report is due within the agent timeout after that. */
    *deadline_us = clock_now_us() + ((uint64_t)b->timeout_ms + grace) * 1000u;
    snprintf(why, EXEC_WHY_MAX, "no exit report %u ms past the command's %u ms timeout", grace,
             b->timeout_ms);
    r->deadline_what = why;
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
