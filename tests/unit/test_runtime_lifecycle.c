/* Unit tests of the runtime's containers and their lifecycle
 * (src/runtime/container.c) against a temporary root, with a backend of
 * the test's own: a forked process that sleeps stands for a container's VM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "runtime/container.h"

#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the fake backend ------------------------------------------------------ */

static int creates, starts, destroys, execs;

/* The backend is given the container's folder, ROOT/ID. */
static void assert_dir_is_containers(const struct rt_state *st)
{
    size_t n = strlen(st->dir), k = strlen(st->id);
    assert_true(n > k + 1);
    assert_string_equal(st->dir + n - k, st->id);
    assert_int_equal(st->dir[n - k - 1], '/');
}
static bool fail_create;

static sm_code fake_create(struct rt_state *st, const struct rt_config *cfg,
                           const struct rt_create_request *req, sm_error *err)
{
    (void)cfg;
    if (fail_create) {
        if (err)
            snprintf(err->message, sizeof err->message, "the fake backend fails");
        return SM_E_UNSUPPORTED;
    }
    assert_non_null(strstr(req->rootfs, "/rootfs"));
    assert_dir_is_containers(st);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* As a VMM after its exec: none of the runtime's descriptors (the
         * container's lock above all). */
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        for (;;)
            pause();
    }
    st->pid = pid;
    snprintf(st->handle, sizeof st->handle, "fake-%d", (int)pid);
    creates++;
    return SM_OK;
}

static sm_code fake_start(struct rt_state *st, const struct rt_config *cfg, sm_error *err)
{
    (void)err;
    assert_dir_is_containers(st);
    assert_string_equal(cfg->args[0], "sh");
    starts++;
    return SM_OK;
}

static sm_code fake_signal(const struct rt_state *st, int signo, sm_error *err)
{
    (void)err;
    assert_int_equal(kill(st->pid, signo), 0);
    return SM_OK;
}

static sm_code fake_exec(const struct rt_state *st, const struct rt_config *proc,
                         const struct rt_exec_opts *o, int *status, sm_error *err)
{
    (void)st;
    (void)proc;
    (void)o;
    (void)err;
    execs++;
    *status = 7;
    return SM_OK;
}

/* Our own children: reap to know. */
static bool fake_alive(const struct rt_state *st)
{
    int ws;
    return waitpid(st->pid, &ws, WNOHANG) == 0; /* else reaped now, or before */
}

static sm_code fake_destroy(const struct rt_state *st, sm_error *err)
{
    (void)st;
    (void)err;
    destroys++;
    return SM_OK;
}

static const struct rt_backend fake = {
    .name = "fake",
    .create = fake_create,
    .start = fake_start,
    .signal = fake_signal,
    .exec = fake_exec,
    .alive = fake_alive,
    .destroy = fake_destroy,
};

/* ---- fixtures ------------------------------------------------------------------ */

static char tmp[64], root[128], bundle[128];

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void write_config(const char *json)
{
    char p[256];
    snprintf(p, sizeof p, "%s/config.json", bundle);
    write_text(p, json);
}

