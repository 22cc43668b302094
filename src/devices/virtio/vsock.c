/*
 * virtio-vsock in user space: the guest's stream sockets bridged to host
 * Unix sockets. Interface and host-side conventions: vsock.h. Packet header
 * table, ops, credit rules and the connection state machine: vsock_conn.h.
 *
 * How data moves, and why nothing grows without bound:
 *   host -> guest  A readable host socket is not read until the guest has
 *                  given us an rx buffer; then we read straight into that
 *                  buffer, at most the guest's credit. While a connection
 *                  waits (no rx buffer, no credit) its socket is out of our
 *                  epoll set, so a stalled guest costs no CPU and the host
 *                  writer simply blocks on its full socket.
 *   guest -> host  An RW packet is written to the host socket at once; what
 *                  the socket does not take is copied into the connection's
 *                  ring, which can never need more than the buf_alloc we
 *                  advertise (a guest that sends more is reset). fwd_cnt
 *                  counts only bytes really written, and a CREDIT_UPDATE goes
 *                  out when half the buffer was freed unannounced.
 *   replies        per-connection flags (one of each at most) plus a bounded
 *                  queue of RSTs for packets that match no connection.
 *   budgets        each callback handles at most one ring's worth of
 *                  chains; if work remains, an eventfd wakes us again
 *                  instead of looping.
 *
 * Everything here runs with the transport's lock held: ops are called with
 * it, and on_epoll() takes it.
 */
#include "devices/virtio/vsock.h"
#include "base/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/vsock_conn.h"
#include "base/error.h"

#define RST_QUEUE_LEN   128   /* RSTs for unknown connections waiting for rx buffers */
#define ACCEPT_BUDGET   16    /* connections accepted per listener wakeup */
#define EVENT_BATCH     64
#define LISTEN_BACKLOG  128
#define MAX_END_LOGS    64    /* connection ends logged per device */

/* epoll tags of the fds that are not connections; connections use gen << 32 | index. */
#define TAG_UDS_LISTENER  0xfffffff0u
#define TAG_EXEC_LISTENER 0xfffffff1u
#define TAG_KICK          0xfffffff2u
#define TAG_TIMER         0xfffffff3u

struct listener {
    int fd;
    char *path;
    dev_t st_dev;        /* the socket file we created: only that one is unlinked */
    ino_t st_ino;
    uint32_t tag;
    bool paused;         /* out of file descriptors: not in epoll until a connection ends */
};

struct vsock {
    struct virtio_device dev;
    uint64_t guest_cid;
    uint32_t exec_port;
    struct event_loop *loop;
    int epfd;            /* our own epoll set: one fd in the VMM's loop, however many sockets */
    int kick_fd;         /* eventfd: "more work, come back" */
    int timer_fd;        /* ticks only while some host connect waits on a deadline */
    bool timer_armed;
    uint32_t connect_timeout_ms;
    uint32_t ndeadlines; /* connections with a deadline set */
    struct listener uds;
    struct listener exec;
    bool active;         /* DRIVER_OK seen and queues usable */
    bool event_pending;  /* a TRANSPORT_RESET event waits for an event buffer */
    /* The guest has the TRANSPORT_RESET event but has not handled it yet: it
     * will reset every connected socket when it does, so nothing new may be
     * connected until then. Its driver refills (and kicks) the event queue
     * after handling an event: that kick is the acknowledgement. */
    bool reset_unacked;
    /* Restoring a snapshot: packets the guest queued before it was taken
     * belong to connections that no longer exist; they are returned unread
     * until the transport reset, rather than acted on (a stale REQUEST would
     * dial a host service only to hang up at once). */
    bool discard_tx;
    struct vsock_conn_table table;
    int32_t rx_head, rx_tail;   /* connections with something for the guest */
    struct vsock_hdr rst_queue[RST_QUEUE_LEN];
    uint32_t rst_head, rst_len;
    struct vsock_stats stats;
    int log_fd;                 /* vsock_config's */
    uint32_t end_logs;          /* connection ends logged so far (log_conn_end) */
    struct vq_chain chain;      /* scratch: too big for the stack */
};

static struct vsock *vsock_of(struct virtio_device *dev) { return dev->priv; }

/* --- rx list: connections waiting to send the guest a packet ------------------------- */

static void rx_enqueue(struct vsock *v, struct vsock_conn *c)
{
    if (c->in_rx_list)
        return;
    c->in_rx_list = true;
    c->rx_next = -1;
    c->rx_prev = v->rx_tail;
    if (v->rx_tail >= 0)
        v->table.conns[v->rx_tail].rx_next = (int32_t)c->index;
    else
        v->rx_head = (int32_t)c->index;
    v->rx_tail = (int32_t)c->index;
}

static void rx_unlink(struct vsock *v, struct vsock_conn *c)
{
    if (!c->in_rx_list)
        return;
    if (c->rx_prev >= 0)
        v->table.conns[c->rx_prev].rx_next = c->rx_next;
    else
        v->rx_head = c->rx_next;
    if (c->rx_next >= 0)
        v->table.conns[c->rx_next].rx_prev = c->rx_prev;
    else
        v->rx_tail = c->rx_prev;
    c->in_rx_list = false;
    c->rx_prev = c->rx_next = -1;
}

static void kick_self(struct vsock *v)
{
    uint64_t one = 1;
    ssize_t n = write(v->kick_fd, &one, sizeof one);
    (void)n; /* a full counter is already a pending kick */
}

/* --- connect deadlines ----------------------------------------------------------------------
 * A host client must be connected (CONNECT line read, guest answered) within
 * connect_timeout_ms of being accepted, so a guest that never answers, or a
 * client that never speaks, cannot hold a slot forever. */

static void arm_timer(struct vsock *v, bool on)
{
    if (on == v->timer_armed)
        return;
    struct itimerspec its = { 0 };
    if (on) {
        /* A quarter of the timeout, within [5 ms, 1 s]: deadlines are met within 25%. */
        int64_t tick = (int64_t)v->connect_timeout_ms * 250000;
        tick = tick < 5000000 ? 5000000 : tick > 1000000000 ? 1000000000 : tick;
        its.it_value = its.it_interval = (struct timespec){ .tv_sec = tick / 1000000000, .tv_nsec = tick % 1000000000 };
    }
    if (timerfd_settime(v->timer_fd, 0, &its, NULL) == 0)
        v->timer_armed = on;
}

