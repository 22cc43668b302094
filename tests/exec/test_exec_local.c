/*
 * Local-only checks of the agent process itself (it must be a process on
 * this machine, $SM_EXEC_AGENT_PID): no descriptor leaks and no zombies after
 * every kind of request. Skipped unless SM_EXEC_LOCAL is set.
 */
#include "exec_helpers.h"

#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "protocol/agent_conn.h"

static int agent_pid(void)
{
    const char *s = getenv("SM_EXEC_AGENT_PID");
    return s ? atoi(s) : 0;
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int agent_fds(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", agent_pid());
    return count_dir(path);
}

/* The agent's direct children (live or zombie). */
static int agent_children(void)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", agent_pid(), agent_pid());
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int n = 0, pid;
    while (fscanf(f, "%d", &pid) == 1)
        n++;
    fclose(f);
    return n;
}

/* cmocka's skip() must run inside the test (in a setup it is an error). */
static void skip_unless_local(void)
{
    if (!exec_local() || agent_pid() <= 0)
        skip();
}

/* One of each kind of request, including failing ones. */
static void run_every_kind(void)
{
    sm_exec_outcome out;
    sm_error err;

    sm_exec_builder *b = builder_v("sh", "-c", "echo x; echo y >&2", NULL);
    must_output(b, &out);
    sm_exec_outcome_free(&out);
    sm_exec_builder_tty(b, true);
    must_output(b, &out);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);

    b = builder_v("sm-no-such-program", NULL);
    must_output(b, &out);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);

    b = builder_v("sh", "-c", "sleep 5 & sleep 5", NULL);
    sm_exec_builder_timeout_ms(b, 100);
    must_output(b, &out);
    assert_true(out.timed_out);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);

    b = builder_v("true", NULL);
    sm_exec_builder_stage_file(b, "/dev/null/x", "x", 1);
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_GUEST);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);

    b = builder_v("sleep", "5", NULL);
    sm_exec_child *c;
    assert_int_equal(sm_exec_spawn(b, &c, &err), SM_OK);
    usleep(50000);
    sm_exec_child_free(c); /* abort */
    sm_exec_builder_free(b);

    uint8_t *bytes;
    size_t len;
    sm_exec_read_file(exec_socket(), "/sm-no-such-file", 10, &bytes, &len, &err);

    /* CONNECT to a closed port: a relay process starts, answers ERROR, ends. */
    int relayed;
    assert_int_equal(agent_connect_port(exec_socket(), 1, 15000, &relayed, &err), SM_E_GUEST);

    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", exec_socket());
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(write(fd, "garbage!garbage!", 16), 16);
    close(fd);
}

static void wait_settled(int want_fds)
{
    for (int i = 0; i < 40 && (agent_fds() != want_fds || agent_children() != 0); i++)
        usleep(50000);
}

static void test_agent_leaks_no_descriptors(void **state)
{
    (void)state;
    skip_unless_local();
    run_every_kind(); /* warm up: first-use allocations */
    wait_settled(-1);
    int before = agent_fds();
    assert_true(before > 0);
    for (int i = 0; i < 5; i++)
        run_every_kind();
    wait_settled(before);
    assert_int_equal(agent_fds(), before);
}

static void test_agent_leaves_no_zombies(void **state)
{
    (void)state;
    skip_unless_local();
    /* Orphans (the background sleeps) come back to the agent as subreaper. */
    free(sh_stdout("sleep 0.1 & sleep 0.1 & echo started"));
    run_every_kind();
    for (int i = 0; i < 40 && agent_children() != 0; i++)
        usleep(50000);
    assert_int_equal(agent_children(), 0);
}

/* An agent that is not PID 1 refuses to power off, and keeps serving. */
static void test_poweroff_refused(void **state)
{
    (void)state;
    skip_unless_local();
    sm_error err = { 0 };
    assert_int_equal(sm_exec_poweroff(exec_socket(), &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "not PID 1"));
    char *s = sh_stdout("echo still-here");
    assert_string_equal(s, "still-here\n");
    free(s);
}

int main(void)
{
    if (!exec_require_socket())
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_leaks_no_descriptors),
        cmocka_unit_test(test_agent_leaves_no_zombies),
        cmocka_unit_test(test_poweroff_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
