/*
 * The VM lifecycle API (sm_vm_*) against real VMs: start, exec, files, big
 * streams both ways, concurrency, a guest that stops reading, a VMM killed
 * mid-exec, and that nothing is left behind. Needs a host that runs guests
 * (tests/vm/test_exec_vm.sh runs it, inside tools/kvmbox when needed). The
 * kernel, initramfs and VMM are found by the library's own lookup (the build
 * tree, since this binary lives in BUILD/tests).
 *
 * Runs in its own runtime folder (XDG_RUNTIME_DIR is set to a fresh
 * temporary folder), which must be empty at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
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

#include "base/clock.h"
#include "helpers/vm_dirs.h"
#include "supermachine.h"

#define MIB (1u << 20)
/* The big streams' size: 100 blocks of about 1 MiB, or SM_STREAM_BLOCKS.
 * The ASan pass (tests/vm/test_exec_vm.sh) asks for fewer: its VMM is
 * instrumented too, and size adds no coverage there, only minutes. */
static unsigned stream_blocks = 100;
#define BIG_STREAM (stream_blocks * MIB)

static char runtime_dir[128];
static sm_vm *vm; /* the VM of the "one VM" group */

static char vms_dir[256];

/* How many entries RUNTIME/supermachine/vms holds (VM folders). */
static int vm_folders(void)
{
    return count_visible_entries(vms_dir);
}

/* Feeds bytes to `md5sum` on this host; md5_finish gives the hex digest. */
struct md5 {
    FILE *p;
    char out[160];
};

static void md5_start(struct md5 *m)
{
    snprintf(m->out, sizeof m->out, "%s/md5.out", runtime_dir);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "md5sum > %s", m->out);
    m->p = popen(cmd, "w");
    assert_non_null(m->p);
}

static void md5_add(struct md5 *m, const void *p, size_t n)
{
    assert_int_equal(fwrite(p, 1, n, m->p), n);
}

static void md5_finish(struct md5 *m, char hex[33])
{
    assert_int_equal(pclose(m->p), 0);
    FILE *f = fopen(m->out, "r");
    assert_non_null(f);
    assert_non_null(fgets(hex, 33, f));
    fclose(f);
    unlink(m->out);
    assert_int_equal(strlen(hex), 32);
}

static sm_exec_builder *vm_builder(const char *script)
{
    sm_exec_builder *b = sm_vm_exec_builder(vm);
    assert_non_null(b);
    const char *argv[] = { "sh", "-c", script };
    assert_int_equal(sm_exec_builder_argv(b, 3, argv), SM_OK);
    return b;
}

static void must_output(sm_exec_builder *b, sm_exec_outcome *out)
{
    sm_error err = { 0 };
    sm_code rc = sm_exec_output(b, out, &err);
    if (rc)
        fail_msg("sm_exec_output: %s", err.message);
}

/* ---- without a VM ----------------------------------------------------- */

static void test_config_bounds(void **state)
{
    (void)state;
    sm_vm_config *c = sm_vm_config_new();
    assert_non_null(c);
    assert_int_equal(sm_vm_config_memory_mib(c, 63), SM_E_INVALID);
    assert_int_equal(sm_vm_config_memory_mib(c, 65537), SM_E_INVALID);
    assert_int_equal(sm_vm_config_memory_mib(c, 64), SM_OK);
    assert_int_equal(sm_vm_config_cpus(c, 0), SM_E_INVALID);
    assert_int_equal(sm_vm_config_cpus(c, 33), SM_E_INVALID);
    assert_int_equal(sm_vm_config_cpus(c, 32), SM_OK);
    assert_int_equal(sm_vm_config_kernel(c, ""), SM_E_INVALID);
    assert_int_equal(sm_vm_config_kernel(c, "/a"), SM_OK);
    assert_int_equal(sm_vm_config_kernel(c, NULL), SM_OK);
    assert_int_equal(sm_vm_config_boot_timeout_s(c, 0), SM_E_INVALID);
    assert_int_equal(sm_vm_config_memory_mib(NULL, 128), SM_E_INVALID);
    sm_vm_config_free(c);
    sm_vm *v = NULL;
    sm_error err;
    assert_int_equal(sm_vm_open(NULL, "../etc", &v, &err), SM_E_INVALID);
    assert_int_equal(sm_vm_open(NULL, "deadbeef", &v, &err), SM_E_NOTFOUND);
    assert_null(v);
}

