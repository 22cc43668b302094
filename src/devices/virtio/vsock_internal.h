/*
 * What vsock.c (the device) and vsock_host.c (the host-side muxer) share,
 * and nothing else includes: the device's state, the listening sockets, the
 * epoll tags, and the helpers one side calls in the other. All of them but
 * vsock_on_epoll (which takes it) run with the transport's lock held.
 *
 *   vsock.h           the face to the VMM: create, restore hooks, stats
 *   vsock_internal.h  this: state and cross-file helpers
 *   vsock.c           the device: queues, packets to and from the guest,
 *                     connection lifetime, connect deadlines, device ops
 *   vsock_host.c      the host side: listening, accepting, the CONNECT
 *                     handshake, bytes to host sockets, epoll interest and
 *                     dispatch
 *   vsock_conn.c      the socket-free core (vsock_conn.h)
 */
#ifndef SM_DEVICES_VIRTIO_VSOCK_INTERNAL_H
#define SM_DEVICES_VIRTIO_VSOCK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "devices/virtio/vsock.h"
#include "devices/virtio/vsock_conn.h"

#define RST_QUEUE_LEN   128   /* RSTs for unknown connections waiting for rx buffers */

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

/* --- in vsock.c (the device) ------------------------------------------------------------- */

/* Puts c at the back of the line for rx buffers (no-op if already in it).
 * Both sides: whenever c has a packet for the guest. */
void vsock_rx_enqueue(struct vsock *v, struct vsock_conn *c);

/* Starts c's connect deadline and the timer that checks it.
 * Host side: when a client is accepted. */
void vsock_set_deadline(struct vsock *v, struct vsock_conn *c);

/* Forgets c at once: no RST to the guest, its socket closed, its slot free
 * (and a paused listener resumed). Both sides. */
void vsock_free_conn(struct vsock *v, struct vsock_conn *c);

/* Ends c: the host socket closes now, the guest gets an RST when it gives us
 * a buffer; why (NULL: a host client left) goes to the log. Both sides. */
void vsock_abort_conn(struct vsock *v, struct vsock_conn *c, const char *why);

/* vsock_abort_conn, counted as the guest's protocol error. Both sides
 * (the host side when an RW packet is not allowed). */
void vsock_protocol_error(struct vsock *v, struct vsock_conn *c, const char *why);

/* Fills the guest's rx buffers with what waits, within one ring's budget.
 * Device: after a queue notify; host side: after each epoll batch. */
void vsock_drain_rx(struct vsock *v);

/* The kick eventfd fired: tx and event work left over. Host side: epoll dispatch. */
void vsock_on_kick(struct vsock *v);

/* The deadline timer ticked: aborts connects out of time. Host side: epoll dispatch. */
void vsock_on_timer(struct vsock *v);

/* --- in vsock_host.c (the host side) ------------------------------------------------------ */

/* Closes c's host socket (which also takes it out of our epoll set). Both sides. */
void vsock_close_host_fd(struct vsock_conn *c);

/* Puts c's socket in our epoll set with the events it needs now, or takes it
 * out. Both sides: after anything that changes what c waits for. */
void vsock_update_interest(struct vsock *v, struct vsock_conn *c);

/* Shuts the host socket's write side, or closes c, once a side is finished.
 * Both sides: after a SHUTDOWN, a host EOF, or a flush. */
void vsock_maybe_finish(struct vsock *v, struct vsock_conn *c);

/* Writes the "OK" line, then buffered guest data; -1 if c ended. Device: when
 * the guest accepts a host client's connect; host side: when the socket drains. */
int vsock_flush_to_host(struct vsock *v, struct vsock_conn *c);

/* An RW packet's payload: to the host socket now, the rest into c's ring.
 * Device: for each RW packet. */
void vsock_deliver_to_host(struct vsock *v, struct vsock_conn *c, const struct vq_chain *chain, uint32_t len);

/* Puts listeners paused for want of fds back in epoll. Device: when a
 * connection's slot is freed. */
void vsock_resume_listeners(struct vsock *v);

/* Creates, binds and listens on the Unix socket at path, in our epoll set
 * under tag. Device: at creation. */
sm_code vsock_listen_unix(struct vsock *v, struct listener *l, const char *what, const char *path, uint32_t tag,
                          sm_error *err);

/* Closes l and unlinks its socket file if it is still ours. Device: at destroy. */
void vsock_close_listener(struct listener *l);

/* The event loop's callback for our epoll set: takes the lock, serves every
 * ready fd, then drains rx. Device: registers it at creation. */
void vsock_on_epoll(void *opaque, uint32_t events);

#endif
