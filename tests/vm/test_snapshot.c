/*
 * Snapshots through the library (issue 5), against real VMs restored from a
 * snapshot folder that tests/vm/test_snapshot.sh bakes first:
 *
 *   - restore, exec, snapshot again, restore that (twice): the same command
 *     gives the same results; a file written before the snapshot is in the
 *     next VM, one written after it is not; the VM goes on after its snapshot;
 *   - clone safety: two VMs restored from one snapshot, running side by side,
 *     read different /proc/sys/kernel/random/uuid and /dev/urandom bytes;
 *     `date +%s` in a VM restored from a snapshot taken long ago (>= 5 s) is
 *     within one second of this host's clock;
 *   - N restores in a row (SM_SNAPSHOT_RESTORES, default 100), each running
 *     `true`, leak nothing: descriptors, threads, children, VMM processes,
 *     VM folders, runtime files, this process's memory, the host's shared
 *     memory (tmpfs) and available memory; the snapshot itself is unchanged;
 *   - a damaged snapshot is refused by sm_vm_start with the VMM's reason,
 *     and nothing is left behind.
 *
 * Environment: SM_SNAPSHOT_DIR (required: a snapshot folder, state + memory),
 * SM_SNAPSHOT_RESTORES, SM_TEST_FILTER (a cmocka test name pattern). Runs in
 * its own runtime folder (XDG_RUNTIME_DIR is set to a fresh temporary one),
 * which must be empty at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <zlib.h>
#include <linux/kvm.h>

#include "base/clock.h"
#include "helpers/vm_dirs.h"
#include "supermachine.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1 /* ASan's quarantine holds freed memory: RSS says nothing */
#else
#define UNDER_ASAN 0
#endif

/* How old the snapshot must be for the clock test to mean something: a
 * restored guest without the host's clock would be at least this far behind. */
#define CLOCK_SNAPSHOT_AGE_S 5

static char runtime_dir[128];
static char vms_dir[256];
static const char *snapshot_dir;
static sm_image *base_image;

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int vm_folders(void)
{
    int n = count_entries(vms_dir);
    return n < 0 ? 0 : n;
}

/* A number from a "Key:   N kB" line of a /proc file; -1 if absent. */
static long long proc_field(const char *path, const char *key)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[256];
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

/* Processes whose command line is supermachine-vmm's and mentions our
 * runtime folder (where every VM of ours keeps its sockets). */
static int our_vmm_processes(void)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[4096];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0)
            continue;
        for (ssize_t i = 0; i < len; i++)
            if (!buf[i])
                buf[i] = ' ';
        buf[len] = 0;
        if (strstr(buf, "supermachine-vmm") && strstr(buf, runtime_dir))
            n++;
    }
    closedir(d);
    return n;
}

/* What a snapshot folder holds: restores must not change it. The memory
 * file's content is taken as its non-zero pages (offset and bytes), read
 * through its data extents: on tmpfs, guests' faults on holes of the
 * mapping allocate zero pages in the file (more allocated blocks, the same
 * content), which is a cost (reported) but no change. */
struct folder_print {
    char state_sum[80];        /* size and a checksum of the state file's bytes */
    long long state_mtime_ns;
    long long mem_size, mem_mtime_ns;
    unsigned long mem_sum;     /* CRC-32 over the non-zero pages and their offsets */
    long long mem_nonzero_pages;
    long long mem_allocated;   /* bytes the file takes (not compared) */
    int entries;
};

static long long mtime_ns(const struct stat *st)
{
    return (long long)st->st_mtim.tv_sec * 1000000000ll + st->st_mtim.tv_nsec;
}

static void memory_content(const char *path, struct folder_print *p)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    static uint8_t page[4096], zero[4096];
    uLong crc = crc32(0L, Z_NULL, 0);
    off_t end = lseek(fd, 0, SEEK_END);
    for (off_t pos = lseek(fd, 0, SEEK_DATA); pos >= 0 && pos < end;) {
        off_t hole = lseek(fd, pos, SEEK_HOLE);
        assert_true(hole > pos);
        for (off_t off = pos & ~(off_t)4095; off < hole; off += 4096) {
            ssize_t k = pread(fd, page, sizeof page, off);
            assert_int_equal(k, 4096);
            if (!memcmp(page, zero, sizeof page))
                continue;
            uint64_t at = (uint64_t)off;
            crc = crc32(crc, (const Bytef *)&at, sizeof at);
            crc = crc32(crc, page, sizeof page);
            p->mem_nonzero_pages++;
        }
        pos = lseek(fd, hole, SEEK_DATA);
    }
    close(fd);
    p->mem_sum = crc;
}

