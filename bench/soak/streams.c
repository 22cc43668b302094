/*
 * bench/soak streams: long streams in and out of one VM, each byte-exact,
 * in a loop, until one breaks; then the VMM's log and the guest console say
 * why. The loop behind issue 15 (a 64 MiB stream out of a VM broke off).
 *
 *   streams [--ratios-only] [--rounds N] [--mib M] [--cpus C]
 *
 * One VM (default 2 vCPUs, 512 MiB) booted from the default kernel and
 * initramfs. Each round moves M MiB (default 64) five ways:
 *   out-spawn   spawn `head -c M /dev/zero`, read stdout to the end
 *   out-output  sm_exec_output of the same
 *   in-stdin    M MiB of a known pattern into `md5sum` through stdin
 *   in-file     sm_vm_write_file of M MiB, then its md5sum in the guest
 *   out-file    sm_vm_read_file of that file back
 * Every way checks the bytes (zeros counted, or an MD5 against ours). Prints
 * MB/s per way (or the ratio to out-spawn with --ratios-only), and on the
 * first failure: the error, the bytes moved, the VMM's log and the console's
 * last lines. Exit status 1 on any failure. Round 1 is also a warm-up.
 */
#include "supermachine.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum way { W_OUT_SPAWN, W_OUT_OUTPUT, W_IN_STDIN, W_IN_FILE, W_OUT_FILE, W_KINDS };
static const char *const way_names[W_KINDS] = { "out-spawn", "out-output", "in-stdin", "in-file", "out-file" };

static sm_vm *vm;
static size_t stream_bytes;
static double seconds[W_KINDS];
static char want_md5[33];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The known pattern: byte i of the stream. */
static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 131u + (i >> 12));
}

static void fill(uint8_t *buf, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern(off + i);
}

static void md5_hex(const uint8_t *digest, char out[33])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

static void pattern_md5(void)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
    static uint8_t buf[1 << 20];
    for (size_t off = 0; off < stream_bytes; off += sizeof buf) {
        size_t n = stream_bytes - off < sizeof buf ? stream_bytes - off : sizeof buf;
        fill(buf, off, n);
        EVP_DigestUpdate(ctx, buf, n);
    }
    uint8_t d[16];
    EVP_DigestFinal_ex(ctx, d, NULL);
    EVP_MD_CTX_free(ctx);
    md5_hex(d, want_md5);
}

static void show_file(const char *name, int lines)
{
    char path[4200], cmd[4400];
    snprintf(path, sizeof path, "%s/%s", sm_vm_state_dir(vm), name);
    printf("streams: last %d lines of %s:\n", lines, path);
    fflush(stdout);
    snprintf(cmd, sizeof cmd, "tail -n %d '%s' | sed 's/^/  | /'", lines, path);
    if (system(cmd) != 0)
        printf("  (cannot read it)\n");
}

static int failed(enum way w, int round, const char *what, size_t moved)
{
    printf("streams: round %d, %s FAILED after %zu of %zu bytes: %s\n", round, way_names[w], moved, stream_bytes,
           what);
    printf("streams: the VMM is %s\n", sm_vm_running(vm) ? "running" : "gone");
    sleep(2); /* the guest's own report of the end may still be on its way out of the console */
    show_file("vmm.log", 30);
    show_file("console.log", 30);
    sm_error err = { 0 };
    if (sm_vm_stop(vm, &err))
        printf("streams: stopping the VM: %s\n", err.message);
    printf("streams: the host kernel's last messages:\n");
    fflush(stdout);
    if (system("dmesg 2>/dev/null | tail -n 15 | sed 's/^/  | /'") != 0)
        printf("  (dmesg unreadable)\n");
    return 1;
}

static sm_exec_builder *sh(const char *script)
{
    sm_exec_builder *b = sm_vm_exec_builder(vm);
    const char *argv[] = { "sh", "-c", script };
    sm_exec_builder_argv(b, 3, argv);
    return b;
}