static void set_deadline(struct vsock *v, struct vsock_conn *c)
{
    if (!c->deadline_ns)
        v->ndeadlines++;
    c->deadline_ns = clock_now_ns() + (int64_t)v->connect_timeout_ms * 1000000;
    arm_timer(v, true);
}

/* The timer itself stops at its next tick once no deadline is left. */
static void clear_deadline(struct vsock *v, struct vsock_conn *c)
{
    if (!c->deadline_ns)
        return;
    c->deadline_ns = 0;
    v->ndeadlines--;
}

/* --- connection lifetime ----------------------------------------------------------------- */

static void resume_listeners(struct vsock *v);

static void conn_close_fd(struct vsock_conn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also leaves our epoll set: the fd is never duplicated */
    c->fd = -1;
    c->epoll_events = 0;
    c->in_epoll = false;
}

static void conn_free(struct vsock *v, struct vsock_conn *c)
{
    clear_deadline(v, c);
    rx_unlink(v, c);
    conn_close_fd(c);
    vsock_table_release(&v->table, c);
    resume_listeners(v);
}

/* Whether the guest has heard of this connection (so ending it needs an RST). */
static bool guest_knows(const struct vsock_conn *c)
{
    return c->hashed && c->state != VSOCK_CONN_HOST_HANDSHAKE && !(c->pending & VSOCK_PEND_REQUEST);
}

/* Why a connection ended, on the VMM's stderr (its log), when the end came
 * from the guest or from us; a host client that leaves needs no line (NULL).
 * At most MAX_END_LOGS lines per device: a guest can end connections at will. */
static void log_conn_end(struct vsock *v, const struct vsock_conn *c, const char *why)
{
    if (!why || v->log_fd <= 0 || v->end_logs >= MAX_END_LOGS)
        return;
    if (++v->end_logs == MAX_END_LOGS)
        dprintf(v->log_fd, "supermachine-vmm: vsock: %u connection ends logged; no more will be\n", MAX_END_LOGS);
    else
        dprintf(v->log_fd, "supermachine-vmm: vsock: connection host port %u <-> guest port %u ended: %s "
                "(%llu bytes to the host, %u waiting)\n", c->local_port, c->peer_port, why,
                (unsigned long long)c->fwd_cnt, c->to_host.len);
}

/* Ends c: the host socket closes now, the guest gets an RST when it gives us a buffer. */
static void conn_abort(struct vsock *v, struct vsock_conn *c, const char *why)
{
    log_conn_end(v, c, why);
    if (!guest_knows(c)) {
        conn_free(v, c);
        return;
    }
    clear_deadline(v, c);
    conn_close_fd(c);
    vsock_ring_free(&c->to_host);
    c->state = VSOCK_CONN_CLOSING;
    c->pending = VSOCK_PEND_RST;
    rx_enqueue(v, c);
}

static void conn_protocol_error(struct vsock *v, struct vsock_conn *c, const char *why)
{
    v->stats.protocol_errors++;
    conn_abort(v, c, why);
}

/* The events c needs now; *watch says whether its socket belongs in our epoll set at all. */
static uint32_t wanted_events(const struct vsock_conn *c, bool *watch)
{
    *watch = false;
    if (c->fd < 0)
        return 0;
    if (c->state == VSOCK_CONN_HOST_HANDSHAKE) {
        *watch = true;
        return EPOLLIN;
    }
    if (c->state == VSOCK_CONN_HOST_CONNECTING) {
        *watch = true; /* nothing asked for, but EPOLLHUP comes anyway: the client gave up */
        return 0;
    }
    if (c->state != VSOCK_CONN_ESTABLISHED)
        return 0;
    uint32_t ev = 0;
    if (c->to_host.len || c->line_off < c->line_len)
        ev |= EPOLLOUT;
    if (!c->host_eof && !(c->guest_shutdown & VSOCK_SHUTDOWN_RCV) && !(c->pending & VSOCK_PEND_READ) &&
        vsock_conn_peer_credit(c) > 0)
        ev |= EPOLLIN;
    /* Nothing wanted: out of the set, or a hung-up peer would wake us for nothing;
     * but a client that has not seen our EOF still gets watched for a hang-up. */
    *watch = ev != 0 || (!c->host_eof && !c->host_write_shut);
    return ev;
}

/* Puts c's socket in our epoll set with the events it needs now, or takes it out. */
static void update_interest(struct vsock *v, struct vsock_conn *c)
{
    bool watch;
    uint32_t want = wanted_events(c, &watch);
    if (watch == c->in_epoll && want == c->epoll_events)
        return;
    struct epoll_event ev = { .events = want, .data.u64 = (uint64_t)c->gen << 32 | c->index };
    int op = !watch ? EPOLL_CTL_DEL : c->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(v->epfd, op, c->fd, &ev) < 0) {
        conn_abort(v, c, "epoll_ctl failed (out of kernel memory)"); /* give this connection up, not the device */
        return;
    }
    c->in_epoll = watch;
    c->epoll_events = want;
}

/* Closes what both sides have finished with (see the state machine in vsock_conn.h). */
static void maybe_finish(struct vsock *v, struct vsock_conn *c)
{
    if (c->state != VSOCK_CONN_ESTABLISHED)
        return;
    bool to_host_done = (c->guest_shutdown & VSOCK_SHUTDOWN_SEND) && !c->to_host.len && c->line_off >= c->line_len;
    if (to_host_done && !c->host_write_shut && c->fd >= 0) {
        shutdown(c->fd, SHUT_WR);
        c->host_write_shut = true;
    }
    bool to_guest_done = c->host_eof || (c->guest_shutdown & VSOCK_SHUTDOWN_RCV);
    if (to_host_done && to_guest_done) {
        conn_close_fd(c);
        c->state = VSOCK_CONN_CLOSING;
        c->pending = VSOCK_PEND_RST; /* Linux waits for this RST to finish its close */
        rx_enqueue(v, c);
    }
}

