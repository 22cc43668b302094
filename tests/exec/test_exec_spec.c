/*
 * The exec suite: every example of the spec (ExecBuilder) and the behaviour
 * the exec issue promises, through the exec socket in $SM_EXEC_SOCKET.
 */
#include "exec_helpers.h"

#include <pthread.h>
#include <signal.h>

/* ---- the spec's examples ---------------------------------------------------- */

/* spawn().wait(): sh -c "echo hi && exit 7" with FOO=bar gives code 7. */
static void test_spawn_wait_exit_code(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "echo hi && exit 7", NULL);
    assert_int_equal(sm_exec_builder_env(b, "FOO", "bar"), SM_OK);
    sm_exec_child *child;
    sm_error err;
    assert_int_equal(sm_exec_spawn(b, &child, &err), SM_OK);
    char buf[64];
    size_t got, total = 0;
    do {
        assert_int_equal(sm_exec_child_stdout_read(child, buf + total, sizeof buf - total, &got,
                                                   &err), SM_OK);
        total += got;
    } while (got && total < sizeof buf);
    assert_int_equal(total, 3);
    assert_memory_equal(buf, "hi\n", 3);
    sm_exec_status st;
    assert_int_equal(sm_exec_child_wait(child, &st, &err), SM_OK);
    assert_int_equal(st.code, 7);
    assert_int_equal(st.signal, 0);
    assert_false(st.timed_out);
    sm_exec_child_free(child);
    sm_exec_builder_free(b);
}