static void fingerprint(const char *dir, struct folder_print *p)
{
    char path[512];
    struct stat st;
    memset(p, 0, sizeof *p);
    snprintf(path, sizeof path, "%s/memory", dir);
    assert_int_equal(stat(path, &st), 0);
    p->mem_size = (long long)st.st_size;
    p->mem_allocated = (long long)st.st_blocks * 512;
    p->mem_mtime_ns = mtime_ns(&st);
    memory_content(path, p);
    snprintf(path, sizeof path, "%s/state", dir);
    FILE *f = fopen(path, "re");
    assert_non_null(f);
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    long long size = 0;
    for (int c; (c = fgetc(f)) != EOF; size++)
        h = (h ^ (uint8_t)c) * 1099511628211ull;
    fclose(f);
    assert_int_equal(stat(path, &st), 0);
    p->state_mtime_ns = mtime_ns(&st);
    snprintf(p->state_sum, sizeof p->state_sum, "%lld:%016llx", size, (unsigned long long)h);
    p->entries = count_entries(dir);
}

static void assert_same_print(const struct folder_print *a, const struct folder_print *b, const char *what)
{
    print_message("%s: memory file allocated %lld -> %lld MiB (%lld non-zero pages)\n", what,
                  a->mem_allocated >> 20, b->mem_allocated >> 20, b->mem_nonzero_pages);
    if (strcmp(a->state_sum, b->state_sum) || a->state_mtime_ns != b->state_mtime_ns)
        fail_msg("%s: the state file changed (%s -> %s)", what, a->state_sum, b->state_sum);
    if (a->mem_size != b->mem_size || a->mem_mtime_ns != b->mem_mtime_ns)
        fail_msg("%s: the memory file changed (size %lld -> %lld, mtime %lld -> %lld)", what, a->mem_size,
                 b->mem_size, a->mem_mtime_ns, b->mem_mtime_ns);
    if (a->mem_sum != b->mem_sum || a->mem_nonzero_pages != b->mem_nonzero_pages)
        fail_msg("%s: the memory file's content changed (%lld non-zero pages, crc %08lx -> %lld, %08lx)", what,
                 a->mem_nonzero_pages, a->mem_sum, b->mem_nonzero_pages, b->mem_sum);
    if (a->entries != b->entries)
        fail_msg("%s: the folder had %d entries, now %d", what, a->entries, b->entries);
}

/* ---- VMs ---------------------------------------------------------------- */

static sm_vm *start_from(const sm_image *img)
{
    sm_vm_config *c = sm_vm_config_new();
    assert_non_null(c);
    assert_int_equal(sm_vm_config_image(c, img), SM_OK);
    assert_int_equal(sm_vm_config_boot_timeout_s(c, 120), SM_OK);
    sm_vm *v = NULL;
    sm_error err = { 0 };
    sm_code rc = sm_vm_start(c, &v, &err);
    sm_vm_config_free(c);
    if (rc)
        fail_msg("sm_vm_start from %s: %s", sm_image_dir(img), err.message);
    return v;
}

static void stop_vm(sm_vm *v)
{
    sm_error err = { 0 };
    if (sm_vm_stop(v, &err))
        fail_msg("sm_vm_stop: %s", err.message);
    sm_vm_free(v);
}

/* Runs `sh -c script` in v; returns its stdout (malloc'd) and exit code. */
static char *run_sh(sm_vm *v, const char *script, int *code)
{
    sm_exec_builder *b = sm_vm_exec_builder(v);
    assert_non_null(b);
    const char *argv[] = { "sh", "-c", script };
    assert_int_equal(sm_exec_builder_argv(b, 3, argv), SM_OK);
    assert_int_equal(sm_exec_builder_timeout_ms(b, 60000), SM_OK);
    sm_exec_outcome out = { 0 };
    sm_error err = { 0 };
    sm_code rc = sm_exec_output(b, &out, &err);
    sm_exec_builder_free(b);
    if (rc)
        fail_msg("exec of '%s' in VM %s: %s", script, sm_vm_id(v), err.message);
    if (out.stderr_len)
        print_message("stderr of '%s': %s\n", script, (const char *)out.stderr_buf);
    *code = out.status.code;
    char *s = strdup((const char *)out.stdout_buf);
    sm_exec_outcome_free(&out);
    assert_non_null(s);
    return s;
}

