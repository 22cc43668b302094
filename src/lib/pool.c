/*
 * A pool of VMs restored from one image (the "Pool" section of
 * supermachine.h).
 *
 * Every VM of the pool is in exactly one of these places, all guarded by
 * pool->mu:
 *
 *   place        holds                              who moves it out
 *   -----------  ---------------------------------  ----------------------------
 *   starting     a count: restores in progress      the starter, into idle
 *   idle[]       ready VMs, oldest first            acquire (newest), the stopper
 *                                                   (idle too long, or dead)
 *   in_use[]     handed out by sm_pool_acquire      sm_pool_release
 *   doomed[]     to be stopped and freed            the stopper
 *
 * Threads and condition variables:
 *   starter  waits on `work` until a VM is wanted (fewer than min idle, an
 *            acquire waiting, or a released VM to replace) and there is room
 *            under max; restores it with sm_vm_start (unlocked) and signals
 *            `ready`. It is the only thread that starts VMs: an attached
 *            VM's VMM gets SIGTERM when the thread that spawned it ends.
 *   stopper  waits on `work` (or a 1 s tick, or the next idle expiry); stops
 *            doomed VMs (unlocked, sm_vm_stop may take seconds), moves idle
 *            VMs past the idle timeout beyond min, and dead idle VMs, to
 *            doomed.
 *   callers  acquire waits on `ready`; release signals `work` and `ready`.
 *            sm_pool_free sets `closing`, wakes everyone, waits on `ready`
 *            for the acquires inside to leave, joins both threads.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "base/clock.h"
#include "supermachine.h"

#define DEFAULT_MIN 1
#define DEFAULT_MAX 4
#define DEFAULT_IDLE_TIMEOUT_MS 300000u
#define DEFAULT_ACQUIRE_TIMEOUT_MS 30000u
#define MAX_ACQUIRE_TIMEOUT_MS 3600000u
#define HEALTH_TICK_MS 1000u          /* how often idle VMs are checked for death */
#define RETRY_FIRST_MS 500u           /* after a failed restore, then doubling */
#define RETRY_MAX_MS 30000u

struct sm_pool_config {
    uint32_t min;
    uint32_t max;
    uint32_t idle_timeout_ms;
    uint32_t acquire_timeout_ms;
    bool restore_on_release;
};

struct idle_vm {
    sm_vm *vm;
    uint64_t since_ms;   /* when it became idle (monotonic) */
};

struct sm_pool {
    struct sm_pool_config cfg;
    sm_image *image;            /* the pool's own reference to the image folder */
    sm_vm_config *vm_cfg;       /* restores from image; attached */

    pthread_mutex_t mu;
    pthread_cond_t work;        /* starter and stopper: something to do */
    pthread_cond_t ready;       /* acquirers and sm_pool_new/free: a VM or an error */
    pthread_t starter, stopper;
    bool starter_running, stopper_running;

    struct idle_vm *idle;       /* cfg.max slots */
    uint32_t n_idle;
    sm_vm **in_use;             /* cfg.max slots */
    uint32_t n_in_use;
    sm_vm **doomed;             /* 2 * cfg.max slots: see doom() */
    uint32_t n_doomed;
    uint32_t starting;
    uint32_t waiters;           /* acquires waiting on `ready` */
    uint32_t replace_wanted;    /* released VMs still to be replaced */
    uint32_t stopping_now;      /* doomed VMs the stopper is stopping */
    bool closing;

    uint64_t restored, acquire_waits, acquire_timeouts, dead_discarded, start_failures;
    sm_error last_start_error;  /* of the last failed restore */
};

/* ---- config ------------------------------------------------------------ */

sm_pool_config *sm_pool_config_new(void)
{
    sm_pool_config *c = calloc(1, sizeof *c);
    if (c) {
        c->min = DEFAULT_MIN;
        c->max = DEFAULT_MAX;
        c->idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
        c->acquire_timeout_ms = DEFAULT_ACQUIRE_TIMEOUT_MS;
        c->restore_on_release = true;
    }
    return c;
}