static void drop_all_connections(struct vsock *v, bool keep_unknown_to_guest)
{
    for (uint32_t i = 0; i < v->table.max; i++) {
        struct vsock_conn *c = &v->table.conns[i];
        if (c->state == VSOCK_CONN_FREE || (keep_unknown_to_guest && !guest_knows(c)))
            continue;
        conn_free(v, c);
    }
    v->rst_len = 0;
}

/* --- packets to the guest (rx queue) --------------------------------------------------------- */

static void broken_queue(struct vsock *v)
{
    virtio_device_set_needs_reset(&v->dev);
    v->active = false;
}

static uint32_t put_header(struct vsock *v, const struct vq_chain *chain, const struct vsock_hdr *h)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    vsock_hdr_encode(h, raw);
    vsock_chain_write(chain, 0, raw, sizeof raw);
    v->stats.rx_packets++;
    if (h->op == VSOCK_OP_RST)
        v->stats.rst_sent++;
    return VSOCK_HDR_SIZE;
}

/* The header of a packet on c; it carries our credit, so no separate update is due. */
static struct vsock_hdr conn_header(struct vsock *v, struct vsock_conn *c, uint16_t op)
{
    c->fwd_cnt_sent = c->fwd_cnt;
    c->pending &= ~(uint32_t)VSOCK_PEND_CREDIT_UPDATE;
    return (struct vsock_hdr){
        .src_cid = VSOCK_HOST_CID, .dst_cid = v->guest_cid,
        .src_port = c->local_port, .dst_port = c->peer_port,
        .type = VSOCK_TYPE_STREAM, .op = op,
        .buf_alloc = VSOCK_CONN_BUF_ALLOC, .fwd_cnt = c->fwd_cnt,
    };
}

static uint32_t send_conn_op(struct vsock *v, struct vsock_conn *c, const struct vq_chain *chain, uint16_t op,
                             uint32_t flags)
{
    struct vsock_hdr h = conn_header(v, c, op);
    h.flags = flags;
    return put_header(v, chain, &h);
}

/* Reads host data for c straight into the chain, at most the guest's credit. */
static uint32_t send_host_data(struct vsock *v, struct vsock_conn *c, const struct vq_chain *chain)
{
    if (c->state != VSOCK_CONN_ESTABLISHED || c->fd < 0 || c->host_eof || (c->guest_shutdown & VSOCK_SHUTDOWN_RCV))
        return send_conn_op(v, c, chain, VSOCK_OP_CREDIT_UPDATE, 0);
    uint32_t credit = vsock_conn_peer_credit(c);
    if (credit == 0) {
        /* The guest shrank its buffer after we looked: ask once, then wait for its update. */
        bool ask = !c->credit_requested;
        c->credit_requested = true;
        return send_conn_op(v, c, chain, ask ? VSOCK_OP_CREDIT_REQUEST : VSOCK_OP_CREDIT_UPDATE, 0);
    }
    uint64_t room = chain->writable_bytes - VSOCK_HDR_SIZE;
    uint32_t max = credit;
    if (max > VSOCK_MAX_PAYLOAD)
        max = VSOCK_MAX_PAYLOAD;
    if (max > room)
        max = (uint32_t)room;
    if (max == 0) {
        c->pending |= VSOCK_PEND_READ; /* a header-only buffer: try the next one */
        return send_conn_op(v, c, chain, VSOCK_OP_CREDIT_UPDATE, 0);
    }
    struct iovec iov[VQ_MAX_CHAIN_BUFS];
    uint64_t covered;
    int n = vsock_chain_iov(chain, true, VSOCK_HDR_SIZE, max, iov, VQ_MAX_CHAIN_BUFS, &covered);
    ssize_t got = readv(c->fd, iov, n);
    if (got > 0) {
        struct vsock_hdr h = conn_header(v, c, VSOCK_OP_RW);
        h.len = (uint32_t)got;
        c->tx_cnt += (uint32_t)got;
        v->stats.bytes_to_guest += (uint64_t)got;
        /* A full buffer that credit did not cut short, and more waiting: stay in
         * line for the next rx buffer instead of asking epoll again. */
        int waiting = 0;
        if ((uint32_t)got == max && max < credit && ioctl(c->fd, FIONREAD, &waiting) == 0 && waiting > 0)
            c->pending |= VSOCK_PEND_READ;
        return put_header(v, chain, &h) + (uint32_t)got;
    }
    if (got == 0) {
        c->host_eof = true;
        uint32_t len = send_conn_op(v, c, chain, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND);
        maybe_finish(v, c);
        return len;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return send_conn_op(v, c, chain, VSOCK_OP_CREDIT_UPDATE, 0);
    /* The host socket failed: this buffer carries the RST, and the connection ends. */
    uint32_t len = send_conn_op(v, c, chain, VSOCK_OP_RST, 0); /* the host client's socket failed */
    conn_free(v, c);
    return len;
}

/* One packet for c into the chain (the chain has room for a header). */
static uint32_t send_conn_packet(struct vsock *v, struct vsock_conn *c, const struct vq_chain *chain)
{
    if (c->pending & VSOCK_PEND_RST) {
        uint32_t len = send_conn_op(v, c, chain, VSOCK_OP_RST, 0);
        conn_free(v, c);
        return len;
    }
    static const struct { uint32_t bit; uint16_t op; } simple[] = {
        { VSOCK_PEND_REQUEST, VSOCK_OP_REQUEST },
        { VSOCK_PEND_RESPONSE, VSOCK_OP_RESPONSE },
    };
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
        if (c->pending & simple[i].bit) {
            c->pending &= ~simple[i].bit;
            return send_conn_op(v, c, chain, simple[i].op, 0);
        }
    }
    if (c->pending & VSOCK_PEND_READ) {
        c->pending &= ~(uint32_t)VSOCK_PEND_READ;
        uint32_t gen = c->gen;
        uint32_t len = send_host_data(v, c, chain);
        if (c->gen == gen && c->state == VSOCK_CONN_ESTABLISHED)
            update_interest(v, c); /* listen for more host data if credit is left */
        return len;
    }
    if (c->pending & VSOCK_PEND_CREDIT_REQUEST) {
        c->pending &= ~(uint32_t)VSOCK_PEND_CREDIT_REQUEST;
        return send_conn_op(v, c, chain, VSOCK_OP_CREDIT_REQUEST, 0);
    }
    /* CREDIT_UPDATE, or nothing left (the flag was served by an earlier packet's header). */
    return send_conn_op(v, c, chain, VSOCK_OP_CREDIT_UPDATE, 0);
}