/* The same command in each generation of the snapshot: facts of the guest
 * that a faithful restore keeps (kernel, devices, files, a running shell's
 * arithmetic), and an exit code. */
#define PROBE "echo $((6 * 7)); uname -srvm; ls /dev | md5sum; md5sum /init; wc -c < /proc/cmdline; " \
              "grep -c processor /proc/cpuinfo; test -e /srv/after && echo after-present; exit 5"

struct probe_result {
    char *out;
    int code;
};

static void probe(sm_vm *v, struct probe_result *r)
{
    r->out = run_sh(v, PROBE, &r->code);
}

static void assert_same_probe(const struct probe_result *a, const struct probe_result *b, const char *what)
{
    if (a->code != b->code || strcmp(a->out, b->out))
        fail_msg("%s: the probe gave status %d and\n%s\nwhere the first VM gave status %d and\n%s", what,
                 b->code, b->out, a->code, a->out);
}

/* Bytes no guest holds yet: fresh for every run of the test. */
static void fill_marker(uint8_t *buf, size_t len)
{
    uint64_t x = (uint64_t)time(NULL) * 6364136223846793005ull + (uint64_t)getpid();
    for (size_t i = 0; i < len; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (uint8_t)(x >> 56);
    }
}

static void snapshot_into(sm_vm *v, const char *dir)
{
    sm_error err = { 0 };
    uint64_t t0 = clock_now_ms();
    if (sm_vm_snapshot(v, dir, &err))
        fail_msg("sm_vm_snapshot of VM %s into %s: %s", sm_vm_id(v), dir, err.message);
    print_message("snapshot of VM %s into %s: %llu ms\n", sm_vm_id(v), dir, (unsigned long long)(clock_now_ms() - t0));
}

static long long vmm_rss_kib(sm_vm *v)
{
    sm_vm_info info;
    assert_int_equal(sm_vm_get_info(v, &info, NULL), SM_OK);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", info.vmm_pid);
    return proc_field(path, "VmRSS");
}

static sm_image *image_at(const char *dir)
{
    sm_image *img = NULL;
    sm_error err = { 0 };
    if (sm_image_from_snapshot(dir, &img, &err))
        fail_msg("sm_image_from_snapshot(%s): %s", dir, err.message);
    return img;
}

/* Restore, exec, snapshot again, restore that; then once more from there. */
static void test_resnapshot_same_results(void **state)
{
    (void)state;
    struct folder_print before, after;
    fingerprint(snapshot_dir, &before);
    char gen2[200], gen3[200];
    snprintf(gen2, sizeof gen2, "%s/gen2", runtime_dir);
    snprintf(gen3, sizeof gen3, "%s/gen3", runtime_dir);
    static uint8_t warm[64 * 1024];
    fill_marker(warm, sizeof warm);

    /* Generation 1: restored from the baked snapshot. */
    sm_vm *a = start_from(base_image);
    struct probe_result p1, p2, p3;
    probe(a, &p1);
    print_message("probe in the first VM (status %d):\n%s", p1.code, p1.out);
    assert_int_equal(p1.code, 5);
    assert_non_null(strstr(p1.out, "42\n"));
    sm_error err = { 0 };
    if (sm_vm_write_file(a, "/srv/warm", warm, sizeof warm, 0600, &err))
        fail_msg("write /srv/warm: %s", err.message);
    long long rss_before = vmm_rss_kib(a);
    snapshot_into(a, gen2);
    print_message("VM %s's VMM: RSS %lld kB before its snapshot, %lld kB after\n", sm_vm_id(a), rss_before,
                  vmm_rss_kib(a));
    /* The VM goes on after its snapshot; what it writes now is its own. */
    int code;
    char *s = run_sh(a, "echo still running; echo later > /srv/after && cat /srv/after", &code);
    assert_string_equal(s, "still running\nlater\n");
    free(s);
    stop_vm(a);

    /* Generation 2: the warm file is there, the later one is not. */
    sm_image *img2 = image_at(gen2);
    sm_vm *b = start_from(img2);
    probe(b, &p2);
    assert_same_probe(&p1, &p2, "restored from the second snapshot");
    uint8_t *got = NULL;
    size_t len = 0;
    if (sm_vm_read_file(b, "/srv/warm", 0, &got, &len, &err))
        fail_msg("read /srv/warm in the second generation: %s", err.message);
    assert_int_equal(len, sizeof warm);
    if (memcmp(got, warm, sizeof warm))
        fail_msg("/srv/warm came back with other bytes");
    free(got);
    got = NULL;
    sm_code rc = sm_vm_read_file(b, "/srv/after", 0, &got, &len, &err);
    if (rc != SM_E_NOTFOUND)
        fail_msg("/srv/after, written after the snapshot, is in the next VM: %s (%s)", sm_strerror(rc),
                 rc == SM_OK ? (const char *)got : err.message);
    free(got);
    /* Generation 3: a snapshot of a restored-from-a-snapshot VM. */
    snapshot_into(b, gen3);
    stop_vm(b);
    sm_image *img3 = image_at(gen3);
    sm_vm *c = start_from(img3);
    probe(c, &p3);
    assert_same_probe(&p1, &p3, "restored from the third snapshot");
    got = NULL;
    if (sm_vm_read_file(c, "/srv/warm", 0, &got, &len, &err))
        fail_msg("read /srv/warm in the third generation: %s", err.message);
    if (len != sizeof warm || memcmp(got, warm, sizeof warm))
        fail_msg("/srv/warm came back from the third generation with other bytes");
    free(got);
    stop_vm(c);
    sm_image_free(img2);
    sm_image_free(img3);
    free(p1.out);
    free(p2.out);
    free(p3.out);
    fingerprint(snapshot_dir, &after);
    assert_same_print(&before, &after, "the baked snapshot after three generations");
    assert_int_equal(vm_folders(), 0);
}

