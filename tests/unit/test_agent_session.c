/*
 * Unit tests of the agent's exec session (src/agent/session.c) against a
 * stand-in for its event loop (the loop.c functions it calls are stubbed
 * here), so that the order of events can be chosen: in particular a command
 * reaped before the loop has seen its pipes' events, and a loop that then
 * comes round only after the drain grace (DRAIN_GRACE_US, 200 ms) is over.
 *
 * That order happened in a guest under load (tests/vm/test_vm_api.c's 32
 * concurrent execs; bench/soak/concurrent repeats them): the command exited
 * after epoll_wait had returned, wait4 in the same batch reaped it, the rest
 * of the batch outlasted the grace (its vCPU preempted), and the tick closed
 * the pipes with the command's last line unread: SM_OK, exit code 17,
 * stdout "run 17\n" without "17\n".
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/agent.h"

#define LONGER_THAN_THE_GRACE_US 300000u

/* ---- the loop's side, stubbed -------------------------------------------- */

struct conn {
    session *s;
    size_t backlog;      /* what conn_backlog says */
    wire_buf out, err;   /* STDOUT / STDERR bytes, in order */
    bool exited;
    wire_exit exit;
    bool failed;
};

static watch *out_watch, *err_watch; /* the session's pipe readers */

void agent_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "agent: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

void agent_watch_set(agent *ag, watch *w, uint32_t events)
{
    (void)ag;
    if (w->kind == W_OUT)
        out_watch = w;
    if (w->kind == W_ERR)
        err_watch = w;
    w->events = events;
}

bool conn_send_data(conn *c, uint8_t type, const void *data, size_t len)
{
    wire_buf_put(type == WIRE_STDOUT ? &c->out : &c->err, data, len);
    return true;
}

ssize_t conn_send_from_fd(conn *c, uint8_t type, int fd, size_t max)
{
    static uint8_t buf[1 << 20];
    if (max > sizeof buf)
        max = sizeof buf;
    ssize_t n = read(fd, buf, max);
    if (n > 0)
        conn_send_data(c, type, buf, (size_t)n);
    return n;
}

void conn_send_exit(conn *c, const wire_exit *x)
{
    c->exited = true;
    c->exit = *x;
    c->s = NULL;
}

void conn_fail(conn *c, uint32_t kind, const char *fmt, ...)
{
    (void)kind;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "conn_fail: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    c->failed = true;
}

size_t conn_backlog(const conn *c) { return c->backlog; }
void conn_attach(conn *c, session *s) { c->s = s; }
void conn_pause_reading(conn *c, bool pause) { (void)c; (void)pause; }

const char *image_user_error(void) { return NULL; }
bool image_user_id(uint32_t *uid, uint32_t *gid)
{
    (void)uid; (void)gid;
    return false;
}
bool image_hostname_set(const char *name, char *why, size_t cap)
{
    (void)name;
    snprintf(why, cap, "not in this test");
    return false;
}
bool exec_as_wanted(const exec_as *who)
{
    (void)who;
    return false;
}
const char **exec_as_wrap(const char *path, const char *const *argv, const exec_as *who,
                          char *scratch, size_t cap)
{
    (void)path; (void)argv; (void)who; (void)scratch; (void)cap;
    return NULL;
}

bool files_write_atomic(const char *path, const void *data, size_t len, uint32_t mode, char *why,
                        size_t whylen)
{
    (void)path; (void)data; (void)len; (void)mode;
    snprintf(why, whylen, "not in this test");
    return false;
}

/* ---- helpers --------------------------------------------------------------- */

/* Starts `sh -c script` as a session on c; returns the session. */
static session *start(agent *ag, conn *c, const char *script)
{
    const char *argv[] = { "sh", "-c", script, NULL };
    wire_request req = { .argv = { 3, argv }, .env = { 0, (const char *[]){ NULL } }, .cwd = "" };
    wire_buf b = { 0 };
    wire_error e;
    assert_true(wire_put_request(&b, &req, &e));
    uint32_t len = (uint32_t)(b.len - WIRE_HEADER_SIZE);
    uint8_t *payload = malloc(len);
    assert_non_null(payload);
    memcpy(payload, b.data + WIRE_HEADER_SIZE, len);
    wire_buf_free(&b);
    out_watch = err_watch = NULL;
    session_start(ag, c, payload, len);
    assert_false(c->failed);
    assert_non_null(ag->sessions);
    assert_non_null(out_watch);
    assert_non_null(err_watch);
    return ag->sessions;
}