static uint32_t fill_rx_chain(struct vsock *v, const struct vq_chain *chain)
{
    if (v->rst_len) {
        struct vsock_hdr h = v->rst_queue[v->rst_head];
        v->rst_head = (v->rst_head + 1) % RST_QUEUE_LEN;
        v->rst_len--;
        return put_header(v, chain, &h);
    }
    struct vsock_conn *c = &v->table.conns[v->rx_head];
    rx_unlink(v, c);
    uint32_t gen = c->gen;
    uint32_t len = send_conn_packet(v, c, chain);
    if (c->gen == gen && c->state != VSOCK_CONN_FREE && c->pending)
        rx_enqueue(v, c); /* to the back: connections take turns */
    return len;
}

static void drain_rx(struct vsock *v)
{
    if (!v->active || v->reset_unacked)
        return;
    struct virtqueue *vq = &v->dev.queues[VIRTIO_VSOCK_QUEUE_RX];
    if (!vq->ready)
        return; /* no budget to spend: size may be anything until the queue is ready */
    uint32_t budget = vq->size;
    for (;;) {
        /* A flag served meanwhile by another packet's header leaves nothing to send. */
        while (v->rx_head >= 0 && !v->table.conns[v->rx_head].pending)
            rx_unlink(v, &v->table.conns[v->rx_head]);
        if (!v->rst_len && v->rx_head < 0)
            return;
        if (budget-- == 0) {
            kick_self(v);
            return;
        }
        int rc = vq_pop(vq, v->dev.mem, &v->chain);
        if (rc == 0)
            return; /* the guest's next rx kick brings us back */
        if (rc < 0) {
            broken_queue(v);
            return;
        }
        /* A buffer too small for a header cannot carry anything: give it back empty. */
        uint32_t written = v->chain.writable_bytes >= VSOCK_HDR_SIZE ? fill_rx_chain(v, &v->chain) : 0;
        if (written == 0)
            v->stats.malformed++;
        if (virtio_device_complete(&v->dev, VIRTIO_VSOCK_QUEUE_RX, v->chain.head, written) < 0) {
            v->active = false;
            return;
        }
    }
}

static void send_event(struct vsock *v)
{
    if (!v->active)
        return;
    struct virtqueue *vq = &v->dev.queues[VIRTIO_VSOCK_QUEUE_EVENT];
    for (uint32_t n = 0; v->event_pending && n < vq->size; n++) {
        int rc = vq_pop(vq, v->dev.mem, &v->chain);
        if (rc == 0)
            return;
        if (rc < 0) {
            broken_queue(v);
            return;
        }
        uint8_t id[4] = { VSOCK_EVENT_TRANSPORT_RESET, 0, 0, 0 };
        uint32_t written = vsock_chain_write(&v->chain, 0, id, sizeof id) == sizeof id ? sizeof id : 0;
        if (written) {
            v->event_pending = false;
            v->reset_unacked = true;
        }
        if (virtio_device_complete(&v->dev, VIRTIO_VSOCK_QUEUE_EVENT, v->chain.head, written) < 0) {
            v->active = false;
            return;
        }
    }
}

/* --- host sockets ---------------------------------------------------------------------------- */

static ssize_t send_iov(int fd, struct iovec *iov, int n)
{
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)n };
    ssize_t got;
    do
        got = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return got;
}

static void note_forwarded(struct vsock *v, struct vsock_conn *c, uint32_t n)
{
    c->fwd_cnt += n;
    v->stats.bytes_to_host += n;
    if (vsock_conn_credit_update_due(c)) {
        c->pending |= VSOCK_PEND_CREDIT_UPDATE;
        rx_enqueue(v, c);
    }
}

/* Writes the "OK" line, then buffered guest data; returns -1 if the connection ended. */
static int flush_to_host(struct vsock *v, struct vsock_conn *c)
{
    if (c->line_off < c->line_len) {
        struct iovec iov = { .iov_base = c->line + c->line_off, .iov_len = (size_t)(c->line_len - c->line_off) };
        ssize_t n = send_iov(c->fd, &iov, 1);
        if (n < 0) {
            conn_abort(v, c, NULL); /* the host client's socket failed */
            return -1;
        }
        c->line_off = (uint8_t)(c->line_off + n);
        if (c->line_off < c->line_len)
            return 0;
    }
    if (c->to_host.len) {
        struct iovec iov[2];
        int cnt = vsock_ring_iov(&c->to_host, iov);
        ssize_t n = send_iov(c->fd, iov, cnt);
        if (n < 0) {
            conn_abort(v, c, NULL); /* the host client's socket failed */
            return -1;
        }
        vsock_ring_consume(&c->to_host, (uint32_t)n);
        note_forwarded(v, c, (uint32_t)n);
    }
    return 0;
}

/* An RW packet's payload: to the host socket now, the rest into the ring. */
static void deliver_to_host(struct vsock *v, struct vsock_conn *c, const struct vq_chain *chain, uint32_t len)
{
    if (c->state != VSOCK_CONN_ESTABLISHED || (c->guest_shutdown & VSOCK_SHUTDOWN_SEND)) {
        conn_protocol_error(v, c, "the guest sent data on a connection not open for it");
        return;
    }
    struct iovec iov[VQ_MAX_CHAIN_BUFS];
    uint64_t covered;
    int n = vsock_chain_iov(chain, false, VSOCK_HDR_SIZE, len, iov, VQ_MAX_CHAIN_BUFS, &covered);
    uint64_t done = 0;
    if (!c->to_host.len && c->line_off >= c->line_len) {
        ssize_t sent = send_iov(c->fd, iov, n);
        if (sent < 0) {
            conn_abort(v, c, NULL); /* the host client's socket failed */
            return;
        }
        done = (uint64_t)sent;
        note_forwarded(v, c, (uint32_t)sent);
    }
    if (covered - done > (uint64_t)VSOCK_CONN_BUF_ALLOC - c->to_host.len) {
        conn_protocol_error(v, c, "the guest sent more than the credit we gave");
        return;
    }
    for (int i = 0; i < n; i++) {
        uint64_t skip = done < iov[i].iov_len ? done : iov[i].iov_len;
        done -= skip;
        if (vsock_ring_push(&c->to_host, VSOCK_CONN_BUF_ALLOC, (uint8_t *)iov[i].iov_base + skip,
                            (uint32_t)(iov[i].iov_len - skip)) < 0) {
            conn_abort(v, c, "out of memory buffering guest data");
            return;
        }
    }
}

