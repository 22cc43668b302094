/*
 * The host side of virtio-vsock: the Unix sockets host clients dial and the
 * bytes between them and the guest's connections. The uds socket's clients
 * send "CONNECT <port>\n" first; the exec socket's go straight to the
 * agent's port. How data moves and why nothing grows without bound: vsock.c.
 *
 *   vsock_host.c      this: listening (bind, stale files, close), accepting,
 *                     the CONNECT handshake, writing guest data to host
 *                     sockets, each connection's epoll interest, and the
 *                     dispatch of the device's epoll set
 *   vsock.c           the device: queues, packets to and from the guest
 *                     (reading host data into rx buffers too), connection
 *                     lifetime, connect deadlines, device ops
 *   vsock_internal.h  struct vsock and the helpers the two files share
 *   vsock_conn.c      the socket-free core: header, chains, table, ring, credit
 *
 * Everything here runs with the transport's lock held: the device calls in
 * with it, and vsock_on_epoll() takes it.
 */
#include "devices/virtio/vsock_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/error.h"
#include "base/peer.h"

#define ACCEPT_BUDGET   16    /* connections accepted per listener wakeup */
#define EVENT_BATCH     64
#define LISTEN_BACKLOG  128

/* --- a connection's host socket: epoll interest and closing ------------------------------ */

void vsock_close_host_fd(struct vsock_conn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also leaves our epoll set: the fd is never duplicated */
    c->fd = -1;
    c->epoll_events = 0;
    c->in_epoll = false;
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
void vsock_update_interest(struct vsock *v, struct vsock_conn *c)
{
    bool watch;
    uint32_t want = wanted_events(c, &watch);
    if (watch == c->in_epoll && want == c->epoll_events)
        return;
    struct epoll_event ev = { .events = want, .data.u64 = (uint64_t)c->gen << 32 | c->index };
    int op = !watch ? EPOLL_CTL_DEL : c->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(v->epfd, op, c->fd, &ev) < 0) {
        vsock_abort_conn(v, c, "epoll_ctl failed (out of kernel memory)"); /* give this connection up, not the device */
        return;
    }
    c->in_epoll = watch;
    c->epoll_events = want;
}

/* Closes what both sides have finished with (see the state machine in vsock_conn.h). */
void vsock_maybe_finish(struct vsock *v, struct vsock_conn *c)
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
        vsock_close_host_fd(c);
        c->state = VSOCK_CONN_CLOSING;
        c->pending = VSOCK_PEND_RST; /* Linux waits for this RST to finish its close */
        vsock_rx_enqueue(v, c);
    }
}

/* --- guest data to the host socket ------------------------------------------------------------ */

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
        vsock_rx_enqueue(v, c);
    }
}

/* Writes the "OK" line, then buffered guest data; returns -1 if the connection ended. */
int vsock_flush_to_host(struct vsock *v, struct vsock_conn *c)
{
    if (c->line_off < c->line_len) {
        struct iovec iov = { .iov_base = c->line + c->line_off, .iov_len = (size_t)(c->line_len - c->line_off) };
        ssize_t n = send_iov(c->fd, &iov, 1);
        if (n < 0) {
            vsock_abort_conn(v, c, NULL); /* the host client's socket failed */
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
            vsock_abort_conn(v, c, NULL); /* the host client's socket failed */
            return -1;
        }
        vsock_ring_consume(&c->to_host, (uint32_t)n);
        note_forwarded(v, c, (uint32_t)n);
    }
    return 0;
}

/* An RW packet's payload: to the host socket now, the rest into the ring. */
void vsock_deliver_to_host(struct vsock *v, struct vsock_conn *c, const struct vq_chain *chain, uint32_t len)
{
    if (c->state != VSOCK_CONN_ESTABLISHED || (c->guest_shutdown & VSOCK_SHUTDOWN_SEND)) {
        vsock_protocol_error(v, c, "the guest sent data on a connection not open for it");
        return;
    }
    struct iovec iov[VQ_MAX_CHAIN_BUFS];
    uint64_t covered;
    int n = vq_chain_iov(chain, false, VSOCK_HDR_SIZE, len, iov, VQ_MAX_CHAIN_BUFS, &covered);
    uint64_t done = 0;
    if (!c->to_host.len && c->line_off >= c->line_len) {
        ssize_t sent = send_iov(c->fd, iov, n);
        if (sent < 0) {
            vsock_abort_conn(v, c, NULL); /* the host client's socket failed */
            return;
        }
        done = (uint64_t)sent;
        note_forwarded(v, c, (uint32_t)sent);
    }
    if (covered - done > (uint64_t)VSOCK_CONN_BUF_ALLOC - c->to_host.len) {
        vsock_protocol_error(v, c, "the guest sent more than the credit we gave");
        return;
    }
    for (int i = 0; i < n; i++) {
        uint64_t skip = done < iov[i].iov_len ? done : iov[i].iov_len;
        done -= skip;
        if (vsock_ring_push(&c->to_host, VSOCK_CONN_BUF_ALLOC, (uint8_t *)iov[i].iov_base + skip,
                            (uint32_t)(iov[i].iov_len - skip)) < 0) {
            vsock_abort_conn(v, c, "out of memory buffering guest data");
            return;
        }
    }
}

