/*
 * The socket-free core of virtio-vsock: the packet header, copying packets in
 * and out of descriptor chains, the connection table, the byte ring that
 * holds guest data the host socket could not take yet, and the credit
 * arithmetic. No file descriptors here, so unit tests and the fuzzer drive it
 * directly; vsock.c adds the queues and vsock_host.c the sockets.
 *
 * Packet header (virtio 1.2 section 5.10.6), 44 bytes, little-endian, packed:
 *
 *   off  size  field      meaning
 *   0    8     src_cid    sender's context ID (host = 2, guest = its CID)
 *   8    8     dst_cid    receiver's context ID
 *   16   4     src_port   sender's port
 *   20   4     dst_port   receiver's port
 *   24   4     len        payload bytes that follow the header (RW only)
 *   28   2     type       1 = STREAM (the only type we carry)
 *   30   2     op         see below
 *   32   4     flags      SHUTDOWN: 1 = RCV (won't receive), 2 = SEND (won't send)
 *   36   4     buf_alloc  sender's receive buffer for this connection, bytes
 *   40   4     fwd_cnt    bytes the sender has consumed from that buffer (wraps)
 *
 * Ops:
 *   op  name            meaning
 *   1   REQUEST         open a connection to dst_port
 *   2   RESPONSE        accept a REQUEST
 *   3   RST             refuse or abort; never answered
 *   4   SHUTDOWN        flags say which direction(s) the sender closed
 *   5   RW              len bytes of stream data follow
 *   6   CREDIT_UPDATE   nothing but the header's buf_alloc/fwd_cnt
 *   7   CREDIT_REQUEST  please send a CREDIT_UPDATE
 *
 * Credit (section 5.10.6.3): a sender may have at most peer_buf_alloc -
 * (tx_cnt - peer_fwd_cnt) bytes in flight, all counters u32 and wrapping.
 * Every header carries the sender's buf_alloc and fwd_cnt, so any packet is
 * also a credit update.
 *
 * Event queue element (section 5.10.6.4): le32 id; 0 = TRANSPORT_RESET.
 */
#ifndef SM_DEVICES_VIRTIO_VSOCK_CONN_H
#define SM_DEVICES_VIRTIO_VSOCK_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "devices/virtio/virtqueue.h"

#define VSOCK_HOST_CID          2u
#define VSOCK_HDR_SIZE          44u
#define VSOCK_TYPE_STREAM       1u
#define VSOCK_SHUTDOWN_RCV      1u
#define VSOCK_SHUTDOWN_SEND     2u
#define VSOCK_EVENT_TRANSPORT_RESET 0u

enum vsock_op {
    VSOCK_OP_INVALID = 0,
    VSOCK_OP_REQUEST = 1,
    VSOCK_OP_RESPONSE = 2,
    VSOCK_OP_RST = 3,
    VSOCK_OP_SHUTDOWN = 4,
    VSOCK_OP_RW = 5,
    VSOCK_OP_CREDIT_UPDATE = 6,
    VSOCK_OP_CREDIT_REQUEST = 7,
};

/* Largest payload one packet may carry (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE). */
#define VSOCK_MAX_PAYLOAD       (64u * 1024)
/* The receive buffer we advertise per connection: guest data the host socket
 * has not taken yet is buffered up to this, never more. */
#ifndef VSOCK_CONN_BUF_ALLOC
#define VSOCK_CONN_BUF_ALLOC    (64u * 1024)
#endif
/* Most connections one device holds (host- and guest-initiated together). */
#define VSOCK_MAX_CONNS         1024u
/* Slots only the host's connections may take: a guest that opens
 * connections to the host until the table is full must not lock the host's
 * exec connections out. */
#define VSOCK_HOST_RESERVED     64u

struct vsock_hdr {
    uint64_t src_cid;
    uint64_t dst_cid;
    uint32_t src_port;
    uint32_t dst_port;
    uint32_t len;
    uint16_t type;
    uint16_t op;
    uint32_t flags;
    uint32_t buf_alloc;
    uint32_t fwd_cnt;
};

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t out[VSOCK_HDR_SIZE]);
void vsock_hdr_decode(const uint8_t in[VSOCK_HDR_SIZE], struct vsock_hdr *h);
const char *vsock_op_name(uint32_t op);