/* "CONNECT <port>\n" from a uds client; never reads past the newline. */
static void read_handshake(struct vsock *v, struct vsock_conn *c)
{
    uint32_t room = VSOCK_LINE_MAX - c->line_len;
    ssize_t n = recv(c->fd, c->line + c->line_len, room, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_free(v, c);
        return;
    }
    char *nl = memchr(c->line + c->line_len, '\n', (size_t)n);
    size_t take = nl ? (size_t)(nl - (c->line + c->line_len)) + 1 : (size_t)n;
    char sink[VSOCK_LINE_MAX];
    if (recv(c->fd, sink, take, MSG_DONTWAIT) != (ssize_t)take) {
        conn_free(v, c);
        return;
    }
    c->line_len = (uint8_t)(c->line_len + take);
    uint32_t port;
    if (!nl) {
        if (c->line_len >= VSOCK_LINE_MAX)
            conn_free(v, c); /* no newline where one must be: not our protocol */
        return;
    }
    if (vsock_parse_connect_line(c->line, c->line_len, &port) < 0 ||
        vsock_table_bind(&v->table, c, vsock_table_ephemeral_port(&v->table, port), port) < 0) {
        conn_free(v, c);
        return;
    }
    c->line_len = c->line_off = 0;
    c->state = VSOCK_CONN_HOST_CONNECTING;
    c->pending |= VSOCK_PEND_REQUEST;
    rx_enqueue(v, c);
    update_interest(v, c);
}

static void on_conn_event(struct vsock *v, struct vsock_conn *c, uint32_t events)
{
    if (c->state == VSOCK_CONN_HOST_HANDSHAKE) {
        read_handshake(v, c);
        return;
    }
    if (c->state == VSOCK_CONN_HOST_CONNECTING) {
        if (events & (EPOLLHUP | EPOLLERR))
            conn_abort(v, c, NULL); /* the host client left before the guest answered */
        return;
    }
    if (!c->epoll_events && (events & (EPOLLHUP | EPOLLERR))) {
        conn_abort(v, c, NULL); /* the host client closed its socket */
        return;
    }
    if (c->state != VSOCK_CONN_ESTABLISHED) {
        /* A socket still in the set from an earlier state: level-triggered
         * events would come back forever, so bring the set up to date. */
        update_interest(v, c);
        return;
    }
    uint32_t gen = c->gen;
    if ((c->epoll_events & EPOLLOUT) && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        if (flush_to_host(v, c) < 0)
            return;
        maybe_finish(v, c);
        if (c->gen != gen || c->state != VSOCK_CONN_ESTABLISHED)
            return;
    }
    if ((c->epoll_events & EPOLLIN) && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
        /* Read later, straight into an rx buffer; until then the socket is out of epoll. */
        c->pending |= VSOCK_PEND_READ;
        rx_enqueue(v, c);
    }
    update_interest(v, c);
}

static void accept_clients(struct vsock *v, struct listener *l)
{
    for (int i = 0; i < ACCEPT_BUDGET; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Level-triggered: leave the backlog alone until a connection ends. */
                epoll_ctl(v->epfd, EPOLL_CTL_DEL, l->fd, NULL);
                l->paused = true;
            }
            return;
        }
        struct vsock_conn *c = vsock_table_alloc(&v->table);
        if (!c) {
            close(fd); /* at the connection limit: the client sees EOF at once */
            continue;
        }
        c->fd = fd;
        set_deadline(v, c);
        if (l == &v->uds) {
            c->from_uds = true;
            c->state = VSOCK_CONN_HOST_HANDSHAKE;
        } else {
            if (vsock_table_bind(&v->table, c, vsock_table_ephemeral_port(&v->table, v->exec_port), v->exec_port) < 0) {
                conn_free(v, c);
                continue;
            }
            c->state = VSOCK_CONN_HOST_CONNECTING;
            c->pending |= VSOCK_PEND_REQUEST;
            rx_enqueue(v, c);
        }
        update_interest(v, c);
    }
    /* More may wait in the backlog: the level-triggered listener fires again. */
}

static void resume_listeners(struct vsock *v)
{
    struct listener *ls[2] = { &v->uds, &v->exec };
    for (int i = 0; i < 2; i++) {
        if (!ls[i]->paused)
            continue;
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = ls[i]->tag };
        if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, ls[i]->fd, &ev) == 0)
            ls[i]->paused = false;
    }
}

/* --- packets from the guest (tx queue) --------------------------------------------------------- */

static void queue_rst_reply(struct vsock *v, const struct vsock_hdr *to)
{
    if (to->op == VSOCK_OP_RST)
        return; /* an RST is never answered */
    if (v->rst_len == RST_QUEUE_LEN) {
        v->stats.rst_dropped++;
        return;
    }
    v->rst_queue[(v->rst_head + v->rst_len) % RST_QUEUE_LEN] = (struct vsock_hdr){
        .src_cid = VSOCK_HOST_CID, .dst_cid = v->guest_cid,
        .src_port = to->dst_port, .dst_port = to->src_port,
        .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST,
    };
    v->rst_len++;
}

/* Something about this packet is wrong: end its connection, or refuse it if there is none. */
static void refuse(struct vsock *v, struct vsock_conn *c, const struct vsock_hdr *h)
{
    if (c && h->op == VSOCK_OP_RST)
        conn_free(v, c);
    else if (c)
        conn_abort(v, c, "a malformed packet");
    else
        queue_rst_reply(v, h);
}

