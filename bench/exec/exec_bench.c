/*
 * bench/exec: the exec path against doing the same thing locally.
 *
 *   1. round trip of `true` through the agent (sm_exec_output) against
 *      posix_spawn + waitpid of `true` on this machine: medians, ratio
 *      (target: within 2x);
 *   2. stdout throughput of 1 GiB (`head -c 1073741824 /dev/zero`) read
 *      through the agent (sm_exec_spawn + stdout_read) against the same
 *      command read from a plain pipe: medians, ratio (target: >= 0.5).
 *   3. with --vm SOCKET, both again through the exec socket of a VM (the
 *      agent in the guest, through our virtio-vsock), interleaved with the
 *      local runs of the same run, and printed as ratios to them.
 *
 * usage: exec_bench [--vm VM_EXEC_SOCKET] [--mib N] [--ratios-only]
 *                   EXEC_SOCKET [ROUNDTRIPS] [THROUGHPUT_RUNS]
 *   --mib N         bytes of the throughput runs, in MiB (default 1024)
 *   --ratios-only   no absolute figures (under emulation, as in kvmbox, only
 *                   ratios within one run mean anything)
 * (bench/exec/run.sh builds this, starts a local agent, and a VM when it can
 * (inside tools/kvmbox when it must), and runs it.)
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

#define MIB (1ull << 20)
#define READ_BUF (256u << 10)

static unsigned long long stream_bytes = 1024 * MIB;
static char stream_bytes_arg[32] = "1073741824";
static int ratios_only;

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

static const char *head_argv[] = { "head", "-c", stream_bytes_arg, "/dev/zero", NULL };

/* Seconds to read stream_bytes from a pipe fed by head. */
static double local_pipe_stream(void)
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
    if (total != stream_bytes) {
        fprintf(stderr, "exec_bench: pipe gave %llu bytes\n", total);
        exit(1);
    }
    return t;
}

static double agent_stream(const char *sock)
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
    sm_code rc;
    while ((rc = sm_exec_child_stdout_read(c, buf, sizeof buf, &got, &err)) == SM_OK && got)
        total += got;
    sm_exec_status st;
    sm_code wrc = sm_exec_child_wait(c, &st, rc ? NULL : &err);
    double t = now_s() - t0;
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    if (rc || wrc) {
        fprintf(stderr, "exec_bench: the stream broke after %llu bytes: %s\n", total, err.message);
        exit(1);
    }
    if (total != stream_bytes || st.code != 0) {
        fprintf(stderr, "exec_bench: agent gave %llu bytes, exit %d\n", total, st.code);
        exit(1);
    }
    return t;
}

static void usage(void)
{
    fprintf(stderr, "usage: exec_bench [--vm VM_EXEC_SOCKET] [--mib N] [--ratios-only] EXEC_SOCKET "
            "[ROUNDTRIPS] [THROUGHPUT_RUNS]\n"
            "       exec_bench --roundtrip-block N SOCKET...  (one line: the median us of each)\n");
}

/* One block for bench/exec/python_vs_c.sh: N round trips of `true` through
 * each socket in turn, then a line of the medians in microseconds, which
 * exec_py.py prints the same way for the Python binding. */
static int roundtrip_block(int n, int nsock, char **socks)
{
    if (n < 1 || nsock < 1)
        return 2;
    double *t = calloc((size_t)n * (size_t)nsock, sizeof *t);
    for (int k = 0; k < n; k++)
        for (int s = 0; s < nsock; s++)
            t[(size_t)s * (size_t)n + (size_t)k] = agent_true(socks[s]);
    for (int s = 0; s < nsock; s++)
        printf("%s%.1f", s ? " " : "", median(t + (size_t)s * (size_t)n, n) * 1e6);
    printf("\n");
    free(t);
    return 0;
}