/* --- byte ring ---------------------------------------------------------------------
 * Guest->host bytes waiting for the host socket. Its storage is allocated on
 * first use and freed when the ring empties, so idle connections cost nothing. */
struct vsock_ring {
    uint8_t *data;
    uint32_t cap;
    uint32_t head;   /* offset of the oldest byte */
    uint32_t len;    /* bytes held */
};

/* Appends all len bytes or nothing: -1 if they do not fit in cap or memory is short. */
int vsock_ring_push(struct vsock_ring *r, uint32_t cap, const void *src, uint32_t len);
/* The held bytes as at most two iovecs; returns how many. */
int vsock_ring_iov(const struct vsock_ring *r, struct iovec iov[2]);
/* Drops n (<= len) bytes from the front. */
void vsock_ring_consume(struct vsock_ring *r, uint32_t n);
void vsock_ring_free(struct vsock_ring *r);

/* --- connections ------------------------------------------------------------------- */

/*
 * Connection states (host side = a Unix socket; guest side = a vsock port):
 *
 *   HOST_HANDSHAKE  -- "CONNECT <port>\n" read --------> HOST_CONNECTING
 *      (accepted on the uds socket)     bad line / EOF -> freed
 *   (accepted on the exec socket) ---------------------> HOST_CONNECTING
 *   HOST_CONNECTING -- guest RESPONSE (uds: "OK <n>\n") -> ESTABLISHED
 *                   -- guest RST -> freed; anything else -> CLOSING
 *                   -- the client hangs up -> CLOSING
 *   HOST_HANDSHAKE and HOST_CONNECTING have a deadline, connect_timeout_ms
 *   from accept: when it passes -> CLOSING (freed at once if the guest has
 *   not been sent the REQUEST yet).
 *   guest REQUEST, connect(<uds>_<port>) succeeds -----> ESTABLISHED (RESPONSE queued)
 *   guest REQUEST, no listener -----------------------> (RST queued, no connection)
 *   ESTABLISHED     -- data both ways, credit-limited
 *                   -- guest SHUTDOWN SEND: host socket shut for writing once
 *                      buffered data is written
 *                   -- host EOF: SHUTDOWN SEND to the guest
 *                   -- both directions finished, guest RST, host error,
 *                      protocol violation -> CLOSING / freed
 *   CLOSING         -- host socket closed; an RST waits for an rx buffer,
 *                      then the slot is freed
 */
enum vsock_conn_state {
    VSOCK_CONN_FREE = 0,
    VSOCK_CONN_HOST_HANDSHAKE,
    VSOCK_CONN_HOST_CONNECTING,
    VSOCK_CONN_ESTABLISHED,
    VSOCK_CONN_CLOSING,
};

/* What a connection still has to tell the guest (one packet each, in this order). */
enum {
    VSOCK_PEND_RST = 1u << 0,
    VSOCK_PEND_REQUEST = 1u << 1,
    VSOCK_PEND_RESPONSE = 1u << 2,
    VSOCK_PEND_READ = 1u << 3,            /* the host socket is readable (or at EOF) */
    VSOCK_PEND_CREDIT_UPDATE = 1u << 4,
    VSOCK_PEND_CREDIT_REQUEST = 1u << 5,
};

#define VSOCK_LINE_MAX 32   /* "CONNECT 4294967295\n" and "OK 4294967295\n" fit */

struct vsock_conn {
    enum vsock_conn_state state;
    uint32_t index;          /* slot in the table */
    uint32_t gen;            /* bumped at every allocation: stale events are ignored */
    int fd;                  /* host Unix socket, -1 once closed */
    bool hashed;             /* in the table's hash under (local_port, peer_port) */
    bool from_uds;           /* host-initiated on the uds socket (answers "OK <n>\n") */
    uint32_t local_port;     /* host-side vsock port */
    uint32_t peer_port;      /* guest-side vsock port */
    uint32_t pending;        /* VSOCK_PEND_* */