static void test_output_hi_exit_7(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "echo hi && exit 7", NULL);
    sm_exec_outcome out;
    must_output(b, &out);
    assert_int_equal(out.status.code, 7);
    assert_int_equal(out.stdout_len, 3);
    assert_string_equal((char *)out.stdout_buf, "hi\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

static void test_output_stdout_stderr_exit(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "echo hi; echo err >&2; exit 7", NULL);
    sm_exec_builder_timeout_ms(b, 30000);
    sm_exec_outcome out;
    must_output(b, &out);
    assert_int_equal(out.status.code, 7);
    assert_string_equal((char *)out.stdout_buf, "hi\n");
    assert_string_equal((char *)out.stderr_buf, "err\n");
    assert_false(out.timed_out);
    assert_true(out.duration_us > 0);
    assert_true(out.peak_rss_kib > 0);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* ---- timeouts: ~500 ms for each shape, and nothing left behind ------------- */

#define TIMEOUT_MS 500

/* How late the timeout may end the command and still count as having ended
 * it: the commands here would run for 50 minutes, so 30 s tells "stopped by
 * the deadline" from "ran on" on any host, loaded or emulated. How promptly
 * the deadline acts is a speed, for a benchmark, not a test.
 * SM_EXEC_TIMEOUT_MARGIN_MS overrides it. */
static uint64_t timeout_margin_ms(void)
{
    const char *s = getenv("SM_EXEC_TIMEOUT_MARGIN_MS");
    return s && atoi(s) > 0 ? (uint64_t)atoi(s) : 30000;
}

static void check_timeout(sm_exec_builder *b, const char *leftover_pattern)
{
    sm_exec_builder_timeout_ms(b, TIMEOUT_MS);
    sm_exec_outcome out;
    uint64_t t0 = clock_now_ms();
    must_output(b, &out);
    uint64_t took = clock_now_ms() - t0;
    assert_true(out.timed_out);
    assert_true(out.status.timed_out);
    assert_int_equal(out.status.signal, SIGKILL);
    if (took < TIMEOUT_MS || took > TIMEOUT_MS + timeout_margin_ms())
        fail_msg("timeout took %llu ms, expected %d..%llu", (unsigned long long)took, TIMEOUT_MS,
                 (unsigned long long)(TIMEOUT_MS + timeout_margin_ms()));
    assert_true(out.duration_us >= TIMEOUT_MS * 1000u);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
    assert_int_equal(count_processes(leftover_pattern), 0);
}

static void test_timeout_sleep(void **state)
{
    (void)state;
    check_timeout(builder_v("sleep", "3017", NULL), "sleep 301[7]");
}

static void test_timeout_sh_sleep(void **state)
{
    (void)state;
    check_timeout(builder_v("sh", "-c", "sleep 3018", NULL), "sleep 301[8]");
}

static void test_timeout_busy_loop(void **state)
{
    (void)state;
    check_timeout(builder_v("sh", "-c", "while :; do :; done # 3019", NULL), "# 301[9]");
}

static void test_timeout_pipeline(void **state)
{
    (void)state;
    check_timeout(builder_v("sh", "-c", "sleep 3020 | sleep 3021 | cat", NULL), "sleep 302[01]");
}

/* A command that ends in time does not report timed_out. */
static void test_timeout_not_reached(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "echo quick", NULL);
    sm_exec_builder_timeout_ms(b, 5000);
    sm_exec_outcome out;
    must_output(b, &out);
    assert_false(out.timed_out);
    assert_int_equal(out.status.code, 0);
    assert_string_equal((char *)out.stdout_buf, "quick\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* ---- chain ------------------------------------------------------------------- */

static void test_chain_runs_in_order(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("echo", "one", NULL);
    const char *two[] = { "echo", "two" };
    const char *three[] = { "sh", "-c", "echo three; exit 0" };
    sm_exec_builder_chain(b, 2, two);
    sm_exec_builder_chain(b, 3, three);
    sm_exec_outcome out;
    must_output(b, &out);
    assert_int_equal(out.status.code, 0);
    assert_int_equal(out.status.steps_run, 3);
    assert_string_equal((char *)out.stdout_buf, "one\ntwo\nthree\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

static void test_chain_stops_at_first_failure(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("true", NULL);
    const char *fails[] = { "sh", "-c", "echo second; exit 3" };
    const char *never[] = { "sh", "-c", "echo never" };
    sm_exec_builder_chain(b, 3, fails);
    sm_exec_builder_chain(b, 3, never);
    sm_exec_outcome out;
    must_output(b, &out);
    assert_int_equal(out.status.code, 3);
    assert_int_equal(out.status.steps_run, 2);
    assert_string_equal((char *)out.stdout_buf, "second\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* ---- staged files --------------------------------------------------------------- */

static void test_stage_file_then_run(void **state)
{
    (void)state;
    char dir[128], script[160], data[160];
    snprintf(dir, sizeof dir, "/tmp/sm-exec-test-%d-%llu", (int)getpid(),
             (unsigned long long)clock_now_ms());
    snprintf(script, sizeof script, "%s/new/sub/run.sh", dir);
    snprintf(data, sizeof data, "%s/data.txt", dir);
    const char body[] = "#!/bin/sh\necho staged \"$@\"\ncat \"$1\"\n";
    sm_exec_builder *b = builder_v(script, data, NULL);
    assert_int_equal(sm_exec_builder_stage_file_mode(b, script, body, strlen(body), 0755), SM_OK);
    assert_int_equal(sm_exec_builder_stage_file(b, data, "payload\n", 8), SM_OK);
    const char *check[] = { "sh", "-c", "ls -l \"$0\" | cut -c1-10; rm -rf \"$1\"", data, dir };
    sm_exec_builder_chain(b, 5, check);
    sm_exec_outcome out;
    must_output(b, &out);
    char want[512];
    snprintf(want, sizeof want, "staged %s\npayload\n-rw-r--r--\n", data);
    assert_string_equal((char *)out.stdout_buf, want);
    assert_int_equal(out.status.code, 0);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

static void test_stage_file_failure_is_reported(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("true", NULL);
    /* A path below a regular file cannot be created. */
    sm_exec_builder_stage_file(b, "/dev/null/cannot/be", "x", 1);
    sm_exec_outcome out;
    sm_error err = { 0 };
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_GUEST);
    assert_non_null(strstr(err.message, "/dev/null"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* ---- tty ------------------------------------------------------------------------ */

static void test_tty_merges_stderr(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c",
                                   "test -t 0 && test -t 1 && echo is-a-tty; echo to-err >&2", NULL);
    sm_exec_builder_tty(b, true);
    sm_exec_outcome out;
    must_output(b, &out);
    assert_int_equal(out.status.code, 0);
    assert_int_equal(out.stderr_len, 0);
    assert_non_null(strstr((char *)out.stdout_buf, "is-a-tty"));
    assert_non_null(strstr((char *)out.stdout_buf, "to-err"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

static void test_tty_winsize_and_resize(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "stty size; read x; stty size", NULL);
    sm_exec_builder_tty(b, true);
    sm_exec_builder_winsize(b, 91, 33);
    sm_exec_child *child;
    sm_error err;
    assert_int_equal(sm_exec_spawn(b, &child, &err), SM_OK);
    /* Wait for the first size before resizing. */
    char buf[512] = { 0 };
    size_t total = 0, got;
    while (!strstr(buf, "33 91") && total < sizeof buf - 1) {
        assert_int_equal(sm_exec_child_stdout_read(child, buf + total, sizeof buf - 1 - total,
                                                   &got, &err), SM_OK);
        assert_true(got > 0);
        total += got;
    }
    assert_int_equal(sm_exec_child_resize(child, 120, 45, &err), SM_OK);
    assert_int_equal(sm_exec_child_stdin_write(child, "\n", 1, &err), SM_OK);
    while (total < sizeof buf - 1) {
        assert_int_equal(sm_exec_child_stdout_read(child, buf + total, sizeof buf - 1 - total,
                                                   &got, &err), SM_OK);
        if (!got)
            break;
        total += got;
    }
    buf[total] = 0;
    assert_non_null(strstr(buf, "45 120"));
    sm_exec_status st;
    assert_int_equal(sm_exec_child_wait(child, &st, &err), SM_OK);
    assert_int_equal(st.code, 0);
    sm_exec_child_free(child);
    sm_exec_builder_free(b);
}

/* ---- environment and cwd -------------------------------------------------------- */

static void test_env_inherits_path_and_home(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "echo \"P=$PATH\"; echo \"H=$HOME\"; echo \"F=$FOO\"",
                                   NULL);
    sm_exec_builder_env(b, "FOO", "bar baz");
    sm_exec_outcome out;
    must_output(b, &out);
    const char *s = (char *)out.stdout_buf;
    assert_null(strstr(s, "P=\n"));
    assert_null(strstr(s, "H=\n"));
    assert_non_null(strstr(s, "P=/"));
    assert_non_null(strstr(s, "F=bar baz\n"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

static void test_env_overrides(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "echo \"$HOME|$PATH\"", NULL);
    sm_exec_builder_env(b, "HOME", "/override-home");
    sm_exec_builder_env(b, "PATH", "/usr/local/bin:/usr/bin:/bin:/sm-extra");
    sm_exec_outcome out;
    must_output(b, &out);
    assert_string_equal((char *)out.stdout_buf, "/override-home|/usr/local/bin:/usr/bin:/bin:/sm-extra\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* argv[0] is found through the request's PATH, not the agent's. */
static void test_path_lookup_uses_merged_env(void **state)
{
    (void)state;
    char dir[128], prog[160];
    snprintf(dir, sizeof dir, "/tmp/sm-path-%d-%llu", (int)getpid(), (unsigned long long)clock_now_ms());
    snprintf(prog, sizeof prog, "%s/sm-only-here", dir);
    sm_exec_builder *b = builder_v("sm-only-here", NULL);
    const char body[] = "#!/bin/sh\necho found-me\n";
    sm_exec_builder_stage_file_mode(b, prog, body, strlen(body), 0755);
    char path[256];
    snprintf(path, sizeof path, "%s:/usr/bin:/bin", dir);
    sm_exec_builder_env(b, "PATH", path);
    sm_exec_outcome out;
    must_output(b, &out);
    assert_string_equal((char *)out.stdout_buf, "found-me\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
    char rm[200];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    free(sh_stdout(rm));
}

static void test_cwd(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("pwd", NULL);
    sm_exec_builder_cwd(b, "/tmp");
    sm_exec_outcome out;
    must_output(b, &out);
    assert_string_equal((char *)out.stdout_buf, "/tmp\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* clear_env: the command's environment is exactly the request's. env runs
 * directly (a shell would add PWD, SHLVL and the like), found through the
 * agent's default PATH since the request has none. */
static void test_clear_env(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("env", NULL);
    sm_exec_builder_env(b, "A", "1");
    sm_exec_builder_env(b, "B", "two words");
    assert_int_equal(sm_exec_builder_clear_env(b, true), SM_OK);
    sm_exec_outcome out;
    must_output(b, &out);
    assert_int_equal(out.status.code, 0);
    assert_string_equal((char *)out.stdout_buf, "A=1\nB=two words\n");
    sm_exec_outcome_free(&out);

    /* And nothing at all, through a copy; off again inherits. */
    sm_exec_builder *c = builder_v("env", NULL);
    sm_exec_builder_clear_env(c, true);
    sm_exec_builder *d = sm_exec_builder_copy(c);
    must_output(d, &out);
    assert_int_equal(out.status.code, 0);
    assert_int_equal(out.stdout_len, 0);
    sm_exec_outcome_free(&out);
    sm_exec_builder_clear_env(b, false);
    must_output(b, &out);
    assert_non_null(strstr((char *)out.stdout_buf, "PATH="));
    assert_non_null(strstr((char *)out.stdout_buf, "A=1\n"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(d);
    sm_exec_builder_free(c);
    sm_exec_builder_free(b);
}

#define ID_SCRIPT "id -u; id -g; id -G"

/* The agent's own identity, as `id -u; id -g; id -G` prints it. */
static void agent_identity(uint32_t *uid, uint32_t *gid, uint32_t *groups, size_t *ngroups)
{
    char *s = sh_stdout(ID_SCRIPT);
    char *p = s, *end;
    *uid = (uint32_t)strtoul(p, &end, 10);
    assert_true(end > p && *end == '\n');
    p = end + 1;
    *gid = (uint32_t)strtoul(p, &end, 10);
    assert_true(end > p && *end == '\n');
    p = end + 1;
    *ngroups = 0;
    while (*p && *p != '\n' && *ngroups < 256) {
        groups[(*ngroups)++] = (uint32_t)strtoul(p, &end, 10);
        assert_true(end > p);
        p = end + (*end == ' ');
    }
    free(s);
}

/* Runs ID_SCRIPT (then `id -u` chained) as uid:gid+groups. */
static void run_as(uint32_t uid, uint32_t gid, size_t ngroups, const uint32_t *groups,
                   sm_exec_outcome *out)
{
    sm_exec_builder *b = builder_v("sh", "-c", ID_SCRIPT, NULL);
    const char *again[] = { "id", "-u" };
    sm_exec_builder_chain(b, 2, again);
    assert_int_equal(sm_exec_builder_user(b, uid, gid, ngroups, groups), SM_OK);
    sm_exec_builder *c = sm_exec_builder_copy(b); /* the copy carries the user */
    sm_exec_builder_free(b);
    must_output(c, out);
    sm_exec_builder_free(c);
}

/* user: as the agent's own identity it works (even unprivileged); as
 * 65534 (nobody) it works when the agent is root, and chained commands run
 * as that user too; an agent that is not root cannot take a foreign uid,
 * and says which call refused. */
static void test_user(void **state)
{
    (void)state;
    uint32_t uid, gid, groups[256];
    size_t ngroups;
    agent_identity(&uid, &gid, groups, &ngroups);
    if (exec_local()) { /* the agent runs as this process does */
        assert_int_equal(uid, getuid());
        assert_int_equal(gid, getgid());
    }
    /* id -G lists the gid first (unless it is a supplementary group): pass
     * only the supplementary ones, as getgroups gives them. */
    gid_t sup[256];
    int nsup = exec_local() ? getgroups(256, sup) : -1;
    uint32_t mine[256];
    size_t nmine = 0;
    if (nsup >= 0)
        for (int i = 0; i < nsup; i++)
            mine[nmine++] = sup[i];
    else
        for (size_t i = 0; i < ngroups; i++)
            if (groups[i] != gid || i > 0)
                mine[nmine++] = groups[i];

    sm_exec_outcome out;
    run_as(uid, gid, nmine, mine, &out);
    if (out.status.code != 0)
        fail_msg("as %u:%u: exit %d: %s", uid, gid, out.status.code, (char *)out.stderr_buf);
    char want[64];
    snprintf(want, sizeof want, "%u\n%u\n", uid, gid);
    assert_memory_equal(out.stdout_buf, want, strlen(want));
    sm_exec_outcome_free(&out);

    if (uid == 0) {
        const uint32_t nobody[] = { 65534 };
        run_as(65534, 65534, 1, nobody, &out);
        if (out.status.code != 0)
            fail_msg("as 65534: exit %d: %s", out.status.code, (char *)out.stderr_buf);
        assert_string_equal((char *)out.stdout_buf, "65534\n65534\n65534\n65534\n");
        assert_int_equal(out.status.steps_run, 2);
        sm_exec_outcome_free(&out);
        /* No supplementary groups at all: id -G shows the gid alone. */
        run_as(65534, 65533, 0, NULL, &out);
        assert_int_equal(out.status.code, 0);
        assert_string_equal((char *)out.stdout_buf, "65534\n65533\n65533\n65534\n");
        sm_exec_outcome_free(&out);
    } else {
        sm_error err = { 0 };
        sm_exec_builder *b = builder_v("id", "-u", NULL);
        sm_exec_builder_user(b, uid + 1, gid, nmine, mine);
        assert_int_equal(sm_exec_output(b, &out, &err), SM_OK);
        assert_int_equal(out.status.code, 126);
        assert_int_equal(out.stdout_len, 0);
        const char *msg = (char *)out.stderr_buf;
        if (!strstr(msg, "setuid") || !strstr(msg, "not permitted"))
            fail_msg("as %u: '%s' names neither setuid nor the permission", uid + 1, msg);
        sm_exec_outcome_free(&out);
        sm_exec_builder_user(b, 0, 0, 0, NULL); /* root's groups: setgroups refuses first */
        assert_int_equal(sm_exec_output(b, &out, &err), SM_OK);
        assert_int_equal(out.status.code, 126);
        msg = (char *)out.stderr_buf;
        if (!strstr(msg, "setgroups") && !strstr(msg, "setgid"))
            fail_msg("as 0:0: '%s' names neither setgroups nor setgid", msg);
        sm_exec_outcome_free(&out);
        sm_exec_builder_free(b);
    }

    /* The builder checks the group list. */
    sm_exec_builder *b = builder_v("true", NULL);
    assert_int_equal(sm_exec_builder_user(b, 1, 1, 257, mine), SM_E_LIMIT);
    assert_int_equal(sm_exec_builder_user(b, 1, 1, 1, NULL), SM_E_INVALID);
    sm_error err = { 0 };
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_LIMIT); /* the first, sticky */
    assert_non_null(strstr(err.message, "256"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* rlimit: the limits reach the command and every chained step; a resource
 * given twice keeps the last; a copy carries them; with a user too. */
static void test_rlimit(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "ulimit -n; ulimit -Hn", NULL);
    const char *again[] = { "sh", "-c", "ulimit -Hn" };
    sm_exec_builder_chain(b, 3, again);
    assert_int_equal(sm_exec_builder_rlimit(b, 7 /* RLIMIT_NOFILE */, 50, 60), SM_OK);
    assert_int_equal(sm_exec_builder_rlimit(b, 4 /* RLIMIT_CORE */, 0, 0), SM_OK);
    assert_int_equal(sm_exec_builder_rlimit(b, 7, 77, 100), SM_OK); /* replaces 50/60 */
    sm_exec_builder *c = sm_exec_builder_copy(b);
    sm_exec_outcome out;
    must_output(c, &out);
    if (out.status.code != 0)
        fail_msg("exit %d: %s", out.status.code, (char *)out.stderr_buf);
    assert_string_equal((char *)out.stdout_buf, "77\n100\n100\n");
    assert_int_equal(out.status.steps_run, 2);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(c);
    sm_exec_builder_free(b);

    b = builder_v("sh", "-c", "ulimit -c", NULL);
    sm_exec_builder_rlimit(b, 4, 0, UINT64_MAX); /* RLIM_INFINITY as the hard limit */
    must_output(b, &out);
    assert_string_equal((char *)out.stdout_buf, "0\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);

    uint32_t uid, gid, groups[256];
    size_t ngroups;
    agent_identity(&uid, &gid, groups, &ngroups);
    if (uid == 0) { /* the limits, then the user */
        b = builder_v("sh", "-c", "id -u; ulimit -n; ulimit -Hn", NULL);
        sm_exec_builder_rlimit(b, 7, 77, 100);
        const uint32_t nobody[] = { 65534 };
        sm_exec_builder_user(b, 65534, 65534, 1, nobody);
        must_output(b, &out);
        if (out.status.code != 0)
            fail_msg("as 65534: exit %d: %s", out.status.code, (char *)out.stderr_buf);
        assert_string_equal((char *)out.stdout_buf, "65534\n77\n100\n");
        sm_exec_outcome_free(&out);
        sm_exec_builder_free(b);
    }

    /* A limit the agent may not set runs nothing: RLIMIT_NOFILE's hard limit
     * above fs.nr_open (unlimited is) is refused even to root; an
     * unprivileged agent may not raise its own hard limit either. */
    char *hard = sh_stdout("ulimit -Hn");
    uint64_t raise = strtoull(hard, NULL, 10) + 1;
    free(hard);
    for (int round = 0; round < (uid == 0 ? 1 : 2); round++) {
        b = builder_v("echo", "ran", NULL);
        if (round == 0)
            sm_exec_builder_rlimit(b, 7, 10, UINT64_MAX);
        else
            sm_exec_builder_rlimit(b, 7, 10, raise);
        sm_error err = { 0 };
        assert_int_equal(sm_exec_output(b, &out, &err), SM_OK);
        assert_int_equal(out.status.code, 126);
        assert_int_equal(out.stdout_len, 0);
        const char *msg = (char *)out.stderr_buf;
        if (!strstr(msg, "setrlimit") || !strstr(msg, "RLIMIT_NOFILE"))
            fail_msg("round %d: '%s' names neither setrlimit nor RLIMIT_NOFILE", round, msg);
        sm_exec_outcome_free(&out);
        sm_exec_builder_free(b);
    }

    /* The builder checks the resource and the order. */
    b = builder_v("true", NULL);
    assert_int_equal(sm_exec_builder_rlimit(b, 16, 1, 1), SM_E_INVALID);
    assert_int_equal(sm_exec_builder_rlimit(b, -1, 1, 1), SM_E_INVALID);
    assert_int_equal(sm_exec_builder_rlimit(NULL, 7, 1, 1), SM_E_INVALID);
    sm_error err = { 0 };
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_INVALID); /* the first, sticky */
    assert_non_null(strstr(err.message, "RLIMIT_"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
    b = builder_v("true", NULL);
    assert_int_equal(sm_exec_builder_rlimit(b, 7, 2, 1), SM_E_INVALID);
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "above the hard"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* Whether the suite runs against a VM's agent (tests/vm/test_exec_vm.sh
 * names the VM): only there may a request set the hostname. */
static int exec_in_vm(void)
{
    const char *s = getenv("SM_EXEC_VM_ID");
    return s && *s;
}

/* hostname: in a VM, `hostname` then prints the name set (and the old name
 * is put back); anywhere else (a local agent, or PID 1 of a PID namespace,
 * which share this machine's UTS namespace) the agent refuses the request
 * and this machine's hostname stays as it was. */
static void test_hostname(void **state)
{
    (void)state;
    sm_exec_outcome out;
    sm_error err = { 0 };
    if (exec_in_vm()) {
        char *old = sh_stdout("hostname");
        old[strcspn(old, "\n")] = 0;
        sm_exec_builder *b = builder_v("hostname", NULL);
        assert_int_equal(sm_exec_builder_hostname(b, "sm-exec-test.example"), SM_OK);
        must_output(b, &out);
        assert_int_equal(out.status.code, 0);
        assert_string_equal((char *)out.stdout_buf, "sm-exec-test.example\n");
        sm_exec_outcome_free(&out);
        char *now = sh_stdout("hostname");
        assert_string_equal(now, "sm-exec-test.example\n");
        free(now);
        /* The old name back, when it is one a name can be set to: a VM
         * without an image keeps the kernel's "(none)" until told. */
        if (sm_exec_builder_hostname(b, old) == SM_OK) {
            must_output(b, &out);
            sm_exec_outcome_free(&out);
        }
        sm_exec_builder_free(b);
        free(old);
    } else {
        char before[256] = "", after[256] = "";
        gethostname(before, sizeof before - 1);
        sm_exec_builder *b = builder_v("echo", "ran", NULL);
        assert_int_equal(sm_exec_builder_hostname(b, "sm-must-not-rename-the-host"), SM_OK);
        sm_exec_builder *c = sm_exec_builder_copy(b); /* the copy carries it */
        assert_int_equal(sm_exec_output(c, &out, &err), SM_E_INVALID);
        if (!strstr(err.message, "hostname: only the guest's init sets it"))
            fail_msg("'%s' does not say why", err.message);
        sm_exec_outcome_free(&out);
        gethostname(after, sizeof after - 1);
        assert_string_equal(before, after);
        sm_exec_builder_free(c);
        sm_exec_builder_free(b);
    }

    /* The builder checks the name. */
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = 0;
    const char *bad[] = { "", "a_b", "a b", "h\xc3\xa9", long_name, NULL };
    sm_exec_builder *b = builder_v("true", NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sm_exec_builder_hostname(b, bad[i]), SM_E_INVALID);
    long_name[64] = 0;
    assert_int_equal(sm_exec_builder_hostname(NULL, long_name), SM_E_INVALID);
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "hostname"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
    b = builder_v("true", NULL);
    assert_int_equal(sm_exec_builder_hostname(b, long_name), SM_OK); /* 64 bytes are fine */
    sm_exec_builder_free(b);
}

static void test_missing_program_and_cwd(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sm-no-such-program", NULL);
    sm_exec_outcome out;
    must_output(b, &out);
    assert_int_equal(out.status.code, 127);
    assert_non_null(strstr((char *)out.stderr_buf, "sm-no-such-program"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);

    b = builder_v("true", NULL);
    sm_exec_builder_cwd(b, "/sm-no-such-dir");
    must_output(b, &out);
    assert_int_not_equal(out.status.code, 0);
    assert_non_null(strstr((char *)out.stderr_buf, "/sm-no-such-dir"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* ---- streaming: stdin, signals, abort -------------------------------------------------- */

static void test_spawn_stdin_roundtrip(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("wc", "-c", NULL);
    sm_exec_child *child;
    sm_error err;
    assert_int_equal(sm_exec_spawn(b, &child, &err), SM_OK);
    size_t len = 3u << 20;
    char *data = malloc(len);
    memset(data, 'x', len);
    assert_int_equal(sm_exec_child_stdin_write(child, data, len, &err), SM_OK);
    assert_int_equal(sm_exec_child_stdin_close(child, &err), SM_OK);
    free(data);
    char buf[64] = { 0 };
    size_t got, total = 0;
    do {
        assert_int_equal(sm_exec_child_stdout_read(child, buf + total, sizeof buf - 1 - total,
                                                   &got, &err), SM_OK);
        total += got;
    } while (got);
    assert_int_equal(atol(buf), (long)len);
    sm_exec_status st;
    assert_int_equal(sm_exec_child_wait(child, &st, &err), SM_OK);
    assert_int_equal(st.code, 0);
    sm_exec_child_free(child);
    sm_exec_builder_free(b);
}

static void test_large_output(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("head", "-c", "5000000", "/dev/zero", NULL);
    sm_exec_outcome out;
    must_output(b, &out);
    assert_int_equal(out.status.code, 0);
    assert_int_equal(out.stdout_len, 5000000);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

struct signal_later {
    sm_exec_signaller *s;
    int signo;
    sm_code rc;
};

static void *signal_from_thread(void *arg)
{
    struct signal_later *sl = arg;
    usleep(150000);
    sl->rc = sm_exec_signaller_signal(sl->s, sl->signo, NULL);
    return NULL;
}

/* The signal reaches the whole group, children of the shell included, and
 * the signaller works from another thread and outlives the child. */
static void test_signal_group_from_thread(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "sleep 3030 & sleep 3031; wait", NULL);
    sm_exec_child *child;
    sm_error err;
    assert_int_equal(sm_exec_spawn(b, &child, &err), SM_OK);
    struct signal_later sl = { sm_exec_child_signaller(child), SIGTERM, -99 };
    assert_non_null(sl.s);
    pthread_t t;
    pthread_create(&t, NULL, signal_from_thread, &sl);
    sm_exec_status st;
    assert_int_equal(sm_exec_child_wait(child, &st, &err), SM_OK);
    pthread_join(t, NULL);
    assert_int_equal(sl.rc, SM_OK);
    assert_int_equal(st.signal, SIGTERM);
    assert_int_equal(st.code, -1);
    sm_exec_child_free(child);
    assert_int_equal(count_processes("sleep 303[01]"), 0);
    /* The child is gone; the signaller still answers, with an error. */
    assert_int_equal(sm_exec_signaller_signal(sl.s, SIGTERM, &err), SM_E_INVALID);
    sm_exec_signaller_free(sl.s);
    sm_exec_builder_free(b);
}

/* Dropping the connection hangs the command up (SIGHUP, then SIGKILL). */
static void test_abort_kills_group(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "trap '' HUP; sleep 3040 & sleep 3041; wait",
                                   NULL);
    sm_exec_child *child;
    sm_error err;
    assert_int_equal(sm_exec_spawn(b, &child, &err), SM_OK);
    usleep(200000);
    assert_true(count_processes("sleep 304[01]") >= 2); /* the sleeps (and sh's own line) */
    sm_exec_child_abort(child);
    sm_exec_status st;
    sm_code rc = sm_exec_child_wait(child, &st, &err);
    assert_true(rc == SM_E_DROPPED || rc == SM_E_SETUP);
    sm_exec_child_free(child);
    int left = -1;
    for (int i = 0; i < 30 && left; i++) {
        usleep(100000);
        left = count_processes("sleep 304[01]");
    }
    assert_int_equal(left, 0);
    sm_exec_builder_free(b);
}

/* Freeing a child whose output nobody read (its pipe full, the pump
 * blocked writing into it) must neither hang nor raise SIGPIPE here. */
static void test_free_unread_child(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("head", "-c", "20000000", "/dev/zero", NULL);
    sm_exec_child *child;
    sm_error err;
    assert_int_equal(sm_exec_spawn(b, &child, &err), SM_OK);
    usleep(300000); /* let the pipes fill */
    sm_exec_child_free(child);
    sm_exec_builder_free(b);
}

static void test_spawn_honours_timeout(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sleep", "3050", NULL);
    sm_exec_builder_timeout_ms(b, 300);
    sm_exec_child *child;
    sm_error err;
    assert_int_equal(sm_exec_spawn(b, &child, &err), SM_OK);
    sm_exec_status st;
    assert_int_equal(sm_exec_child_wait(child, &st, &err), SM_OK);
    assert_true(st.timed_out);
    sm_exec_child_free(child);
    sm_exec_builder_free(b);
}

/* ---- cancel and resilience ------------------------------------------------------------- */

static void *fire_later(void *arg)
{
    usleep(200000);
    sm_cancel_fire(arg);
    return NULL;
}

static void test_output_with_cancel(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "echo started; sleep 3060", NULL);
    sm_cancel *cancel = sm_cancel_new();
    assert_non_null(cancel);
    pthread_t t;
    pthread_create(&t, NULL, fire_later, cancel);
    sm_exec_outcome out;
    sm_error err;
    uint64_t t0 = clock_now_ms();
    assert_int_equal(sm_exec_output_with_cancel(b, cancel, &out, &err), SM_E_CANCELLED);
    /* The cancel, not the command's end (51 minutes away), ended it. */
    assert_true(clock_now_ms() - t0 < 60000);
    pthread_join(t, NULL);
    assert_true(sm_cancel_fired(cancel));
    sm_exec_outcome_free(&out);
    int left = -1;
    for (int i = 0; i < 30 && left; i++) {
        usleep(100000);
        left = count_processes("sleep 306[0]");
    }
    assert_int_equal(left, 0);
    /* Already fired: nothing starts. */
    assert_int_equal(sm_exec_output_with_cancel(b, cancel, &out, &err), SM_E_CANCELLED);
    sm_exec_outcome_free(&out);
    sm_cancel_free(cancel);
    sm_exec_builder_free(b);
}

/* A command that started is never run again by output_resilient. */
static void test_resilient_runs_once(void **state)
{
    (void)state;
    char file[64], script[400];
    snprintf(file, sizeof file, "/tmp/sm-once-%d-%llu", (int)getpid(), (unsigned long long)clock_now_ms());
    snprintf(script, sizeof script, "echo run >> %s; wc -l < %s; rm -f %s", file, file, file);
    sm_exec_builder *b = builder_v("sh", "-c", script, NULL);
    sm_exec_outcome out;
    sm_error err;
    assert_int_equal(sm_exec_output_resilient(b, 3, &out, &err), SM_OK);
    assert_int_equal(atoi((char *)out.stdout_buf), 1);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* ---- builder, files, concurrency -------------------------------------------------------- */

static void test_builder_copy_and_errors(void **state)
{
    (void)state;
    sm_exec_builder *b = builder_v("sh", "-c", "echo $A", NULL);
    sm_exec_builder_env(b, "A", "copied");
    sm_exec_builder *c = sm_exec_builder_copy(b);
    sm_exec_builder_free(b);
    sm_exec_outcome out;
    must_output(c, &out);
    assert_string_equal((char *)out.stdout_buf, "copied\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(c);

    b = sm_exec_builder_new(exec_socket());
    sm_error err = { 0 };
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "argv"));
    sm_exec_outcome_free(&out);
    assert_int_equal(sm_exec_builder_env(b, "BAD=KEY", "v"), SM_E_INVALID);
    const char *argv[] = { "true" };
    sm_exec_builder_argv(b, 1, argv);
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_INVALID); /* the sticky env error */
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);

    b = sm_exec_builder_new("/nonexistent/sm-exec.sock");
    sm_exec_builder_argv(b, 1, argv);
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_SETUP);
    assert_non_null(strstr(err.message, "/nonexistent/sm-exec.sock"));
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

static void test_write_and_read_file(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "/tmp/sm-xfer-%d-%llu/a/b.bin", (int)getpid(),
             (unsigned long long)clock_now_ms());
    size_t len = (3u << 20) + 17;
    uint8_t *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 7 + (i >> 13));
    sm_error err;
    assert_int_equal(sm_exec_write_file(exec_socket(), path, data, len, 0600, &err), SM_OK);
    uint8_t *back;
    size_t back_len;
    assert_int_equal(sm_exec_read_file(exec_socket(), path, len, &back, &back_len, &err), SM_OK);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, data, len);
    free(back);
    assert_int_equal(sm_exec_read_file(exec_socket(), path, len - 1, &back, &back_len, &err),
                     SM_E_LIMIT);
    assert_int_equal(sm_exec_read_file(exec_socket(), "/sm-no-such-file", 100, &back, &back_len,
                                       &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "/sm-no-such-file"));
    free(data);
    char rm[200];
    snprintf(rm, sizeof rm, "rm -rf %.*s", (int)(strstr(path, "/a/b.bin") - path), path);
    free(sh_stdout(rm));
}

#define CONCURRENT 16
static char concurrent_dir[128];

/* Job i leaves a mark, then waits until all CONCURRENT jobs have left theirs:
 * it can end only if every job runs at once (2 minutes at most). */
static void *run_one(void *arg)
{
    long i = (long)arg;
    char script[512];
    snprintf(script, sizeof script,
             "echo job-%ld; touch %s/%ld; n=0; "
             "while [ $(ls %s | wc -l) -lt %d ]; do n=$((n+1)); [ $n -gt 2400 ] && exit 3; sleep 0.05; done; "
             "echo done-%ld", i, concurrent_dir, i, concurrent_dir, CONCURRENT, i);
    sm_exec_builder *b = sm_exec_builder_new(getenv("SM_EXEC_SOCKET"));
    const char *argv[] = { "sh", "-c", script };
    sm_exec_builder_argv(b, 3, argv);
    sm_exec_outcome out;
    sm_code rc = sm_exec_output(b, &out, NULL);
    char want[64];
    snprintf(want, sizeof want, "job-%ld\ndone-%ld\n", i, i);
    long ok = rc == SM_OK && out.status.code == 0 && !strcmp((char *)out.stdout_buf, want);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
    return (void *)ok;
}

/* Many connections at once: the agent runs them together (each job waits
 * for all the others, so a serialising agent fails it). */
static void test_concurrent_commands(void **state)
{
    (void)state;
    char *dir = sh_stdout("mktemp -d /tmp/sm-concurrent.XXXXXX");
    dir[strcspn(dir, "\n")] = 0;
    snprintf(concurrent_dir, sizeof concurrent_dir, "%s", dir);
    free(dir);
    pthread_t t[CONCURRENT];
    for (long i = 0; i < CONCURRENT; i++)
        pthread_create(&t[i], NULL, run_one, (void *)i);
    for (int i = 0; i < CONCURRENT; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        assert_true(ok != NULL);
    }
    char rm[160];
    snprintf(rm, sizeof rm, "rm -rf %s; echo ok", concurrent_dir);
    free(sh_stdout(rm));
}

/* The command inherits only stdin, stdout and stderr. */
static void test_no_leaked_descriptors(void **state)
{
    (void)state;
    /* "; true" keeps sh from exec'ing ls in its place (busybox does), so
     * ls lists the shell's descriptors, not its own. */
    char *s = sh_stdout("ls /proc/$$/fd; true");
    assert_string_equal(s, "0\n1\n2\n");
    free(s);
}

int main(void)
{
    if (!exec_require_socket())
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawn_wait_exit_code),
        cmocka_unit_test(test_output_hi_exit_7),
        cmocka_unit_test(test_output_stdout_stderr_exit),
        cmocka_unit_test(test_timeout_sleep),
        cmocka_unit_test(test_timeout_sh_sleep),
        cmocka_unit_test(test_timeout_busy_loop),
        cmocka_unit_test(test_timeout_pipeline),
        cmocka_unit_test(test_timeout_not_reached),
        cmocka_unit_test(test_chain_runs_in_order),
        cmocka_unit_test(test_chain_stops_at_first_failure),
        cmocka_unit_test(test_stage_file_then_run),
        cmocka_unit_test(test_stage_file_failure_is_reported),
        cmocka_unit_test(test_tty_merges_stderr),
        cmocka_unit_test(test_tty_winsize_and_resize),
        cmocka_unit_test(test_env_inherits_path_and_home),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_path_lookup_uses_merged_env),
        cmocka_unit_test(test_cwd),
        cmocka_unit_test(test_clear_env),
        cmocka_unit_test(test_user),
        cmocka_unit_test(test_rlimit),
        cmocka_unit_test(test_hostname),
        cmocka_unit_test(test_missing_program_and_cwd),
        cmocka_unit_test(test_spawn_stdin_roundtrip),
        cmocka_unit_test(test_large_output),
        cmocka_unit_test(test_signal_group_from_thread),
        cmocka_unit_test(test_abort_kills_group),
        cmocka_unit_test(test_free_unread_child),
        cmocka_unit_test(test_spawn_honours_timeout),
        cmocka_unit_test(test_output_with_cancel),
        cmocka_unit_test(test_resilient_runs_once),
        cmocka_unit_test(test_builder_copy_and_errors),
        cmocka_unit_test(test_write_and_read_file),
        cmocka_unit_test(test_concurrent_commands),
        cmocka_unit_test(test_no_leaked_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
