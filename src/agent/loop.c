/*
 * The agent's event loop: listeners, connections, frame dispatch, signals.
 *
 * Connection states (one operation per connection, see protocol/wire.c):
 *
 *   HELLO -> IDLE -> EXEC        (REQUEST; ends with EXIT or ERROR)
 *                 -> UPLOAD      (WRITE_FILE; ends with OK or ERROR)
 *                 -> DOWNLOAD    (READ_FILE; ends with FILE_END or ERROR)
 *                 -> (POWEROFF: OK, then PID 1 powers off)
 *                 -> (CONNECT: handed to a relay process, relay.c)
 *   any -> DONE: the answer is queued; flush, half-close, drain what the host
 *                still sends, close on its EOF or after a linger time.
 *
 * A malformed frame gets an ERROR frame naming the problem, then the
 * connection closes; nothing else is affected.
 */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define READ_CHUNK      (64u << 10) /* per read from a connection (grows for big frames) */
#define MAX_CONNS       512         /* beyond this, new connections get an ERROR */
#define BACKLOG_HIGH    (4u << 20)  /* stop reading the command's output above */
#define LINGER_US       (5u * 1000000u)
#define IDLE_FRAME_US   (30u * 1000000u) /* to finish HELLO + the operation frame */
#define POWEROFF_GRACE_US (1u * 1000000u) /* for the host to read the OK and close */
#define MAX_DROP_LOGS   32          /* console lines about dropped replies, per boot */

typedef enum conn_state { C_HELLO, C_IDLE, C_EXEC, C_UPLOAD, C_DOWNLOAD, C_DONE } conn_state;

struct conn {
    agent *ag;
    conn *next;
    watch w;
    conn_state state;
    wire_reader rd;
    wire_buf out;
    size_t sent;         /* bytes of out already written */
    session *s;
    file_upload up;
    int dl_fd;           /* READ_FILE source */
    uint64_t dl_left;
    bool reading;        /* EPOLLIN wanted */
    bool half_closed;    /* our answer is complete and flushed */
    bool dead;
    uint64_t deadline;   /* idle (before an operation) or linger (DONE) */
};

void agent_log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(2, "supermachine-agent: %s\n", line);
}

void agent_watch_set(agent *ag, watch *w, uint32_t events)
{
    if (w->fd < 0 || w->events == events)
        return;
    struct epoll_event ev = { .events = events, .data.ptr = w };
    int op = !w->events ? EPOLL_CTL_ADD : events ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
    if (epoll_ctl(ag->epfd, op, w->fd, &ev) < 0)
        agent_log("epoll_ctl(fd %d): %s", w->fd, strerror(errno));
    w->events = events;
}

/* ---- setup ------------------------------------------------------------ */