/* An environment variable naming a missing asset is an error that names it,
 * not a silent fall-through to another kernel. */
static void test_asset_env_errors(void **state)
{
    (void)state;
    sm_vm_config *c = sm_vm_config_new();
    sm_vm *v = NULL;
    sm_error err;
    setenv("SUPERMACHINE_KERNEL", "/nonexistent/bzImage", 1);
    assert_int_equal(sm_vm_start(c, &v, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "SUPERMACHINE_KERNEL"));
    assert_non_null(strstr(err.message, "/nonexistent/bzImage"));
    unsetenv("SUPERMACHINE_KERNEL");
    setenv("SUPERMACHINE_VMM", "/nonexistent/vmm", 1);
    assert_int_equal(sm_vm_start(c, &v, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "SUPERMACHINE_VMM"));
    unsetenv("SUPERMACHINE_VMM");
    assert_null(v);
    assert_int_equal(vm_folders(), 0);
    sm_vm_config_free(c);
}

/* A VMM that fails at once: the error carries its own message (the tail of
 * its stderr) and its status, and nothing is left behind. */
static void test_start_failure_reports_vmm_error(void **state)
{
    (void)state;
    sm_vm_config *c = sm_vm_config_new();
    assert_int_equal(sm_vm_config_kernel(c, "/etc/hostname"), SM_OK); /* not a bzImage */
    sm_vm *v = NULL;
    sm_error err = { 0 };
    uint64_t t0 = clock_now_ms();
    sm_code rc = sm_vm_start(c, &v, &err);
    sm_vm_config_free(c);
    print_message("start with a bad kernel: %s (%llu ms)\n", err.message,
                  (unsigned long long)(clock_now_ms() - t0));
    assert_int_not_equal(rc, SM_OK);
    assert_null(v);
    assert_non_null(strstr(err.message, "exited with status 1"));
    assert_non_null(strstr(err.message, "supermachine-vmm:")); /* its own words */
    assert_int_equal(vm_folders(), 0);
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* no child left, reaped */
    assert_int_equal(errno, ECHILD);
}

/* ---- one VM ------------------------------------------------------------ */

/* Open, without close-on-exec, while the VM starts: the VMM must not get it. */
static int leak_marker_fd = -1;

static int start_vm(void **state)
{
    (void)state;
    char marker[200];
    snprintf(marker, sizeof marker, "%s/leak-marker", runtime_dir);
    /* Above the fds the VMM is given (0-3), which would hide a leak. */
    int fd = open(marker, O_RDWR | O_CREAT, 0600);
    leak_marker_fd = fd >= 0 ? fcntl(fd, F_DUPFD, 20) : -1;
    if (fd >= 0)
        close(fd);
    sm_vm_config *c = sm_vm_config_new();
    sm_vm_config_cpus(c, 2);
    sm_vm_config_memory_mib(c, 512);
    sm_error err = { 0 };
    uint64_t t0 = clock_now_ms();
    sm_code rc = sm_vm_start(c, &vm, &err);
    sm_vm_config_free(c);
    if (rc) {
        fprintf(stderr, "sm_vm_start: %s\n", err.message);
        return -1;
    }
    print_message("VM %s ready in %llu ms\n", sm_vm_id(vm), (unsigned long long)(clock_now_ms() - t0));
    return leak_marker_fd >= 0 ? 0 : -1;
}

static int free_vm(void **state)
{
    (void)state;
    sm_vm_free(vm); /* attached: stops it */
    vm = NULL;
    return 0;
}

