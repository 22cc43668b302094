/*
 * The VM pool (sm_pool_*) against real VMs restored from an image baked at
 * the start: min VMs ready at once, 8 threads acquiring at once, max and the
 * acquire timeout, restore-on-release (and what turning it off means), the
 * idle timeout, dead VMs never handed out, a broken image, sm_pool_free with
 * a VM still acquired, and nothing left behind. Needs a host that runs
 * guests (tests/vm/test_pool.sh runs it, inside tools/kvmbox when needed).
 *
 * Runs in its own runtime folder (XDG_RUNTIME_DIR) with its own images
 * folder (SUPERMACHINE_IMAGES) under a fresh temporary folder.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
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

#define LONG_WAIT_MS 120000u /* acquires that wait for a restore (slow when emulated) */
#define THREADS 8

static char work_dir[128];
static char vms_dir[256];         /* the test store's VM folders */
static char default_vms_dir[256]; /* the default store's, under XDG_RUNTIME_DIR */
static sm_store *store;
static sm_image *image;


/* VM folders in either store: one per VM not yet stopped. */
static int vm_folders(void)
{
    return count_visible_entries(vms_dir) + count_visible_entries(default_vms_dir);
}

static sm_pool_config *pool_cfg(uint32_t min, uint32_t max, bool restore_on_release)
{
    sm_pool_config *c = sm_pool_config_new();
    assert_non_null(c);
    assert_int_equal(sm_pool_config_max(c, max), SM_OK);
    assert_int_equal(sm_pool_config_min(c, min), SM_OK);
    assert_int_equal(sm_pool_config_restore_on_release(c, restore_on_release), SM_OK);
    assert_int_equal(sm_pool_config_acquire_timeout_ms(c, LONG_WAIT_MS), SM_OK);
    return c;
}

static sm_pool *must_pool(sm_pool_config *c)
{
    sm_pool *p = NULL;
    sm_error err = { 0 };
    uint64_t t0 = clock_now_ms();
    sm_code rc = sm_pool_new(image, c, &p, &err);
    sm_pool_config_free(c);
    if (rc)
        fail_msg("sm_pool_new: %s", err.message);
    print_message("pool ready in %llu ms\n", (unsigned long long)(clock_now_ms() - t0));
    return p;
}

static sm_vm *must_acquire(sm_pool *p)
{
    sm_vm *vm = NULL;
    sm_error err = { 0 };
    if (sm_pool_acquire(p, &vm, &err))
        fail_msg("sm_pool_acquire: %s", err.message);
    assert_non_null(vm);
    assert_true(sm_vm_running(vm));
    return vm;
}

static sm_pool_stats stats_of(sm_pool *p)
{
    sm_pool_stats s;
    assert_int_equal(sm_pool_stats_get(p, &s), SM_OK);
    return s;
}

/* Runs `echo WORD` in vm; 0 when stdout is exactly "WORD\n". */
static int echo_in(sm_vm *vm, const char *word, char *why, size_t cap)
{
    sm_exec_builder *b = sm_vm_exec_builder(vm);
    if (!b)
        return snprintf(why, cap, "no builder"), -1;
    const char *argv[] = { "echo", word };
    sm_exec_outcome out;
    sm_error err = { 0 };
    sm_code rc = sm_exec_builder_argv(b, 2, argv);
    if (!rc)
        rc = sm_exec_output(b, &out, &err);
    sm_exec_builder_free(b);
    if (rc)
        return snprintf(why, cap, "exec: %s", err.message), -1;
    char want[64];
    snprintf(want, sizeof want, "%s\n", word);
    int bad = out.status.code != 0 || strcmp((char *)out.stdout_buf, want) != 0;
    if (bad)
        snprintf(why, cap, "echo %s: status %d, stdout '%.40s'", word, out.status.code,
                 (char *)out.stdout_buf);
    sm_exec_outcome_free(&out);
    return bad ? -1 : 0;
}

static void must_echo(sm_vm *vm, const char *word)
{
    char why[600];
    if (echo_in(vm, word, why, sizeof why))
        fail_msg("%s", why);
}

/* How many threads /proc/PID/task lists (0: the process is gone). */
static int task_count(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    return count_visible_entries(path);
}