/* ---- clone safety -------------------------------------------------------- */

static void test_clones_differ(void **state)
{
    (void)state;
    sm_vm *a = start_from(base_image);
    sm_vm *b = start_from(base_image); /* both run at once */
    const char *script = "cat /proc/sys/kernel/random/uuid; od -An -tx1 -N32 /dev/urandom | tr -d ' \\n'";
    int ca, cb;
    char *oa = run_sh(a, script, &ca);
    char *ob = run_sh(b, script, &cb);
    print_message("VM %s: %s\nVM %s: %s\n", sm_vm_id(a), oa, sm_vm_id(b), ob);
    assert_int_equal(ca, 0);
    assert_int_equal(cb, 0);
    char *nl_a = strchr(oa, '\n'), *nl_b = strchr(ob, '\n');
    assert_non_null(nl_a);
    assert_non_null(nl_b);
    *nl_a = *nl_b = 0;
    assert_int_equal(strlen(oa), 36);
    assert_int_equal(strlen(nl_a + 1), 64);
    assert_int_equal(strlen(nl_b + 1), 64);
    if (!strcmp(oa, ob))
        fail_msg("two restored VMs read the same uuid %s", oa);
    if (!strcmp(nl_a + 1, nl_b + 1))
        fail_msg("two restored VMs read the same 32 bytes of /dev/urandom: %s", nl_a + 1);
    free(oa);
    free(ob);
    stop_vm(a);
    stop_vm(b);
    assert_int_equal(vm_folders(), 0);
}

static void test_clock_after_long_ago(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/state", snapshot_dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    double taken = (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec / 1e9;
    double age = wall_s() - taken;
    if (age < CLOCK_SNAPSHOT_AGE_S) {
        struct timespec ts = { .tv_sec = (time_t)(CLOCK_SNAPSHOT_AGE_S - age) + 1 };
        nanosleep(&ts, NULL);
    }
    sm_vm *v = start_from(base_image);
    int code;
    double t0 = wall_s();
    char *s = run_sh(v, "date +%s", &code);
    double t1 = wall_s();
    assert_int_equal(code, 0);
    long long guest = strtoll(s, NULL, 10);
    print_message("snapshot %.1f s old; host %.3f..%.3f, guest date +%%s %lld\n", t1 - taken, t0, t1, guest);
    free(s);
    stop_vm(v);
    /* The guest's whole second [guest, guest + 1) must come within a second
     * of the host's interval [t0, t1]. */
    if ((double)guest + 1 < t0 - 1 || (double)guest > t1 + 1)
        fail_msg("the guest's clock says %lld, the host's %.3f..%.3f: more than a second apart (the "
                 "snapshot was taken %.1f s before)", guest, t0, t1, t1 - taken);
}

/* ---- many restores ------------------------------------------------------- */