/* The guest connects to host port P: reach "<uds_path>_<P>". */
static void guest_connect(struct vsock *v, const struct vsock_hdr *h)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int len = v->uds.path ? snprintf(sa.sun_path, sizeof sa.sun_path, "%s_%u", v->uds.path, h->dst_port) : -1;
    int fd = -1;
    if (len > 0 && (size_t)len < sizeof sa.sun_path)
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* A Unix connect completes at once or fails; EAGAIN (full backlog) counts as a refusal. */
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        fd = -1;
    }
    struct vsock_conn *c = fd >= 0 ? vsock_table_alloc(&v->table) : NULL;
    if (!c) {
        if (fd >= 0)
            close(fd);
        queue_rst_reply(v, h);
        return;
    }
    c->fd = fd;
    vsock_table_bind(&v->table, c, h->dst_port, h->src_port); /* free: the caller looked it up */
    c->state = VSOCK_CONN_ESTABLISHED;
    vsock_conn_update_peer(c, h);
    c->pending |= VSOCK_PEND_RESPONSE;
    rx_enqueue(v, c);
    update_interest(v, c);
}

static void guest_accepted(struct vsock *v, struct vsock_conn *c)
{
    if (c->state != VSOCK_CONN_HOST_CONNECTING || (c->pending & VSOCK_PEND_REQUEST)) {
        conn_protocol_error(v, c, "a RESPONSE to no REQUEST");
        return;
    }
    c->state = VSOCK_CONN_ESTABLISHED;
    clear_deadline(v, c);
    if (c->from_uds) {
        int n = snprintf(c->line, sizeof c->line, "OK %u\n", c->local_port);
        c->line_len = (uint8_t)n;
        c->line_off = 0;
        if (flush_to_host(v, c) < 0)
            return;
    }
    update_interest(v, c);
}