/* Waits up to ms for the process to be gone or a zombie that can be reaped:
 * its leader is a zombie and no other thread of it is still exiting (a
 * multi-threaded process whose leader died first cannot be reaped yet). */
static bool wait_dead(int pid, unsigned ms)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    for (uint64_t end = clock_now_ms() + ms; clock_now_ms() < end; clock_sleep_ms(10)) {
        FILE *f = fopen(path, "r");
        if (!f)
            return true;
        bool zombie = fgets(buf, sizeof buf, f) && strstr(buf, ") Z ");
        fclose(f);
        if (zombie && task_count(pid) <= 1)
            return true;
    }
    return false;
}

static int vm_pid(sm_vm *vm)
{
    sm_vm_info info;
    assert_int_equal(sm_vm_get_info(vm, &info, NULL), SM_OK);
    assert_true(info.pid > 0);
    return info.pid;
}

/* ---- config ------------------------------------------------------------ */

static void test_config_bounds(void **state)
{
    (void)state;
    sm_pool_config *c = sm_pool_config_new();
    assert_non_null(c);
    assert_int_equal(sm_pool_config_max(c, 0), SM_E_INVALID);
    assert_int_equal(sm_pool_config_max(c, SM_POOL_MAX_VMS + 1), SM_E_INVALID);
    assert_int_equal(sm_pool_config_min(c, SM_POOL_MAX_VMS + 1), SM_E_INVALID);
    assert_int_equal(sm_pool_config_acquire_timeout_ms(c, 3600001), SM_E_INVALID);
    assert_int_equal(sm_pool_config_min(NULL, 1), SM_E_INVALID);
    assert_int_equal(sm_pool_config_max(c, 2), SM_OK);
    assert_int_equal(sm_pool_config_min(c, 3), SM_OK); /* checked against max by new */
    sm_pool *p = (sm_pool *)1;
    sm_error err = { 0 };
    assert_int_equal(sm_pool_new(image, c, &p, &err), SM_E_INVALID);
    assert_null(p);
    assert_non_null(strstr(err.message, "min (3) is more than max (2)"));
    assert_int_equal(sm_pool_new(NULL, c, &p, &err), SM_E_INVALID);
    sm_pool_config_free(c);
    sm_vm *vm;
    assert_int_equal(sm_pool_acquire(NULL, &vm, NULL), SM_E_INVALID);
    sm_pool_release(NULL, NULL);
    sm_pool_free(NULL);
    assert_int_equal(sm_pool_stats_get(NULL, NULL), SM_E_INVALID);
    assert_int_equal(vm_folders(), 0);
}

/* A snapshot folder whose files are garbage: the VMM refuses to restore
 * it. sm_pool_new reports that, leaving nothing; a lazy pool reports it on
 * acquire, at once rather than after the acquire timeout. */
static void test_broken_image(void **state)
{
    (void)state;
    char dir[200], path[240];
    snprintf(dir, sizeof dir, "%s/broken", work_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    const char *names[] = { "state", "memory" };
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("not a snapshot\n", f);
        fclose(f);
    }
    sm_image *bad;
    assert_int_equal(sm_image_from_snapshot(dir, &bad, NULL), SM_OK);
    sm_pool *p = NULL;
    sm_error err = { 0 };
    sm_pool_config *c = pool_cfg(1, 2, true);
    sm_code rc = sm_pool_new(bad, c, &p, &err);
    print_message("pool of a broken image: %s\n", err.message);
    assert_int_not_equal(rc, SM_OK);
    assert_null(p);
    assert_non_null(strstr(err.message, "could not restore"));
    assert_int_equal(vm_folders(), 0);

    assert_int_equal(sm_pool_config_min(c, 0), SM_OK);
    assert_int_equal(sm_pool_new(bad, c, &p, &err), SM_OK);
    sm_vm *vm = NULL;
    uint64_t t0 = clock_now_ms();
    rc = sm_pool_acquire(p, &vm, &err);
    uint64_t ms = clock_now_ms() - t0;
    print_message("acquire from a lazy pool of a broken image: %llu ms: %s\n",
                  (unsigned long long)ms, err.message);
    assert_int_not_equal(rc, SM_OK);
    assert_int_not_equal(rc, SM_E_TIMEOUT);
    assert_null(vm);
    assert_true(ms < LONG_WAIT_MS / 2);
    sm_pool_stats s = stats_of(p);
    assert_true(s.start_failures >= 1);
    assert_int_equal(s.alive, 0);
    sm_pool_free(p);
    sm_pool_config_free(c);
    sm_image_free(bad);
    assert_int_equal(vm_folders(), 0);
}

