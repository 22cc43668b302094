#include "vmm/network.h"
#include "base/clock.h"
#include "base/error.h"
#include "vmm/confine.h"
#include "vmm/net_filter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <slirp/libslirp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#define GUEST_ADDR "10.0.2.15"
#define NAT_NETWORK "10.0.2.0"
#define NAT_NETMASK "255.255.255.0"
#define MAX_FRAME 1514
/* Frames waiting for the network's thread: a burst of a full TX ring, more
 * than one queue's worth of the guest's descriptors. */
#define QUEUE_FRAMES 512
/* libslirp keeps one or two timers; room for a few more. */
#define MAX_TIMERS 8
#define MAX_LOG_LINES 64

struct queued_frame {
    uint16_t len;
    uint8_t data[MAX_FRAME];
};

struct nat_timer {
    bool used, armed;
    SlirpTimerId id;
    void *cb_opaque;
    int64_t expire_ms;
};

/* A port to publish while the VM runs, handed to the network's thread (the
 * only one that may touch the NAT) by vm_network_publish. */
struct publish_request {
    const char *spec;
    sm_code rc;
    sm_error *err;
    bool done;
};

struct vm_network {
    struct vm_network_config cfg;
    struct net_policy policy;
    struct net_ports ports;
    Slirp *slirp;
    pthread_t thread;
    bool thread_running;
    int wake_fd;

    pthread_mutex_t lock; /* guards the queue, stopping and the stats */
    pthread_mutex_t deliver_lock; /* held while a frame goes to the guest */
    bool held;                    /* under deliver_lock: vm_network_hold */
    struct queued_frame *queue;
    size_t head, count;
    bool stopping;
    struct vm_network_stats stats;
    struct publish_request *publish; /* under lock: the one waiting, or NULL */
    pthread_cond_t publish_cond;     /* a request was taken or answered */

    /* The network thread's own. */
    struct pollfd *fds;
    size_t nfds, fds_cap;
    size_t nat_sockets;        /* the NAT's host sockets open now */
    struct nat_timer timers[MAX_TIMERS];
    struct queued_frame taken; /* the frame being handed on */
    unsigned log_lines;        /* at most MAX_LOG_LINES: a guest must not fill the log */
};

/* ---- logging ------------------------------------------------------------------ */

static void log_line(struct vm_network *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(struct vm_network *n, const char *fmt, ...)
{
    if (n->cfg.log_fd < 0 || n->log_lines >= MAX_LOG_LINES)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if ((size_t)len > sizeof line - 2)
        len = (int)sizeof line - 2;
    line[len++] = '\n';
    n->log_lines++;
    (void)!write(n->cfg.log_fd, line, (size_t)len);
}

/* ---- libslirp's callbacks ------------------------------------------------------- */

/* A frame for the guest, unless the VM is held still. */
static void deliver(struct vm_network *n, const uint8_t *frame, size_t len)
{
    pthread_mutex_lock(&n->deliver_lock);
    bool held = n->held;
    if (!held)
        n->cfg.deliver(n->cfg.deliver_ctx, frame, len);
    pthread_mutex_unlock(&n->deliver_lock);
    pthread_mutex_lock(&n->lock);
    if (held)
        n->stats.dropped++;
    else
        n->stats.to_guest++;
    pthread_mutex_unlock(&n->lock);
}

void vm_network_hold(struct vm_network *n, bool hold)
{
    pthread_mutex_lock(&n->deliver_lock);
    n->held = hold;
    pthread_mutex_unlock(&n->deliver_lock);
}

static ssize_t nat_send_packet(const void *buf, size_t len, void *opaque)
{
    deliver(opaque, buf, len);
    return (ssize_t)len;
}

static void nat_guest_error(const char *msg, void *opaque)
{
    log_line(opaque, "network: the NAT refused a guest frame: %s", msg);
}

static int64_t nat_clock_ns(void *opaque)
{
    (void)opaque;
    return clock_now_ns();
}

static void *nat_timer_new(SlirpTimerId id, void *cb_opaque, void *opaque)
{
    struct vm_network *n = opaque;
    for (int i = 0; i < MAX_TIMERS; i++)
        if (!n->timers[i].used) {
            n->timers[i] = (struct nat_timer){ .used = true, .id = id, .cb_opaque = cb_opaque };
            return &n->timers[i];
        }
    log_line(n, "network: the NAT asked for more than %d timers", MAX_TIMERS);
    return NULL;
}

static void nat_timer_free(void *timer, void *opaque)
{
    (void)opaque;
    if (timer)
        *(struct nat_timer *)timer = (struct nat_timer){ 0 };
}

static void nat_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    (void)opaque;
    if (!timer)
        return;
    struct nat_timer *t = timer;
    t->armed = true;
    t->expire_ms = expire_ms;
}

