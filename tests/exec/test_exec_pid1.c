/*
 * The agent as PID 1 (of a guest, or of a PID namespace with --no-vm, as
 * tests/exec/run-pid1.sh runs it): the mounts a command expects, orphans
 * reaped, and POWEROFF honoured. Runs only when SM_EXEC_PID1 is set, last:
 * its final test powers the agent off.
 */
#include "exec_helpers.h"

#include <signal.h>

/* cmocka's skip() must run inside the test (in a setup it is an error). */
static void skip_unless_pid1(void)
{
    const char *s = getenv("SM_EXEC_PID1");
    if (!s || !*s)
        skip();
}

static void test_mounts(void **state)
{
    (void)state;
    skip_unless_pid1();
    char *s = sh_stdout("grep -E '^[^ ]+ /(proc|sys|dev|dev/pts|tmp|run) ' /proc/mounts | "
                        "cut -d' ' -f2,3 | sort -u");
    assert_string_equal(s, "/dev devtmpfs\n/dev/pts devpts\n/proc proc\n/run tmpfs\n/sys sysfs\n"
                           "/tmp tmpfs\n");
    free(s);
    /* The command's parent is the agent, and the agent is PID 1. */
    s = sh_stdout("echo $PPID");
    assert_string_equal(s, "1\n");
    free(s);
}

/* Orphans are reparented to PID 1, which must reap them. */
static void test_orphans_reaped(void **state)
{
    (void)state;
    skip_unless_pid1();
    free(sh_stdout("(sleep 0.2 &) ; (sleep 0.2 &) ; echo spawned"));
    usleep(600000);
    char *s = sh_stdout("for f in /proc/[0-9]*/stat; do cut -d' ' -f3,4 \"$f\"; done "
                        "2>/dev/null | grep -c '^Z 1$'; true");
    assert_int_equal(atoi(s), 0);
    free(s);
}

static void test_poweroff(void **state)
{
    (void)state;
    skip_unless_pid1();
    sm_error err;
    assert_int_equal(sm_exec_poweroff(exec_socket(), &err), SM_OK);
    /* The agent is gone: the socket stops answering. */
    sm_exec_builder *b = builder_v("true", NULL);
    sm_exec_outcome out;
    sm_code rc = SM_OK;
    for (int i = 0; i < 50 && rc == SM_OK; i++) {
        usleep(100000);
        rc = sm_exec_output(b, &out, &err);
        sm_exec_outcome_free(&out);
    }
    assert_int_equal(rc, SM_E_SETUP);
    sm_exec_builder_free(b);
}

int main(void)
{
    if (!exec_require_socket())
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mounts),
        cmocka_unit_test(test_orphans_reaped),
        cmocka_unit_test(test_poweroff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