/* The VMM holds none of our descriptors, and has closed the ready pipe. */
static int open_descriptors(int pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_no_descriptor_leaked_into_vmm(void **state)
{
    (void)state;
    sm_vm_info info;
    assert_int_equal(sm_vm_get_info(vm, &info, NULL), SM_OK);
    int vmm = info.vmm_pid;
    assert_true(vmm > 0);
    if (vmm != info.pid) /* the stand-in keeps stderr (vmm.log) only */
        assert_int_equal(open_descriptors(info.pid), 1);
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", vmm);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int seen = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char link[300] = { 0 }, path[400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (readlink(path, link, sizeof link - 1) < 0)
            continue;
        seen++;
        if (strstr(link, "leak-marker"))
            fail_msg("the VMM has our descriptor as its fd %s", e->d_name);
        if (!strcmp(e->d_name, "3") && !strncmp(link, "pipe:", 5))
            fail_msg("the VMM still holds the ready pipe as fd 3");
    }
    closedir(d);
    assert_true(seen >= 3);
    close(leak_marker_fd);
}

static void test_identity_and_info(void **state)
{
    (void)state;
    const char *id = sm_vm_id(vm);
    assert_int_equal(strlen(id), 8);
    assert_int_equal(strspn(id, "0123456789abcdef"), 8);
    char want[300];
    snprintf(want, sizeof want, "%s/%s/cell/exec.sock", vms_dir, id);
    assert_string_equal(sm_vm_exec_socket_path(vm), want);
    struct stat st;
    assert_int_equal(stat(sm_vm_state_dir(vm), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_true(sm_vm_running(vm));
    sm_vm_info info;
    assert_int_equal(sm_vm_get_info(vm, &info, NULL), SM_OK);
    assert_string_equal(info.id, id);
    assert_true(info.running);
    assert_true(process_exists(info.pid));
    assert_int_equal(info.memory_mib, 512);
    assert_int_equal(info.cpus, 2);
    /* Listed, and openable by id from "another process" (a second handle). */
    sm_vm_info *list;
    size_t n;
    assert_int_equal(sm_vm_list(NULL, &list, &n, NULL), SM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, id);
    assert_int_equal(list[0].pid, info.pid);
    free(list);
    sm_vm *other;
    assert_int_equal(sm_vm_open(NULL, id, &other, NULL), SM_OK);
    assert_true(sm_vm_running(other));
    sm_vm_free(other); /* not ours to stop */
    assert_true(sm_vm_running(vm));
}

/* The spec's example, through the VM's builder. */
static void test_exec_hi_7(void **state)
{
    (void)state;
    sm_exec_builder *b = vm_builder("echo hi; echo err >&2; exit 7");
    sm_exec_outcome out;
    must_output(b, &out);
    assert_int_equal(out.status.code, 7);
    assert_string_equal((char *)out.stdout_buf, "hi\n");
    assert_string_equal((char *)out.stderr_buf, "err\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

static void test_files_binary_atomic_limits(void **state)
{
    (void)state;
    size_t len = 3 * MIB + 17;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++) /* every byte value, NULs included */
        data[i] = (uint8_t)(i * 131 + (i >> 9));
    sm_error err = { 0 };
    sm_code rc = sm_vm_write_file(vm, "/tmp/sub/dir/blob", data, len, 0600, &err);
    if (rc)
        fail_msg("write_file: %s", err.message);
    uint8_t *back;
    size_t back_len;
    rc = sm_vm_read_file(vm, "/tmp/sub/dir/blob", 0, &back, &back_len, &err);
    if (rc)
        fail_msg("read_file: %s", err.message);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, data, len);
    free(back);
    /* Mode as asked, and no temporary file left beside it. */
    sm_exec_builder *b = vm_builder("stat -c %a /tmp/sub/dir/blob; ls -a /tmp/sub/dir | wc -l");
    sm_exec_outcome out;
    must_output(b, &out);
    assert_string_equal((char *)out.stdout_buf, "600\n3\n");
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
    /* Over the caller's limit, and missing: clear errors. */
    rc = sm_vm_read_file(vm, "/tmp/sub/dir/blob", 1000, &back, &back_len, &err);
    assert_int_equal(rc, SM_E_LIMIT);
    assert_non_null(strstr(err.message, "1000"));
    rc = sm_vm_read_file(vm, "/tmp/no/such/file", 0, &back, &back_len, &err);
    assert_int_equal(rc, SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "/tmp/no/such/file"));
    /* An empty file round-trips too. */
    assert_int_equal(sm_vm_write_file(vm, "/tmp/empty", "", 0, 0644, NULL), SM_OK);
    assert_int_equal(sm_vm_read_file(vm, "/tmp/empty", 0, &back, &back_len, NULL), SM_OK);
    assert_int_equal(back_len, 0);
    free(back);
    free(data);
}

/* 100 MB from the guest, byte for byte: a random block of a length prime to
 * every buffer size, repeated by cat; every byte that arrives must be the
 * block's byte at that offset (a lost, doubled or reordered chunk shifts the
 * pattern), and the block itself is fetched separately with read_file. The
 * guest only copies (its md5sum of 100 MB would cost a minute under
 * emulation). */
#define BLOCK_LEN 1048573u /* prime */
static void test_100mb_stdout_byte_for_byte(void **state)
{
    (void)state;
    char script[256];
    snprintf(script, sizeof script, "head -c 1048573 /dev/urandom > /tmp/block && "
             "i=0; while [ $i -lt %u ]; do cat /tmp/block; i=$((i+1)); done; head -c 1048300 /tmp/block",
             stream_blocks);
    sm_exec_builder *b = vm_builder(script);
    sm_exec_child *c;
    sm_error err = { 0 };
    uint64_t t0 = clock_now_ms();
    if (sm_exec_spawn(b, &c, &err))
        fail_msg("spawn: %s", err.message);
    sm_exec_child_stdin_close(c, NULL);
    uint64_t want = (uint64_t)stream_blocks * BLOCK_LEN + 1048300u; /* 104,905,600 bytes for 100 */
    uint8_t *all = malloc(want + 1);
    assert_non_null(all);
    uint64_t total = 0;
    size_t got;
    while (total <= want &&
           sm_exec_child_stdout_read(c, all + total, want + 1 - total, &got, &err) == SM_OK && got)
        total += got;
    sm_exec_status st;
    assert_int_equal(sm_exec_child_wait(c, &st, &err), SM_OK);
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    uint64_t ms = clock_now_ms() - t0;
    print_message("%u MB stdout: %llu ms, %.1f MB/s\n", stream_blocks, (unsigned long long)ms,
                  ms ? (double)want / 1e6 * 1000 / (double)ms : 0.0);
    assert_int_equal(st.code, 0);
    assert_int_equal(total, want);
    uint8_t *block;
    size_t block_len;
    assert_int_equal(sm_vm_read_file(vm, "/tmp/block", 0, &block, &block_len, &err), SM_OK);
    assert_int_equal(block_len, BLOCK_LEN);
    for (uint64_t i = 0; i < total; i++)
        if (all[i] != block[i % BLOCK_LEN])
            fail_msg("byte %llu differs", (unsigned long long)i);
    free(block);
    free(all);
}

/* 100 MB of random bytes to the guest's md5sum. */
static void test_100mb_stdin_checksum(void **state)
{
    (void)state;
    sm_exec_builder *b = vm_builder("md5sum");
    sm_exec_child *c;
    sm_error err = { 0 };
    uint64_t t0 = clock_now_ms();
    if (sm_exec_spawn(b, &c, &err))
        fail_msg("spawn: %s", err.message);
    struct md5 m;
    md5_start(&m);
    static uint8_t buf[1 << 20];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (unsigned chunk = 0; chunk < BIG_STREAM / sizeof buf; chunk++) {
        for (size_t i = 0; i < sizeof buf; i += 8) { /* xorshift64 */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(buf + i, &x, 8);
        }
        md5_add(&m, buf, sizeof buf);
        if (sm_exec_child_stdin_write(c, buf, sizeof buf, &err))
            fail_msg("stdin_write at chunk %u: %s", chunk, err.message);
    }
    assert_int_equal(sm_exec_child_stdin_close(c, &err), SM_OK);
    char out[128] = { 0 };
    size_t olen = 0, got;
    while (olen < sizeof out - 1 &&
           sm_exec_child_stdout_read(c, out + olen, sizeof out - 1 - olen, &got, NULL) == SM_OK &&
           got)
        olen += got;
    sm_exec_status st;
    assert_int_equal(sm_exec_child_wait(c, &st, &err), SM_OK);
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    char hex[33];
    md5_finish(&m, hex);
    uint64_t ms = clock_now_ms() - t0;
    print_message("%u MB stdin: %llu ms, %.1f MB/s\n", stream_blocks, (unsigned long long)ms,
                  ms ? stream_blocks * 1000.0 / (double)ms : 0.0);
    assert_int_equal(st.code, 0);
    assert_int_equal(strncmp(out, hex, 32), 0);
}

#define CONCURRENT 32

struct concurrent_run {
    int index;
    sm_code rc;
    int code;
    char stdout_buf[128];
    char err[512];
};

static void *run_one(void *arg)
{
    struct concurrent_run *r = arg;
    sm_exec_builder *b = sm_vm_exec_builder(vm);
    char n[16];
    snprintf(n, sizeof n, "%d", r->index);
    const char *argv[] = { "sh", "-c", "sleep 1; echo \"run $N\"; seq 1 $N | wc -l; exit $N" };
    sm_exec_builder_argv(b, 3, argv);
    sm_exec_builder_env(b, "N", n);
    sm_exec_outcome out;
    sm_error err = { 0 };
    r->rc = sm_exec_output(b, &out, &err);
    if (r->rc == SM_OK) {
        r->code = out.status.code;
        snprintf(r->stdout_buf, sizeof r->stdout_buf, "%s", (char *)out.stdout_buf);
        sm_exec_outcome_free(&out);
    } else {
        snprintf(r->err, sizeof r->err, "%s", err.message);
    }
    sm_exec_builder_free(b);
    return NULL;
}

/* 32 execs at once, each with its own output and exit code. */
static void test_32_concurrent_execs(void **state)
{
    (void)state;
    pthread_t t[CONCURRENT];
    struct concurrent_run runs[CONCURRENT];
    uint64_t t0 = clock_now_ms();
    for (int i = 0; i < CONCURRENT; i++) {
        runs[i] = (struct concurrent_run){ .index = i + 1 };
        assert_int_equal(pthread_create(&t[i], NULL, run_one, &runs[i]), 0);
    }
    for (int i = 0; i < CONCURRENT; i++)
        pthread_join(t[i], NULL);
    print_message("32 concurrent execs (sleep 1 each): %llu ms\n",
                  (unsigned long long)(clock_now_ms() - t0));
    for (int i = 0; i < CONCURRENT; i++) {
        char want[64];
        snprintf(want, sizeof want, "run %d\n%d\n", i + 1, i + 1);
        if (runs[i].rc)
            fail_msg("exec %d: %s", i + 1, runs[i].err);
        assert_string_equal(runs[i].stdout_buf, want);
        assert_int_equal(runs[i].code, i + 1);
    }
}

/* CPU seconds used so far by process pid (utime + stime, /proc/PID/stat). */
static double cpu_seconds(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, stime = 0;
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stime);
    return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

struct writer {
    sm_exec_child *c;
    size_t len;
    sm_code rc;
    char err[512];
};

static void *write_stdin(void *arg)
{
    struct writer *w = arg;
    static uint8_t buf[64 << 10];
    sm_error err = { 0 };
    for (size_t done = 0; done < w->len && !w->rc; done += sizeof buf) {
        memset(buf, (int)(done / sizeof buf) & 0xff, sizeof buf);
        w->rc = sm_exec_child_stdin_write(w->c, buf, sizeof buf, &err);
    }
    if (!w->rc)
        w->rc = sm_exec_child_stdin_close(w->c, &err);
    if (w->rc)
        snprintf(w->err, sizeof w->err, "%s", err.message);
    return NULL;
}

/* The command reads up to 1000 bytes, then nothing for 3 s, then the rest: the
 * writer blocks meanwhile without this process or the VMM spinning, and
 * every byte arrives. */
static void test_guest_stops_reading_stdin(void **state)
{
    (void)state;
    sm_vm_info info;
    sm_vm_get_info(vm, &info, NULL);
    /* dd reads once (head would read a whole buffer); the two counts add up. */
    sm_exec_builder *b = vm_builder("n=$(dd bs=1000 count=1 2>/dev/null | wc -c); echo paused; "
                                    "sleep 3; m=$(wc -c); echo $((n + m))");
    sm_exec_child *c;
    sm_error err = { 0 };
    if (sm_exec_spawn(b, &c, &err))
        fail_msg("spawn: %s", err.message);
    struct writer w = { .c = c, .len = 16 * MIB };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_stdin, &w), 0);
    char line[64] = { 0 };
    size_t got;
    assert_int_equal(sm_exec_child_stdout_read(c, line, sizeof line - 1, &got, &err), SM_OK);
    assert_string_equal(line, "paused\n");
    double self0 = cpu_seconds(getpid()), vmm0 = cpu_seconds(info.vmm_pid);
    struct timespec two = { .tv_sec = 2 };
    nanosleep(&two, NULL); /* inside the guest's sleep 3 */
    double self = cpu_seconds(getpid()) - self0, vmm = cpu_seconds(info.vmm_pid) - vmm0;
    print_message("while the guest did not read stdin for 2 s: this process used %.2f s of CPU, "
                  "the VMM %.2f s\n", self, vmm);
    pthread_join(t, NULL);
    if (w.rc)
        fail_msg("stdin: %s", w.err);
    char count[64] = { 0 };
    size_t clen = 0;
    while (clen < sizeof count - 1 &&
           sm_exec_child_stdout_read(c, count + clen, sizeof count - 1 - clen, &got, NULL) == SM_OK &&
           got)
        clen += got;
    sm_exec_status st;
    assert_int_equal(sm_exec_child_wait(c, &st, &err), SM_OK);
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    assert_int_equal(st.code, 0);
    char want[32];
    snprintf(want, sizeof want, "%u\n", 16 * MIB);
    assert_string_equal(count, want);
    assert_true(self < 0.5);
    assert_true(vmm < 1.0);
}

