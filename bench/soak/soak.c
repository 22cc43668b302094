/*
 * bench/soak: many restores + execs, several at a time, counting every
 * failure by kind, and watching for drift in what the VMs and this process
 * hold.
 *
 *   soak [--ratios-only] [--vms N] [--parallel P] [--cpus C] SNAPSHOT_DIR
 *
 * Each of P threads, until N VMs have run: sm_vm_start from the image, one
 * exec of `echo ok` (sm_exec_output, its output checked), the VMM's fd count
 * and private memory read from /proc, sm_vm_stop. Failures are counted by
 * kind, never retried:
 *   start     sm_vm_start failed (the restore, or the guest before ready)
 *   setup     the exec's connection closed before anything arrived
 *   drop      the exec's connection broke after output arrived
 *   timeout   no exit report within the exec's deadline (60 s)
 *   output    the exec ended but did not print "ok" with status 0
 *   stop      sm_vm_stop failed
 *   other     anything else (the message is printed)
 * Figures: p50/p99 of start + exec; the VMMs' fd count and private memory,
 * first tenth of the run against the last; this process's fds and RSS at
 * the start and the end. The last line is "soak: N VMs, F failures".
 * (bench/soak/run.sh bakes the snapshot and runs this, in tools/kvmbox when
 * the host cannot run guests.)
 */
#include "supermachine.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum fail_kind { F_START, F_SETUP, F_DROP, F_TIMEOUT, F_OUTPUT, F_STOP, F_OTHER, F_KINDS };
static const char *const fail_names[F_KINDS] = { "start", "setup", "drop", "timeout", "output", "stop", "other" };

struct sample {
    double seconds;   /* start + exec */
    int vmm_fds;
    long vmm_private_kib;
    bool ok;
};

static const char *snapshot_dir;
static int total_vms = 1000, parallel = 4, ratios_only;
static atomic_int next_vm;
static atomic_int failures[F_KINDS];
static struct sample *samples;
static sm_image *image;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int count_fds(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Private_Clean + Private_Dirty of a process, KiB; -1 if unreadable. */
static long private_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long total = 0, v;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Private_Clean: %ld", &v) == 1 || sscanf(line, "Private_Dirty: %ld", &v) == 1)
            total += v;
    fclose(f);
    return total;
}

static long self_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static void record_failure(int vm, enum fail_kind kind, const char *message)
{
    atomic_fetch_add(&failures[kind], 1);
    pthread_mutex_lock(&print_lock);
    printf("soak: VM %d: %s failure: %s\n", vm, fail_names[kind], message);
    fflush(stdout);
    pthread_mutex_unlock(&print_lock);
}

static enum fail_kind exec_failure_kind(sm_code rc)
{
    switch (rc) {
    case SM_E_SETUP: return F_SETUP;
    case SM_E_DROPPED: return F_DROP;
    case SM_E_TIMEOUT: return F_TIMEOUT;
    default: return F_OTHER;
    }
}