static int out_spawn(int round)
{
    char script[64];
    snprintf(script, sizeof script, "head -c %zu /dev/zero", stream_bytes);
    sm_exec_builder *b = sh(script);
    sm_exec_child *c;
    sm_error err = { 0 };
    if (sm_exec_spawn(b, &c, &err)) {
        sm_exec_builder_free(b);
        return failed(W_OUT_SPAWN, round, err.message, 0);
    }
    static uint8_t buf[256 << 10];
    size_t total = 0, got, nonzero = 0;
    sm_code rc;
    while ((rc = sm_exec_child_stdout_read(c, buf, sizeof buf, &got, &err)) == SM_OK && got) {
        for (size_t i = 0; i < got; i++)
            nonzero += buf[i] != 0;
        total += got;
    }
    sm_exec_status st;
    sm_code wrc = sm_exec_child_wait(c, &st, rc ? NULL : &err);
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    if (rc || wrc)
        return failed(W_OUT_SPAWN, round, err.message, total);
    if (total != stream_bytes || nonzero || st.code)
        return failed(W_OUT_SPAWN, round, "wrong bytes or status", total);
    return 0;
}

static int out_output(int round)
{
    char script[64];
    snprintf(script, sizeof script, "head -c %zu /dev/zero", stream_bytes);
    sm_exec_builder *b = sh(script);
    sm_exec_builder_max_output(b, stream_bytes); /* --mib may go past the default cap */
    sm_exec_outcome out;
    sm_error err = { 0 };
    sm_code rc = sm_exec_output(b, &out, &err);
    sm_exec_builder_free(b);
    size_t len = out.stdout_len, nonzero = 0;
    for (size_t i = 0; i < len; i++)
        nonzero += out.stdout_buf[i] != 0;
    int st = out.status.code;
    sm_exec_outcome_free(&out);
    if (rc)
        return failed(W_OUT_OUTPUT, round, err.message, len);
    if (len != stream_bytes || nonzero || st)
        return failed(W_OUT_OUTPUT, round, "wrong bytes or status", len);
    return 0;
}

static int check_md5_output(enum way w, int round, sm_code rc, sm_exec_outcome *out, const sm_error *err)
{
    if (rc)
        return failed(w, round, err->message, 0);
    if (out->status.code || out->stdout_len < 32 || memcmp(out->stdout_buf, want_md5, 32) != 0)
        return failed(w, round, "the guest's md5sum differs from ours", 0);
    return 0;
}

static int in_stdin(int round)
{
    sm_exec_builder *b = sh("md5sum");
    sm_exec_child *c;
    sm_error err = { 0 };
    if (sm_exec_spawn(b, &c, &err)) {
        sm_exec_builder_free(b);
        return failed(W_IN_STDIN, round, err.message, 0);
    }
    static uint8_t buf[1 << 20];
    size_t off = 0;
    sm_code rc = SM_OK;
    while (!rc && off < stream_bytes) {
        size_t n = stream_bytes - off < sizeof buf ? stream_bytes - off : sizeof buf;
        fill(buf, off, n);
        if (!(rc = sm_exec_child_stdin_write(c, buf, n, &err)))
            off += n;
    }
    if (!rc)
        rc = sm_exec_child_stdin_close(c, &err);
    sm_exec_outcome out = { 0 };
    char text[128] = { 0 };
    size_t len = 0, got;
    while (!rc && len < sizeof text - 1 &&
           (rc = sm_exec_child_stdout_read(c, text + len, sizeof text - 1 - len, &got, &err)) == SM_OK && got)
        len += got;
    sm_exec_status st;
    sm_code wrc = sm_exec_child_wait(c, &st, rc ? NULL : &err);
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    if (rc || wrc)
        return failed(W_IN_STDIN, round, err.message, off);
    out.stdout_buf = (uint8_t *)text;
    out.stdout_len = len;
    out.status = st;
    return check_md5_output(W_IN_STDIN, round, SM_OK, &out, &err);
}