/* SIGKILL the VMM while a command runs: the caller gets an error within a
 * second, and stop leaves no process, socket or folder. Last in the group:
 * it ends the group's VM. */
static void test_vmm_killed_mid_exec(void **state)
{
    (void)state;
    sm_vm_info info;
    sm_vm_get_info(vm, &info, NULL);
    sm_exec_builder *b = vm_builder("echo started; sleep 100");
    sm_exec_child *c;
    sm_error err = { 0 };
    if (sm_exec_spawn(b, &c, &err))
        fail_msg("spawn: %s", err.message);
    char line[64] = { 0 };
    size_t got;
    assert_int_equal(sm_exec_child_stdout_read(c, line, sizeof line - 1, &got, &err), SM_OK);
    assert_string_equal(line, "started\n");
    uint64_t t0 = clock_now_ms();
    assert_int_equal(kill(info.pid, SIGKILL), 0);
    sm_exec_status st;
    sm_code rc = sm_exec_child_wait(c, &st, &err);
    uint64_t ms = clock_now_ms() - t0;
    print_message("after SIGKILL of the VMM: %s (%s) after %llu ms\n", sm_strerror(rc), err.message,
                  (unsigned long long)ms);
    assert_int_equal(rc, SM_E_DROPPED);
    assert_true(ms < 1000);
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    /* Its sockets close before it has quite ended: give it a moment to be a
     * zombie (which sm_vm_running reaps). Then a new exec fails at once. */
    for (int i = 0; i < 100 && sm_vm_running(vm); i++)
        usleep(10000);
    assert_false(sm_vm_running(vm));
    b = vm_builder("true");
    sm_exec_outcome out = { 0 };
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_SETUP);
    sm_exec_outcome_free(&out); /* what was collected (nothing), as after any failure */
    sm_exec_builder_free(b);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", sm_vm_state_dir(vm));
    assert_int_equal(sm_vm_stop(vm, &err), SM_OK);
    assert_int_equal(sm_vm_stop(vm, &err), SM_OK); /* again: harmless */
    assert_false(process_exists(info.pid));       /* reaped, not a zombie */
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(vm_folders(), 0);
}

