/*
 * The VMM's cell (src/vmm/cell.c), without a VM: a forked test process
 * enters the cell as the VMM does, becomes the stand-in, and its child (the
 * "VMM") reports through a pipe what it can see; the test then checks the
 * stand-in's end against the child's. Needs a kernel that grants user
 * namespaces (the test skips, saying so, where it does not).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmm/cell.h"
#include "vmm/confine.h"

struct fixture {
    char vm_dir[64];
    char cell_dir[80];
    int report[2]; /* the VMM writes its report to [1] */
};

static bool namespaces_granted(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) < 0);
    int status;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int setup(void **state)
{
    static struct fixture f;
    snprintf(f.vm_dir, sizeof f.vm_dir, "/tmp/sm-cell-test.XXXXXX");
    if (!mkdtemp(f.vm_dir))
        return -1;
    snprintf(f.cell_dir, sizeof f.cell_dir, "%s/cell", f.vm_dir);
    char info[96];
    snprintf(info, sizeof info, "%s/vm.info", f.vm_dir);
    if (mkdir(f.cell_dir, 0700) < 0 || close(open(info, O_WRONLY | O_CREAT, 0600)) < 0 || pipe(f.report) < 0)
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->vm_dir);
    close(f->report[0]);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- what the "VMM" sees, as one line of text ---------------------------------- */