/* What the baked snapshot's memory file takes on its file system. */
static long long image_allocated_kib(void)
{
    char path[300];
    struct stat st;
    snprintf(path, sizeof path, "%s/memory", snapshot_dir);
    assert_int_equal(stat(path, &st), 0);
    return (long long)st.st_blocks / 2;
}

static int count_fds(void)
{
    return count_entries("/proc/self/fd") - 1; /* the one opendir holds */
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_restores_leak_nothing(void **state)
{
    (void)state;
    const char *env = getenv("SM_SNAPSHOT_RESTORES");
    int n = env && *env ? atoi(env) : 100;
    assert_true(n >= 1 && n <= 100000);
    struct folder_print print0, print1;
    fingerprint(snapshot_dir, &print0);
    /* One restore first: what the library sets up once (and the page cache)
     * is not a leak. */
    stop_vm(start_from(base_image));
    int fds0 = count_fds();
    long long threads0 = proc_field("/proc/self/status", "Threads");
    long long rss0 = proc_field("/proc/self/status", "VmRSS");
    long long shmem0 = proc_field("/proc/meminfo", "Shmem");
    long long image0 = image_allocated_kib();
    long long avail0 = proc_field("/proc/meminfo", "MemAvailable");
    int rt_entries0 = count_entries(runtime_dir);
    uint64_t *ms = calloc((size_t)n, sizeof *ms);
    assert_non_null(ms);
    uint64_t all0 = clock_now_ms();
    for (int i = 0; i < n; i++) {
        uint64_t t0 = clock_now_ms();
        sm_vm *v = start_from(base_image);
        sm_exec_builder *b = sm_vm_exec_builder(v);
        const char *argv[] = { "true" };
        sm_exec_builder_argv(b, 1, argv);
        sm_exec_outcome out = { 0 };
        sm_error err = { 0 };
        sm_code rc = sm_exec_output(b, &out, &err);
        sm_exec_builder_free(b);
        if (rc || out.status.code != 0)
            fail_msg("restore %d: true gave %s, status %d: %s", i + 1, sm_strerror(rc), out.status.code,
                     err.message);
        sm_exec_outcome_free(&out);
        stop_vm(v);
        ms[i] = clock_now_ms() - t0;
    }
    uint64_t all = clock_now_ms() - all0;
    int fds1 = count_fds();
    long long threads1 = proc_field("/proc/self/status", "Threads");
    long long rss1 = proc_field("/proc/self/status", "VmRSS");
    long long shmem1 = proc_field("/proc/meminfo", "Shmem");
    long long image1 = image_allocated_kib();
    long long avail1 = proc_field("/proc/meminfo", "MemAvailable");
    qsort(ms, (size_t)n, sizeof *ms, cmp_u64);
    print_message("%d restores, each start + true + stop: %llu ms in all; median %llu ms, max %llu ms\n", n,
                  (unsigned long long)all, (unsigned long long)ms[n / 2], (unsigned long long)ms[n - 1]);
    print_message("after %d restores: fds %d -> %d, threads %lld -> %lld, RSS %lld -> %lld kB, host Shmem %lld "
                  "-> %lld kB (the snapshot's memory file %lld -> %lld kB of it), MemAvailable %lld -> %lld kB\n",
                  n, fds0, fds1, threads0, threads1, rss0, rss1, shmem0, shmem1, image0, image1, avail0, avail1);
    free(ms);
    assert_int_equal(fds1, fds0);
    assert_int_equal(threads1, threads0);
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* no child left, not even a zombie */
    assert_int_equal(errno, ECHILD);
    assert_int_equal(our_vmm_processes(), 0);
    assert_int_equal(vm_folders(), 0);
    assert_int_equal(count_entries(runtime_dir), rt_entries0);
    /* This process: a few hundred kB of allocator slack at most, never a
     * per-restore amount (ASan's quarantine makes RSS meaningless there;
     * LeakSanitizer checks the heap at exit instead). */
    if (!UNDER_ASAN && rss1 - rss0 > 2048)
        fail_msg("this process grew by %lld kB over %d restores", rss1 - rss0, n);
    /* The host: no files left on tmpfs (Shmem), no memory kept (a leaked
     * guest would keep its private pages, several MiB each). The snapshot's
     * own memory file, when on tmpfs, takes the zero pages guests fault in
     * from its holes (see folder_print): that growth is counted apart. */
    long long image_growth = image1 - image0;
    if (shmem1 - shmem0 - image_growth > 4096)
        fail_msg("host shared memory (tmpfs) grew by %lld kB over %d restores, %lld kB of it outside the "
                 "snapshot", shmem1 - shmem0, n, shmem1 - shmem0 - image_growth);
    if (avail0 - avail1 - image_growth > 131072)
        fail_msg("host MemAvailable fell by %lld kB over %d restores", avail0 - avail1, n);
    fingerprint(snapshot_dir, &print1);
    assert_same_print(&print0, &print1, "the snapshot after the restores");
}

/* ---- a damaged snapshot through the library ----------------------------- */

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, k, out), k);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void test_damaged_snapshot_refused(void **state)
{
    (void)state;
    char dir[200], path[300], from[300];
    snprintf(dir, sizeof dir, "%s/damaged", runtime_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(from, sizeof from, "%s/state", snapshot_dir);
    snprintf(path, sizeof path, "%s/state", dir);
    copy_file(from, path);
    /* One flipped bit past the header: the body's CRC must catch it. */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 100, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, 100, SEEK_SET), 0);
    fputc(c ^ 0x10, f);
    assert_int_equal(fclose(f), 0);
    snprintf(from, sizeof from, "%s/memory", snapshot_dir);
    snprintf(path, sizeof path, "%s/memory", dir);
    assert_int_equal(symlink(from, path), 0);
    sm_image *img = image_at(dir);
    sm_vm_config *cfg = sm_vm_config_new();
    sm_vm_config_image(cfg, img);
    sm_vm *v = NULL;
    sm_error err = { 0 };
    uint64_t t0 = clock_now_ms();
    sm_code rc = sm_vm_start(cfg, &v, &err);
    uint64_t took = clock_now_ms() - t0;
    sm_vm_config_free(cfg);
    sm_image_free(img);
    print_message("start from a damaged snapshot: %s after %llu ms: %s\n", sm_strerror(rc),
                  (unsigned long long)took, err.message);
    assert_int_not_equal(rc, SM_OK);
    assert_null(v);
    assert_non_null(strstr(err.message, "checksum mismatch"));
    assert_non_null(strstr(err.message, dir));
    assert_true(took < 30000);
    assert_int_equal(vm_folders(), 0);
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