/* ---- a second VM: stop of a running VM, and free stopping it ----------- */

static void test_stop_and_free(void **state)
{
    (void)state;
    sm_vm_config *c = sm_vm_config_new();
    sm_vm *v;
    sm_error err = { 0 };
    sm_code rc = sm_vm_start(c, &v, &err);
    sm_vm_config_free(c);
    if (rc)
        fail_msg("sm_vm_start: %s", err.message);
    sm_vm_info info;
    sm_vm_get_info(v, &info, NULL);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", sm_vm_state_dir(v));
    /* Written files land in the guest; then stop it. */
    assert_int_equal(sm_vm_write_file(v, "/tmp/x", "x", 1, 0644, NULL), SM_OK);
    uint64_t t0 = clock_now_ms();
    assert_int_equal(sm_vm_stop(v, &err), SM_OK);
    print_message("stop of a running VM: %llu ms\n", (unsigned long long)(clock_now_ms() - t0));
    assert_false(process_exists(info.pid));
    assert_int_equal(access(dir, F_OK), -1);
    assert_false(sm_vm_running(v));
    sm_vm_free(v);
    assert_int_equal(vm_folders(), 0);
}

/* ---- the VM's life is the process's, not a thread's -------------------- */

static void *start_in_thread(void *arg)
{
    sm_vm **out = arg;
    sm_vm_config *c = sm_vm_config_new();
    sm_error err = { 0 };
    if (sm_vm_start(c, out, &err))
        *out = NULL;
    sm_vm_config_free(c);
    return NULL; /* the thread that started the VM ends here */
}

