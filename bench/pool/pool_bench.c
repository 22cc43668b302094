/*
 * bench/pool: how long a caller waits for a VM.
 *
 *   restore      sm_vm_start from the image (a restore), what a caller
 *                without a pool waits for each VM;
 *   pool idle    sm_pool_acquire when an idle VM is ready (the pool's
 *                point: it restored that VM in the background);
 *   pool empty   sm_pool_acquire from a pool with nothing idle (min 0):
 *                a restore by the pool's thread plus the hand-over.
 * Each round also runs `true` in the VM it got, so that every VM counted is
 * one that works. Prints min, median and max in microseconds.
 *
 *   pool_bench [ROUNDS]     (bench/pool/run.sh sets up the folders)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "supermachine.h"

#define MAX_ROUNDS 1000

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_us(long us)
{
    struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *us, int n)
{
    qsort(us, (size_t)n, sizeof us[0], cmp_u64);
    printf("%-28s min %9llu us  median %9llu us  max %9llu us  (%d rounds)\n", what,
           (unsigned long long)us[0], (unsigned long long)us[n / 2],
           (unsigned long long)us[n - 1], n);
}

static int run_true(sm_vm *vm)
{
    sm_exec_builder *b = sm_vm_exec_builder(vm);
    const char *argv[] = { "true" };
    sm_exec_outcome out;
    sm_error err = { 0 };
    sm_code rc = b ? sm_exec_builder_argv(b, 1, argv) : SM_E_NOMEM;
    if (!rc)
        rc = sm_exec_output(b, &out, &err);
    sm_exec_builder_free(b);
    if (rc) {
        fprintf(stderr, "pool_bench: exec in the VM: %s\n", err.message);
        return -1;
    }
    int code = out.status.code;
    sm_exec_outcome_free(&out);
    return code == 0 ? 0 : -1;
}

static int bench_restore(const sm_image *img, uint64_t *us, int rounds)
{
    sm_vm_config *cfg = sm_vm_config_new();
    if (!cfg || sm_vm_config_image(cfg, img))
        return -1;
    for (int i = 0; i < rounds; i++) {
        sm_vm *vm;
        sm_error err = { 0 };
        uint64_t t0 = now_us();
        if (sm_vm_start(cfg, &vm, &err)) {
            fprintf(stderr, "pool_bench: sm_vm_start: %s\n", err.message);
            sm_vm_config_free(cfg);
            return -1;
        }
        us[i] = now_us() - t0;
        int bad = run_true(vm);
        sm_vm_free(vm);
        if (bad)
            return -1;
    }
    sm_vm_config_free(cfg);
    return 0;
}

static int wait_idle(sm_pool *pool)
{
    for (int i = 0; i < 600000; i++) {   /* 10 minutes at most */
        sm_pool_stats s;
        sm_pool_stats_get(pool, &s);
        if (s.idle >= 1 && s.starting == 0)
            return 0;
        sleep_us(1000);
    }
    fprintf(stderr, "pool_bench: no idle VM after 10 minutes\n");
    return -1;
}

/* min 1: a VM is idle before each acquire (waited for, not timed). min 0:
 * none is, and the acquire waits for a restore. */
static int bench_pool(const sm_image *img, uint32_t min, uint64_t *us, int rounds)
{
    sm_pool_config *pc = sm_pool_config_new();
    sm_pool *pool;
    sm_error err = { 0 };
    if (!pc || sm_pool_config_min(pc, min) || sm_pool_config_max(pc, 2) ||
        sm_pool_config_acquire_timeout_ms(pc, 600000) || sm_pool_config_idle_timeout_ms(pc, 0))
        return -1;
    if (min == 1)
        sm_pool_config_idle_timeout_ms(pc, 600000);
    if (sm_pool_new(img, pc, &pool, &err)) {
        fprintf(stderr, "pool_bench: sm_pool_new: %s\n", err.message);
        sm_pool_config_free(pc);
        return -1;
    }
    sm_pool_config_free(pc);
    int rc = 0;
    for (int i = 0; i < rounds && !rc; i++) {
        if (min > 0 && (rc = wait_idle(pool)))
            break;
        sm_vm *vm;
        uint64_t t0 = now_us();
        if (sm_pool_acquire(pool, &vm, &err)) {
            fprintf(stderr, "pool_bench: sm_pool_acquire: %s\n", err.message);
            rc = -1;
            break;
        }
        us[i] = now_us() - t0;
        rc = run_true(vm);
        sm_pool_release(pool, vm);
    }
    sm_pool_free(pool);
    return rc;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
    if (rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: pool_bench [ROUNDS 1..%d]\n", MAX_ROUNDS);
        return 2;
    }
    sm_image *img;
    sm_error err = { 0 };
    uint64_t t0 = now_us();
    if (sm_image_bake(NULL, "pool-bench", NULL, &img, &err)) {
        fprintf(stderr, "pool_bench: bake: %s\n", err.message);
        return 1;
    }
    printf("image baked in %llu ms\n", (unsigned long long)((now_us() - t0) / 1000));
    static uint64_t restore[MAX_ROUNDS], idle[MAX_ROUNDS], empty[MAX_ROUNDS];
    int bad = bench_restore(img, restore, rounds) || bench_pool(img, 1, idle, rounds) ||
              bench_pool(img, 0, empty, rounds);
    if (!bad) {
        report("restore (sm_vm_start)", restore, rounds);
        report("pool acquire, VM idle", idle, rounds);
        report("pool acquire, none idle", empty, rounds);
        printf("median restore / median idle acquire: %.0fx\n",
               (double)restore[rounds / 2] / (double)(idle[rounds / 2] ? idle[rounds / 2] : 1));
    }
    sm_image_free(img);
    sm_image_remove(NULL, "pool-bench", NULL);
    return bad ? 1 : 0;
}