static int in_file(int round, uint8_t *data)
{
    sm_error err = { 0 };
    if (sm_vm_write_file(vm, "/tmp/stream.bin", data, stream_bytes, 0600, &err))
        return failed(W_IN_FILE, round, err.message, 0);
    sm_exec_builder *b = sh("md5sum /tmp/stream.bin");
    sm_exec_outcome out;
    sm_code rc = sm_exec_output(b, &out, &err);
    sm_exec_builder_free(b);
    int bad = check_md5_output(W_IN_FILE, round, rc, &out, &err);
    sm_exec_outcome_free(&out);
    return bad;
}

static int out_file(int round, const uint8_t *data)
{
    sm_error err = { 0 };
    uint8_t *back;
    size_t len;
    if (sm_vm_read_file(vm, "/tmp/stream.bin", 0, &back, &len, &err))
        return failed(W_OUT_FILE, round, err.message, 0);
    int bad = len != stream_bytes || memcmp(back, data, len) != 0;
    free(back);
    return bad ? failed(W_OUT_FILE, round, "the bytes read back differ", len) : 0;
}

static int run_round(int round, uint8_t *data)
{
    double t;
    int bad = 0;
#define TIMED(w, call) \
    do { t = now_s(); bad = (call); seconds[w] += now_s() - t; if (bad) return bad; } while (0)
    TIMED(W_OUT_SPAWN, out_spawn(round));
    TIMED(W_OUT_OUTPUT, out_output(round));
    TIMED(W_IN_STDIN, in_stdin(round));
    TIMED(W_IN_FILE, in_file(round, data));
    TIMED(W_OUT_FILE, out_file(round, data));
#undef TIMED
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = 10, ratios_only = 0;
    unsigned mib = 64, cpus = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ratios-only"))
            ratios_only = 1;
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
            mib = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cpus") && i + 1 < argc)
            cpus = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: streams [--ratios-only] [--rounds N] [--mib M] [--cpus C]\n");
            return 2;
        }
    }
    if (rounds < 1 || mib < 1 || mib > 256)
        return 2;
    stream_bytes = (size_t)mib << 20;
    uint8_t *data = malloc(stream_bytes);
    if (!data)
        return 1;
    fill(data, 0, stream_bytes);
    pattern_md5();
    sm_vm_config *cfg = sm_vm_config_new();
    sm_vm_config_cpus(cfg, cpus);
    sm_vm_config_memory_mib(cfg, 512);
    sm_vm_config_boot_timeout_s(cfg, 120);
    sm_error err = { 0 };
    if (sm_vm_start(cfg, &vm, &err)) {
        fprintf(stderr, "streams: cannot start the VM: %s\n", err.message);
        return 1;
    }
    sm_vm_config_free(cfg);
    printf("streams: %d rounds of %u MiB, five ways, in a %u-vCPU VM\n", rounds, mib, cpus);
    fflush(stdout);
    int bad = 0, round;
    for (round = 1; round <= rounds && !bad; round++) {
        bad = run_round(round, data);
        if (!bad)
            printf("streams: round %d whole\n", round);
        fflush(stdout);
    }
    int done = bad ? round - 2 : rounds;
    for (int w = 0; w < W_KINDS && done > 0; w++) {
        double mbs = (double)stream_bytes * done / 1e6 / seconds[w];
        if (ratios_only)
            printf("streams: %s throughput / out-spawn's = %.2f\n", way_names[w],
                   seconds[W_OUT_SPAWN] / seconds[w]);
        else
            printf("streams: %s %.1f MB/s\n", way_names[w], mbs);
    }
    sm_vm_stop(vm, NULL);
    sm_vm_free(vm);
    free(data);
    printf("streams: %d rounds whole, %s\n", done, bad ? "then a failure" : "no failure");
    return bad;
}