/* ---- with VMs ---------------------------------------------------------- */

static void test_min_prestarted(void **state)
{
    (void)state;
    sm_pool *p = must_pool(pool_cfg(2, 3, true));
    sm_pool_stats s = stats_of(p);
    assert_int_equal(s.idle, 2);
    assert_int_equal(s.alive, 2);
    assert_int_equal(s.in_use, 0);
    assert_int_equal(s.min, 2);
    assert_int_equal(s.max, 3);
    assert_int_equal(s.restored, 2);
    assert_int_equal(vm_folders(), 2);
    /* The image came from the test's store: its VMs live there. */
    assert_int_equal(count_visible_entries(vms_dir), 2);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    sm_vm *vm = must_acquire(p);
    clock_gettime(CLOCK_MONOTONIC, &b);
    print_message("acquire of an idle VM: %ld us\n",
                  (long)((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000));
    s = stats_of(p);
    assert_int_equal(s.acquire_waits, 0);
    assert_int_equal(s.in_use, 1);
    must_echo(vm, "pooled");
    sm_pool_release(p, vm);
    sm_pool_free(p);
    assert_int_equal(vm_folders(), 0);
}

struct worker {
    sm_pool *pool;
    int index;
    pthread_barrier_t *go;
    atomic_int *held, *peak;
    char id[16];
    char why[600];
    int failed;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(w->go);
    sm_vm *vm = NULL;
    sm_error err = { 0 };
    if (sm_pool_acquire(w->pool, &vm, &err)) {
        snprintf(w->why, sizeof w->why, "acquire: %s", err.message);
        w->failed = 1;
        return NULL;
    }
    int now = atomic_fetch_add(w->held, 1) + 1;
    for (int peak = atomic_load(w->peak); now > peak && !atomic_compare_exchange_weak(w->peak, &peak, now);) {
    }
    snprintf(w->id, sizeof w->id, "%s", sm_vm_id(vm));
    char word[16];
    snprintf(word, sizeof word, "%d", w->index);
    w->failed = echo_in(vm, word, w->why, sizeof w->why) != 0;
    clock_sleep_ms(1000);   /* hold it a while: more threads than max at once */
    atomic_fetch_sub(w->held, 1);
    sm_pool_release(w->pool, vm);
    return NULL;
}

static void test_eight_threads_at_once(void **state)
{
    (void)state;
    sm_pool *p = must_pool(pool_cfg(2, 4, true));
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, THREADS);
    atomic_int held = 0, peak = 0;
    struct worker w[THREADS];
    pthread_t t[THREADS];
    uint64_t t0 = clock_now_ms();
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){ .pool = p, .index = i, .go = &go, .held = &held, .peak = &peak };
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
    print_message("8 threads, max 4: all done in %llu ms, peak %d held at once\n",
                  (unsigned long long)(clock_now_ms() - t0), atomic_load(&peak));
    for (int i = 0; i < THREADS; i++)
        if (w[i].failed)
            fail_msg("thread %d: %s", i, w[i].why);
    assert_true(atomic_load(&peak) <= 4);
    assert_true(atomic_load(&peak) >= 2);   /* they did overlap */
    /* Restore-on-release: every acquire got a VM no one had used. */
    for (int i = 0; i < THREADS; i++)
        for (int j = i + 1; j < THREADS; j++)
            if (!strcmp(w[i].id, w[j].id))
                fail_msg("threads %d and %d got the same VM %s", i, j, w[i].id);
    sm_pool_stats s = stats_of(p);
    print_message("stats: alive %u idle %u restored %llu waits %llu\n", s.alive, s.idle,
                  (unsigned long long)s.restored, (unsigned long long)s.acquire_waits);
    assert_int_equal(s.in_use, 0);
    assert_true(s.restored >= THREADS);
    assert_true(s.acquire_waits >= 1); /* 8 at once, 2 idle: some waited */
    assert_int_equal(s.acquire_timeouts, 0);
    assert_true(s.alive <= 4);
    sm_pool_free(p);
    assert_int_equal(vm_folders(), 0);
}