/* libslirp announces each host socket it opens and closes: the count is
 * what VM_NETWORK_MAX_SOCKETS bounds. (The fds themselves are collected
 * afresh for every poll.) Called on the network's thread. */
static void nat_register_fd(int fd, void *opaque)
{
    struct vm_network *n = opaque;
    (void)fd;
    n->nat_sockets++;
}

static void nat_unregister_fd(int fd, void *opaque)
{
    struct vm_network *n = opaque;
    (void)fd;
    if (n->nat_sockets)
        n->nat_sockets--;
}

static void wake(struct vm_network *n)
{
    uint64_t one = 1;
    (void)!write(n->wake_fd, &one, sizeof one);
}

static void nat_notify(void *opaque)
{
    wake(opaque);
}

static const SlirpCb nat_callbacks = {
    .send_packet = nat_send_packet,
    .guest_error = nat_guest_error,
    .clock_get_ns = nat_clock_ns,
    .timer_free = nat_timer_free,
    .timer_mod = nat_timer_mod,
    .register_poll_fd = nat_register_fd,
    .unregister_poll_fd = nat_unregister_fd,
    .notify = nat_notify,
    .timer_new_opaque = nat_timer_new,
};

/* ---- polling ------------------------------------------------------------------------ */

static int add_poll(int fd, int events, void *opaque)
{
    struct vm_network *n = opaque;
    if (n->nfds == n->fds_cap) {
        size_t cap = n->fds_cap ? n->fds_cap * 2 : 64;
        struct pollfd *more = realloc(n->fds, cap * sizeof *more);
        if (!more)
            return -1;
        n->fds = more;
        n->fds_cap = cap;
    }
    short e = 0;
    e |= events & SLIRP_POLL_IN ? POLLIN : 0;
    e |= events & SLIRP_POLL_OUT ? POLLOUT : 0;
    e |= events & SLIRP_POLL_PRI ? POLLPRI : 0;
    n->fds[n->nfds] = (struct pollfd){ .fd = fd, .events = e };
    return (int)n->nfds++;
}

static int get_revents(int idx, void *opaque)
{
    struct vm_network *n = opaque;
    if (idx < 0 || (size_t)idx >= n->nfds)
        return 0;
    short r = n->fds[idx].revents;
    return (r & POLLIN ? SLIRP_POLL_IN : 0) | (r & POLLOUT ? SLIRP_POLL_OUT : 0) |
           (r & POLLPRI ? SLIRP_POLL_PRI : 0) | (r & POLLERR ? SLIRP_POLL_ERR : 0) |
           (r & POLLHUP ? SLIRP_POLL_HUP : 0);
}

/* The poll timeout, shortened to the nearest armed timer. */
static int poll_timeout(struct vm_network *n, uint32_t nat_ms)
{
    int64_t now = clock_now_ns() / 1000000, timeout = nat_ms == UINT32_MAX ? -1 : (int64_t)nat_ms;
    for (int i = 0; i < MAX_TIMERS; i++) {
        const struct nat_timer *t = &n->timers[i];
        if (!t->used || !t->armed)
            continue;
        int64_t left = t->expire_ms > now ? t->expire_ms - now : 0;
        if (timeout < 0 || left < timeout)
            timeout = left;
    }
    return timeout > INT_MAX ? INT_MAX : (int)timeout;
}

static void run_timers(struct vm_network *n)
{
    int64_t now = clock_now_ns() / 1000000;
    for (int i = 0; i < MAX_TIMERS; i++) {
        struct nat_timer *t = &n->timers[i];
        if (t->used && t->armed && t->expire_ms <= now) {
            t->armed = false;
            slirp_handle_timer(n->slirp, t->id, t->cb_opaque);
        }
    }
}

/* ---- the guest's frames ------------------------------------------------------------ */

void vm_network_send(struct vm_network *n, const uint8_t *frame, size_t len)
{
    pthread_mutex_lock(&n->lock);
    bool fits = len <= MAX_FRAME && n->count < QUEUE_FRAMES;
    if (fits) {
        struct queued_frame *q = &n->queue[(n->head + n->count) % QUEUE_FRAMES];
        q->len = (uint16_t)len;
        memcpy(q->data, frame, len);
        n->count++;
    } else {
        n->stats.queue_full++;
    }
    pthread_mutex_unlock(&n->lock);
    if (fits)
        wake(n);
}