/* One VM's life; fills s. */
static void run_one(int index, struct sample *s)
{
    sm_error err = { 0 };
    sm_vm_config *cfg = sm_vm_config_new();
    sm_vm *vm = NULL;
    double t0 = now_s();
    if (!cfg || sm_vm_config_image(cfg, image) || sm_vm_config_boot_timeout_s(cfg, 120) ||
        sm_vm_start(cfg, &vm, &err)) {
        record_failure(index, F_START, cfg ? err.message : "out of memory");
        sm_vm_config_free(cfg);
        return;
    }
    sm_vm_config_free(cfg);
    sm_exec_builder *b = sm_vm_exec_builder(vm);
    const char *argv[] = { "echo", "ok" };
    sm_exec_outcome out = { 0 };
    sm_code rc = b ? sm_exec_builder_argv(b, 2, argv) : SM_E_NOMEM;
    if (!rc)
        rc = sm_exec_builder_timeout_ms(b, 60000);
    if (!rc)
        rc = sm_exec_output(b, &out, &err);
    s->seconds = now_s() - t0;
    if (rc)
        record_failure(index, exec_failure_kind(rc), err.message);
    else if (out.status.code != 0 || strcmp((const char *)out.stdout_buf, "ok\n") != 0)
        record_failure(index, F_OUTPUT, "echo ok did not print ok with status 0");
    else
        s->ok = true;
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
    sm_vm_info info;
    if (sm_vm_get_info(vm, &info, &err) == SM_OK && info.running) {
        s->vmm_fds = count_fds(info.vmm_pid);
        s->vmm_private_kib = private_kib(info.vmm_pid);
    }
    if (sm_vm_stop(vm, &err)) {
        record_failure(index, F_STOP, err.message);
        s->ok = false;
    }
    sm_vm_free(vm);
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        int i = atomic_fetch_add(&next_vm, 1);
        if (i >= total_vms)
            return NULL;
        run_one(i, &samples[i]);
        if ((i + 1) % 100 == 0) {
            pthread_mutex_lock(&print_lock);
            printf("soak: %d VMs started\n", i + 1);
            fflush(stdout);
            pthread_mutex_unlock(&print_lock);
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int rank = (int)(p / 100.0 * n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return v[rank - 1];
}

/* Mean VMM fds and private KiB over samples [from, to) that have them. */
static void vmm_means(int from, int to, double *fds, double *kib)
{
    double f = 0, k = 0;
    int n = 0;
    for (int i = from; i < to; i++) {
        if (samples[i].vmm_fds <= 0 || samples[i].vmm_private_kib < 0)
            continue;
        f += samples[i].vmm_fds;
        k += (double)samples[i].vmm_private_kib;
        n++;
    }
    *fds = n ? f / n : 0;
    *kib = n ? k / n : 0;
}

static void report(int fds0, long rss0)
{
    double *t = malloc(sizeof *t * (size_t)total_vms);
    int n = 0, failed = 0;
    for (int i = 0; i < total_vms; i++)
        if (samples[i].ok)
            t[n++] = samples[i].seconds;
    for (int k = 0; k < F_KINDS; k++)
        failed += atomic_load(&failures[k]);
    if (n) {
        double p50 = percentile(t, n, 50), p99 = percentile(t, n, 99);
        if (ratios_only)
            printf("soak: start+exec p99/p50 = %.2f\n", p99 / p50);
        else
            printf("soak: start+exec p50 %.1f ms, p99 %.1f ms\n", p50 * 1e3, p99 * 1e3);
    }
    int tenth = total_vms / 10 ? total_vms / 10 : 1;
    double f_first, k_first, f_last, k_last;
    vmm_means(0, tenth, &f_first, &k_first);
    vmm_means(total_vms - tenth, total_vms, &f_last, &k_last);
    printf("soak: VMM fds, first tenth %.1f, last tenth %.1f\n", f_first, f_last);
    if (ratios_only)
        printf("soak: VMM private memory, last tenth / first tenth = %.2f\n", k_first > 0 ? k_last / k_first : 0);
    else
        printf("soak: VMM private memory, first tenth %.0f KiB, last tenth %.0f KiB\n", k_first, k_last);
    printf("soak: this process: fds %d -> %d, RSS %ld -> %ld KiB\n", fds0, count_fds(getpid()), rss0,
           self_rss_kib());
    printf("soak: failures by kind:");
    for (int k = 0; k < F_KINDS; k++)
        printf(" %s %d", fail_names[k], atomic_load(&failures[k]));
    printf("\nsoak: %d VMs, %d failures\n", total_vms, failed);
    free(t);
}

static int usage(void)
{
    fprintf(stderr, "usage: soak [--ratios-only] [--vms N] [--parallel P] SNAPSHOT_DIR\n");
    return 2;
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--ratios-only"))
            ratios_only = 1;
        else if (!strcmp(argv[i], "--vms") && i + 1 < argc)
            total_vms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--parallel") && i + 1 < argc)
            parallel = atoi(argv[++i]);
        else
            return usage();
    }
    if (i + 1 != argc || total_vms < 1 || parallel < 1 || parallel > 64)
        return usage();
    snapshot_dir = argv[i];
    sm_error err = { 0 };
    if (sm_image_from_snapshot(snapshot_dir, &image, &err)) {
        fprintf(stderr, "soak: %s\n", err.message);
        return 1;
    }
    samples = calloc((size_t)total_vms, sizeof *samples);
    pthread_t *threads = calloc((size_t)parallel, sizeof *threads);
    if (!samples || !threads)
        return 1;
    int fds0 = count_fds(getpid());
    long rss0 = self_rss_kib();
    printf("soak: %d VMs from %s, %d at a time\n", total_vms, snapshot_dir, parallel);
    fflush(stdout);
    for (int k = 0; k < parallel; k++)
        pthread_create(&threads[k], NULL, worker, NULL);
    for (int k = 0; k < parallel; k++)
        pthread_join(threads[k], NULL);
    report(fds0, rss0);
    sm_image_free(image);
    int failed = 0;
    for (int k = 0; k < F_KINDS; k++)
        failed += atomic_load(&failures[k]);
    free(samples);
    free(threads);
    return failed ? 1 : 0;
}
