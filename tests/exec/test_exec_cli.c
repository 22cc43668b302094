/*
 * `supermachine exec` end to end: the CLI binary in $SM_EXEC_CLI against the
 * exec socket in $SM_EXEC_SOCKET (run-local.sh sets both). Exit codes, the
 * streams, -e/-w/--stage/-i, --timeout's 124, and -t with raw mode and
 * window-size forwarding through a real pty. Skipped if SM_EXEC_CLI is unset.
 * With $SM_EXEC_VM_ID (tests/vm/test_exec_vm.sh: a VM that `supermachine
 * start` started), the terminal test names the VM by its ID, as a user's
 * interactive shell in a started VM does.
 */
#include "exec_helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

static const char *cli(void)
{
    return getenv("SM_EXEC_CLI");
}

/* cmocka's skip() must run inside the test (in a setup it is an error). */
static void skip_without_cli(void)
{
    if (!cli() || !*cli())
        skip();
}

typedef struct run_result {
    int status;      /* exit status */
    char out[8192];
    char err[8192];
} run_result;

static void drain(int fd, char *buf, size_t cap, size_t *len)
{
    ssize_t n = read(fd, buf + *len, cap - 1 - *len);
    if (n > 0)
        *len += (size_t)n;
    buf[*len] = 0;
}

static void run_argv(run_result *r, const char *input, const char *const *argv);

/* Runs `supermachine exec --socket SOCKET` with extra args, feeding `input`
 * (NULL: /dev/null). */
static void run_cli(run_result *r, const char *input, const char *const *args)
{
    const char *argv[40] = { cli(), "exec", "--socket", exec_socket() };
    int argc = 4;
    for (; *args && argc < 39; args++)
        argv[argc++] = *args;
    argv[argc] = NULL;
    run_argv(r, input, argv);
}