struct late_release {
    sm_pool *pool;
    sm_vm *vm;
    unsigned after_ms;
};

static void *release_later(void *arg)
{
    struct late_release *r = arg;
    clock_sleep_ms(r->after_ms);
    sm_pool_release(r->pool, r->vm);
    return NULL;
}

/* max 1, one acquired: the next acquire times out with a clear error; one
 * waiting gets the VM as soon as it is released. */
static void test_max_and_acquire_timeout(void **state)
{
    (void)state;
    sm_pool_config *c = pool_cfg(1, 1, false);
    assert_int_equal(sm_pool_config_acquire_timeout_ms(c, 600), SM_OK);
    sm_pool *p = must_pool(c);
    sm_vm *a = must_acquire(p);
    sm_vm *b = NULL;
    sm_error err = { 0 };
    uint64_t t0 = clock_now_ms();
    assert_int_equal(sm_pool_acquire(p, &b, &err), SM_E_TIMEOUT);
    uint64_t ms = clock_now_ms() - t0;
    print_message("acquire beyond max: %llu ms: %s\n", (unsigned long long)ms, err.message);
    assert_null(b);
    assert_true(ms >= 550);
    assert_non_null(strstr(err.message, "1 in use"));
    assert_non_null(strstr(err.message, "max 1"));
    sm_pool_stats s = stats_of(p);
    assert_int_equal(s.acquire_timeouts, 1);
    assert_int_equal(s.alive, 1);
    assert_int_equal(s.restored, 1); /* nothing beyond max was started */

    struct late_release r = { p, a, 200 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, release_later, &r), 0);
    t0 = clock_now_ms();
    b = must_acquire(p);
    ms = clock_now_ms() - t0;
    pthread_join(t, NULL);
    print_message("acquire waiting for a release after 200 ms: %llu ms\n", (unsigned long long)ms);
    assert_ptr_equal(a, b); /* restore-on-release off: the same VM */
    assert_true(ms >= 150);
    s = stats_of(p);
    assert_int_equal(s.acquire_waits, 2);
    assert_int_equal(s.acquire_timeouts, 1);
    sm_pool_release(p, b);
    sm_pool_release(p, b);   /* twice: no longer ours, ignored */
    s = stats_of(p);
    assert_int_equal(s.idle, 1);
    assert_int_equal(s.in_use, 0);
    sm_pool_free(p);
    assert_int_equal(vm_folders(), 0);
}

/* acquire timeout 0: fail at once when no VM is idle. */
static void test_acquire_timeout_zero(void **state)
{
    (void)state;
    sm_pool_config *c = pool_cfg(1, 1, false);
    assert_int_equal(sm_pool_config_acquire_timeout_ms(c, 0), SM_OK);
    sm_pool *p = must_pool(c);
    sm_vm *a = must_acquire(p), *b = NULL;
    uint64_t t0 = clock_now_ms();
    assert_int_equal(sm_pool_acquire(p, &b, NULL), SM_E_TIMEOUT);
    assert_true(clock_now_ms() - t0 < 100);
    sm_pool_release(p, a);
    sm_pool_free(p);
    assert_int_equal(vm_folders(), 0);
}

static void write_marker(sm_vm *vm)
{
    sm_error err = { 0 };
    if (sm_vm_write_file(vm, "/root/pool-marker", "mine", 4, 0600, &err))
        fail_msg("write_file: %s", err.message);
}

static sm_code read_marker(sm_vm *vm)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    sm_code rc = sm_vm_read_file(vm, "/root/pool-marker", 0, &bytes, &len, NULL);
    free(bytes);
    return rc;
}