/* Gone, or a zombie its new parent has yet to reap: ended either way. */
static bool ended(int pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    bool zombie = fgets(buf, sizeof buf, f) && strstr(buf, ") Z ");
    fclose(f);
    return zombie;
}

static bool gone_within(int pid, unsigned ms)
{
    for (uint64_t end = clock_now_ms() + ms; clock_now_ms() < end; clock_sleep_ms(20))
        if (ended(pid))
            return true;
    return ended(pid);
}

/* A VM started by a thread that has ended lives on (a VMM tied to its
 * parent thread, as PR_SET_PDEATHSIG ties it, died with the thread). */
static void test_outlives_the_starting_thread(void **state)
{
    (void)state;
    sm_vm *v = NULL;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, start_in_thread, &v), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    if (!v)
        fail_msg("sm_vm_start in a thread failed");
    clock_sleep_ms(1000);
    assert_true(sm_vm_running(v));
    char *out = NULL;
    sm_exec_builder *b = sm_vm_exec_builder(v);
    const char *argv[] = { "echo", "alive" };
    sm_exec_builder_argv(b, 2, argv);
    sm_exec_outcome o;
    sm_error err = { 0 };
    sm_code rc = sm_exec_output(b, &o, &err);
    sm_exec_builder_free(b);
    if (rc)
        fail_msg("exec after the starting thread ended: %s", err.message);
    out = (char *)o.stdout_buf;
    assert_string_equal(out, "alive\n");
    sm_exec_outcome_free(&o);
    assert_int_equal(sm_vm_stop(v, NULL), SM_OK);
    sm_vm_free(v);
}