/* ---- damage mode: test_snapshot --damage STATE ACTION [ARGS] ------------
 *
 * Damages a copy of a state file in place, for test_snapshot.sh (a C tool
 * here, not a script: interpreters start slowly over kvmbox's 9p root).
 *
 *   flip OFFSET         xor the byte at OFFSET with 0x10 (CRCs left alone)
 *   magic               overwrite the magic "SMSNAP\r\n"
 *   version N           set the format version, re-seal the header CRC
 *   swap A B            swap sections A and B, re-seal both CRCs; a section
 *                       is TYPE or TYPE:INDEX (VM CPUID VCPU IRQCHIP PIT
 *                       CLOCK DEVICE END), e.g. swap DEVICE:2 DEVICE:3
 *   section-len A LEN   set section A's payload length, re-seal
 *   vm-cpus N           set the VM section's vCPU count, re-seal
 *   list                print each section: type index length offset
 *   vcpus               print each vCPU's run state, RIP, CPL (CS.DPL), CS
 *                       and TR types: where the snapshot stopped each vCPU
 *
 * The layout is that of src/snapshot/format.h, read here independently: a
 * 32-byte header (magic, version, header size, section count, total size,
 * CRC-32 of [32, total) at 24, CRC-32 of [0, 28) at 28), then sections of a
 * 16-byte header (type u32, index u32, length u64) and a payload padded to
 * 8 bytes; little endian (this host's order, x86-64). */

static const char *const section_types[] = { "", "VM", "CPUID", "VCPU", "IRQCHIP", "PIT", "CLOCK", "DEVICE", "END" };
#define SECTION_TYPES (sizeof section_types / sizeof section_types[0])

struct damage_file {
    uint8_t *buf;
    size_t len;
};

static uint32_t le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

/* The offset of section number k's header, or 0 when the file has fewer. */
static size_t section_at(const struct damage_file *f, uint32_t k, uint64_t *len_out)
{
    if (f->len < 32)
        return 0;
    size_t pos = 32;
    for (uint32_t i = 0; i < le32(f->buf + 16); i++) {
        if (pos + 16 > f->len)
            return 0;
        uint64_t len;
        memcpy(&len, f->buf + pos + 8, 8);
        if (i == k) {
            *len_out = len;
            return pos;
        }
        if (len > f->len)
            return 0;
        pos += 16 + (size_t)((len + 7) & ~7ull);
    }
    return 0;
}