void sm_pool_config_free(sm_pool_config *cfg)
{
    free(cfg);
}

sm_code sm_pool_config_min(sm_pool_config *cfg, uint32_t n)
{
    if (!cfg || n > SM_POOL_MAX_VMS)
        return SM_E_INVALID;
    cfg->min = n;
    return SM_OK;
}

sm_code sm_pool_config_max(sm_pool_config *cfg, uint32_t n)
{
    if (!cfg || n < 1 || n > SM_POOL_MAX_VMS)
        return SM_E_INVALID;
    cfg->max = n;
    return SM_OK;
}

sm_code sm_pool_config_idle_timeout_ms(sm_pool_config *cfg, uint32_t ms)
{
    if (!cfg)
        return SM_E_INVALID;
    cfg->idle_timeout_ms = ms;
    return SM_OK;
}

sm_code sm_pool_config_acquire_timeout_ms(sm_pool_config *cfg, uint32_t ms)
{
    if (!cfg || ms > MAX_ACQUIRE_TIMEOUT_MS)
        return SM_E_INVALID;
    cfg->acquire_timeout_ms = ms;
    return SM_OK;
}

sm_code sm_pool_config_restore_on_release(sm_pool_config *cfg, bool on)
{
    if (!cfg)
        return SM_E_INVALID;
    cfg->restore_on_release = on;
    return SM_OK;
}

/* ---- time ---------------------------------------------------------------- */

/* Waits on cv until the monotonic time deadline_ms (the condvars are made
 * with CLOCK_MONOTONIC). */
static void wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t deadline_ms)
{
    struct timespec ts = { .tv_sec = (time_t)(deadline_ms / 1000u),
                           .tv_nsec = (long)(deadline_ms % 1000u) * 1000000L };
    pthread_cond_timedwait(cv, mu, &ts);
}

/* ---- the places (all with mu held) ---------------------------------------- */

static uint32_t counted(const sm_pool *p)
{
    return p->n_idle + p->n_in_use + p->starting;
}

/* Moves vm to doomed for the stopper. doomed has room for 2 * max: dooming
 * moves a VM from counted to doomed, and the starter adds one only while
 * counted + doomed + stopping_now < 2 * max (start_wanted). */
static void doom(sm_pool *p, sm_vm *vm)
{
    if (p->n_doomed < 2 * p->cfg.max) {
        p->doomed[p->n_doomed++] = vm;
    } else {
        /* Cannot happen (see above); stopping here beats leaking it. */
        sm_vm_free(vm);
    }
    pthread_cond_broadcast(&p->work);
}

static void idle_remove(sm_pool *p, uint32_t i)
{
    memmove(&p->idle[i], &p->idle[i + 1], (p->n_idle - i - 1) * sizeof p->idle[0]);
    p->n_idle--;
}

static bool in_use_remove(sm_pool *p, const sm_vm *vm)
{
    for (uint32_t i = 0; i < p->n_in_use; i++)
        if (p->in_use[i] == vm) {
            p->in_use[i] = p->in_use[--p->n_in_use];
            return true;
        }
    return false;
}

/* Should the starter restore one more VM now? */
static bool start_wanted(const sm_pool *p)
{
    if (p->closing || counted(p) >= p->cfg.max)
        return false;
    /* VMs still stopping hold memory too: do not race far ahead of them. */
    if (counted(p) + p->n_doomed + p->stopping_now >= 2 * p->cfg.max)
        return false;
    uint32_t coming = p->n_idle + p->starting;
    return coming < p->cfg.min || p->waiters > coming || p->replace_wanted > 0;
}

/* ---- the starter thread ------------------------------------------------------ */