bool agent_init(agent *ag, bool pid1)
{
    memset(ag, 0, sizeof *ag);
    ag->pid1 = pid1;
    ag->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ag->epfd < 0) {
        agent_log("epoll_create1: %s", strerror(errno));
        return false;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        agent_log("signalfd: %s", strerror(errno));
        return false;
    }
    ag->signals = (watch){ .kind = W_SIGNALS, .fd = sfd, .owner = ag };
    agent_watch_set(ag, &ag->signals, EPOLLIN);
    return true;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        agent_log("unix socket path too long (max %zu bytes): %s", sizeof sa.sun_path - 1, path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0) {
        agent_log("cannot listen on unix:%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int listen_vsock(unsigned port)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        agent_log("vsock unavailable (%s); serving without it", strerror(errno));
        return -1;
    }
    struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0) {
        agent_log("cannot listen on vsock port %u (%s); serving without it", port,
                  strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

bool agent_listen(agent *ag, const char *spec)
{
    if (ag->nlisteners == AGENT_MAX_LISTENERS) {
        agent_log("too many listeners (max %d)", AGENT_MAX_LISTENERS);
        return false;
    }
    int fd = -1;
    if (!strncmp(spec, "unix:", 5) && spec[5]) {
        fd = listen_unix(spec + 5);
    } else if (!strncmp(spec, "vsock:", 6)) {
        char *end;
        unsigned long port = strtoul(spec + 6, &end, 10);
        if (!spec[6] || *end || port > 0xffffffffu) {
            agent_log("bad vsock port in '%s'", spec);
            return false;
        }
        fd = listen_vsock((unsigned)port);
    } else {
        agent_log("bad listen address '%s': use unix:PATH or vsock:PORT", spec);
        return false;
    }
    if (fd < 0)
        return false;
    watch *w = &ag->listeners[ag->nlisteners++];
    *w = (watch){ .kind = W_LISTEN, .fd = fd, .owner = ag };
    agent_watch_set(ag, w, EPOLLIN);
    return true;
}

/* ---- connection output ------------------------------------------------ */

size_t conn_backlog(const conn *c)
{
    return c->out.len - c->sent;
}

static void conn_update_interest(conn *c)
{
    uint32_t ev = 0;
    if (c->reading)
        ev |= EPOLLIN;
    if (conn_backlog(c))
        ev |= EPOLLOUT;
    if (!ev)
        ev = EPOLLRDHUP; /* stay registered to notice the peer going away */
    agent_watch_set(c->ag, &c->w, ev);
}

static void conn_close(conn *c, const char *why);

/* Writes what is queued; on a write error the connection is dropped. */
static void conn_flush(conn *c)
{
    while (conn_backlog(c)) {
        ssize_t n = send(c->w.fd, c->out.data + c->sent, conn_backlog(c), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_close(c, strerror(errno));
            break;
        }
        c->sent += (size_t)n;
    }
    if (c->dead)
        return;
    if (c->sent == c->out.len) {
        c->sent = c->out.len = 0;
    } else if (c->sent > (1u << 20) && c->sent > c->out.len / 2) {
        wire_buf_consume(&c->out, c->sent);
        c->sent = 0;
    }
    if (c->state == C_DONE && !conn_backlog(c) && !c->half_closed) {
        shutdown(c->w.fd, SHUT_WR);
        c->half_closed = true;
        c->reading = true; /* drain until the host closes */
        c->deadline = clock_now_us() + LINGER_US;
    }
    conn_update_interest(c);
}

bool conn_send_data(conn *c, uint8_t type, const void *data, size_t len)
{
    if (!c || c->dead)
        return false;
    wire_error e;
    if (!wire_put_data(&c->out, type, data, len, &e)) {
        conn_close(c, e.message);
        return false;
    }
    return true;
}

ssize_t conn_send_from_fd(conn *c, uint8_t type, int fd, size_t max)
{
    if (max > WIRE_MAX_DATA)
        max = WIRE_MAX_DATA;
    if (!wire_buf_reserve(&c->out, WIRE_HEADER_SIZE + max)) {
        c->out.failed = false;
        errno = ENOMEM;
        return -1;
    }
    uint8_t *at = c->out.data + c->out.len;
    ssize_t n = read(fd, at + WIRE_HEADER_SIZE, max);
    if (n > 0) {
        wire_header_encode(at, type, (uint32_t)n);
        c->out.len += WIRE_HEADER_SIZE + (size_t)n;
        conn_flush(c);
    }
    return n;
}

void conn_send_exit(conn *c, const wire_exit *x)
{
    wire_error e;
    if (!wire_put_exit(&c->out, x, &e))
        agent_log("cannot encode EXIT: %s", e.message);
    conn_session_ended(c);
}

void conn_attach(conn *c, session *s)
{
    c->s = s;
}

void conn_session_ended(conn *c)
{
    c->s = NULL;
    c->state = C_DONE;
    c->reading = false;
    conn_flush(c);
}

void conn_fail(conn *c, uint32_t kind, const char *fmt, ...)
{
    char msg[WIRE_MAX_MESSAGE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    agent_log("connection %d: %s", c->w.fd, msg);
    if (c->s) {
        session *s = c->s;
        c->s = NULL;
        session_detach(s);
    }
    if (c->state == C_UPLOAD)
        files_upload_abort(&c->up);
    wire_error e;
    wire_put_error(&c->out, kind, msg, &e);
    c->state = C_DONE;
    c->reading = false;
    conn_flush(c);
}

static void conn_close(conn *c, const char *why)
{
    if (c->dead)
        return;
    if (c->s) {
        agent_log("connection %d dropped while its command ran (%s): hanging it up", c->w.fd,
                  why);
        session *s = c->s;
        c->s = NULL;
        session_detach(s);
    } else if ((c->state == C_UPLOAD || c->state == C_DOWNLOAD || conn_backlog(c)) &&
               c->ag->drop_logs < MAX_DROP_LOGS) {
        /* An operation under way: worth a line on the console. A host that
         * connects and leaves before asking anything is not (the console
         * is slow, and a test opens hundreds of such connections). */
        c->ag->drop_logs++;
        agent_log("connection %d ended before its reply was whole (%s; %zu bytes unsent)", c->w.fd, why,
                  conn_backlog(c));
    }
    if (c->state == C_UPLOAD)
        files_upload_abort(&c->up);
    if (c->dl_fd >= 0)
        close(c->dl_fd);
    c->dl_fd = -1;
    agent_watch_set(c->ag, &c->w, 0);
    close(c->w.fd);
    c->w.fd = -1;
    c->dead = true;
}

/* ---- READ_FILE streaming ---------------------------------------------- */

static void conn_pump_download(conn *c)
{
    while (c->state == C_DOWNLOAD && conn_backlog(c) < BACKLOG_HIGH && !c->dead) {
        if (c->dl_left == 0) {
            close(c->dl_fd);
            c->dl_fd = -1;
            wire_put_empty(&c->out, WIRE_FILE_END, NULL);
            c->state = C_DONE;
            conn_flush(c);
            return;
        }
        size_t want = c->dl_left < WIRE_MAX_DATA ? (size_t)c->dl_left : WIRE_MAX_DATA;
        ssize_t n = conn_send_from_fd(c, WIRE_FILE_DATA, c->dl_fd, want);
        if (n <= 0) {
            conn_fail(c, WIRE_ERR_IO, "reading the file failed: %s",
                      n == 0 ? "it shrank while being read" : strerror(errno));
            return;
        }
        c->dl_left -= (uint64_t)n;
    }
}

/* ---- frames ------------------------------------------------------------ */

/* NETCONF: eth0 up or down, as the restoring VM asks. */
static void conn_netconf(conn *c, const wire_frame *f)
{
    bool on;
    wire_error we;
    char why[200];
    if (!wire_netconf_decode(f->payload, f->length, &on, &we)) {
        conn_fail(c, WIRE_ERR_PROTOCOL, "%s", we.message);
        return;
    }
    if (!c->ag->in_vm) {
        conn_fail(c, WIRE_ERR_REFUSED, "netconf refused: this agent is not a guest's PID 1");
        return;
    }
    if (!netconf_apply(on, why, sizeof why)) {
        conn_fail(c, WIRE_ERR_IO, "%s", why);
        return;
    }
    wire_put_empty(&c->out, WIRE_OK, NULL);
    c->state = C_DONE;
    conn_flush(c);
}

/* VOLUME: mount one of the VM's volumes. */
static void conn_volume(conn *c, const wire_frame *f)
{
    wire_volume v;
    wire_error we;
    char why[WIRE_MAX_MESSAGE - 1];
    if (!wire_get_volume(f, &v, &we)) {
        conn_fail(c, WIRE_ERR_PROTOCOL, "%s", we.message);
        return;
    }
    if (!c->ag->in_vm) {
        conn_fail(c, WIRE_ERR_REFUSED, "volume refused: this agent is not a guest's PID 1");
        return;
    }
    if (!volume_mount(&v, why, sizeof why)) {
        conn_fail(c, WIRE_ERR_IO, "%s", why);
        return;
    }
    wire_put_empty(&c->out, WIRE_OK, NULL);
    c->state = C_DONE;
    conn_flush(c);
}

static int relay_slot(agent *ag)
{
    for (int i = 0; i < AGENT_MAX_RELAYS; i++)
        if (!ag->relays[i])
            return i;
    return -1;
}

static bool relay_reaped(agent *ag, pid_t pid)
{
    for (int i = 0; i < AGENT_MAX_RELAYS; i++)
        if (ag->relays[i] == pid) {
            ag->relays[i] = 0;
            return true;
        }
    return false;
}

/* CONNECT: the connection leaves the loop for a relay process. What is
 * queued for the host and what the host sent behind its frame go with it. */
static void conn_connect(conn *c, const wire_frame *f)
{
    uint16_t port;
    wire_error we;
    if (!wire_connect_decode(f->payload, f->length, &port, &we)) {
        conn_fail(c, WIRE_ERR_PROTOCOL, "%s", we.message);
        return;
    }
    int slot = relay_slot(c->ag);
    if (slot < 0) {
        conn_fail(c, WIRE_ERR_CONNECT, "%d relayed connections are open already", AGENT_MAX_RELAYS);
        return;
    }
    const uint8_t *behind = c->rd.buf + c->rd.start;
    pid_t pid = relay_spawn(c->w.fd, c->out.data + c->sent, conn_backlog(c), behind,
                            wire_reader_pending(&c->rd), port);
    if (pid < 0) {
        conn_fail(c, WIRE_ERR_CONNECT, "cannot start a relay: %s", strerror(errno));
        return;
    }
    c->ag->relays[slot] = pid;
    c->sent = c->out.len; /* the relay sends it */
    c->state = C_DONE;
    conn_close(c, "handed to a relay");
}

static void conn_start_operation(conn *c, const wire_frame *f)
{
    char why[512];
    wire_error e;
    c->deadline = 0;
    switch (f->type) {
    case WIRE_REQUEST: {
        uint8_t *copy = malloc(f->length ? f->length : 1);
        if (!copy) {
            conn_fail(c, WIRE_ERR_LIMIT, "out of memory for a %u-byte request", f->length);
            return;
        }
        memcpy(copy, f->payload, f->length);
        c->state = C_EXEC;
        session_start(c->ag, c, copy, f->length);
        return;
    }
    case WIRE_WRITE_FILE: {
        wire_file_head h;
        if (!wire_get_file_head(f, &h, &e)) {
            conn_fail(c, WIRE_ERR_PROTOCOL, "%s", e.message);
            return;
        }
        if (!files_upload_begin(&c->up, &h, why, sizeof why)) {
            conn_fail(c, WIRE_ERR_IO, "%s", why);
            return;
        }
        c->state = C_UPLOAD;
        return;
    }
    case WIRE_READ_FILE: {
        wire_file_head h;
        if (!wire_get_file_head(f, &h, &e)) {
            conn_fail(c, WIRE_ERR_PROTOCOL, "%s", e.message);
            return;
        }
        uint32_t kind;
        wire_file_head info = { 0 };
        c->dl_fd = files_open_for_read(h.path, &info.size, &info.mode, &kind, why, sizeof why);
        if (c->dl_fd < 0) {
            conn_fail(c, kind, "%s", why);
            return;
        }
        wire_put_file_head(&c->out, WIRE_FILE_INFO, &info, NULL);
        c->dl_left = info.size;
        c->state = C_DOWNLOAD;
        c->reading = false;
        conn_pump_download(c);
        return;
    }
    case WIRE_POWEROFF:
        if (!c->ag->pid1) {
            conn_fail(c, WIRE_ERR_REFUSED, "power off refused: this agent is not PID 1");
            return;
        }
        wire_put_empty(&c->out, WIRE_OK, NULL);
        c->state = C_DONE;
        c->ag->poweroff = true;
        c->ag->poweroff_deadline = clock_now_us() + POWEROFF_GRACE_US;
        conn_flush(c);
        return;
    case WIRE_SYNC: {
        wire_sync sync;
        char reason[160];
        wire_error we;
        if (!wire_sync_decode(f->payload, f->length, &sync, &we)) {
            conn_fail(c, WIRE_ERR_PROTOCOL, "%s", we.message);
            return;
        }
        if (!c->ag->in_vm) {
            conn_fail(c, WIRE_ERR_REFUSED, "sync refused: this agent is not a guest's PID 1");
            return;
        }
        bool synced = pid1_sync(sync.realtime_ns, sync.entropy, sizeof sync.entropy, reason, sizeof reason);
        explicit_bzero(&sync, sizeof sync);
        if (!synced) {
            conn_fail(c, WIRE_ERR_IO, "%s", reason);
            return;
        }
        wire_put_empty(&c->out, WIRE_OK, NULL);
        c->state = C_DONE;
        conn_flush(c);
        return;
    }
    case WIRE_NETCONF:
        conn_netconf(c, f);
        return;
    case WIRE_CONNECT:
        conn_connect(c, f);
        return;
    case WIRE_VOLUME:
        conn_volume(c, f);
        return;
    default:
        conn_fail(c, WIRE_ERR_PROTOCOL, "expected REQUEST, WRITE_FILE, READ_FILE, POWEROFF, SYNC,"
                  " NETCONF, VOLUME or CONNECT, got %s", wire_type_name(f->type));
    }
}

static void conn_upload_frame(conn *c, const wire_frame *f)
{
    char why[512];
    if (f->type == WIRE_FILE_DATA) {
        if (!files_upload_data(&c->up, f->payload, f->length, why, sizeof why))
            conn_fail(c, WIRE_ERR_LIMIT, "%s", why);
    } else if (f->type == WIRE_FILE_END) {
        bool ok = files_upload_finish(&c->up, why, sizeof why);
        c->state = C_DONE; /* the upload is finished either way */
        if (!ok) {
            conn_fail(c, WIRE_ERR_IO, "%s", why);
            return;
        }
        wire_put_empty(&c->out, WIRE_OK, NULL);
        c->reading = false;
        conn_flush(c);
    } else {
        conn_fail(c, WIRE_ERR_PROTOCOL, "expected FILE_DATA or FILE_END, got %s",
                  wire_type_name(f->type));
    }
}

static void conn_on_frame(conn *c, const wire_frame *f)
{
    wire_error e;
    switch (c->state) {
    case C_HELLO:
        if (!wire_check_hello(f, "host", &e)) {
            bool version = f->type == WIRE_HELLO;
            conn_fail(c, version ? WIRE_ERR_VERSION : WIRE_ERR_PROTOCOL, "%s", e.message);
            return;
        }
        c->state = C_IDLE;
        return;
    case C_IDLE:
        conn_start_operation(c, f);
        return;
    case C_EXEC:
        if (c->s)
            session_on_frame(c->s, f);
        return;
    case C_UPLOAD:
        conn_upload_frame(c, f);
        return;
    case C_DOWNLOAD:
        conn_fail(c, WIRE_ERR_PROTOCOL, "unexpected %s during READ_FILE",
                  wire_type_name(f->type));
        return;
    case C_DONE:
        return; /* after our answer: ignore whatever the host still sends */
    }
}

static void conn_on_readable(conn *c)
{
    for (int round = 0; round < 4 && c->reading && !c->dead; round++) {
        size_t avail;
        uint8_t *dst = wire_reader_space(&c->rd, READ_CHUNK, &avail);
        if (!dst) {
            conn_fail(c, WIRE_ERR_LIMIT, "out of memory reading a frame");
            return;
        }
        ssize_t n = recv(c->w.fd, dst, avail, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_close(c, strerror(errno));
            return;
        }
        if (n == 0) {
            if (wire_reader_pending(&c->rd) && c->state != C_DONE)
                agent_log("connection %d closed in the middle of a frame (%zu bytes pending)",
                          c->w.fd, wire_reader_pending(&c->rd));
            conn_close(c, "the host closed the connection");
            return;
        }
        wire_reader_commit(&c->rd, (size_t)n);
        wire_frame f;
        wire_error e;
        int got;
        while (!c->dead && c->state != C_DONE && (got = wire_reader_next(&c->rd, &f, &e))) {
            if (got < 0) {
                conn_fail(c, WIRE_ERR_PROTOCOL, "%s", e.message);
                return;
            }
            conn_on_frame(c, &f);
        }
        if (c->state == C_DONE && c->half_closed) /* draining: drop what came */
            c->rd.start = c->rd.end = 0;
        if ((size_t)n < avail)
            break;
    }
    if (!c->dead)
        conn_update_interest(c);
}

void conn_pause_reading(conn *c, bool pause)
{
    if (c->dead || c->state != C_EXEC)
        return;
    c->reading = !pause;
    conn_update_interest(c);
}

/* Over the limit: say so (best effort, the socket buffer takes it) and close. */
static void refuse(int fd)
{
    wire_buf b = { 0 };
    wire_put_hello(&b, NULL);
    wire_put_error(&b, WIRE_ERR_LIMIT, "the agent serves at most 512 connections at once: "
                      "retry later", NULL);
    if (!b.failed && send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* gone */ }
    wire_buf_free(&b);
    close(fd);
}

static void conn_accept(agent *ag, watch *lw)
{
    for (int i = 0; i < 16; i++) {
        int fd = accept4(lw->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                agent_log("accept: %s", strerror(errno));
            return;
        }
        int live = 0;
        for (conn *c = ag->conns; c; c = c->next)
            live += !c->dead;
        if (live >= MAX_CONNS) {
            refuse(fd);
            continue;
        }
        int sz = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            agent_log("out of memory for a connection");
            return;
        }
        c->ag = ag;
        c->w = (watch){ .kind = W_CONN, .fd = fd, .owner = c };
        c->dl_fd = -1;
        c->up.active = false;
        c->reading = true;
        c->deadline = clock_now_us() + IDLE_FRAME_US;
        wire_reader_init(&c->rd, WIRE_AT_AGENT);
        wire_put_hello(&c->out, NULL);
        c->next = ag->conns;
        ag->conns = c;
        conn_flush(c);
    }
}

static void conn_on_event(conn *c, uint32_t events)
{
    if (events & EPOLLOUT) {
        conn_flush(c);
        if (c->dead)
            return;
        if (c->s && conn_backlog(c) < BACKLOG_HIGH / 2)
            session_resume_output(c->s);
        if (c->state == C_DOWNLOAD)
            conn_pump_download(c);
    }
    if (c->dead)
        return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        if (c->reading) {
            conn_on_readable(c);
        } else if (events & (EPOLLHUP | EPOLLERR)) {
            conn_close(c, "the connection hung up");
        } else if (events & EPOLLRDHUP) {
            /* The host half-closed while we are not reading (stdin
             * backpressure or download): read to find out whether it is a
             * full close or just the end of its sending. */
            c->reading = true;
            conn_on_readable(c);
        }
    }
}

/* ---- signals and reaping ------------------------------------------------- */

static void reap_children(agent *ag)
{
    for (;;) {
        int status;
        struct rusage ru;
        pid_t pid = wait4(-1, &status, WNOHANG, &ru);
        if (pid <= 0)
            return;
        /* Not ours (an orphan handed to PID 1 or the subreaper): discard. */
        if (!session_reaped(ag, pid, status, ru.ru_maxrss))
            relay_reaped(ag, pid);
    }
}

static void on_signals(agent *ag)
{
    struct signalfd_siginfo si;
    while (read(ag->signals.fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD)
            continue; /* reaped below, all at once */
        if (ag->pid1) {
            agent_log("ignoring signal %u as PID 1", si.ssi_signo);
            continue;
        }
        agent_log("stopping on signal %u", si.ssi_signo);
        ag->stopping = true;
    }
    reap_children(ag);
}

/* ---- the loop ------------------------------------------------------------ */

static void tick_and_collect(agent *ag)
{
    uint64_t now = clock_now_us();
    for (session *s = ag->sessions; s; s = *session_next(s))
        session_tick(s, now);
    for (conn *c = ag->conns; c; c = c->next) {
        if (c->dead || !c->deadline || now < c->deadline)
            continue;
        if (c->state == C_DONE)
            conn_close(c, "linger time over");
        else if (c->state == C_HELLO || c->state == C_IDLE)
            conn_fail(c, WIRE_ERR_PROTOCOL, "no complete HELLO and operation frame within %u s",
                      IDLE_FRAME_US / 1000000u);
    }
    /* Free what died during this batch. */
    for (conn **pc = &ag->conns; *pc;) {
        conn *c = *pc;
        if (!c->dead) {
            pc = &c->next;
            continue;
        }
        *pc = c->next;
        wire_reader_destroy(&c->rd);
        wire_buf_free(&c->out);
        free(c);
    }
    for (session **ps = &ag->sessions; *ps;) {
        session *s = *ps;
        if (!session_is_dead(s)) {
            ps = session_next(s);
            continue;
        }
        *ps = *session_next(s);
        session_free(s);
    }
}

static int next_timeout_ms(agent *ag)
{
    uint64_t next = UINT64_MAX;
    for (session *s = ag->sessions; s; s = *session_next(s)) {
        uint64_t d = session_next_deadline(s);
        if (d && d < next)
            next = d;
    }
    for (conn *c = ag->conns; c; c = c->next)
        if (c->deadline && c->deadline < next)
            next = c->deadline;
    if (ag->poweroff && ag->poweroff_deadline < next)
        next = ag->poweroff_deadline;
    if (next == UINT64_MAX)
        return -1;
    uint64_t now = clock_now_us();
    if (next <= now)
        return 0;
    uint64_t ms = (next - now + 999) / 1000;
    return ms > 60000 ? 60000 : (int)ms;
}

/*
 * A requested power off waits until every connection is closed, so that the
 * OK reaches the host: a flushed send only means it is in the guest kernel's
 * vsock queue, which a power off right away would throw away. The host closes
 * its end once it has read the OK; a connection that never closes delays the
 * power off by POWEROFF_GRACE_US at most.
 */
static bool poweroff_may_go(const agent *ag)
{
    if (clock_now_us() >= ag->poweroff_deadline)
        return true;
    for (const conn *c = ag->conns; c; c = c->next)
        if (!c->dead)
            return false;
    return true;
}

void agent_run(agent *ag)
{
    struct epoll_event evs[64];
    while (!ag->stopping) {
        int n = epoll_wait(ag->epfd, evs, 64, next_timeout_ms(ag));
        if (n < 0 && errno != EINTR) {
            agent_log("epoll_wait: %s", strerror(errno));
            return;
        }
        for (int i = 0; i < n; i++) {
            watch *w = evs[i].data.ptr;
            switch (w->kind) {
            case W_LISTEN:
                conn_accept(ag, w);
                break;
            case W_SIGNALS:
                on_signals(ag);
                break;
            case W_CONN:
                if (!((conn *)w->owner)->dead)
                    conn_on_event(w->owner, evs[i].events);
                break;
            case W_OUT:
            case W_ERR:
            case W_IN:
                if (!session_is_dead(w->owner))
                    session_on_event(w->owner, w, evs[i].events);
                break;
            }
        }
        tick_and_collect(ag);
        if (ag->poweroff && poweroff_may_go(ag))
            pid1_poweroff("power off requested by the host");
    }
}

void agent_shutdown(agent *ag)
{
    for (session *s = ag->sessions; s; s = *session_next(s))
        session_kill_all(s, SIGKILL);
    for (int i = 0; i < AGENT_MAX_RELAYS; i++)
        if (ag->relays[i] > 0)
            kill(ag->relays[i], SIGKILL);
    for (conn *c = ag->conns; c; c = c->next)
        conn_close(c, "the agent is stopping");
    /* Wait for the killed commands so none is left behind. */
    uint64_t give_up = clock_now_us() + 2000000u;
    while (ag->sessions && clock_now_us() < give_up) {
        int status;
        struct rusage ru;
        pid_t pid = wait4(-1, &status, 0, &ru);
        if (pid < 0)
            break;
        session_reaped(ag, pid, status, ru.ru_maxrss);
        tick_and_collect(ag);
    }
    tick_and_collect(ag);
    /* What is left waits only for its pipes to drain: nobody will read them. */
    while (ag->sessions) {
        session *s = ag->sessions;
        ag->sessions = *session_next(s);
        session_free(s);
    }
    for (int i = 0; i < ag->nlisteners; i++)
        close(ag->listeners[i].fd);
    close(ag->signals.fd);
    close(ag->epfd);
}