static void say(int fd, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        (void)!write(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* The names in "/", sorted by readdir's order, space-separated. */
static void list_root(char *out, size_t cap)
{
    out[0] = 0;
    DIR *d = opendir("/");
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            if (strlen(out) + strlen(e->d_name) + 2 <= cap) {
                strcat(out, e->d_name);
                strcat(out, " ");
            }
    if (d)
        closedir(d);
}

/* The Seccomp field of /proc/PID/status (-1: unreadable). */
static int seccomp_mode(pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *s = fopen(path, "r");
    int mode = -1;
    while (s && fgets(line, sizeof line, s))
        if (!strncmp(line, "Seccomp:", 8))
            mode = atoi(line + 8);
    if (s)
        fclose(s);
    return mode;
}

static void report_cell(const struct fixture *f, int fd, int stand_in_seccomp)
{
    char root[256], info[96], sock[96];
    list_root(root, sizeof root);
    snprintf(info, sizeof info, "%s/vm.info", f->vm_dir);
    snprintf(sock, sizeof sock, "%s/probe", f->cell_dir);
    struct stat st;
    struct rlimit core, files;
    getrlimit(RLIMIT_CORE, &core);
    getrlimit(RLIMIT_NOFILE, &files);
    bool cell_visible = stat(f->cell_dir, &st) == 0 && S_ISDIR(st.st_mode);
    bool info_hidden = stat(info, &st) < 0 && errno == ENOENT;
    bool cell_read_only = open(sock, O_WRONLY | O_CREAT, 0600) < 0 && errno == EROFS;
    bool root_read_only = mkdir("/x", 0700) < 0 && errno == EROFS;
    say(fd, "pid=%d root=[%s] cell=%d info_hidden=%d cell_ro=%d root_ro=%d core=%llu files=%llu stand_in_seccomp=%d\n",
        (int)getpid(), root, cell_visible, info_hidden, cell_read_only, root_read_only,
        (unsigned long long)core.rlim_cur, (unsigned long long)files.rlim_cur, stand_in_seccomp);
}

/* The forked side: enter, seal, report, end as `how` says. */
static _Noreturn void vmm_side(const struct fixture *f, bool host_network, const char *how)
{
    struct cell c = { .dir = f->cell_dir, .host_network = host_network, .keep_fds = { f->report[1], -1 } };
    sm_error err = { 0 };
    pid_t stand_in = getpid(); /* this process becomes it */
    if (!cell_enter(&c, &err) || !c.namespaces)
        _exit(100);
    int stand_in_seccomp = seccomp_mode(stand_in); /* the host's /proc, until the seal */
    if (cell_seal(&c, &err)) {
        say(f->report[1], "seal: %s\n", err.message);
        _exit(101);
    }
    report_cell(f, f->report[1], stand_in_seccomp);
    close(f->report[1]);
    if (!strcmp(how, "exit 7"))
        _exit(7);
    if (!strcmp(how, "sigsys"))
        syscall(SYS_exit_group, CONFINE_EXIT_SIGSYS);
    if (!strcmp(how, "wait for SIGTERM")) {
        sigset_t term;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        int sig = sigwaitinfo(&term, NULL); /* blocked since cell_enter: forwarded ones queue */
        _exit(sig == SIGTERM ? 9 : 10);
    }
    _exit(11);
}

/* Runs the VMM side in a fork; returns its report and the stand-in's pid. */
static pid_t start(struct fixture *f, bool host_network, const char *how)
{
    if (!namespaces_granted())
        skip();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(f->report[0]);
        if (!strncmp(how, "no stdio: ", 10)) { /* a VMM started without stdin and stdout */
            close(0);
            close(1);
            how += 10;
        }
        vmm_side(f, host_network, how);
    }
    close(f->report[1]);
    return pid;
}

static void read_report(struct fixture *f, char *out, size_t cap)
{
    size_t got = 0;
    ssize_t n;
    while (got < cap - 1 && (n = read(f->report[0], out + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    out[got] = 0;
}

static int wait_status(pid_t pid)
{
    int status = -1;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        print_message("the stand-in ended by signal %d\n", WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    return status;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_the_vmm_sees_only_its_cell(void **state)
{
    struct fixture *f = *state;
    pid_t pid = start(f, false, "exit 7");
    char report[1024];
    read_report(f, report, sizeof report);
    int status = wait_status(pid);
    print_message("report: %s", report);
    /* PID 1 of its own namespace; "/" holds the first folder of the cell's
     * path only (no resolv.conf without a network); vm.info beside the
     * cell is gone; both are read-only; no core dumps; bounded files. */
    assert_non_null(strstr(report, "pid=1 "));
    assert_non_null(strstr(report, "root=[tmp ]"));
    assert_non_null(strstr(report, "cell=1 info_hidden=1 cell_ro=1 root_ro=1 core=0 files=2048"));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 7); /* the stand-in ends as the VMM did */
}

static void test_a_network_shows_resolv_conf(void **state)
{
    struct fixture *f = *state;
    struct stat st;
    if (stat("/etc/resolv.conf", &st) < 0)
        skip();
    pid_t pid = start(f, true, "exit 7");
    char report[1024];
    read_report(f, report, sizeof report);
    wait_status(pid);
    assert_non_null(strstr(report, "etc "));
}

static void test_the_stand_in_forwards_sigterm(void **state)
{
    struct fixture *f = *state;
    pid_t pid = start(f, false, "wait for SIGTERM");
    char report[1024];
    read_report(f, report, sizeof report); /* the VMM is sealed and waiting */
    assert_int_equal(kill(pid, SIGTERM), 0);
    int status = wait_status(pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 9);
}

static void test_a_seccomp_kill_is_a_sigsys_of_the_stand_in(void **state)
{
    struct fixture *f = *state;
    pid_t pid = start(f, false, "sigsys");
    char report[1024];
    read_report(f, report, sizeof report);
    int status = wait_status(pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSYS);
}

/* Confined before the VMM goes on (the VMM looks as soon as cell_enter
 * returns), also when its gate lands on fd 0 or 1. */
static void check_stand_in_confined(struct fixture *f, const char *how)
{
    pid_t pid = start(f, false, how);
    char report[1024], path[64], line[128];
    read_report(f, report, sizeof report);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *s = fopen(path, "r");
    assert_non_null(s);
    bool seccomp = false, nnp = false;
    while (fgets(line, sizeof line, s)) {
        seccomp |= !strcmp(line, "Seccomp:\t2\n");
        nnp |= !strcmp(line, "NoNewPrivs:\t1\n");
    }
    fclose(s);
    kill(pid, SIGTERM);
    wait_status(pid);
    assert_true(seccomp);
    assert_true(nnp);
    if (!strstr(report, "stand_in_seccomp=2"))
        fail_msg("the VMM went on before its stand-in was confined: %s", report);
}

static void test_the_stand_in_is_confined(void **state)
{
    check_stand_in_confined(*state, "wait for SIGTERM");
}

static void test_the_stand_in_is_confined_without_stdio(void **state)
{
    check_stand_in_confined(*state, "no stdio: wait for SIGTERM");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_the_vmm_sees_only_its_cell, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_network_shows_resolv_conf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_stand_in_forwards_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_seccomp_kill_is_a_sigsys_of_the_stand_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_stand_in_is_confined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_stand_in_is_confined_without_stdio, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