static void *starter_main(void *arg)
{
    sm_pool *p = arg;
    uint32_t retry_ms = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->closing && !start_wanted(p))
            pthread_cond_wait(&p->work, &p->mu);
        if (p->closing)
            break;
        p->starting++;
        if (p->replace_wanted)
            p->replace_wanted--;
        pthread_mutex_unlock(&p->mu);
        sm_vm *vm = NULL;
        sm_error err = { 0 };
        sm_code rc = sm_vm_start(p->vm_cfg, &vm, &err);
        pthread_mutex_lock(&p->mu);
        p->starting--;
        if (rc == SM_OK) {
            p->idle[p->n_idle++] = (struct idle_vm){ vm, clock_now_ms() };
            p->restored++;
            retry_ms = 0;
        } else {
            p->start_failures++;
            p->last_start_error = err;
            p->last_start_error.code = rc;
        }
        pthread_cond_broadcast(&p->ready);
        pthread_cond_broadcast(&p->work);   /* the stopper's idle expiry may change */
        if (rc != SM_OK && !p->closing) {
            /* Do not spin on a broken image; acquirers got the error. */
            retry_ms = retry_ms ? retry_ms * 2 : RETRY_FIRST_MS;
            if (retry_ms > RETRY_MAX_MS)
                retry_ms = RETRY_MAX_MS;
            uint64_t until = clock_now_ms() + retry_ms;
            while (!p->closing && clock_now_ms() < until)
                wait_until(&p->work, &p->mu, until);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the stopper thread ------------------------------------------------------ */

/* Moves dead idle VMs, and idle VMs beyond min idle past the timeout, to
 * doomed. Returns when the next idle VM expires (UINT64_MAX: none). */
static uint64_t sweep_idle(sm_pool *p, uint64_t now)
{
    for (uint32_t i = 0; i < p->n_idle;) {
        if (!sm_vm_running(p->idle[i].vm)) {
            p->dead_discarded++;
            doom(p, p->idle[i].vm);
            idle_remove(p, i);
        } else {
            i++;
        }
    }
    /* Oldest first: idle[] is in the order VMs became idle. */
    while (p->n_idle > p->cfg.min &&
           now - p->idle[0].since_ms >= (uint64_t)p->cfg.idle_timeout_ms) {
        doom(p, p->idle[0].vm);
        idle_remove(p, 0);
    }
    if (p->n_idle > p->cfg.min)
        return p->idle[0].since_ms + p->cfg.idle_timeout_ms;
    return UINT64_MAX;
}

static void stop_doomed(sm_pool *p)
{
    while (p->n_doomed > 0) {
        sm_vm *batch[2 * SM_POOL_MAX_VMS];
        uint32_t n = p->n_doomed;
        memcpy(batch, p->doomed, n * sizeof batch[0]);
        p->n_doomed = 0;
        p->stopping_now = n;
        pthread_mutex_unlock(&p->mu);
        for (uint32_t i = 0; i < n; i++)
            sm_vm_free(batch[i]);   /* attached: stops it, reaps it, removes its folder */
        pthread_mutex_lock(&p->mu);
        p->stopping_now = 0;
        pthread_cond_broadcast(&p->work);   /* room for the starter */
    }
}

static void *stopper_main(void *arg)
{
    sm_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->closing) {
        stop_doomed(p);
        uint64_t now = clock_now_ms();
        uint64_t next = sweep_idle(p, now);
        if (p->n_doomed)
            continue;
        uint64_t tick = now + HEALTH_TICK_MS;
        if (!p->closing)
            wait_until(&p->work, &p->mu, next < tick ? next : tick);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- pool ------------------------------------------------------------------- */

static void free_parts(sm_pool *p)
{
    free(p->idle);
    free(p->in_use);
    free(p->doomed);
    sm_vm_config_free(p->vm_cfg);
    sm_image_free(p->image);
    free(p);
}

static void pool_destroy(sm_pool *p)
{
    /* The threads are gone: nothing else touches the pool. */
    for (uint32_t i = 0; i < p->n_idle; i++)
        sm_vm_free(p->idle[i].vm);
    for (uint32_t i = 0; i < p->n_doomed; i++)
        sm_vm_free(p->doomed[i]);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->ready);
    pthread_mutex_destroy(&p->mu);
    free_parts(p);
}

/* Ends both threads (waiting for the acquires inside to leave), then frees
 * everything but the in-use handles. */
static void pool_close(sm_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->ready);
    while (p->waiters > 0)
        pthread_cond_wait(&p->ready, &p->mu);
    pthread_mutex_unlock(&p->mu);
    if (p->starter_running)
        pthread_join(p->starter, NULL);
    if (p->stopper_running)
        pthread_join(p->stopper, NULL);
    pool_destroy(p);
}

