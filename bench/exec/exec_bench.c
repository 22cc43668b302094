/*
 * bench/exec: the exec path against doing the same thing locally.
 *
 *   1. round trip of `true` through the agent (sm_exec_output) against
 *      posix_spawn + waitpid of `true` on this machine: medians, ratio
 *      (target: within 2x);
 *   2. stdout throughput of 1 GiB (`head -c 1073741824 /dev/zero`) read
 *      through the agent (sm_exec_spawn + stdout_read) against the same
 *      command read from a plain pipe: medians, ratio (target: >= 0.5).
 *
 * usage: exec_bench EXEC_SOCKET [ROUNDTRIPS] [THROUGHPUT_RUNS]
 * (bench/exec/run.sh builds this, starts a local agent and runs it.)
 */
#include "supermachine.h"

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define GIB (1ull << 30)
#define READ_BUF (256u << 10)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double local_true(void)
{
    char *argv[] = { "true", NULL };
    double t0 = now_s();
    pid_t pid;
    if (posix_spawnp(&pid, "true", NULL, NULL, argv, environ) != 0)
        exit(1);
    int st;
    waitpid(pid, &st, 0);
    return now_s() - t0;
}

static double agent_true(const char *sock)
{
    sm_exec_builder *b = sm_exec_builder_new(sock);
    const char *argv[] = { "true" };
    sm_exec_builder_argv(b, 1, argv);
    sm_exec_outcome out;
    sm_error err;
    double t0 = now_s();
    if (sm_exec_output(b, &out, &err) != SM_OK) {
        fprintf(stderr, "exec_bench: %s\n", err.message);
        exit(1);
    }
    double t = now_s() - t0;
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
    return t;
}

static const char *head_argv[] = { "head", "-c", "1073741824", "/dev/zero", NULL };

/* Seconds to read 1 GiB from a pipe fed by head. */
static double local_pipe_gib(void)
{
    static char buf[READ_BUF];
    int p[2];
    if (pipe(p) < 0)
        exit(1);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    pid_t pid;
    double t0 = now_s();
    if (posix_spawnp(&pid, "head", &fa, NULL, (char **)head_argv, environ) != 0)
        exit(1);
    close(p[1]);
    unsigned long long total = 0;
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0)
        total += (unsigned long long)n;
    int st;
    waitpid(pid, &st, 0);
    double t = now_s() - t0;
    close(p[0]);
    posix_spawn_file_actions_destroy(&fa);
    if (total != GIB) {
        fprintf(stderr, "exec_bench: pipe gave %llu bytes\n", total);
        exit(1);
    }
    return t;
}

static double agent_gib(const char *sock)
{
    static char buf[READ_BUF];
    sm_exec_builder *b = sm_exec_builder_new(sock);
    sm_exec_builder_argv(b, 4, head_argv);
    sm_exec_child *c;
    sm_error err;
    double t0 = now_s();
    if (sm_exec_spawn(b, &c, &err) != SM_OK) {
        fprintf(stderr, "exec_bench: %s\n", err.message);
        exit(1);
    }
    unsigned long long total = 0;
    size_t got;
    while (sm_exec_child_stdout_read(c, buf, sizeof buf, &got, &err) == SM_OK && got)
        total += got;
    sm_exec_status st;
    sm_exec_child_wait(c, &st, &err);
    double t = now_s() - t0;
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    if (total != GIB || st.code != 0) {
        fprintf(stderr, "exec_bench: agent gave %llu bytes, exit %d\n", total, st.code);
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: exec_bench EXEC_SOCKET [ROUNDTRIPS] [THROUGHPUT_RUNS]\n");
        return 2;
    }
    const char *sock = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 300;
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    if (n < 1 || runs < 1)
        return 2;
    double *loc = calloc((size_t)n, sizeof *loc), *ag = calloc((size_t)n, sizeof *ag);
    for (int i = 0; i < 10; i++) { /* warm up both paths */
        local_true();
        agent_true(sock);
    }
    for (int i = 0; i < n; i++) { /* interleaved, so drift hits both */
        loc[i] = local_true();
        ag[i] = agent_true(sock);
    }
    double ml = median(loc, n), ma = median(ag, n);
    printf("round trip of true, median of %d:\n", n);
    printf("  posix_spawn+waitpid   %8.1f us\n", ml * 1e6);
    printf("  through the agent     %8.1f us\n", ma * 1e6);
    printf("  ratio agent/local     %8.2f   (target <= 2.00)\n", ma / ml);

    double *tl = calloc((size_t)runs, sizeof *tl), *ta = calloc((size_t)runs, sizeof *ta);
    for (int i = 0; i < runs; i++) {
        tl[i] = local_pipe_gib();
        ta[i] = agent_gib(sock);
    }
    double mtl = median(tl, runs), mta = median(ta, runs);
    printf("stdout throughput of 1 GiB, median of %d:\n", runs);
    printf("  plain pipe            %8.0f MiB/s\n", 1024.0 / mtl);
    printf("  through the agent     %8.0f MiB/s\n", 1024.0 / mta);
    printf("  ratio agent/pipe      %8.2f   (target >= 0.50)\n", mtl / mta);
    free(loc);
    free(ag);
    free(tl);
    free(ta);
    return 0;
}
