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
 * it, and vsock_on_epoll() (vsock_host.c) takes it.
 *
 * Where the rest is:
 *   vsock.c           this: the device. Queues (rx, tx, event), packets from
 *                     the guest, filling rx buffers, the connection list for
 *                     rx, connection lifetime, connect deadlines, device ops,
 *                     creation and destruction
 *   vsock_host.c      the host-side muxer: listening Unix sockets, accepting
 *                     clients, the CONNECT handshake, writing guest data to
 *                     host sockets, epoll interest and dispatch
 *   vsock_internal.h  struct vsock and the helpers the two files share
 *   vsock_conn.c      the socket-free core: header, chains, table, ring, credit
 */
#include "devices/virtio/vsock.h"
#include "base/clock.h"
#include "base/random.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/vsock_conn.h"
#include "devices/virtio/vsock_internal.h"
#include "base/error.h"

#define MAX_END_LOGS    64    /* connection ends logged per device */

static struct vsock *vsock_of(struct virtio_device *dev) { return dev->priv; }

/* --- rx list: connections waiting to send the guest a packet ------------------------- */

void vsock_rx_enqueue(struct vsock *v, struct vsock_conn *c)
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

void vsock_set_deadline(struct vsock *v, struct vsock_conn *c)
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

void vsock_free_conn(struct vsock *v, struct vsock_conn *c)
{
    clear_deadline(v, c);
    rx_unlink(v, c);
    vsock_close_host_fd(c);
    vsock_table_release(&v->table, c);
    vsock_resume_listeners(v);
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
void vsock_abort_conn(struct vsock *v, struct vsock_conn *c, const char *why)
{
    log_conn_end(v, c, why);
    if (!guest_knows(c)) {
        vsock_free_conn(v, c);
        return;
    }
    clear_deadline(v, c);
    vsock_close_host_fd(c);
    vsock_ring_free(&c->to_host);
    c->state = VSOCK_CONN_CLOSING;
    c->pending = VSOCK_PEND_RST;
    vsock_rx_enqueue(v, c);
}

void vsock_protocol_error(struct vsock *v, struct vsock_conn *c, const char *why)
{
    v->stats.protocol_errors++;
    vsock_abort_conn(v, c, why);
}

static void drop_all_connections(struct vsock *v, bool keep_unknown_to_guest)
{
    for (uint32_t i = 0; i < v->table.max; i++) {
        struct vsock_conn *c = &v->table.conns[i];
        if (c->state == VSOCK_CONN_FREE || (keep_unknown_to_guest && !guest_knows(c)))
            continue;
        vsock_free_conn(v, c);
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
    vq_chain_write(chain, 0, raw, sizeof raw);
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
    int n = vq_chain_iov(chain, true, VSOCK_HDR_SIZE, max, iov, VQ_MAX_CHAIN_BUFS, &covered);
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
        vsock_maybe_finish(v, c);
        return len;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return send_conn_op(v, c, chain, VSOCK_OP_CREDIT_UPDATE, 0);
    /* The host socket failed: this buffer carries the RST, and the connection ends. */
    uint32_t len = send_conn_op(v, c, chain, VSOCK_OP_RST, 0); /* the host client's socket failed */
    vsock_free_conn(v, c);
    return len;
}

/* One packet for c into the chain (the chain has room for a header). */
static uint32_t send_conn_packet(struct vsock *v, struct vsock_conn *c, const struct vq_chain *chain)
{
    if (c->pending & VSOCK_PEND_RST) {
        uint32_t len = send_conn_op(v, c, chain, VSOCK_OP_RST, 0);
        vsock_free_conn(v, c);
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
            vsock_update_interest(v, c); /* listen for more host data if credit is left */
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
        vsock_rx_enqueue(v, c); /* to the back: connections take turns */
    return len;
}

void vsock_drain_rx(struct vsock *v)
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
        uint32_t written = vq_chain_write(&v->chain, 0, id, sizeof id) == sizeof id ? sizeof id : 0;
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
        vsock_free_conn(v, c);
    else if (c)
        vsock_abort_conn(v, c, "a malformed packet");
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
    struct vsock_conn *c = fd >= 0 ? vsock_table_alloc_leaving(&v->table, VSOCK_HOST_RESERVED) : NULL;
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
    vsock_rx_enqueue(v, c);
    vsock_update_interest(v, c);
}

static void guest_accepted(struct vsock *v, struct vsock_conn *c)
{
    if (c->state != VSOCK_CONN_HOST_CONNECTING || (c->pending & VSOCK_PEND_REQUEST)) {
        vsock_protocol_error(v, c, "a RESPONSE to no REQUEST");
        return;
    }
    c->state = VSOCK_CONN_ESTABLISHED;
    clear_deadline(v, c);
    if (c->from_uds) {
        int n = snprintf(c->line, sizeof c->line, "OK %u\n", c->local_port);
        c->line_len = (uint8_t)n;
        c->line_off = 0;
        if (vsock_flush_to_host(v, c) < 0)
            return;
    }
    vsock_update_interest(v, c);
}

static void guest_shutdown(struct vsock *v, struct vsock_conn *c, uint32_t flags)
{
    if (c->state != VSOCK_CONN_ESTABLISHED) {
        vsock_protocol_error(v, c, "a SHUTDOWN on a connection not open");
        return;
    }
    c->guest_shutdown |= flags & (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
    if (c->guest_shutdown & VSOCK_SHUTDOWN_RCV)
        c->pending &= ~(uint32_t)VSOCK_PEND_READ; /* it will not take more host data */
    vsock_maybe_finish(v, c);
}

static void handle_conn_op(struct vsock *v, struct vsock_conn *c, const struct vsock_hdr *h,
                           const struct vq_chain *chain)
{
    if (c->state == VSOCK_CONN_CLOSING) {
        if (h->op == VSOCK_OP_RST)
            vsock_free_conn(v, c); /* both sides agree it is over; ours need not go out */
        return;
    }
    vsock_conn_update_peer(c, h);
    switch (h->op) {
    case VSOCK_OP_REQUEST: vsock_protocol_error(v, c, "a REQUEST on an open connection"); return;
    case VSOCK_OP_RESPONSE: guest_accepted(v, c); break;
    case VSOCK_OP_RST: log_conn_end(v, c, "the guest reset it"); vsock_free_conn(v, c); return;
    case VSOCK_OP_SHUTDOWN: guest_shutdown(v, c, h->flags); break;
    case VSOCK_OP_RW: vsock_deliver_to_host(v, c, chain, h->len); break;
    case VSOCK_OP_CREDIT_UPDATE: break;
    case VSOCK_OP_CREDIT_REQUEST:
        c->pending |= VSOCK_PEND_CREDIT_UPDATE;
        vsock_rx_enqueue(v, c);
        break;
    default: vsock_protocol_error(v, c, "an unknown op"); return;
    }
}

static void handle_tx_packet(struct vsock *v, const struct vq_chain *chain)
{
    v->stats.tx_packets++;
    uint8_t raw[VSOCK_HDR_SIZE];
    if (chain->readable_bytes < VSOCK_HDR_SIZE || vq_chain_read(chain, 0, raw, sizeof raw) != sizeof raw) {
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
        vsock_free_conn(v, c); /* the guest moved on before our RST reached it: start afresh */
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
            vsock_update_interest(v, c); /* the packet may have brought credit or buffered data */
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

/* --- the kick and the timer (vsock_on_epoll in vsock_host.c dispatches them) ------------------- */

void vsock_on_kick(struct vsock *v)
{
    uint64_t n;
    ssize_t got = read(v->kick_fd, &n, sizeof n);
    (void)got;
    process_tx(v);
    send_event(v);
}

void vsock_on_timer(struct vsock *v)
{
    uint64_t ticks;
    ssize_t got = read(v->timer_fd, &ticks, sizeof ticks);
    (void)got;
    int64_t now = clock_now_ns();
    for (uint32_t i = 0; i < v->table.max && v->ndeadlines; i++) {
        struct vsock_conn *c = &v->table.conns[i];
        if (c->state != VSOCK_CONN_FREE && c->deadline_ns && now >= c->deadline_ns) {
            v->stats.connect_timeouts++;
            vsock_abort_conn(v, c, "the guest did not answer the connect in time"); /* the client sees EOF */
        }
    }
    if (!v->ndeadlines)
        arm_timer(v, false);
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
    vsock_drain_rx(v); /* rx buffers arrived, tx work produced replies, or a reset was handled */
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

static void vsock_destroy(struct virtio_device *dev)
{
    struct vsock *v = vsock_of(dev);
    if (v->table.conns)
        drop_all_connections(v, false);
    vsock_table_destroy(&v->table);
    vsock_close_listener(&v->uds);
    vsock_close_listener(&v->exec);
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
    if (cfg->uds_path && (rc = vsock_listen_unix(v, &v->uds, "vsock", cfg->uds_path, TAG_UDS_LISTENER, err)))
        return rc;
    if (cfg->exec_path && (rc = vsock_listen_unix(v, &v->exec, "exec", cfg->exec_path, TAG_EXEC_LISTENER, err)))
        return rc;
    if (loop) {
        if (evl_add(loop, v->epfd, EPOLLIN, vsock_on_epoll, v) < 0)
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

/* A restored guest may still hold sockets of the connections the VM had
 * when it was snapshotted: one its agent had closed, waiting for the host's
 * RST when the vCPUs stopped, lingers until the guest's close timeout (8 s
 * in Linux), and the transport reset marks it closed but leaves it findable
 * by its ports. A new connection from the same host port would find it and
 * be reset at once (seen: read_file right after a restore, "the guest reset
 * it", when the snapshot had followed a write_file). The restored VMM's
 * host ports start afresh, so they start at a random point of their 3 Gi
 * range, far from the ones the snapshotted VMM used. */
void virtio_vsock_transport_reset(struct virtio_device *dev)
{
    struct vsock *v = vsock_of(dev);
    virtio_device_lock(dev);
    v->discard_tx = false;
    drop_all_connections(v, false);
    vsock_table_reseed_ephemeral(&v->table, random_u32());
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