static sm_code init_sync(sm_pool *p, sm_error *err)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca))
        return error_set(err, SM_E_NOMEM, "cannot make the pool's condition variables");
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_mutex_init(&p->mu, NULL);
    if (!e)
        e = pthread_cond_init(&p->work, &ca);
    if (!e)
        e = pthread_cond_init(&p->ready, &ca);
    pthread_condattr_destroy(&ca);
    return e ? error_set_errno(err, SM_E_NOMEM, e, "cannot make the pool's locks") : SM_OK;
}

static sm_code pool_alloc(const sm_image *img, const sm_pool_config *cfg, sm_pool **out,
                          sm_error *err)
{
    sm_pool *p = calloc(1, sizeof *p);
    if (!p)
        return error_set(err, SM_E_NOMEM, "out of memory");
    p->cfg = *cfg;
    p->idle = calloc(cfg->max, sizeof *p->idle);
    p->in_use = calloc(cfg->max, sizeof *p->in_use);
    p->doomed = calloc(2 * (size_t)cfg->max, sizeof *p->doomed);
    p->vm_cfg = sm_vm_config_new();
    sm_code rc = (!p->idle || !p->in_use || !p->doomed || !p->vm_cfg)
                     ? error_set(err, SM_E_NOMEM, "out of memory")
                     : sm_image_from_snapshot(sm_image_dir(img), &p->image, err);
    if (!rc)
        rc = sm_vm_config_image(p->vm_cfg, img); /* img's store too */
    if (!rc)
        rc = init_sync(p, err);   /* on failure, what did init needs no destroy on Linux */
    if (rc) {
        free_parts(p);
        return rc;
    }
    *out = p;
    return SM_OK;
}

static sm_code start_threads(sm_pool *p, sm_error *err)
{
    int e = pthread_create(&p->starter, NULL, starter_main, p);
    if (e)
        return error_set_errno(err, SM_E_IO, e, "cannot start the pool's thread");
    p->starter_running = true;
    e = pthread_create(&p->stopper, NULL, stopper_main, p);
    if (e)
        return error_set_errno(err, SM_E_IO, e, "cannot start the pool's thread");
    p->stopper_running = true;
    return SM_OK;
}

