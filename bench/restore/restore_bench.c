/*
 * bench/restore: what a VM restored from a snapshot costs, beside a cold boot
 * of ours and QEMU's microvm boot of the same guest, in the same run.
 *
 *   1. restore + exec: sm_vm_start from the image, then sm_exec_output of
 *      `true`, timed from the call of sm_vm_start to the return of
 *      sm_exec_output (which returns when the exit report of `true` arrives);
 *      p50 and p99 over N restores (default 100), with the two parts apart;
 *   2. VM exits, from the VMM's control socket ("stats"): those of a whole
 *      restore + exec, and, on a few more VMs, those up to ready and those of
 *      the exec alone;
 *   3. cold boot of ours: sm_vm_start with the kernel and initramfs, to ready;
 *   4. qemu-system-x86_64 -M microvm -enable-kvm -cpu host, same kernel and
 *      initramfs, 256 MiB, 1 vCPU: process start to the guest's first line
 *      on the console, "supermachine-agent: ready" (its /init, the agent,
 *      prints it once started), then killed;
 *   5. host memory of M idle restored VMs (default 50) held at once: private
 *      memory of each supermachine-vmm (Private_Clean + Private_Dirty of
 *      /proc/PID/smaps_rollup), against the guest's memory size;
 *   6. the price of confinement: restore + exec as in 1, alternating VMMs
 *      confined (the default: seccomp filters and the cell, src/vmm/cell.h)
 *      and unconfined (SUPERMACHINE_VMM_SECCOMP=off: neither), N of each
 *      (default 20), p50 of each and their ratio.
 * One run of each kind first, uncounted (page cache, first start).
 *
 * usage: restore_bench [--ratios-only] [--restores N] [--boots N] [--idle N]
 *                      [--confine-pairs N] SNAPSHOT_DIR KERNEL INITRD
 *   --ratios-only  no absolute times (under emulation, as in kvmbox, only
 *                  ratios within one run mean anything); memory is printed
 *                  as a fraction of the guest's, and VM exits as counts
 * (bench/restore/run.sh bakes the snapshot, builds and runs this, inside
 * tools/kvmbox when this host cannot run guests.)
 */
#include "supermachine.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>

extern char **environ;

#define GUEST_MIB 256u
#define QEMU_TIMEOUT_S 120
#define QEMU_CMDLINE "console=ttyS0 reboot=k panic=-1 quiet lpj=1000000 tsc=reliable"

static int ratios_only;
static const char *kernel, *initrd;

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