/* A process that started a VM and ended without stopping it takes the VM
 * with it: its VMM stops, and the folder left is that of a dead VM. */
static void test_ends_with_the_starting_process(void **state)
{
    (void)state;
    int report[2];
    assert_int_equal(pipe(report), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(report[0]);
        sm_vm *v = NULL;
        start_in_thread(&v);
        sm_vm_info info;
        char line[64] = "0 -\n";
        if (v && sm_vm_get_info(v, &info, NULL) == SM_OK)
            snprintf(line, sizeof line, "%d %s\n", info.pid, sm_vm_id(v));
        (void)!write(report[1], line, strlen(line));
        _exit(0); /* no stop, no free */
    }
    close(report[1]);
    char line[64] = { 0 };
    ssize_t n = read(report[0], line, sizeof line - 1);
    close(report[0]);
    int status;
    waitpid(child, &status, 0);
    int pid = 0;
    char id[16] = "";
    if (n <= 0 || sscanf(line, "%d %15s", &pid, id) != 2 || pid <= 0)
        fail_msg("the child did not start a VM: '%s'", line);
    bool gone = gone_within(pid, 15000);
    sm_vm *v;
    if (sm_vm_open(NULL, id, &v, NULL) == SM_OK) {
        sm_vm_stop(v, NULL); /* cleans the folder up */
        sm_vm_free(v);
    }
    if (!gone)
        fail_msg("the VMM %d outlived the process that started it by 15 s", pid);
}