/* Waits until min VMs are idle, or a restore failed. */
static sm_code wait_min_ready(sm_pool *p, sm_error *err)
{
    sm_code rc = SM_OK;
    pthread_mutex_lock(&p->mu);
    while (p->n_idle < p->cfg.min && p->start_failures == 0)
        pthread_cond_wait(&p->ready, &p->mu);
    if (p->n_idle < p->cfg.min) {
        rc = error_set(err, p->last_start_error.code, "the pool could not restore its first VMs "
                     "(%u of min %u ready): %s", p->n_idle, p->cfg.min,
                     p->last_start_error.message);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

sm_code sm_pool_new(const sm_image *img, const sm_pool_config *cfg, sm_pool **out,
                    sm_error *err)
{
    if (!img || !cfg || !out)
        return error_set(err, SM_E_INVALID, "sm_pool_new: NULL image, config or out");
    *out = NULL;
    if (cfg->min > cfg->max)
        return error_set(err, SM_E_INVALID, "pool: min (%u) is more than max (%u)", cfg->min,
                       cfg->max);
    sm_pool *p = NULL;
    sm_code rc = pool_alloc(img, cfg, &p, err);
    if (rc)
        return rc;
    rc = start_threads(p, err);
    if (!rc)
        rc = wait_min_ready(p, err);
    if (rc) {
        pool_close(p);
        return rc;
    }
    *out = p;
    return SM_OK;
}

/* The newest idle VM that is still running; dead ones are doomed. */
static sm_vm *take_idle(sm_pool *p)
{
    while (p->n_idle > 0) {
        sm_vm *vm = p->idle[--p->n_idle].vm;
        if (sm_vm_running(vm))
            return vm;
        p->dead_discarded++;
        doom(p, vm);   /* the starter then restores another if min wants it */
    }
    return NULL;
}

static sm_code acquire_timed_out(sm_pool *p, uint64_t waited_ms, sm_error *err)
{
    p->acquire_timeouts++;
    bool failing = p->start_failures > 0 && p->last_start_error.message[0];
    return error_set(err, SM_E_TIMEOUT, "no VM free in the pool after %llu ms: %u in use, %u "
                   "starting, max %u (release VMs sooner, raise max, or raise the acquire "
                   "timeout)%s%s", (unsigned long long)waited_ms, p->n_in_use, p->starting,
                   p->cfg.max, failing ? "; the last restore failed: " : "",
                   failing ? p->last_start_error.message : "");
}

sm_code sm_pool_acquire(sm_pool *pool, sm_vm **vm, sm_error *err)
{
    if (!pool || !vm)
        return error_set(err, SM_E_INVALID, "sm_pool_acquire: NULL pool or vm");
    *vm = NULL;
    sm_pool *p = pool;
    uint64_t start = clock_now_ms(), deadline = start + p->cfg.acquire_timeout_ms;
    sm_code rc = SM_OK;
    bool waited = false;
    pthread_mutex_lock(&p->mu);
    uint64_t failures_seen = p->start_failures;
    for (;;) {
        if (p->closing) {
            rc = error_set(err, SM_E_CANCELLED, "the pool is being freed");
            break;
        }
        sm_vm *got = take_idle(p);
        if (got) {
            p->in_use[p->n_in_use++] = got;
            *vm = got;
            break;
        }
        if (p->start_failures != failures_seen && p->starting == 0) {
            rc = error_set(err, p->last_start_error.code, "the pool could not restore a VM: %s",
                         p->last_start_error.message);
            break;
        }
        uint64_t now = clock_now_ms();
        if (now >= deadline) {
            rc = acquire_timed_out(p, now - start, err);
            break;
        }
        if (!waited) {
            waited = true;
            p->acquire_waits++;
        }
        p->waiters++;
        pthread_cond_broadcast(&p->work);   /* the starter restores one if under max */
        wait_until(&p->ready, &p->mu, deadline);
        p->waiters--;
    }
    if (p->closing)
        pthread_cond_broadcast(&p->ready);  /* sm_pool_free waits for waiters == 0 */
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void sm_pool_release(sm_pool *pool, sm_vm *vm)
{
    if (!pool || !vm)
        return;
    sm_pool *p = pool;
    pthread_mutex_lock(&p->mu);
    if (!in_use_remove(p, vm)) {
        pthread_mutex_unlock(&p->mu);
        return;   /* not ours: leave it alone */
    }
    if (!sm_vm_running(vm)) {
        p->dead_discarded++;
        doom(p, vm);
    } else if (p->cfg.restore_on_release) {
        doom(p, vm);
        if (p->replace_wanted < p->cfg.max)
            p->replace_wanted++;
    } else {
        p->idle[p->n_idle++] = (struct idle_vm){ vm, clock_now_ms() };
        pthread_cond_broadcast(&p->ready);
    }
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
}

sm_code sm_pool_stats_get(sm_pool *pool, sm_pool_stats *out)
{
    if (!pool || !out)
        return SM_E_INVALID;
    sm_pool *p = pool;
    pthread_mutex_lock(&p->mu);
    *out = (sm_pool_stats){
        .alive = p->n_idle + p->n_in_use,
        .idle = p->n_idle,
        .in_use = p->n_in_use,
        .starting = p->starting,
        .min = p->cfg.min,
        .max = p->cfg.max,
        .restored = p->restored,
        .acquire_waits = p->acquire_waits,
        .acquire_timeouts = p->acquire_timeouts,
        .dead_discarded = p->dead_discarded,
        .start_failures = p->start_failures,
    };
    pthread_mutex_unlock(&p->mu);
    return SM_OK;
}

void sm_pool_free(sm_pool *pool)
{
    if (pool)
        pool_close(pool);
}
