/*
 * bench/soak/concurrent: the VM suite's 32-concurrent-exec round, repeated.
 *
 *   concurrent [--rounds R] [--execs N] [--cpus C] [--memory MIB] [--keep DIR]
 *
 * Starts one VM (sm_vm_start; 2 vCPUs and 512 MiB by default, as
 * tests/vm/test_vm_api.c), then R times (30 by default) runs N (32) threads
 * at once, thread i running sm_exec_output of
 *     sh -c 'sleep 1; echo "run $N"; seq 1 $N | wc -l; exit $N'   (N = i)
 * and checks each result exactly: SM_OK, stdout "run i\ni\n", stderr empty,
 * exit code i, no signal, not timed out. A mismatch prints the round, the
 * exec, rc and message, status, both streams (escaped), duration and the
 * host-side wall time. With --keep DIR (or $KVMBOX_SHARE) the VM's
 * console.log and vmm.log are copied there after a round with a mismatch and
 * at the end. A VM that is no longer running ends the loop (a failure). The
 * last line is "concurrent: R rounds, E execs, F failures in B rounds".
 * Exit status 0 only without failures. Needs a host that runs guests (run it
 * in tools/kvmbox here; set XDG_RUNTIME_DIR to a 0700 folder), or through
 * bench/soak/run.sh concurrent [ROUNDS].
 *
 * Found with it: the agent reported a command's exit with its output still
 * in the pipe (the drain grace ran out before the loop came round to it):
 * SM_OK and the right exit code, stdout empty or "run N\n" alone: in
 * kvmbox on a loaded host, 93 of 5,760 execs (180 rounds); in a run with
 * the agent logging it, each of 75 such execs had its output unread in the
 * pipe when the exit was reported (src/agent/session.c drain_now).
 */
#include "supermachine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct run {
    int index;
    sm_code rc;
    char err[512];
    sm_exec_outcome out;
    double wall_s;
};

static sm_vm *vm;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run_one(void *arg)
{
    struct run *r = arg;
    sm_exec_builder *b = sm_vm_exec_builder(vm);
    char n[16];
    snprintf(n, sizeof n, "%d", r->index);
    const char *argv[] = { "sh", "-c", "sleep 1; echo \"run $N\"; seq 1 $N | wc -l; exit $N" };
    sm_exec_builder_argv(b, 3, argv);
    sm_exec_builder_env(b, "N", n);
    sm_error err = { 0 };
    double t0 = now_s();
    r->rc = sm_exec_output(b, &r->out, &err);
    r->wall_s = now_s() - t0;
    if (r->rc)
        snprintf(r->err, sizeof r->err, "%s", err.message);
    sm_exec_builder_free(b);
    return NULL;
}

static void print_escaped(const char *what, const uint8_t *p, size_t n)
{
    printf("    %s (%zu bytes): \"", what, n);
    for (size_t i = 0; p && i < n; i++) {
        if (p[i] == '\n')
            printf("\\n");
        else if (p[i] >= 32 && p[i] < 127 && p[i] != '"' && p[i] != '\\')
            putchar(p[i]);
        else
            printf("\\x%02x", p[i]);
    }
    printf("\"\n");
}