/* --- host clients ------------------------------------------------------------------------------ */

/* "CONNECT <port>\n" from a uds client; never reads past the newline. */
static void read_handshake(struct vsock *v, struct vsock_conn *c)
{
    uint32_t room = VSOCK_LINE_MAX - c->line_len;
    ssize_t n = recv(c->fd, c->line + c->line_len, room, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        vsock_free_conn(v, c);
        return;
    }
    char *nl = memchr(c->line + c->line_len, '\n', (size_t)n);
    size_t take = nl ? (size_t)(nl - (c->line + c->line_len)) + 1 : (size_t)n;
    char sink[VSOCK_LINE_MAX];
    if (recv(c->fd, sink, take, MSG_DONTWAIT) != (ssize_t)take) {
        vsock_free_conn(v, c);
        return;
    }
    c->line_len = (uint8_t)(c->line_len + take);
    uint32_t port;
    if (!nl) {
        if (c->line_len >= VSOCK_LINE_MAX)
            vsock_free_conn(v, c); /* no newline where one must be: not our protocol */
        return;
    }
    if (vsock_parse_connect_line(c->line, c->line_len, &port) < 0 ||
        vsock_table_bind(&v->table, c, vsock_table_ephemeral_port(&v->table, port), port) < 0) {
        vsock_free_conn(v, c);
        return;
    }
    c->line_len = c->line_off = 0;
    c->state = VSOCK_CONN_HOST_CONNECTING;
    c->pending |= VSOCK_PEND_REQUEST;
    vsock_rx_enqueue(v, c);
    vsock_update_interest(v, c);
}

static void on_conn_event(struct vsock *v, struct vsock_conn *c, uint32_t events)
{
    if (c->state == VSOCK_CONN_HOST_HANDSHAKE) {
        read_handshake(v, c);
        return;
    }
    if (c->state == VSOCK_CONN_HOST_CONNECTING) {
        if (events & (EPOLLHUP | EPOLLERR))
            vsock_abort_conn(v, c, NULL); /* the host client left before the guest answered */
        return;
    }
    if (!c->epoll_events && (events & (EPOLLHUP | EPOLLERR))) {
        vsock_abort_conn(v, c, NULL); /* the host client closed its socket */
        return;
    }
    if (c->state != VSOCK_CONN_ESTABLISHED) {
        /* A socket still in the set from an earlier state: level-triggered
         * events would come back forever, so bring the set up to date. */
        vsock_update_interest(v, c);
        return;
    }
    uint32_t gen = c->gen;
    if ((c->epoll_events & EPOLLOUT) && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        if (vsock_flush_to_host(v, c) < 0)
            return;
        vsock_maybe_finish(v, c);
        if (c->gen != gen || c->state != VSOCK_CONN_ESTABLISHED)
            return;
    }
    if ((c->epoll_events & EPOLLIN) && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
        /* Read later, straight into an rx buffer; until then the socket is out of epoll. */
        c->pending |= VSOCK_PEND_READ;
        vsock_rx_enqueue(v, c);
    }
    vsock_update_interest(v, c);
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
        if (!peer_is_own_user(fd)) {
            close(fd); /* another user's process: EOF at once, nothing reaches the guest */
            continue;
        }
        struct vsock_conn *c = vsock_table_alloc(&v->table);
        if (!c) {
            close(fd); /* at the connection limit: the client sees EOF at once */
            continue;
        }
        c->fd = fd;
        vsock_set_deadline(v, c);
        if (l == &v->uds) {
            c->from_uds = true;
            c->state = VSOCK_CONN_HOST_HANDSHAKE;
        } else {
            if (vsock_table_bind(&v->table, c, vsock_table_ephemeral_port(&v->table, v->exec_port), v->exec_port) < 0) {
                vsock_free_conn(v, c);
                continue;
            }
            c->state = VSOCK_CONN_HOST_CONNECTING;
            c->pending |= VSOCK_PEND_REQUEST;
            vsock_rx_enqueue(v, c);
        }
        vsock_update_interest(v, c);
    }
    /* More may wait in the backlog: the level-triggered listener fires again. */
}

void vsock_resume_listeners(struct vsock *v)
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

/* --- listening sockets ------------------------------------------------------------------------- */

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

sm_code vsock_listen_unix(struct vsock *v, struct listener *l, const char *what, const char *path, uint32_t tag,
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

void vsock_close_listener(struct listener *l)
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

/* --- the device's epoll set ------------------------------------------------------------------- */

void vsock_on_epoll(void *opaque, uint32_t events)
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
            vsock_on_kick(v);
        else if (tag == TAG_TIMER)
            vsock_on_timer(v);
        else {
            /* An earlier event in this batch may have ended this connection. */
            struct vsock_conn *c = vsock_table_slot(&v->table, index);
            if (c && c->state != VSOCK_CONN_FREE && c->gen == gen && c->fd >= 0)
                on_conn_event(v, c, evs[i].events);
        }
    }
    vsock_drain_rx(v);
    virtio_device_unlock(&v->dev);
}