/* The section named TYPE or TYPE:INDEX: its offset and padded size. */
static int find_section(const struct damage_file *f, const char *name, size_t *at, size_t *size)
{
    char type[16];
    unsigned index = 0;
    const char *colon = strchr(name, ':');
    size_t tlen = colon ? (size_t)(colon - name) : strlen(name);
    if (tlen >= sizeof type)
        return -1;
    memcpy(type, name, tlen);
    type[tlen] = 0;
    if (colon)
        index = (unsigned)strtoul(colon + 1, NULL, 10);
    for (uint32_t k = 0;; k++) {
        uint64_t len;
        size_t pos = section_at(f, k, &len);
        if (!pos)
            break;
        uint32_t t = le32(f->buf + pos);
        if (t < SECTION_TYPES && !strcmp(section_types[t], type) && le32(f->buf + pos + 4) == index) {
            *at = pos;
            *size = 16 + (size_t)((len + 7) & ~7ull);
            return 0;
        }
    }
    fprintf(stderr, "test_snapshot --damage: no section %s\n", name);
    return -1;
}

static void reseal(struct damage_file *f)
{
    put32(f->buf + 20, (uint32_t)f->len);
    put32(f->buf + 24, (uint32_t)crc32(crc32(0L, Z_NULL, 0), f->buf + 32, (uInt)(f->len - 32)));
    put32(f->buf + 28, (uint32_t)crc32(crc32(0L, Z_NULL, 0), f->buf, 28));
}

static int damage_swap(struct damage_file *f, const char *a_name, const char *b_name)
{
    size_t a, asz, b, bsz;
    if (find_section(f, a_name, &a, &asz) || find_section(f, b_name, &b, &bsz))
        return -1;
    if (a > b) {
        size_t t = a, tsz = asz;
        a = b, asz = bsz;
        b = t, bsz = tsz;
    }
    /* [a: A][middle][b: B] -> [B][middle][A] */
    uint8_t *copy = malloc(b + bsz - a);
    if (!copy)
        return -1;
    size_t mid = b - (a + asz);
    memcpy(copy, f->buf + b, bsz);
    memcpy(copy + bsz, f->buf + a + asz, mid);
    memcpy(copy + bsz + mid, f->buf + a, asz);
    memcpy(f->buf + a, copy, b + bsz - a);
    free(copy);
    reseal(f);
    return 0;
}

/* The head of a VCPU section's payload (struct snap_vcpu of src/snapshot/kvm_state.c). */
struct vcpu_head {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_xcrs xcrs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    struct kvm_mp_state mp_state;
};

static void print_vcpus(const struct damage_file *f)
{
    for (uint32_t k = 0;; k++) {
        uint64_t len;
        size_t pos = section_at(f, k, &len);
        if (!pos)
            break;
        if (le32(f->buf + pos) != 3 || len < sizeof(struct vcpu_head) || pos + 16 + len > f->len)
            continue;
        struct vcpu_head h;
        memcpy(&h, f->buf + pos + 16, sizeof h);
        printf("vcpu %u mp_state %u rip 0x%llx cpl %u cs_type %u tr_type %u exception %s\n", le32(f->buf + pos + 4),
               h.mp_state.mp_state, (unsigned long long)h.regs.rip, h.sregs.cs.dpl, h.sregs.cs.type,
               h.sregs.tr.type, h.events.exception.injected || h.events.exception.pending ? "pending" : "none");
    }
}