static void copy_file(const char *from, const char *dir, const char *name)
{
    char to[1024];
    snprintf(to, sizeof to, "%s/%s", dir, name);
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    if (!in || !out) {
        printf("cannot copy %s to %s\n", from, to);
    } else {
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            fwrite(buf, 1, n, out);
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
}

static void keep_logs(const char *vm_dir, const char *keep)
{
    if (!keep || !*keep)
        return;
    char from[1024];
    snprintf(from, sizeof from, "%s/console.log", vm_dir);
    copy_file(from, keep, "console.log");
    snprintf(from, sizeof from, "%s/vmm.log", vm_dir);
    copy_file(from, keep, "vmm.log");
    printf("kept console.log and vmm.log in %s\n", keep);
}

int main(int argc, char **argv)
{
    int rounds = 30, execs = 32, cpus = 2, memory = 512;
    const char *keep = getenv("KVMBOX_SHARE");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--execs") && i + 1 < argc)
            execs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cpus") && i + 1 < argc)
            cpus = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--memory") && i + 1 < argc)
            memory = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--keep") && i + 1 < argc)
            keep = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--rounds R] [--execs N] [--cpus C] [--memory MIB] [--keep DIR]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || execs < 1 || execs > 1024) {
        fprintf(stderr, "bad --rounds or --execs\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    sm_vm_config *c = sm_vm_config_new();
    sm_vm_config_cpus(c, (uint32_t)cpus);
    sm_vm_config_memory_mib(c, (uint32_t)memory);
    sm_error err = { 0 };
    double t0 = now_s();
    if (sm_vm_start(c, &vm, &err)) {
        fprintf(stderr, "sm_vm_start: %s\n", err.message);
        return 1;
    }
    sm_vm_config_free(c);
    char vm_dir[1024];
    snprintf(vm_dir, sizeof vm_dir, "%s", sm_vm_state_dir(vm));
    printf("VM %s (%d vCPUs, %d MiB) ready in %.1f s; folder %s\n", sm_vm_id(vm), cpus, memory,
           now_s() - t0, vm_dir);

    struct run *runs = calloc((size_t)execs, sizeof *runs);
    pthread_t *t = calloc((size_t)execs, sizeof *t);
    int failures = 0, bad_rounds = 0;
    for (int round = 1; round <= rounds; round++) {
        double r0 = now_s();
        for (int i = 0; i < execs; i++) {
            memset(&runs[i], 0, sizeof runs[i]);
            runs[i].index = i + 1;
            if (pthread_create(&t[i], NULL, run_one, &runs[i])) {
                fprintf(stderr, "pthread_create failed\n");
                return 1;
            }
        }
        for (int i = 0; i < execs; i++)
            pthread_join(t[i], NULL);
        int bad = 0;
        double slowest = 0;
        for (int i = 0; i < execs; i++) {
            struct run *r = &runs[i];
            char want[64];
            snprintf(want, sizeof want, "run %d\n%d\n", r->index, r->index);
            if (r->wall_s > slowest)
                slowest = r->wall_s;
            bool ok = r->rc == SM_OK && r->out.stdout_len == strlen(want) &&
                      !memcmp(r->out.stdout_buf, want, r->out.stdout_len) &&
                      r->out.stderr_len == 0 && r->out.status.code == r->index &&
                      r->out.status.signal == 0 && !r->out.timed_out;
            if (!ok) {
                bad++;
                printf("MISMATCH round %d exec %d: rc %d (%s)%s%s\n", round, r->index, r->rc,
                       sm_strerror(r->rc), r->rc ? ": " : "", r->rc ? r->err : "");
                printf("    code %d signal %d timed_out %d steps %u duration %.3f s peak_rss %llu KiB,"
                       " host wall %.3f s\n",
                       r->out.status.code, r->out.status.signal, r->out.timed_out,
                       r->out.status.steps_run, (double)r->out.duration_us / 1e6,
                       (unsigned long long)r->out.peak_rss_kib, r->wall_s);
                print_escaped("stdout", r->out.stdout_buf, r->out.stdout_len);
                print_escaped("stderr", r->out.stderr_buf, r->out.stderr_len);
            }
            sm_exec_outcome_free(&r->out);
        }
        printf("round %d: %d/%d ok, %.2f s (slowest exec %.2f s)\n", round, execs - bad, execs,
               now_s() - r0, slowest);
        if (bad) {
            failures += bad;
            bad_rounds++;
            keep_logs(vm_dir, keep);
        }
        sm_vm_info info;
        if (sm_vm_get_info(vm, &info, &err) == SM_OK && !info.running) {
            printf("the VM is no longer running%s%s: stopping after round %d\n",
                   info.ended[0] ? ": " : "", info.ended, round);
            rounds = round;
            failures++;
            break;
        }
    }
    keep_logs(vm_dir, keep);
    sm_vm_free(vm);
    free(runs);
    free(t);
    printf("concurrent: %d rounds, %d execs, %d failures in %d rounds\n", rounds, rounds * execs,
           failures, bad_rounds);
    return failures ? 1 : 0;
}