int main(void)
{
    const char *blocks = getenv("SM_STREAM_BLOCKS");
    if (blocks && atoi(blocks) > 0)
        stream_blocks = (unsigned)atoi(blocks);
    snprintf(runtime_dir, sizeof runtime_dir, "/tmp/sm-vm-api.XXXXXX");
    if (!mkdtemp(runtime_dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("XDG_RUNTIME_DIR", runtime_dir, 1);
    snprintf(vms_dir, sizeof vms_dir, "%s/supermachine/vms", runtime_dir);
    const struct CMUnitTest no_vm[] = {
        cmocka_unit_test(test_config_bounds),
        cmocka_unit_test(test_asset_env_errors),
        cmocka_unit_test(test_start_failure_reports_vmm_error),
    };
    const struct CMUnitTest one_vm[] = {
        cmocka_unit_test(test_no_descriptor_leaked_into_vmm),
        cmocka_unit_test(test_identity_and_info),
        cmocka_unit_test(test_exec_hi_7),
        cmocka_unit_test(test_files_binary_atomic_limits),
        cmocka_unit_test(test_100mb_stdout_byte_for_byte),
        cmocka_unit_test(test_100mb_stdin_checksum),
        cmocka_unit_test(test_32_concurrent_execs),
        cmocka_unit_test(test_guest_stops_reading_stdin),
        cmocka_unit_test(test_vmm_killed_mid_exec),
    };
    const struct CMUnitTest second_vm[] = {
        cmocka_unit_test(test_stop_and_free),
        cmocka_unit_test(test_outlives_the_starting_thread),
        cmocka_unit_test(test_ends_with_the_starting_process),
    };
    const char *filter = getenv("SM_TEST_FILTER"); /* e.g. "*stdin*" */
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    int failed = cmocka_run_group_tests_name("vm api without a VM", no_vm, NULL, NULL);
    failed += cmocka_run_group_tests_name("vm api, one VM", one_vm, start_vm, free_vm);
    failed += cmocka_run_group_tests_name("vm api, stop", second_vm, NULL, NULL);
    /* Nothing may be left in the runtime folder. */
    int left = vm_folders();
    if (left) {
        fprintf(stderr, "FAIL: %d VM folder(s) left in %s\n", left, vms_dir);
        failed++;
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", runtime_dir);
    if (system(cmd) != 0)
        failed++;
    return failed ? 1 : 0;
}