static void test_restore_on_release_gives_fresh_vm(void **state)
{
    (void)state;
    sm_pool *p = must_pool(pool_cfg(1, 1, true));
    sm_vm *a = must_acquire(p);
    char first[16];
    snprintf(first, sizeof first, "%s", sm_vm_id(a));
    write_marker(a);
    assert_int_equal(read_marker(a), SM_OK);
    sm_pool_release(p, a);
    uint64_t t0 = clock_now_ms();
    sm_vm *b = must_acquire(p);
    print_message("acquire right after a release (waits for the fresh restore): %llu ms\n",
                  (unsigned long long)(clock_now_ms() - t0));
    assert_string_not_equal(sm_vm_id(b), first);
    assert_int_equal(read_marker(b), SM_E_NOTFOUND); /* the first user's file is gone */
    must_echo(b, "fresh");
    sm_pool_release(p, b);
    sm_pool_free(p);
    assert_int_equal(vm_folders(), 0);
}

/* The other side, documented: without restore-on-release the next user
 * gets the VM as the last one left it. */
static void test_no_restore_on_release_reuses_vm(void **state)
{
    (void)state;
    sm_pool *p = must_pool(pool_cfg(1, 1, false));
    sm_vm *a = must_acquire(p);
    char first[16];
    snprintf(first, sizeof first, "%s", sm_vm_id(a));
    write_marker(a);
    sm_pool_release(p, a);
    sm_vm *b = must_acquire(p);
    assert_string_equal(sm_vm_id(b), first);
    assert_int_equal(read_marker(b), SM_OK);
    sm_pool_release(p, b);
    assert_int_equal(stats_of(p).restored, 1);
    sm_pool_free(p);
    assert_int_equal(vm_folders(), 0);
}

static void test_idle_timeout_shrinks_to_min(void **state)
{
    (void)state;
    sm_pool_config *c = pool_cfg(1, 3, false);
    assert_int_equal(sm_pool_config_idle_timeout_ms(c, 1500), SM_OK);
    sm_pool *p = must_pool(c);
    sm_vm *v[3];
    for (int i = 0; i < 3; i++)
        v[i] = must_acquire(p);
    sm_pool_stats s = stats_of(p);
    assert_int_equal(s.in_use, 3);
    assert_int_equal(s.alive, 3);
    for (int i = 0; i < 3; i++)
        sm_pool_release(p, v[i]);
    uint64_t t0 = clock_now_ms();
    s = stats_of(p);
    assert_int_equal(s.idle, 3); /* not before the timeout */
    while (clock_now_ms() - t0 < 20000 && (stats_of(p).alive != 1 || vm_folders() != 1))
        clock_sleep_ms(50);
    uint64_t ms = clock_now_ms() - t0;
    s = stats_of(p);
    print_message("idle 3 -> %u after %llu ms (idle timeout 1500 ms)\n", s.idle,
                  (unsigned long long)ms);
    assert_int_equal(s.alive, 1);
    assert_int_equal(s.idle, 1);
    assert_int_equal(vm_folders(), 1);
    assert_true(ms >= 1400);
    sm_vm *again = must_acquire(p);
    must_echo(again, "still");
    sm_pool_release(p, again);
    sm_pool_free(p);
    assert_int_equal(vm_folders(), 0);
}

/* A VM whose VMM was killed while idle is never handed out: acquire sees
 * it dead and takes (or waits for) another; the background check replaces
 * it without any acquire too. */
static void test_killed_vmm_not_handed_out(void **state)
{
    (void)state;
    sm_pool *p = must_pool(pool_cfg(1, 1, false));
    sm_vm *a = must_acquire(p);
    char first[16];
    snprintf(first, sizeof first, "%s", sm_vm_id(a));
    int pid = vm_pid(a);
    sm_pool_release(p, a);   /* back to idle as it is */
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_true(wait_dead(pid, 5000));
    sm_vm *b = must_acquire(p);
    assert_string_not_equal(sm_vm_id(b), first);
    must_echo(b, "alive");
    sm_pool_stats s = stats_of(p);
    assert_int_equal(s.dead_discarded, 1);
    assert_int_equal(s.restored, 2);

    /* Killed while idle, no acquire: the stopper notices within its tick. */
    pid = vm_pid(b);
    sm_pool_release(p, b);
    assert_int_equal(kill(pid, SIGKILL), 0);
    uint64_t t0 = clock_now_ms();
    while (clock_now_ms() - t0 < 30000 && (stats_of(p).dead_discarded < 2 || stats_of(p).idle < 1))
        clock_sleep_ms(50);
    s = stats_of(p);
    print_message("a VM killed while idle was replaced after %llu ms\n",
                  (unsigned long long)(clock_now_ms() - t0));
    assert_int_equal(s.dead_discarded, 2);
    assert_int_equal(s.idle, 1);
    assert_int_equal(s.restored, 3);
    sm_vm *c = must_acquire(p);
    must_echo(c, "replaced");
    sm_pool_release(p, c);
    sm_pool_free(p);
    assert_int_equal(vm_folders(), 0);
}