static void guest_shutdown(struct vsock *v, struct vsock_conn *c, uint32_t flags)
{
    if (c->state != VSOCK_CONN_ESTABLISHED) {
        conn_protocol_error(v, c, "a SHUTDOWN on a connection not open");
        return;
    }
    c->guest_shutdown |= flags & (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
    if (c->guest_shutdown & VSOCK_SHUTDOWN_RCV)
        c->pending &= ~(uint32_t)VSOCK_PEND_READ; /* it will not take more host data */
    maybe_finish(v, c);
}

static void handle_conn_op(struct vsock *v, struct vsock_conn *c, const struct vsock_hdr *h,
                           const struct vq_chain *chain)
{
    if (c->state == VSOCK_CONN_CLOSING) {
        if (h->op == VSOCK_OP_RST)
            conn_free(v, c); /* both sides agree it is over; ours need not go out */
        return;
    }
    vsock_conn_update_peer(c, h);
    switch (h->op) {
    case VSOCK_OP_REQUEST: conn_protocol_error(v, c, "a REQUEST on an open connection"); return;
    case VSOCK_OP_RESPONSE: guest_accepted(v, c); break;
    case VSOCK_OP_RST: log_conn_end(v, c, "the guest reset it"); conn_free(v, c); return;
    case VSOCK_OP_SHUTDOWN: guest_shutdown(v, c, h->flags); break;
    case VSOCK_OP_RW: deliver_to_host(v, c, chain, h->len); break;
    case VSOCK_OP_CREDIT_UPDATE: break;
    case VSOCK_OP_CREDIT_REQUEST:
        c->pending |= VSOCK_PEND_CREDIT_UPDATE;
        rx_enqueue(v, c);
        break;
    default: conn_protocol_error(v, c, "an unknown op"); return;
    }
}

static void handle_tx_packet(struct vsock *v, const struct vq_chain *chain)
{
    v->stats.tx_packets++;
    uint8_t raw[VSOCK_HDR_SIZE];
    if (chain->readable_bytes < VSOCK_HDR_SIZE || vsock_chain_read(chain, 0, raw, sizeof raw) != sizeof raw) {
        v->stats.malformed++;
        return;
    }
    struct vsock_hdr h;
    vsock_hdr_decode(raw, &h);
    if (h.src_cid != v->guest_cid || h.dst_cid != VSOCK_HOST_CID) {
        v->stats.wrong_cid++; /* not from this guest, or not for us: nobody to answer */
        return;
    }
    struct vsock_conn *c = vsock_table_find(&v->table, h.dst_port, h.src_port);
    if (c && !guest_knows(c))
        c = NULL; /* a connection not offered yet: the guest cannot be talking about it */
    if (c && c->state == VSOCK_CONN_CLOSING && h.op == VSOCK_OP_REQUEST) {
        conn_free(v, c); /* the guest moved on before our RST reached it: start afresh */
        c = NULL;
    }
    if (h.len > VSOCK_MAX_PAYLOAD || h.len > chain->readable_bytes - VSOCK_HDR_SIZE ||
        (h.op != VSOCK_OP_RW && h.len != 0)) {
        v->stats.malformed++;
        refuse(v, c, &h);
        return;
    }
    if (h.type != VSOCK_TYPE_STREAM || h.op == VSOCK_OP_INVALID || h.op > VSOCK_OP_CREDIT_REQUEST) {
        v->stats.protocol_errors++;
        refuse(v, c, &h);
        return;
    }
    if (c) {
        uint32_t gen = c->gen;
        handle_conn_op(v, c, &h, chain);
        if (c->gen == gen && c->state == VSOCK_CONN_ESTABLISHED)
            update_interest(v, c); /* the packet may have brought credit or buffered data */
    } else if (h.op == VSOCK_OP_REQUEST) {
        guest_connect(v, &h);
    } else {
        queue_rst_reply(v, &h); /* includes RST, which queue_rst_reply never answers */
    }
}

static void process_tx(struct vsock *v)
{
    if (!v->active)
        return;
    struct virtqueue *vq = &v->dev.queues[VIRTIO_VSOCK_QUEUE_TX];
    if (!vq->ready)
        return;
    for (uint32_t n = 0;; n++) {
        if (n == vq->size) {
            kick_self(v); /* the guest keeps adding: come back after other work */
            break;
        }
        int rc = vq_pop(vq, v->dev.mem, &v->chain);
        if (rc == 0)
            break;
        if (rc < 0) {
            broken_queue(v);
            return;
        }
        if (!v->discard_tx)
            handle_tx_packet(v, &v->chain);
        if (virtio_device_complete(&v->dev, VIRTIO_VSOCK_QUEUE_TX, v->chain.head, 0) < 0) {
            v->active = false;
            return;
        }
    }
}

/* --- event loop --------------------------------------------------------------------------------- */

static void on_kick(struct vsock *v)
{
    uint64_t n;
    ssize_t got = read(v->kick_fd, &n, sizeof n);
    (void)got;
    process_tx(v);
    send_event(v);
}

static void on_timer(struct vsock *v)
{
    uint64_t ticks;
    ssize_t got = read(v->timer_fd, &ticks, sizeof ticks);
    (void)got;
    int64_t now = clock_now_ns();
    for (uint32_t i = 0; i < v->table.max && v->ndeadlines; i++) {
        struct vsock_conn *c = &v->table.conns[i];
        if (c->state != VSOCK_CONN_FREE && c->deadline_ns && now >= c->deadline_ns) {
            v->stats.connect_timeouts++;
            conn_abort(v, c, "the guest did not answer the connect in time"); /* the client sees EOF */
        }
    }
    if (!v->ndeadlines)
        arm_timer(v, false);
}

static void on_epoll(void *opaque, uint32_t events)
{
    struct vsock *v = opaque;
    (void)events;
    virtio_device_lock(&v->dev);
    struct epoll_event evs[EVENT_BATCH];
    int n = epoll_wait(v->epfd, evs, EVENT_BATCH, 0);
    for (int i = 0; i < n; i++) {
        uint64_t tag = evs[i].data.u64;
        uint32_t index = (uint32_t)tag, gen = (uint32_t)(tag >> 32);
        if (tag == TAG_UDS_LISTENER)
            accept_clients(v, &v->uds);
        else if (tag == TAG_EXEC_LISTENER)
            accept_clients(v, &v->exec);
        else if (tag == TAG_KICK)
            on_kick(v);
        else if (tag == TAG_TIMER)
            on_timer(v);
        else {
            /* An earlier event in this batch may have ended this connection. */
            struct vsock_conn *c = vsock_table_slot(&v->table, index);
            if (c && c->state != VSOCK_CONN_FREE && c->gen == gen && c->fd >= 0)
                on_conn_event(v, c, evs[i].events);
        }
    }
    drain_rx(v);
    virtio_device_unlock(&v->dev);
}

/* --- device ops ------------------------------------------------------------------------------------ */

static void vsock_read_config(struct virtio_device *dev, uint32_t off, void *data, uint32_t len)
{
    uint8_t cfg[VIRTIO_VSOCK_CONFIG_SIZE];
    for (unsigned i = 0; i < sizeof cfg; i++)
        cfg[i] = (uint8_t)(vsock_of(dev)->guest_cid >> (8 * i));
    if (off < sizeof cfg && len <= sizeof cfg - off) /* the transport checked; belt and braces */
        memcpy(data, cfg + off, len);
}

static int vsock_activate(struct virtio_device *dev)
{
    vsock_of(dev)->active = true;
    return 0; /* the transport kicks every queue next */
}

static void vsock_queue_notify(struct virtio_device *dev, uint16_t q)
{
    struct vsock *v = vsock_of(dev);
    if (q == VIRTIO_VSOCK_QUEUE_TX)
        process_tx(v);
    else if (q == VIRTIO_VSOCK_QUEUE_EVENT) {
        if (v->reset_unacked && !v->event_pending)
            v->reset_unacked = false; /* the driver handled the reset and refilled */
        send_event(v);
    }
    drain_rx(v); /* rx buffers arrived, tx work produced replies, or a reset was handled */
}

static void vsock_reset(struct virtio_device *dev)
{
    struct vsock *v = vsock_of(dev);
    /* Host clients the guest never heard of wait for the next driver. */
    drop_all_connections(v, true);
    v->active = false;
    v->event_pending = false;
    v->reset_unacked = false;
}

static void close_listener(struct listener *l)
{
    if (l->fd >= 0) {
        struct stat st;
        /* Unlink only our own socket file, not one a later VM put at the same path. */
        if (l->path && stat(l->path, &st) == 0 && st.st_dev == l->st_dev && st.st_ino == l->st_ino)
            unlink(l->path);
        close(l->fd);
    }
    free(l->path);
    l->fd = -1;
    l->path = NULL;
}

static void vsock_destroy(struct virtio_device *dev)
{
    struct vsock *v = vsock_of(dev);
    if (v->table.conns)
        drop_all_connections(v, false);
    vsock_table_destroy(&v->table);
    close_listener(&v->uds);
    close_listener(&v->exec);
    if (v->loop && v->epfd >= 0)
        evl_remove(v->loop, v->epfd);
    if (v->epfd >= 0)
        close(v->epfd);
    if (v->kick_fd >= 0)
        close(v->kick_fd);
    if (v->timer_fd >= 0)
        close(v->timer_fd);
    free(v);
}

static const struct virtio_device_ops vsock_ops = {
    .name = "vsock",
    .device_id = VIRTIO_ID_VSOCK,
    .num_queues = 3,
    .queue_max_size = VIRTIO_VSOCK_QUEUE_SIZE,
    .features = 1ull << VIRTIO_VSOCK_F_STREAM,
    .config_size = VIRTIO_VSOCK_CONFIG_SIZE,
    .read_config = vsock_read_config,
    .activate = vsock_activate,
    .queue_notify = vsock_queue_notify,
    .reset = vsock_reset,
    .destroy = vsock_destroy,
    /* Host connections do not survive a snapshot: the guest's queued packets
     * are dropped while restoring, then its sockets are reset. */
    .restore_begin = virtio_vsock_begin_restore,
    .restore_end = virtio_vsock_transport_reset,
};

/* --- creation ------------------------------------------------------------------------------------- */

/* A socket file at path from an earlier run is removed; a live one or a non-socket is an error. */
static sm_code remove_stale_socket(const char *what, const struct sockaddr_un *sa, sm_error *err)
{
    struct stat st;
    if (lstat(sa->sun_path, &st) < 0)
        return errno == ENOENT ? SM_OK : error_set_errno(err, SM_E_IO, errno, "%s socket %s", what, sa->sun_path);
    if (!S_ISSOCK(st.st_mode))
        return error_set(err, SM_E_INVALID, "%s socket path %s exists and is not a socket; remove it or choose another",
                       what, sa->sun_path);
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
        int rc = connect(probe, (const struct sockaddr *)sa, sizeof *sa);
        int e = errno;
        close(probe);
        if (rc == 0 || e == EAGAIN)
            return error_set(err, SM_E_INVALID, "%s socket %s is in use by a running process (another VM?)", what,
                           sa->sun_path);
    }
    if (unlink(sa->sun_path) < 0 && errno != ENOENT)
        return error_set_errno(err, SM_E_IO, errno, "cannot remove stale %s socket %s", what, sa->sun_path);
    return SM_OK;
}