/* Waits for the command to exit (its output is then all in the pipes)
 * without telling the session. */
static pid_t wait_exit(int *status, long *rss)
{
    struct rusage ru;
    pid_t pid;
    while ((pid = wait4(-1, status, 0, &ru)) < 0 && errno == EINTR) {}
    assert_true(pid > 0);
    *rss = ru.ru_maxrss;
    return pid;
}

static void done(agent *ag, conn *c, pid_t pgid)
{
    kill(-pgid, SIGKILL); /* a background process left, if any */
    session *s = ag->sessions;
    assert_true(session_is_dead(s));
    session_free(s);
    ag->sessions = NULL;
    wire_buf_free(&c->out);
    wire_buf_free(&c->err);
}

static void assert_bytes(const wire_buf *b, const char *want)
{
    char got[256];
    snprintf(got, sizeof got, "%.*s", (int)b->len, b->data ? (const char *)b->data : "");
    assert_string_equal(got, want);
}

/* ---- tests ----------------------------------------------------------------- */

/* Reaped before the loop saw the pipe's event; the next tick comes after the
 * grace: what the command wrote is reported all the same. */
static void test_reaped_before_pipe_event_then_slow_tick(void **state)
{
    (void)state;
    agent ag = { 0 };
    conn c = { 0 };
    session *s = start(&ag, &c, "echo \"run 17\"; seq 1 17 | wc -l; exit 17");
    int status;
    long rss;
    pid_t pid = wait_exit(&status, &rss);
    assert_true(session_reaped(&ag, pid, status, rss));
    usleep(LONGER_THAN_THE_GRACE_US); /* the rest of the batch: a preempted vCPU */
    session_tick(s, clock_now_us());
    assert_true(c.exited);
    assert_int_equal(c.exit.code, 17);
    assert_bytes(&c.out, "run 17\n17\n");
    assert_bytes(&c.err, "");
    done(&ag, &c, pid);
}

/* Output paused by a slow connection when the command exited; it resumes,
 * and the loop's next tick comes after the restarted grace: what was left in
 * the pipes is reported all the same. */
static void test_resumed_after_exit_then_slow_tick(void **state)
{
    (void)state;
    agent ag = { 0 };
    conn c = { .backlog = 64u << 20 }; /* above the session's BACKLOG_HIGH */
    session *s = start(&ag, &c, "echo out; echo err >&2; exit 3");
    int status;
    long rss;
    pid_t pid = wait_exit(&status, &rss);
    session_on_event(s, out_watch, EPOLLIN); /* reads "out", then pauses */
    assert_bytes(&c.out, "out\n");
    assert_int_equal(err_watch->events, 0); /* paused: stderr not read */
    assert_true(session_reaped(&ag, pid, status, rss));
    assert_false(c.exited);
    c.backlog = 0;
    session_resume_output(s);
    usleep(LONGER_THAN_THE_GRACE_US);
    session_tick(s, clock_now_us());
    assert_true(c.exited);
    assert_int_equal(c.exit.code, 3);
    assert_bytes(&c.out, "out\n");
    assert_bytes(&c.err, "err\n");
    done(&ag, &c, pid);
}

/* What the grace is for still holds: a background process keeping stdout
 * open does not hold up the report beyond the grace, and what the command
 * wrote before it exited is there. */
static void test_background_holder_does_not_hold_the_report(void **state)
{
    (void)state;
    agent ag = { 0 };
    conn c = { 0 };
    session *s = start(&ag, &c, "echo hi; sleep 30 & exit 5");
    int status;
    long rss;
    pid_t pid = wait_exit(&status, &rss);
    assert_true(session_reaped(&ag, pid, status, rss));
    session_tick(s, clock_now_us());
    assert_false(c.exited); /* within the grace: waiting for end-of-file */
    usleep(LONGER_THAN_THE_GRACE_US);
    session_tick(s, clock_now_us());
    assert_true(c.exited);
    assert_int_equal(c.exit.code, 5);
    assert_bytes(&c.out, "hi\n");
    done(&ag, &c, pid);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reaped_before_pipe_event_then_slow_tick),
        cmocka_unit_test(test_resumed_after_exit_then_slow_tick),
        cmocka_unit_test(test_background_holder_does_not_hold_the_report),
    };
    return cmocka_run_group_tests_name("agent session", tests, NULL, NULL);
}