/* The p-th percentile (nearest rank) of n values; sorts v. */
static double percentile(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int rank = (int)(p / 100.0 * n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static void die(const char *what, const sm_error *err)
{
    fprintf(stderr, "restore_bench: %s: %s\n", what, err ? err->message : strerror(errno));
    exit(1);
}

/* ---- VMs ------------------------------------------------------------------ */

static sm_vm *start_vm(const sm_image *img)
{
    sm_vm_config *c = sm_vm_config_new();
    if (!c)
        die("sm_vm_config_new", NULL);
    if (img)
        sm_vm_config_image(c, img);
    else {
        sm_vm_config_kernel(c, kernel);
        sm_vm_config_initrd(c, initrd);
        sm_vm_config_memory_mib(c, GUEST_MIB);
        sm_vm_config_cpus(c, 1);
    }
    sm_vm_config_boot_timeout_s(c, 120);
    sm_vm *vm = NULL;
    sm_error err = { 0 };
    if (sm_vm_start(c, &vm, &err))
        die(img ? "start from the snapshot" : "cold boot", &err);
    sm_vm_config_free(c);
    return vm;
}

static void stop_vm(sm_vm *vm)
{
    sm_error err = { 0 };
    if (sm_vm_stop(vm, &err))
        die("stop", &err);
    sm_vm_free(vm);
}

static void exec_true(sm_vm *vm)
{
    sm_exec_builder *b = sm_vm_exec_builder(vm);
    const char *argv[] = { "true" };
    sm_exec_builder_argv(b, 1, argv);
    sm_exec_outcome out = { 0 };
    sm_error err = { 0 };
    if (sm_exec_output(b, &out, &err))
        die("exec of true", &err);
    if (out.status.code != 0) {
        fprintf(stderr, "restore_bench: true exited %d\n", out.status.code);
        exit(1);
    }
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* VM exits by kind, from the VMM's "stats" reply (src/vmm/control.h). */
enum { EX_IO, EX_MMIO, EX_INTR, EX_OTHER, EX_KINDS };
static const char *const exit_names[EX_KINDS] = { "io", "mmio", "intr", "other" };

struct exits {
    double n[EX_KINDS];
};

static void read_exits(const sm_vm *vm, struct exits *e)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s/cell/control.sock", sm_vm_state_dir(vm));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("connect to the control socket", NULL);
    if (send(fd, "stats\n", 6, MSG_NOSIGNAL) != 6)
        die("send stats", NULL);
    char line[512];
    size_t got = 0;
    while (got < sizeof line - 1) {
        ssize_t k = recv(fd, line + got, sizeof line - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
        if (memchr(line, '\n', got))
            break;
    }
    close(fd);
    line[got] = 0;
    for (int i = 0; i < EX_KINDS; i++) {
        char key[32];
        snprintf(key, sizeof key, " exits_%s=", exit_names[i]);
        const char *p = strstr(line, key);
        if (strncmp(line, "ok ", 3) || !p) {
            fprintf(stderr, "restore_bench: the VMM's stats reply lacks%s: '%s'\n", key, line);
            exit(1);
        }
        e->n[i] = strtod(p + strlen(key), NULL);
    }
}

static double exits_total(const struct exits *e)
{
    double t = 0;
    for (int i = 0; i < EX_KINDS; i++)
        t += e->n[i];
    return t;
}

/* ---- QEMU ------------------------------------------------------------------- */

/* One boot of QEMU's microvm to the agent's first console line; seconds. */
static double qemu_boot(void)
{
    char mem[16];
    snprintf(mem, sizeof mem, "%u", GUEST_MIB);
    char *argv[] = { "qemu-system-x86_64", "-M", "microvm", "-enable-kvm", "-cpu", "host", "-m", mem, "-smp", "1",
                     "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
                     "-kernel", (char *)kernel, "-initrd", (char *)initrd, "-append", QEMU_CMDLINE, NULL };
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        die("pipe", NULL);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    double t0 = now_s();
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    if (e) {
        errno = e;
        die("cannot run qemu-system-x86_64", NULL);
    }
    static char buf[1 << 16];
    size_t used = 0;
    double t_ready = -1;
    while (t_ready < 0 && now_s() - t0 < QEMU_TIMEOUT_S) {
        struct pollfd p = { .fd = out[0], .events = POLLIN };
        if (poll(&p, 1, 1000) <= 0)
            continue;
        if (used == sizeof buf - 1)
            used = 0; /* the line we want is short: keep only recent output */
        ssize_t k = read(out[0], buf + used, sizeof buf - 1 - used);
        if (k <= 0)
            break;
        used += (size_t)k;
        buf[used] = 0;
        if (strstr(buf, "supermachine-agent: ready"))
            t_ready = now_s();
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(out[0]);
    if (t_ready < 0) {
        fprintf(stderr, "restore_bench: qemu's console never showed 'supermachine-agent: ready' in %d s\n",
                QEMU_TIMEOUT_S);
        exit(1);
    }
    return t_ready - t0;
}

/* ---- memory ------------------------------------------------------------------ */

static long long smaps_field(int pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long long v = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, klen) && line[klen] == ':') {
            v = strtoll(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static long long meminfo_kib(const char *key)
{
    char line[256];
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f)
        return -1;
    long long v = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, klen) && line[klen] == ':') {
            v = strtoll(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* ---- output ---------------------------------------------------------------- */

static void print_ms(const char *label, double p50, double p99)
{
    if (!ratios_only)
        printf("  %-40s p50 %8.1f ms   p99 %8.1f ms\n", label, p50 * 1e3, p99 * 1e3);
}

static void usage(void)
{
    fprintf(stderr, "usage: restore_bench [--ratios-only] [--restores N] [--boots N] [--idle N] [--confine-pairs N]\n"
                    "                     SNAPSHOT_DIR KERNEL INITRD\n");
    exit(2);
}

static int count_arg(const char *s, int max)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 1 || v > max)
        usage();
    return (int)v;
}

int main(int argc, char **argv)
{
    int restores = 100, boots = 5, idle = 50, split_runs = 10, pairs = 20;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--ratios-only"))
            ratios_only = 1;
        else if (!strcmp(argv[i], "--restores") && i + 1 < argc)
            restores = count_arg(argv[++i], 100000);
        else if (!strcmp(argv[i], "--boots") && i + 1 < argc)
            boots = count_arg(argv[++i], 1000);
        else if (!strcmp(argv[i], "--idle") && i + 1 < argc)
            idle = count_arg(argv[++i], 1000);
        else if (!strcmp(argv[i], "--confine-pairs") && i + 1 < argc)
            pairs = count_arg(argv[++i], 10000);
        else
            usage();
    }
    if (argc - i != 3)
        usage();
    kernel = argv[i + 1];
    initrd = argv[i + 2];
    sm_image *img;
    sm_error err = { 0 };
    if (sm_image_from_snapshot(argv[i], &img, &err))
        die("the snapshot", &err);
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("warming up: one restore, one cold boot, one qemu boot (not counted)\n");
    sm_vm *vm = start_vm(img);
    exec_true(vm);
    stop_vm(vm);
    stop_vm(start_vm(NULL));
    qemu_boot();

    /* 1 + 2: restore + exec of true; exits of the whole, after the timing. */
    printf("%d restores, each: start from the image, exec true, stats, stop\n", restores);
    double *ready = calloc((size_t)restores, sizeof *ready);
    double *exec = calloc((size_t)restores, sizeof *exec);
    double *total = calloc((size_t)restores, sizeof *total);
    struct exits *ex = calloc((size_t)restores, sizeof *ex);
    if (!ready || !exec || !total || !ex)
        die("calloc", NULL);
    for (int r = 0; r < restores; r++) {
        double t0 = now_s();
        vm = start_vm(img);
        double t1 = now_s();
        exec_true(vm);
        double t2 = now_s();
        read_exits(vm, &ex[r]);
        stop_vm(vm);
        ready[r] = t1 - t0;
        exec[r] = t2 - t1;
        total[r] = t2 - t0;
    }
    /* The exits up to ready and those of the exec alone, on a few more VMs. */
    double to_ready_exits[EX_KINDS][64], exec_exits[EX_KINDS][64];
    for (int r = 0; r < split_runs; r++) {
        struct exits a, b;
        vm = start_vm(img);
        read_exits(vm, &a);
        exec_true(vm);
        read_exits(vm, &b);
        stop_vm(vm);
        for (int k = 0; k < EX_KINDS; k++) {
            to_ready_exits[k][r] = a.n[k];
            exec_exits[k][r] = b.n[k] - a.n[k];
        }
    }

    /* 3: cold boots of ours; 4: QEMU's, alternating. */
    printf("%d cold boots of ours and %d of qemu -M microvm, alternating\n", boots, boots);
    double *cold = calloc((size_t)boots, sizeof *cold), *qemu = calloc((size_t)boots, sizeof *qemu);
    if (!cold || !qemu)
        die("calloc", NULL);
    for (int b = 0; b < boots; b++) {
        double t0 = now_s();
        vm = start_vm(NULL);
        cold[b] = now_s() - t0;
        stop_vm(vm);
        qemu[b] = qemu_boot();
    }

    /* 5: idle restored VMs held at once. */
    printf("%d idle restored VMs at once\n", idle);
    sm_vm **vms = calloc((size_t)idle, sizeof *vms);
    double *priv = calloc((size_t)idle, sizeof *priv), *rss = calloc((size_t)idle, sizeof *rss);
    if (!vms || !priv || !rss)
        die("calloc", NULL);
    long long avail0 = meminfo_kib("MemAvailable");
    int held = 0;
    for (; held < idle; held++) {
        sm_vm_config *c = sm_vm_config_new();
        sm_vm_config_image(c, img);
        sm_vm_config_boot_timeout_s(c, 120);
        sm_code rc = sm_vm_start(c, &vms[held], &err);
        sm_vm_config_free(c);
        if (rc) {
            printf("  VM %d did not start (%s): measuring the %d that did\n", held + 1, err.message, held);
            break;
        }
    }
    struct timespec settle = { .tv_sec = 2 };
    nanosleep(&settle, NULL); /* idle: let each finish what restore began */
    long long avail1 = meminfo_kib("MemAvailable");
    for (int v = 0; v < held; v++) {
        sm_vm_info info;
        if (sm_vm_get_info(vms[v], &info, &err))
            die("sm_vm_get_info", &err);
        long long pc = smaps_field(info.vmm_pid, "Private_Clean"), pd = smaps_field(info.vmm_pid, "Private_Dirty");
        long long r = smaps_field(info.vmm_pid, "Rss");
        if (pc < 0 || pd < 0 || r < 0) {
            fprintf(stderr, "restore_bench: cannot read /proc/%d/smaps_rollup\n", info.vmm_pid);
            exit(1);
        }
        priv[v] = (double)(pc + pd) / 1024.0;
        rss[v] = (double)r / 1024.0;
    }
    for (int v = 0; v < held; v++)
        stop_vm(vms[v]);

    /* 6: confined and unconfined VMMs, alternating. */
    printf("%d restores confined (seccomp filters and cell) and %d not, alternating\n", pairs, pairs);
    double *on = calloc((size_t)pairs, sizeof *on), *off = calloc((size_t)pairs, sizeof *off);
    if (!on || !off)
        die("calloc", NULL);
    for (int p = 0; p < 2 * pairs; p++) {
        bool confined = p % 2 == 0;
        if (confined)
            unsetenv("SUPERMACHINE_VMM_SECCOMP");
        else
            setenv("SUPERMACHINE_VMM_SECCOMP", "off", 1);
        double t0 = now_s();
        vm = start_vm(img);
        exec_true(vm);
        (confined ? on : off)[p / 2] = now_s() - t0;
        stop_vm(vm);
    }
    unsetenv("SUPERMACHINE_VMM_SECCOMP");

    /* ---- report ---- */
    double r50 = percentile(total, restores, 50), r99 = percentile(total, restores, 99);
    double rd50 = percentile(ready, restores, 50), rd99 = percentile(ready, restores, 99);
    double e50 = percentile(exec, restores, 50), e99 = percentile(exec, restores, 99);
    double c50 = percentile(cold, boots, 50), q50 = percentile(qemu, boots, 50);
    printf("\nrestore + exec of true, %d runs:\n", restores);
    print_ms("start from image to true's exit", r50, r99);
    print_ms("  start from image to ready", rd50, rd99);
    print_ms("  exec of true", e50, e99);
    printf("  p99 / p50 of start-to-exit                     %8.2f\n", r99 / r50);
    double on50 = percentile(on, pairs, 50), off50 = percentile(off, pairs, 50);
    printf("\nthe price of confinement, restore + exec of true, %d of each alternating:\n", pairs);
    if (!ratios_only) {
        print_ms("  confined (seccomp filters and cell)", on50, percentile(on, pairs, 99));
        print_ms("  unconfined", off50, percentile(off, pairs, 99));
    }
    printf("  ratio confined / unconfined (p50)              %8.3fx\n", on50 / off50);
    printf("\ncold boots (median of %d):\n", boots);
    if (!ratios_only) {
        printf("  %-40s %8.1f ms\n", "ours: start to ready", c50 * 1e3);
        printf("  %-40s %8.1f ms\n", "qemu -M microvm: start to init's line", q50 * 1e3);
    }
    printf("  ratio qemu boot / our restore+exec (p50)       %8.1fx   (target >= 20x in kvmbox)\n", q50 / r50);
    printf("  ratio qemu boot / our restore+exec (p99)       %8.1fx\n", q50 / r99);
    printf("  ratio our cold boot / our restore+exec (p50)   %8.1fx\n", c50 / r50);
    printf("  ratio qemu boot / our restore to ready (p50)   %8.1fx\n", q50 / rd50);
    printf("  ratio qemu boot / our cold boot                %8.2fx\n", q50 / c50);
    printf("\nVM exits (medians):\n");
    printf("  %-34s", "");
    for (int k = 0; k < EX_KINDS; k++)
        printf(" %7s", exit_names[k]);
    printf(" %7s\n", "total");
    double *tmp = calloc((size_t)(restores > split_runs ? restores : split_runs), sizeof *tmp);
    if (!tmp)
        die("calloc", NULL);
    printf("  %-34s", "restore + exec, whole");
    for (int k = 0; k < EX_KINDS; k++) {
        for (int r = 0; r < restores; r++)
            tmp[r] = ex[r].n[k];
        printf(" %7.0f", percentile(tmp, restores, 50));
    }
    for (int r = 0; r < restores; r++)
        tmp[r] = exits_total(&ex[r]);
    printf(" %7.0f\n", percentile(tmp, restores, 50));
    double (*parts[2])[64] = { to_ready_exits, exec_exits };
    const char *part_names[2] = { "  restore to ready (sync included)", "  exec of true" };
    for (int p = 0; p < 2; p++) {
        printf("  %-34s", part_names[p]);
        double sum[64] = { 0 };
        for (int k = 0; k < EX_KINDS; k++) {
            for (int r = 0; r < split_runs; r++) {
                tmp[r] = parts[p][k][r];
                sum[r] += parts[p][k][r];
            }
            printf(" %7.0f", percentile(tmp, split_runs, 50));
        }
        printf(" %7.0f   (%d VMs)\n", percentile(sum, split_runs, 50), split_runs);
    }
    printf("\nhost memory of %d idle restored VMs (guest memory %u MiB each):\n", held, GUEST_MIB);
    if (held > 0) {
        double p50 = percentile(priv, held, 50), pmax = percentile(priv, held, 100);
        double sum = 0;
        for (int v = 0; v < held; v++)
            sum += priv[v];
        printf("  private memory per VMM (smaps_rollup Private_*): median %.1f MiB, max %.1f MiB = %.1f%% / %.1f%% "
               "of the guest's\n", p50, pmax, 100.0 * p50 / GUEST_MIB, 100.0 * pmax / GUEST_MIB);
        printf("  RSS per VMM (shared snapshot pages included):     median %.1f MiB\n", percentile(rss, held, 50));
        printf("  all %d: %.0f MiB private, against %u MiB of guest memory (%.1f%%); host MemAvailable fell by "
               "%.0f MiB\n", held, sum, held * GUEST_MIB, 100.0 * sum / (held * GUEST_MIB),
               (double)(avail0 - avail1) / 1024.0);
    }
    free(tmp);
    free(ready);
    free(exec);
    free(total);
    free(ex);
    free(cold);
    free(qemu);
    free(vms);
    free(priv);
    free(rss);
    sm_image_free(img);
    return held == idle ? 0 : 3;
}