    /* guest -> host */
    uint32_t fwd_cnt;        /* guest bytes written to the host socket */
    uint32_t fwd_cnt_sent;   /* fwd_cnt in the last header we sent */
    struct vsock_ring to_host;
    uint32_t guest_shutdown; /* VSOCK_SHUTDOWN_* the guest sent */
    bool host_write_shut;    /* we did shutdown(SHUT_WR) on the host socket */

    /* host -> guest */
    uint32_t tx_cnt;         /* bytes sent to the guest */
    uint32_t peer_buf_alloc;
    uint32_t peer_fwd_cnt;
    bool host_eof;           /* read() returned 0; SHUTDOWN SEND told to the guest */
    bool credit_requested;   /* CREDIT_REQUEST sent since the credit last ran out */

    /* handshake line in, "OK <n>\n" out */
    char line[VSOCK_LINE_MAX];
    uint8_t line_len;
    uint8_t line_off;

    /* device bookkeeping */
    uint32_t epoll_events;   /* current interest */
    bool in_epoll;           /* the socket is in the device's epoll set */
    int64_t deadline_ns;     /* host-initiated, not yet answered: give up then (0: none) */
    bool in_rx_list;
    int32_t rx_prev, rx_next;
    int32_t hash_next;
    int32_t free_next;
};

#define VSOCK_HASH_BUCKETS 2048u

struct vsock_conn_table {
    struct vsock_conn *conns;   /* max slots */
    uint32_t max;
    uint32_t count;
    int32_t free_head;
    int32_t buckets[VSOCK_HASH_BUCKETS];
    uint32_t next_ephemeral;
};

int vsock_table_init(struct vsock_conn_table *t, uint32_t max);
void vsock_table_destroy(struct vsock_conn_table *t);
/* A zeroed slot (fd = -1, not hashed), or NULL when all max are used. */
struct vsock_conn *vsock_table_alloc(struct vsock_conn_table *t);
/* As vsock_table_alloc, but NULL unless more than keep_free slots are free. */
struct vsock_conn *vsock_table_alloc_leaving(struct vsock_conn_table *t, uint32_t keep_free);
/* Names the connection (local, peer); -1 if that pair is taken. */
int vsock_table_bind(struct vsock_conn_table *t, struct vsock_conn *c, uint32_t local_port, uint32_t peer_port);
struct vsock_conn *vsock_table_find(const struct vsock_conn_table *t, uint32_t local_port, uint32_t peer_port);
/* Returns the slot (unhashes it, frees its ring). The caller closes the fd first. */
void vsock_table_release(struct vsock_conn_table *t, struct vsock_conn *c);
/* A host-side port no connection to peer_port uses (from 1<<30 upwards, wrapping). */
uint32_t vsock_table_ephemeral_port(struct vsock_conn_table *t, uint32_t peer_port);
/* The next ephemeral port: somewhere in [1<<30, UINT32_MAX - 1) chosen by seed. */
void vsock_table_reseed_ephemeral(struct vsock_conn_table *t, uint32_t seed);
/* Slot i (i < max) or NULL if out of range. */
struct vsock_conn *vsock_table_slot(const struct vsock_conn_table *t, uint32_t i);

/* Bytes we may still send the guest on c (0 when it gave no credit or lied). */
uint32_t vsock_conn_peer_credit(const struct vsock_conn *c);
/* Records the guest's buf_alloc/fwd_cnt from any header of c. */
void vsock_conn_update_peer(struct vsock_conn *c, const struct vsock_hdr *h);
/* Whether the guest should hear of our fwd_cnt now (half our buffer freed unannounced). */
bool vsock_conn_credit_update_due(const struct vsock_conn *c);

/* Parses "CONNECT <port>\n" (decimal, 1..10 digits, <= UINT32_MAX). 0 or -1. */
int vsock_parse_connect_line(const char *line, uint32_t len, uint32_t *port);

#endif