static int damage_main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_snapshot --damage STATE flip OFFSET | magic | version N | swap A B | "
                        "section-len A LEN | vm-cpus N | list | vcpus\n");
        return 2;
    }
    const char *path = argv[0], *action = argv[1];
    struct damage_file f = { 0 };
    FILE *in = fopen(path, "rb");
    if (!in) {
        perror(path);
        return 1;
    }
    f.buf = malloc(64u << 20);
    f.len = f.buf ? fread(f.buf, 1, 64u << 20, in) : 0;
    fclose(in);
    if (f.len < 32) {
        fprintf(stderr, "test_snapshot --damage: %s is not a state file\n", path);
        return 1;
    }
    int rc = 0, write = 1;
    if (!strcmp(action, "vcpus")) {
        write = 0;
        print_vcpus(&f);
    } else if (!strcmp(action, "list")) {
        write = 0;
        for (uint32_t k = 0;; k++) {
            uint64_t len;
            size_t pos = section_at(&f, k, &len);
            if (!pos)
                break;
            uint32_t t = le32(f.buf + pos);
            printf("%s %u %llu %zu\n", t < SECTION_TYPES ? section_types[t] : "?", le32(f.buf + pos + 4),
                   (unsigned long long)len, pos);
        }
    } else if (!strcmp(action, "flip") && argc == 3 && strtoul(argv[2], NULL, 10) < f.len) {
        f.buf[strtoul(argv[2], NULL, 10)] ^= 0x10;
    } else if (!strcmp(action, "magic")) {
        memcpy(f.buf, "NOTASNAP", 8);
    } else if (!strcmp(action, "version") && argc == 3) {
        put32(f.buf + 8, (uint32_t)strtoul(argv[2], NULL, 10));
        put32(f.buf + 28, (uint32_t)crc32(crc32(0L, Z_NULL, 0), f.buf, 28));
    } else if (!strcmp(action, "swap") && argc == 4) {
        rc = damage_swap(&f, argv[2], argv[3]);
    } else if (!strcmp(action, "section-len") && argc == 4) {
        size_t at, size;
        uint64_t len = strtoull(argv[3], NULL, 10);
        rc = find_section(&f, argv[2], &at, &size);
        if (!rc) {
            memcpy(f.buf + at + 8, &len, 8);
            reseal(&f);
        }
    } else if (!strcmp(action, "vm-cpus") && argc == 3) {
        size_t at, size;
        rc = find_section(&f, "VM", &at, &size);
        if (!rc) {
            put32(f.buf + at + 16 + 8, (uint32_t)strtoul(argv[2], NULL, 10)); /* after mem_bytes (u64) */
            reseal(&f);
        }
    } else {
        fprintf(stderr, "test_snapshot --damage: bad action or arguments: %s\n", action);
        rc = 2;
    }
    if (!rc && write) {
        FILE *out = fopen(path, "wb");
        if (!out || fwrite(f.buf, 1, f.len, out) != f.len || fclose(out) != 0) {
            perror(path);
            rc = 1;
        }
    }
    free(f.buf);
    return rc < 0 ? 1 : rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "--damage"))
        return damage_main(argc - 2, argv + 2);
    snapshot_dir = getenv("SM_SNAPSHOT_DIR");
    if (!snapshot_dir || !*snapshot_dir) {
        fprintf(stderr, "test_snapshot: set SM_SNAPSHOT_DIR to a snapshot folder "
                        "(supermachine-vmm --snapshot-when-ready DIR makes one)\n");
        return 1;
    }
    sm_error err = { 0 };
    if (sm_image_from_snapshot(snapshot_dir, &base_image, &err)) {
        fprintf(stderr, "test_snapshot: %s\n", err.message);
        return 1;
    }
    snprintf(runtime_dir, sizeof runtime_dir, "/tmp/sm-snapshot.XXXXXX");
    if (!mkdtemp(runtime_dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("XDG_RUNTIME_DIR", runtime_dir, 1);
    snprintf(vms_dir, sizeof vms_dir, "%s/supermachine/vms", runtime_dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnapshot_same_results),
        cmocka_unit_test(test_clones_differ),
        cmocka_unit_test(test_clock_after_long_ago),
        cmocka_unit_test(test_restores_leak_nothing),
        cmocka_unit_test(test_damaged_snapshot_refused),
    };
    const char *filter = getenv("SM_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    int failed = cmocka_run_group_tests_name("snapshots", tests, NULL, NULL);
    sm_image_free(base_image);
    int left = vm_folders();
    if (left) {
        fprintf(stderr, "FAIL: %d VM folder(s) left in %s\n", left, vms_dir);
        failed++;
    }
    char cmd[600];
    if (failed) { /* what the VMMs of the VMs a failed test left said */
        snprintf(cmd, sizeof cmd, "for d in '%s'/*/; do [ -d \"$d\" ] || continue; echo \"== $d\"; "
                 "tail -n 15 \"$d/vmm.log\" \"$d/console.log\" 2>&1; done >&2", vms_dir);
        (void)!system(cmd);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", runtime_dir);
    if (system(cmd) != 0)
        failed++;
    return failed ? 1 : 0;
}
