/*
 * Helpers shared by the exec suite (tests/exec/test_exec_*.c).
 *
 * The suite talks to an agent only through the exec socket in $SM_EXEC_SOCKET,
 * so it runs unchanged against a local agent (tests/exec/run-local.sh) or an
 * agent inside a VM. Tests that need the agent to be a local process check
 * exec_local() and skip otherwise. Commands used are POSIX sh and tools that
 * busybox has.
 *
 * Environment: SM_EXEC_SOCKET (required), SM_EXEC_LOCAL=1 and
 * SM_EXEC_AGENT_PID (local agent), SM_EXEC_CLI (the supermachine binary),
 * SM_EXEC_PID1=1 (the agent is PID 1), SM_EXEC_TIMEOUT_MARGIN_MS (slack on
 * the 500 ms timeout checks; 400 by default).
 */
#ifndef SM_TESTS_EXEC_HELPERS_H
#define SM_TESTS_EXEC_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/clock.h"
#include "supermachine.h"

static inline const char *exec_socket(void)
{
    const char *s = getenv("SM_EXEC_SOCKET");
    if (!s || !*s)
        fail_msg("SM_EXEC_SOCKET is not set: run the exec suite through "
                 "tests/exec/run-local.sh BUILD_DIR (or point it at a VM's exec socket)");
    return s;
}

/* For main(): says how to run the suite when the socket is not given. */
static inline int exec_require_socket(void)
{
    const char *s = getenv("SM_EXEC_SOCKET");
    if (s && *s)
        return 1;
    fprintf(stderr, "SM_EXEC_SOCKET is not set: run the exec suite through "
            "tests/exec/run-local.sh BUILD_DIR, or set it to a VM's exec socket\n");
    return 0;
}

static inline int exec_local(void)
{
    const char *s = getenv("SM_EXEC_LOCAL");
    return s && *s;
}

/* A builder for argv given as a NULL-terminated list. */
static inline sm_exec_builder *builder_v(const char *first, ...)
{
    const char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 32; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    sm_exec_builder *b = sm_exec_builder_new(exec_socket());
    assert_non_null(b);
    assert_int_equal(sm_exec_builder_argv(b, argc, argv), SM_OK);
    return b;
}

/* Runs b with output(), failing the test (with the message) on an error. */
static inline void must_output(sm_exec_builder *b, sm_exec_outcome *out)
{
    sm_error err = { 0 };
    sm_code rc = sm_exec_output(b, out, &err);
    if (rc != SM_OK)
        fail_msg("sm_exec_output: %s (%s)", err.message, sm_strerror(rc));
}

/* Runs a sh script, returns its stdout (caller frees) and checks exit 0. */
static inline char *sh_stdout(const char *script)
{
    sm_exec_builder *b = builder_v("sh", "-c", script, NULL);
    sm_exec_outcome out;
    must_output(b, &out);
    sm_exec_builder_free(b);
    if (out.status.code != 0)
        fail_msg("'%s' exited %d: %s", script, out.status.code, (char *)out.stderr_buf);
    char *s = strdup((char *)out.stdout_buf);
    sm_exec_outcome_free(&out);
    return s;
}

/* How many live processes have a command line matching the basic regex
 * `pattern` (write it so it does not match itself, e.g. "sleep 301[7]"). */
static inline int count_processes(const char *pattern)
{
    char script[512];
    snprintf(script, sizeof script,
             "for f in /proc/[0-9]*/cmdline; do tr '\\000' ' ' < \"$f\" 2>/dev/null; echo; done"
             " | grep -c '%s'; true", pattern);
    char *s = sh_stdout(script);
    int n = atoi(s);
    free(s);
    return n;
}

#endif