/* Runs argv (argv[0] the CLI), feeding `input` (NULL: nothing). */
static void run_argv(run_result *r, const char *input, const char *const *argv)
{
    int in[2], out[2], err[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        for (int fd = 3; fd < 64; fd++)
            close(fd);
        execv(argv[0], (char **)argv);
        _exit(99);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (input && write(in[1], input, strlen(input)) < 0)
        fail_msg("writing the CLI's stdin: %s", strerror(errno));
    close(in[1]);
    size_t olen = 0, elen = 0;
    bool oopen = true, eopen = true;
    while (oopen || eopen) {
        struct pollfd p[2] = { { oopen ? out[0] : -1, POLLIN, 0 }, { eopen ? err[0] : -1, POLLIN, 0 } };
        assert_true(poll(p, 2, 10000) > 0);
        if (p[0].revents) {
            size_t before = olen;
            drain(out[0], r->out, sizeof r->out, &olen);
            oopen = olen != before;
        }
        if (p[1].revents) {
            size_t before = elen;
            drain(err[0], r->err, sizeof r->err, &elen);
            eopen = elen != before;
        }
    }
    r->out[olen] = r->err[elen] = 0;
    close(out[0]);
    close(err[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    r->status = WEXITSTATUS(st);
}

static void test_cli_exit_code_and_streams(void **state)
{
    (void)state;
    skip_without_cli();
    run_result r;
    const char *a[] = { "--", "sh", "-c", "echo hi && exit 7", NULL };
    run_cli(&r, NULL, a);
    assert_int_equal(r.status, 7);
    assert_string_equal(r.out, "hi\n");

    const char *b[] = { "--", "sh", "-c", "echo hi; echo err >&2; exit 3", NULL };
    run_cli(&r, NULL, b);
    assert_int_equal(r.status, 3);
    assert_string_equal(r.out, "hi\n");
    assert_string_equal(r.err, "err\n");

    const char *c[] = { "--", "sh", "-c", "kill -9 $$", NULL };
    run_cli(&r, NULL, c);
    assert_int_equal(r.status, 128 + 9);
}

static void test_cli_options(void **state)
{
    (void)state;
    skip_without_cli();
    char host_file[64], guest_file[96];
    snprintf(host_file, sizeof host_file, "/tmp/sm-cli-%d.txt", (int)getpid());
    snprintf(guest_file, sizeof guest_file, "/tmp/sm-cli-guest-%d/f.txt", (int)getpid());
    FILE *f = fopen(host_file, "w");
    fputs("from-host\n", f);
    fclose(f);
    char stage[200];
    snprintf(stage, sizeof stage, "%s=%s:600", guest_file, host_file);
    char script[300];
    snprintf(script, sizeof script, "pwd; echo $A; cat %s; ls -l %s | cut -c1-10; cat; "
             "rm -rf /tmp/sm-cli-guest-%d", guest_file, guest_file, (int)getpid());
    const char *a[] = { "-e", "A=1=2", "-w", "/tmp", "--stage", stage, "-i", "--", "sh", "-c",
                        script, NULL };
    run_result r;
    run_cli(&r, "typed\n", a);
    unlink(host_file);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "/tmp\n1=2\nfrom-host\n-rw-------\ntyped\n");
}

static void test_cli_timeout_and_errors(void **state)
{
    (void)state;
    skip_without_cli();
    run_result r;
    const char *a[] = { "--timeout", "0.5", "--", "sleep", "3080", NULL };
    /* The timeout, not the command's end (50 minutes away), must stop it:
     * 30 s of slack holds on any host (SM_EXEC_TIMEOUT_MARGIN_MS, as in the
     * spec suite); how promptly is a speed, not a test. */
    const char *m = getenv("SM_EXEC_TIMEOUT_MARGIN_MS");
    uint64_t limit = 500 + (m && atoi(m) > 0 ? (uint64_t)atoi(m) : 30000);
    uint64_t t0 = clock_now_ms();
    run_cli(&r, NULL, a);
    assert_true(clock_now_ms() - t0 < limit);
    assert_int_equal(r.status, 124);
    assert_non_null(strstr(r.err, "timed out"));

    const char *b[] = { "--", "sm-no-such-program", NULL };
    run_cli(&r, NULL, b);
    assert_int_equal(r.status, 127);

    const char *c[] = { "--timeout", "soon", "--", "true", NULL };
    run_cli(&r, NULL, c);
    assert_int_equal(r.status, 2);

    const char *d[] = { "--", NULL };
    run_cli(&r, NULL, d);
    assert_int_equal(r.status, 2);
}

/* Reads from the pty master until `needle` shows up (5 s at most). */
static void read_until(int master, char *buf, size_t cap, size_t *len, const char *needle)
{
    uint64_t give_up = clock_now_ms() + 5000;
    while (!strstr(buf, needle)) {
        if (clock_now_ms() > give_up)
            fail_msg("no '%s' from the CLI's terminal; got: '%s'", needle, buf);
        struct pollfd p = { master, POLLIN, 0 };
        if (poll(&p, 1, 100) > 0) {
            ssize_t n = read(master, buf + *len, cap - 1 - *len);
            if (n <= 0)
                fail_msg("the CLI's terminal closed; got: '%s'", buf);
            *len += (size_t)n;
            buf[*len] = 0;
        }
    }
}

/* -t -i in a real terminal: the terminal's size goes in at the start, a
 * later resize (SIGWINCH to the CLI) is forwarded, typed input arrives. */
static void test_cli_tty_resize(void **state)
{
    (void)state;
    skip_without_cli();
    struct winsize ws = { .ws_row = 33, .ws_col = 91 };
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *vm_id = getenv("SM_EXEC_VM_ID");
        const char *by_socket[] = { cli(), "exec", "--socket", exec_socket(), "-t", "-i", "--", "sh",
                                    "-c", "stty size; read x; stty size; echo end-$x", NULL };
        const char *by_id[] = { cli(), "exec", vm_id ? vm_id : "", "-t", "-i", "--", "sh",
                                "-c", "stty size; read x; stty size; echo end-$x", NULL };
        execv(cli(), (char **)(vm_id && *vm_id ? by_id : by_socket));
        _exit(99);
    }
    char buf[4096] = { 0 };
    size_t len = 0;
    read_until(master, buf, sizeof buf, &len, "33 91");
    ws = (struct winsize){ .ws_row = 44, .ws_col = 120 };
    assert_int_equal(ioctl(master, TIOCSWINSZ, &ws), 0); /* SIGWINCH to the CLI */
    usleep(200000);
    assert_int_equal(write(master, "ok\r", 3), 3);
    read_until(master, buf, sizeof buf, &len, "end-ok");
    assert_non_null(strstr(buf, "44 120"));
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    close(master);
}

/* The store and VM verbs that need no VM: prune on a store with one blob
 * no image uses (--dry-run keeps it, prune removes it and says so), and
 * their usage errors, and pause/resume/snapshot of VMs that do not exist. */
static void test_cli_store_and_vm_verbs(void **state)
{
    (void)state;
    skip_without_cli();
    char dir[] = "/tmp/sm-cli-prune-XXXXXX", blobs[128], blob[256], cmd[160];
    assert_non_null(mkdtemp(dir));
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    snprintf(blobs, sizeof blobs, "%s/images/.oci/blobs/sha256", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s", blobs);
    assert_int_equal(system(cmd), 0);
    snprintf(blob, sizeof blob, "%s/%s", blobs, hex);
    int fd = open(blob, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0 && write(fd, "an unused blob", 14) == 14);
    close(fd);
    char *old_images = getenv("SUPERMACHINE_IMAGES"), *old_runtime = getenv("XDG_RUNTIME_DIR");
    old_images = old_images ? strdup(old_images) : NULL;
    old_runtime = old_runtime ? strdup(old_runtime) : NULL;
    snprintf(cmd, sizeof cmd, "%s/images", dir);
    setenv("SUPERMACHINE_IMAGES", cmd, 1);
    snprintf(cmd, sizeof cmd, "%s/run", dir);
    setenv("XDG_RUNTIME_DIR", cmd, 1);
    run_result r;
    char want[512];

    run_argv(&r, NULL, (const char *const[]){ cli(), "prune", "--dry-run", NULL });
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof want, "would remove %s (", blob);
    assert_non_null(strstr(r.out, want));
    assert_non_null(strstr(r.out, "would remove 0 root filesystems and 1 blob: "));
    assert_int_equal(access(blob, F_OK), 0);
    run_argv(&r, NULL, (const char *const[]){ cli(), "prune", NULL });
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof want, "removed %s (", blob);
    assert_non_null(strstr(r.out, want));
    assert_non_null(strstr(r.out, "removed 0 root filesystems and 1 blob: "));
    assert_int_equal(access(blob, F_OK), -1);
    run_argv(&r, NULL, (const char *const[]){ cli(), "prune", "now", NULL });
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "unexpected argument 'now'"));

    run_argv(&r, NULL, (const char *const[]){ cli(), "pause", NULL });
    assert_int_equal(r.status, 2);
    run_argv(&r, NULL, (const char *const[]){ cli(), "pause", "not-an-id", NULL });
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "'not-an-id' is not a VM id"));
    run_argv(&r, NULL, (const char *const[]){ cli(), "resume", "0000abcd", NULL });
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "no VM 0000abcd"));
    run_argv(&r, NULL, (const char *const[]){ cli(), "snapshot", "0000abcd", NULL });
    assert_int_equal(r.status, 2);
    run_argv(&r, NULL, (const char *const[]){ cli(), "snapshot", "0000abcd", "name", NULL });
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "no VM 0000abcd"));

    old_images ? setenv("SUPERMACHINE_IMAGES", old_images, 1) : unsetenv("SUPERMACHINE_IMAGES");
    old_runtime ? setenv("XDG_RUNTIME_DIR", old_runtime, 1) : unsetenv("XDG_RUNTIME_DIR");
    free(old_images);
    free(old_runtime);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    if (!exec_require_socket())
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_exit_code_and_streams),
        cmocka_unit_test(test_cli_options),
        cmocka_unit_test(test_cli_timeout_and_errors),
        cmocka_unit_test(test_cli_tty_resize),
        cmocka_unit_test(test_cli_store_and_vm_verbs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