/* sm_pool_free with a VM still acquired: the handle stays the caller's and
 * its VM runs on, though the pool's thread that started it has ended (the
 * VMM's lifeline is the process's, not the thread's); sm_vm_free stops it. */
static void test_free_with_vm_acquired(void **state)
{
    (void)state;
    sm_pool *p = must_pool(pool_cfg(1, 2, true));
    sm_vm *a = must_acquire(p);
    must_echo(a, "before");
    sm_pool_free(p);
    clock_sleep_ms(500);
    assert_true(sm_vm_running(a));
    must_echo(a, "after");
    assert_int_equal(vm_folders(), 1);
    sm_vm_free(a);
    assert_int_equal(vm_folders(), 0);
}

static int bake(void **state)
{
    (void)state;
    sm_error err = { 0 };
    uint64_t t0 = clock_now_ms();
    if (sm_image_bake(store, "pool-test", NULL, &image, &err)) {
        fprintf(stderr, "sm_image_bake: %s\n", err.message);
        return -1;
    }
    print_message("image baked in %llu ms\n", (unsigned long long)(clock_now_ms() - t0));
    return 0;
}

static int unbake(void **state)
{
    (void)state;
    sm_image_free(image);
    image = NULL;
    return sm_image_remove(store, "pool-test", NULL) == SM_OK ? 0 : -1;
}

int main(void)
{
    snprintf(work_dir, sizeof work_dir, "/tmp/sm-pool-test.XXXXXX");
    if (!mkdtemp(work_dir)) {
        perror("mkdtemp");
        return 1;
    }
    /* The image and the pool's VMs live in a store of the test's own; the
     * default store (the runtime folder) is elsewhere, so a VM that did not
     * follow its image's store would not be counted by vm_folders(). */
    char images[200];
    snprintf(images, sizeof images, "%s/images", work_dir);
    snprintf(vms_dir, sizeof vms_dir, "%s/store-vms", work_dir);
    snprintf(default_vms_dir, sizeof default_vms_dir, "%s/supermachine/vms", work_dir);
    setenv("XDG_RUNTIME_DIR", work_dir, 1);
    sm_error err = { 0 };
    if (sm_store_new(images, vms_dir, &store, &err)) {
        fprintf(stderr, "sm_store_new: %s\n", err.message);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_bounds),
        cmocka_unit_test(test_broken_image),
        cmocka_unit_test(test_min_prestarted),
        cmocka_unit_test(test_eight_threads_at_once),
        cmocka_unit_test(test_max_and_acquire_timeout),
        cmocka_unit_test(test_acquire_timeout_zero),
        cmocka_unit_test(test_restore_on_release_gives_fresh_vm),
        cmocka_unit_test(test_no_restore_on_release_reuses_vm),
        cmocka_unit_test(test_idle_timeout_shrinks_to_min),
        cmocka_unit_test(test_killed_vmm_not_handed_out),
        cmocka_unit_test(test_free_with_vm_acquired),
    };
    const char *filter = getenv("SM_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    int failed = cmocka_run_group_tests_name("pool", tests, bake, unbake);
    int left = vm_folders();
    if (left) {
        fprintf(stderr, "FAIL: %d VM folder(s) left in %s\n", left, vms_dir);
        failed++;
    }
    /* No VMM left unreaped. */
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) {
        fprintf(stderr, "FAIL: a child process is left\n");
        failed++;
    }
    sm_store_free(store);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", work_dir);
    if (system(cmd) != 0)
        failed++;
    return failed ? 1 : 0;
}