static void judge_and_pass(struct vm_network *n, const uint8_t *frame, size_t len)
{
    enum net_verdict v = net_filter_judge(&n->policy, &n->ports, frame, len);
    bool full = v == NET_VERDICT_PASS && n->nat_sockets >= VM_NETWORK_MAX_SOCKETS &&
                net_filter_opens_flow(&n->ports, frame, len);
    if (full) {
        v = NET_VERDICT_REFUSE;
        pthread_mutex_lock(&n->lock);
        n->stats.nat_full++;
        pthread_mutex_unlock(&n->lock);
    }
    if (v == NET_VERDICT_PASS) {
        slirp_input(n->slirp, frame, (int)len);
        return;
    }
    uint8_t refusal[NET_REFUSAL_MAX];
    size_t rlen = v == NET_VERDICT_REFUSE ? net_filter_refusal(frame, len, refusal) : 0;
    if (rlen)
        deliver(n, refusal, rlen);
    pthread_mutex_lock(&n->lock);
    if (rlen)
        n->stats.refused++;
    else
        n->stats.dropped++;
    pthread_mutex_unlock(&n->lock);
}

/* Takes the queued frames one at a time (the lock is not held while the NAT
 * works) and hands them on. */
static void drain_queue(struct vm_network *n)
{
    struct queued_frame *frame = &n->taken;
    for (;;) {
        pthread_mutex_lock(&n->lock);
        bool any = n->count > 0;
        if (any) {
            *frame = n->queue[n->head];
            n->head = (n->head + 1) % QUEUE_FRAMES;
            n->count--;
            n->stats.to_nat++;
        }
        pthread_mutex_unlock(&n->lock);
        if (!any)
            return;
        judge_and_pass(n, frame->data, frame->len);
    }
}

static bool stopping(struct vm_network *n)
{
    pthread_mutex_lock(&n->lock);
    bool s = n->stopping;
    pthread_mutex_unlock(&n->lock);
    return s;
}

static sm_code publish_port(struct vm_network *n, const struct net_port *p, sm_error *err);

/* Answers the waiting publish request, if any. */
static void serve_publish(struct vm_network *n)
{
    pthread_mutex_lock(&n->lock);
    struct publish_request *req = n->publish;
    pthread_mutex_unlock(&n->lock);
    if (!req)
        return;
    char why[256];
    sm_code rc = SM_OK;
    size_t before = n->ports.count;
    if (!net_ports_add(&n->ports, req->spec, why, sizeof why))
        rc = error_set(req->err, SM_E_INVALID, "%s", why);
    else if ((rc = publish_port(n, &n->ports.ports[before], req->err)))
        n->ports.count = before;
    pthread_mutex_lock(&n->lock);
    req->rc = rc;
    req->done = true;
    n->publish = NULL;
    pthread_cond_broadcast(&n->publish_cond);
    pthread_mutex_unlock(&n->lock);
}

/* What is left when the thread ends: refused, so no caller waits forever. */
static void refuse_publish(struct vm_network *n)
{
    pthread_mutex_lock(&n->lock);
    if (n->publish) {
        n->publish->rc = error_set(n->publish->err, SM_E_IO, "the VM's network is stopping");
        n->publish->done = true;
        n->publish = NULL;
    }
    pthread_cond_broadcast(&n->publish_cond);
    pthread_mutex_unlock(&n->lock);
}

sm_code vm_network_publish(struct vm_network *n, const char *spec, sm_error *err)
{
    struct publish_request req = { .spec = spec, .err = err };
    pthread_mutex_lock(&n->lock);
    while (n->publish && !n->stopping)
        pthread_cond_wait(&n->publish_cond, &n->lock);
    if (n->stopping) {
        pthread_mutex_unlock(&n->lock);
        return error_set(err, SM_E_IO, "the VM's network is stopping");
    }
    n->publish = &req;
    pthread_mutex_unlock(&n->lock);
    wake(n);
    pthread_mutex_lock(&n->lock);
    while (!req.done)
        pthread_cond_wait(&n->publish_cond, &n->lock);
    pthread_mutex_unlock(&n->lock);
    return req.rc;
}

static void *network_thread(void *arg)
{
    struct vm_network *n = arg;
    prctl(PR_SET_NAME, "net");
    sm_error err = { 0 };
    if (n->cfg.confine && confine_thread(CONFINE_NETWORK, &err)) {
        /* Unconfined, the NAT must not run at all. */
        log_line(n, "%s", err.message);
        abort();
    }
    while (!stopping(n)) {
        drain_queue(n);
        serve_publish(n);
        uint32_t nat_ms = UINT32_MAX;
        n->nfds = 0;
        add_poll(n->wake_fd, SLIRP_POLL_IN, n);
        slirp_pollfds_fill(n->slirp, &nat_ms, add_poll, n);
        int r = poll(n->fds, n->nfds, poll_timeout(n, nat_ms));
        if (r > 0 && (n->fds[0].revents & POLLIN)) {
            uint64_t count;
            (void)!read(n->wake_fd, &count, sizeof count);
        }
        slirp_pollfds_poll(n->slirp, r < 0 && errno != EINTR, get_revents, n);
        run_timers(n);
    }
    refuse_publish(n);
    return NULL;
}