static sm_code listen_unix(struct vsock *v, struct listener *l, const char *what, const char *path, uint32_t tag,
                           sm_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof sa.sun_path)
        return error_set(err, SM_E_INVALID, "%s socket path \"%s\" is %zu bytes; it must be 1 to %zu", what, path, len,
                       sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, len + 1);
    sm_code rc = remove_stale_socket(what, &sa, err);
    if (rc)
        return rc;
    l->path = strdup(path);
    if (!l->path)
        return error_set(err, SM_E_NOMEM, "out of memory");
    l->tag = tag;
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "socket for %s socket %s", what, path);
    if (bind(l->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        free(l->path);
        l->path = NULL; /* nothing of ours to unlink */
        if (e == ENOENT)
            return error_set(err, SM_E_NOTFOUND, "cannot create %s socket %s: its directory does not exist", what,
                           path);
        return error_set_errno(err, SM_E_IO, e, "cannot bind %s socket %s", what, path);
    }
    struct stat st;
    if (stat(path, &st) == 0) {
        l->st_dev = st.st_dev;
        l->st_ino = st.st_ino;
    }
    if (listen(l->fd, LISTEN_BACKLOG) < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot listen on %s socket %s", what, path);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
    if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, l->fd, &ev) < 0)
        return error_set_errno(err, SM_E_IO, errno, "epoll for %s socket %s", what, path);
    return SM_OK;
}

static sm_code check_config(const struct vsock_config *cfg, sm_error *err)
{
    if (cfg->guest_cid < 3 || cfg->guest_cid > 0xfffffffeull)
        return error_set(err, SM_E_INVALID, "vsock guest CID %llu is out of range: 3 to 4294967294",
                       (unsigned long long)cfg->guest_cid);
    if (cfg->uds_path && cfg->exec_path && strcmp(cfg->uds_path, cfg->exec_path) == 0)
        return error_set(err, SM_E_INVALID, "the vsock socket and the exec socket are the same path %s", cfg->uds_path);
    return SM_OK;
}

static sm_code vsock_setup(struct vsock *v, const struct vsock_config *cfg, struct event_loop *loop, sm_error *err)
{
    if (vsock_table_init(&v->table, VSOCK_MAX_CONNS) < 0)
        return error_set(err, SM_E_NOMEM, "out of memory for the vsock connection table");
    v->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (v->epfd < 0)
        return error_set_errno(err, SM_E_IO, errno, "epoll_create1 for vsock");
    v->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (v->kick_fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "eventfd for vsock");
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_KICK };
    if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, v->kick_fd, &ev) < 0)
        return error_set_errno(err, SM_E_IO, errno, "epoll for vsock");
    v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (v->timer_fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "timerfd for vsock");
    ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = TAG_TIMER };
    if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, v->timer_fd, &ev) < 0)
        return error_set_errno(err, SM_E_IO, errno, "epoll for vsock");
    sm_code rc;
    if (cfg->uds_path && (rc = listen_unix(v, &v->uds, "vsock", cfg->uds_path, TAG_UDS_LISTENER, err)))
        return rc;
    if (cfg->exec_path && (rc = listen_unix(v, &v->exec, "exec", cfg->exec_path, TAG_EXEC_LISTENER, err)))
        return rc;
    if (loop) {
        if (evl_add(loop, v->epfd, EPOLLIN, on_epoll, v) < 0)
            return error_set_errno(err, SM_E_IO, errno, "event loop registration for vsock");
        v->loop = loop;
    }
    return SM_OK;
}

struct virtio_device *virtio_vsock_create(const struct vsock_config *cfg, struct event_loop *loop, sm_error *err)
{
    if (check_config(cfg, err))
        return NULL;
    struct vsock *v = calloc(1, sizeof *v);
    if (!v) {
        error_set(err, SM_E_NOMEM, "out of memory for a vsock device");
        return NULL;
    }
    v->dev.ops = &vsock_ops;
    v->dev.priv = v;
    v->guest_cid = cfg->guest_cid;
    v->exec_port = cfg->exec_port;
    v->epfd = v->kick_fd = v->timer_fd = v->uds.fd = v->exec.fd = -1;
    v->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : VSOCK_CONNECT_TIMEOUT_MS;
    v->log_fd = cfg->log_fd;
    v->rx_head = v->rx_tail = -1;
    if (vsock_setup(v, cfg, loop, err)) {
        vsock_destroy(&v->dev);
        return NULL;
    }
    return &v->dev;
}

/* --- outside the transport ------------------------------------------------------------------------- */

void virtio_vsock_begin_restore(struct virtio_device *dev)
{
    struct vsock *v = vsock_of(dev);
    virtio_device_lock(dev);
    v->discard_tx = true;
    virtio_device_unlock(dev);
}

void virtio_vsock_transport_reset(struct virtio_device *dev)
{
    struct vsock *v = vsock_of(dev);
    virtio_device_lock(dev);
    v->discard_tx = false;
    drop_all_connections(v, false);
    v->event_pending = true;
    send_event(v);
    virtio_device_unlock(dev);
}

void virtio_vsock_stats(struct virtio_device *dev, struct vsock_stats *out)
{
    struct vsock *v = vsock_of(dev);
    virtio_device_lock(dev);
    *out = v->stats;
    out->connections = v->table.count;
    virtio_device_unlock(dev);
}