/* A figure, unless only ratios are wanted. */
static void figure(const char *label, double value, const char *unit)
{
    if (!ratios_only)
        printf("  %-21s %8.1f %s\n", label, value, unit);
}

int main(int argc, char **argv)
{
    const char *vm_sock = NULL;
    int i = 1;
    if (argc > 3 && !strcmp(argv[1], "--roundtrip-block"))
        return roundtrip_block(atoi(argv[2]), argc - 3, argv + 3);
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--vm") && i + 1 < argc) {
            vm_sock = argv[++i];
        } else if (!strcmp(argv[i], "--mib") && i + 1 < argc) {
            long m = atol(argv[++i]);
            if (m < 1 || m > 65536) {
                usage();
                return 2;
            }
            stream_bytes = (unsigned long long)m * MIB;
            snprintf(stream_bytes_arg, sizeof stream_bytes_arg, "%llu", stream_bytes);
        } else if (!strcmp(argv[i], "--ratios-only")) {
            ratios_only = 1;
        } else {
            usage();
            return 2;
        }
    }
    if (i >= argc) {
        usage();
        return 2;
    }
    const char *sock = argv[i];
    int n = i + 1 < argc ? atoi(argv[i + 1]) : 300;
    int runs = i + 2 < argc ? atoi(argv[i + 2]) : 5;
    if (n < 1 || runs < 1)
        return 2;
    double *loc = calloc((size_t)n, sizeof *loc), *ag = calloc((size_t)n, sizeof *ag);
    double *vm = calloc((size_t)n, sizeof *vm);
    for (int w = 0; w < 10; w++) { /* warm up every path */
        local_true();
        agent_true(sock);
        if (vm_sock)
            agent_true(vm_sock);
    }
    for (int k = 0; k < n; k++) { /* interleaved, so drift hits all */
        loc[k] = local_true();
        ag[k] = agent_true(sock);
        if (vm_sock)
            vm[k] = agent_true(vm_sock);
    }
    double ml = median(loc, n), ma = median(ag, n), mv = vm_sock ? median(vm, n) : 0;
    printf("round trip of true, median of %d:\n", n);
    figure("posix_spawn+waitpid", ml * 1e6, "us");
    figure("through the agent", ma * 1e6, "us");
    printf("  ratio agent/local     %8.2f   (target <= 2.00)\n", ma / ml);
    if (vm_sock) {
        figure("agent in a VM", mv * 1e6, "us");
        printf("  ratio VM/local agent  %8.2f   (of times: below 1, the VM is quicker)\n", mv / ma);
        printf("  ratio VM/posix_spawn  %8.2f\n", mv / ml);
    }

    double *tl = calloc((size_t)runs, sizeof *tl), *ta = calloc((size_t)runs, sizeof *ta);
    double *tv = calloc((size_t)runs, sizeof *tv);
    for (int k = 0; k < runs; k++) {
        tl[k] = local_pipe_stream();
        ta[k] = agent_stream(sock);
        if (vm_sock)
            tv[k] = agent_stream(vm_sock);
    }
    double mib = (double)stream_bytes / (double)MIB;
    double mtl = median(tl, runs), mta = median(ta, runs), mtv = vm_sock ? median(tv, runs) : 0;
    printf("stdout throughput of %.0f MiB, median of %d:\n", mib, runs);
    figure("plain pipe", mib / mtl, "MiB/s");
    figure("through the agent", mib / mta, "MiB/s");
    printf("  ratio agent/pipe      %8.2f   (target >= 0.50)\n", mtl / mta);
    if (vm_sock) {
        figure("agent in a VM", mib / mtv, "MiB/s");
        printf("  ratio VM/local agent  %8.2f   (of speeds: below 1, the VM is slower)\n", mta / mtv);
        printf("  ratio VM/pipe         %8.2f\n", mtl / mtv);
    }
    free(loc);
    free(ag);
    free(vm);
    free(tl);
    free(ta);
    free(tv);
    return 0;
}