/* ---- setup ---------------------------------------------------------------------------- */

static Slirp *make_nat(struct vm_network *n)
{
    SlirpConfig c = { .version = 4, .in_enabled = true, .disable_dhcp = true };
    inet_pton(AF_INET, NAT_NETWORK, &c.vnetwork);
    inet_pton(AF_INET, NAT_NETMASK, &c.vnetmask);
    inet_pton(AF_INET, NET_NAT_HOST4, &c.vhost);
    inet_pton(AF_INET, NET_NAT_DNS4, &c.vnameserver);
    inet_pton(AF_INET, GUEST_ADDR, &c.vdhcp_start);
    return slirp_new(&c, &nat_callbacks, n);
}

static sm_code publish_port(struct vm_network *n, const struct net_port *p, sm_error *err)
{
    struct in_addr guest, host;
    inet_pton(AF_INET, GUEST_ADDR, &guest);
    char text[NET_PORT_TEXT_MAX];
    net_port_format(p, text, sizeof text);
    if (p->family != AF_INET)
        return error_set(err, SM_E_UNSUPPORTED, "-p %s: the host side must be an IPv4 address for now", text);
    memcpy(&host, p->host_addr, 4);
    if (slirp_add_hostfwd(n->slirp, p->proto == NET_UDP, host, p->host_port, guest, p->guest_port) < 0)
        return error_set(err, SM_E_IO, "-p %s: cannot listen on the host's port %u (in use?)", text,
                         (unsigned)p->host_port);
    return SM_OK;
}

static sm_code publish_ports(struct vm_network *n, sm_error *err)
{
    for (size_t i = 0; i < n->ports.count; i++) {
        sm_code rc = publish_port(n, &n->ports.ports[i], err);
        if (rc)
            return rc;
    }
    return SM_OK;
}

sm_code vm_network_open(const struct vm_network_config *cfg, struct vm_network **out, sm_error *err)
{
    *out = NULL;
    if (!cfg->deliver || !cfg->policy)
        return error_set(err, SM_E_INVALID, "vm_network_open: no deliver callback or policy");
    struct vm_network *n = calloc(1, sizeof *n);
    if (!n)
        return error_set(err, SM_E_NOMEM, "out of memory");
    n->cfg = *cfg;
    n->policy = *cfg->policy;
    if (cfg->ports)
        n->ports = *cfg->ports;
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->deliver_lock, NULL);
    pthread_cond_init(&n->publish_cond, NULL);
    n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    n->queue = calloc(QUEUE_FRAMES, sizeof *n->queue);
    sm_code rc = SM_OK;
    if (n->wake_fd < 0 || !n->queue)
        rc = error_set_errno(err, SM_E_NOMEM, errno, "the network's queue");
    if (!rc && !(n->slirp = make_nat(n)))
        rc = error_set(err, SM_E_IO, "libslirp could not start the guest's NAT");
    if (!rc)
        rc = publish_ports(n, err);
    if (!rc) {
        int e = pthread_create(&n->thread, NULL, network_thread, n);
        if (e)
            rc = error_set_errno(err, SM_E_IO, e, "cannot start the network's thread");
        n->thread_running = !e;
    }
    if (rc) {
        vm_network_close(n);
        return rc;
    }
    *out = n;
    return SM_OK;
}

void vm_network_stats(struct vm_network *n, struct vm_network_stats *out)
{
    pthread_mutex_lock(&n->lock);
    *out = n->stats;
    pthread_mutex_unlock(&n->lock);
}

void vm_network_close(struct vm_network *n)
{
    if (!n)
        return;
    if (n->thread_running) {
        pthread_mutex_lock(&n->lock);
        n->stopping = true;
        pthread_mutex_unlock(&n->lock);
        wake(n);
        pthread_join(n->thread, NULL);
    }
    if (n->slirp)
        slirp_cleanup(n->slirp);
    if (n->wake_fd >= 0)
        close(n->wake_fd);
    pthread_mutex_destroy(&n->lock);
    pthread_mutex_destroy(&n->deliver_lock);
    pthread_cond_destroy(&n->publish_cond);
    free(n->queue);
    free(n->fds);
    free(n);
}