#define GOOD_CONFIG                                                                          \
    "{\"ociVersion\":\"1.0.2\",\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"args\":[\"sh\"]," \
    "\"cwd\":\"/\"},\"root\":{\"path\":\"rootfs\"},\"annotations\":{\"org.test\":\"yes\"}}"

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/sm-rt-test.XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(root, sizeof root, "%s/root", tmp);
    snprintf(bundle, sizeof bundle, "%s/bundle", tmp);
    assert_int_equal(mkdir(bundle, 0755), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/rootfs", bundle);
    assert_int_equal(mkdir(p, 0755), 0);
    write_config(GOOD_CONFIG);
    creates = starts = destroys = execs = 0;
    fail_create = false;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static bool exists(const char *id)
{
    char p[256];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", root, id);
    return stat(p, &st) == 0;
}

static enum rt_status status_of(const char *id)
{
    struct rt_state st;
    sm_error err = {0};
    assert_int_equal(rt_state_load(root, id, &fake, &st, &err), SM_OK);
    enum rt_status s = st.status;
    rt_state_free(&st);
    return s;
}

static void expect(sm_code rc, const sm_error *err, sm_code want, const char *msg)
{
    if (rc != want || !strstr(err->message, msg))
        fail_msg("got %d '%s', want %d '%s'", rc, err->message, want, msg);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_ids(void **state)
{
    (void)state;
    static const char *const good[] = { "a", "A+b-c_d.e", "0123456789abcdef", "..a", "a.." };
    static const char *const bad[] = { "", ".", "..", "a/b", "x y", "a\nb", "é", "a:b" };
    sm_error err = {0};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(rt_id_check(good[i], &err), SM_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(rt_id_check(bad[i], &err), SM_E_INVALID);
        assert_true(strstr(err.message, "invalid container ID format") ||
                    strstr(err.message, "cannot be empty"));
    }
    char longid[RT_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[RT_ID_MAX + 1] = 0;
    assert_int_equal(rt_id_check(longid, &err), SM_E_INVALID);
    longid[RT_ID_MAX] = 0;
    assert_int_equal(rt_id_check(longid, &err), SM_OK);
}

static void test_lifecycle(void **state)
{
    (void)state;
    sm_error err = {0};
    char pid_file[256];
    snprintf(pid_file, sizeof pid_file, "%s/pid", tmp);
    struct rt_create_opts o = { .bundle = bundle, .pid_file = pid_file };

    assert_int_equal(rt_create(root, "c1", &o, &fake, &err), SM_OK);
    assert_int_equal(creates, 1);
    struct rt_state st;
    assert_int_equal(rt_state_load(root, "c1", &fake, &st, &err), SM_OK);
    assert_int_equal(st.status, RT_CREATED);
    assert_true(st.pid > 0);
    assert_string_equal(st.oci_version, "1.0.2");
    assert_non_null(strstr(st.bundle, "/bundle"));
    assert_non_null(strstr(st.rootfs, "/bundle/rootfs"));
    char *json = rt_state_json(&st);
    assert_non_null(json);
    char want[64];
    snprintf(want, sizeof want, "\"pid\": %d", st.pid);
    assert_non_null(strstr(json, want));
    assert_non_null(strstr(json, "\"status\": \"created\""));
    assert_non_null(strstr(json, "\"id\": \"c1\""));
    assert_non_null(strstr(json, "\"org.test\": \"yes\""));
    assert_non_null(strstr(json, "\"ociVersion\": \"1.0.2\""));
    assert_null(strstr(json, "handle")); /* ours, not the spec's */
    free(json);
    /* The pid file holds the pid, as runc writes it. */
    FILE *f = fopen(pid_file, "r");
    assert_non_null(f);
    int pid = 0;
    assert_int_equal(fscanf(f, "%d", &pid), 1);
    fclose(f);
    assert_int_equal(pid, st.pid);
    rt_state_free(&st);

    expect(rt_create(root, "c1", &o, &fake, &err), &err, SM_E_INVALID,
           "container with given ID already exists");
    assert_int_equal(creates, 1);

    assert_int_equal(rt_start(root, "c1", &fake, &err), SM_OK);
    assert_int_equal(starts, 1);
    assert_int_equal(status_of("c1"), RT_RUNNING);
    expect(rt_start(root, "c1", &fake, &err), &err, SM_E_INVALID,
           "cannot start an already running container");

    int status = -1;
    struct rt_exec_opts eo = { .detach = false };
    struct rt_config proc = { .nargs = 0 };
    assert_int_equal(rt_exec(root, "c1", &proc, &eo, &fake, &status, &err), SM_OK);
    assert_int_equal(status, 7);

    expect(rt_delete(root, "c1", false, &fake, &err), &err, SM_E_INVALID,
           "cannot delete container c1 that is not stopped: running");
    assert_true(exists("c1"));

    assert_int_equal(rt_kill(root, "c1", SIGKILL, false, &fake, &err), SM_OK);
    for (int i = 0; i < 200 && status_of("c1") != RT_STOPPED; i++)
        usleep(10000);
    assert_int_equal(status_of("c1"), RT_STOPPED);
    assert_int_equal(rt_state_load(root, "c1", &fake, &st, &err), SM_OK);
    json = rt_state_json(&st);
    assert_non_null(strstr(json, "\"pid\": 0"));
    assert_non_null(strstr(json, "\"status\": \"stopped\""));
    free(json);
    rt_state_free(&st);

    expect(rt_kill(root, "c1", SIGTERM, false, &fake, &err), &err, SM_E_INVALID,
           "container not running");
    assert_int_equal(rt_kill(root, "c1", SIGTERM, true, &fake, &err), SM_OK); /* --all */
    expect(rt_start(root, "c1", &fake, &err), &err, SM_E_INVALID,
           "cannot start a container that has stopped");
    expect(rt_exec(root, "c1", &proc, &eo, &fake, &status, &err), &err, SM_E_INVALID,
           "cannot exec in a stopped container");

    assert_int_equal(rt_delete(root, "c1", false, &fake, &err), SM_OK);
    assert_int_equal(destroys, 1);
    assert_false(exists("c1"));
    expect(rt_state_load(root, "c1", &fake, &st, &err), &err, SM_E_NOTFOUND,
           "container does not exist");
    expect(rt_delete(root, "c1", false, &fake, &err), &err, SM_E_NOTFOUND,
           "container does not exist");
    assert_int_equal(rt_delete(root, "c1", true, &fake, &err), SM_OK);
    expect(rt_start(root, "c1", &fake, &err), &err, SM_E_NOTFOUND, "container does not exist");
    expect(rt_kill(root, "c1", SIGTERM, false, &fake, &err), &err, SM_E_NOTFOUND,
           "container does not exist");
}

/* delete of a created container kills it (runc's rule); --force kills a
 * running one. */
static void test_delete_kills(void **state)
{
    (void)state;
    sm_error err = {0};
    struct rt_create_opts o = { .bundle = bundle };
    assert_int_equal(rt_create(root, "made", &o, &fake, &err), SM_OK);
    assert_int_equal(rt_delete(root, "made", false, &fake, &err), SM_OK);
    assert_false(exists("made"));

    assert_int_equal(rt_create(root, "run", &o, &fake, &err), SM_OK);
    assert_int_equal(rt_start(root, "run", &fake, &err), SM_OK);
    struct rt_state st;
    assert_int_equal(rt_state_load(root, "run", &fake, &st, &err), SM_OK);
    int pid = st.pid;
    rt_state_free(&st);
    assert_int_equal(rt_delete(root, "run", true, &fake, &err), SM_OK);
    assert_false(exists("run"));
    assert_int_equal(destroys, 2);
    assert_true(kill(pid, 0) != 0); /* killed and reaped */
}

/* Bad bundles fail before anything is made, naming what is wrong. */
static void test_bad_bundles(void **state)
{
    (void)state;
    sm_error err = {0};
    struct rt_create_opts o = { .bundle = bundle };
    char p[256];

    char missing[256];
    snprintf(missing, sizeof missing, "%s/nope", tmp);
    struct rt_create_opts om = { .bundle = missing };
    expect(rt_create(root, "b", &om, &fake, &err), &err, SM_E_NOTFOUND, "nope");

    snprintf(p, sizeof p, "%s/config.json", bundle);
    unlink(p);
    expect(rt_create(root, "b", &o, &fake, &err), &err, SM_E_NOTFOUND, "has no config.json");

    write_config("{\"ociVersion\":\"1.0.0\",\"root\":{\"path\":\"rootfs\"}}");
    expect(rt_create(root, "b", &o, &fake, &err), &err, SM_E_INVALID,
           "process property must not be empty");

    write_config("{\"ociVersion\":\"1.0.0\",\"process\":{\"user\":{\"uid\":0,\"gid\":0},"
                 "\"args\":[\"sh\"],\"cwd\":\"/\"},\"root\":{\"path\":\"nothere\"}}");
    expect(rt_create(root, "b", &o, &fake, &err), &err, SM_E_NOTFOUND, "root.path");

    write_config("{\"ociVersion\":\"1.0.0\",\"process\":{\"terminal\":true,\"user\":{\"uid\":0,"
                 "\"gid\":0},\"args\":[\"sh\"],\"cwd\":\"/\"},\"root\":{\"path\":\"rootfs\"}}");
    expect(rt_create(root, "b", &o, &fake, &err), &err, SM_E_INVALID,
           "cannot allocate tty if runc will detach without setting console socket");

    write_config(GOOD_CONFIG);
    struct rt_create_opts oc = { .bundle = bundle, .console_socket = "/tmp/x.sock" };
    expect(rt_create(root, "b", &oc, &fake, &err), &err, SM_E_INVALID,
           "cannot use console socket if runc will not detach or allocate tty");

    write_config("{\"ociVersion\":\"1.0.0\",\"process\":{\"user\":{\"uid\":0,\"gid\":0},"
                 "\"args\":[\"sh\"],\"cwd\":\"/\"},\"root\":{\"path\":\"rootfs\"},"
                 "\"hooks\":{\"createRuntime\":[{\"path\":\"/x\"}]}}");
    expect(rt_create(root, "b", &o, &fake, &err), &err, SM_E_UNSUPPORTED, "hooks");

    expect(rt_create(root, "../b", &o, &fake, &err), &err, SM_E_INVALID,
           "invalid container ID format");

    /* The backend's failure: nothing left behind. */
    write_config(GOOD_CONFIG);
    fail_create = true;
    expect(rt_create(root, "b", &o, &fake, &err), &err, SM_E_UNSUPPORTED, "the fake backend fails");
    assert_false(exists("b"));
    assert_int_equal(creates, 0);
}

/* A damaged state file is reported; delete --force clears it. */
static void test_damaged_state(void **state)
{
    (void)state;
    sm_error err = {0};
    struct rt_create_opts o = { .bundle = bundle };
    assert_int_equal(rt_create(root, "d", &o, &fake, &err), SM_OK);
    struct rt_state st;
    assert_int_equal(rt_state_load(root, "d", &fake, &st, &err), SM_OK);
    kill(st.pid, SIGKILL);
    waitpid(st.pid, NULL, 0);
    rt_state_free(&st);
    char p[256];
    snprintf(p, sizeof p, "%s/d/state.json", root);
    write_text(p, "{\"id\":\"d\",\"status\":\"sleeping\"}");
    expect(rt_state_load(root, "d", &fake, &st, &err), &err, SM_E_PROTOCOL, "is damaged");
    expect(rt_delete(root, "d", false, &fake, &err), &err, SM_E_PROTOCOL, "is damaged");
    assert_int_equal(rt_delete(root, "d", true, &fake, &err), SM_OK);
    assert_false(exists("d"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_bundles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_state, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
