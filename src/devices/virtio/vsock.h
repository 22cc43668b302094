/*
 * virtio-vsock (virtio 1.2 section 5.10), in user space: the guest's
 * AF_VSOCK stream sockets bridged to Unix sockets on the host.
 *
 *   device ID 19; queues: 0 = rx (device -> guest), 1 = tx (guest -> device),
 *   2 = event; config space: le64 guest_cid (read-only); feature bits:
 *   VIRTIO_VSOCK_F_STREAM (0) offered, nothing else (no SEQPACKET).
 *
 * Packet header, ops, credit rules and the connection state machine are
 * documented in vsock_conn.h, next to the code that reads them.
 *
 * Host side, per VM:
 *   uds_path    a listening Unix socket. A client connects, writes
 *               "CONNECT <port>\n", and once the guest accepts reads
 *               "OK <host_port>\n"; from then on the stream is the guest
 *               socket's (the Firecracker / Cloud Hypervisor convention).
 *               If the guest refuses, or has not answered within
 *               connect_timeout_ms of the accept, the client's socket is
 *               closed.
 *               A guest connect() to (CID 2, port P) reaches the Unix socket
 *               "<uds_path>_<P>" if something listens there, else the
 *               guest sees ECONNRESET.
 *   exec_path   a listening Unix socket whose connections go straight to
 *               guest port exec_port, no handshake (the host library's
 *               exec client dials it directly).
 * Both paths are optional (NULL: no such socket). Stale socket files are
 * removed; a path some live process listens on is an error. Both are closed
 * and unlinked on destroy.
 *
 * Threading: every op and every socket callback runs under the transport's
 * lock (socket callbacks take it with virtio_device_lock); sockets are
 * non-blocking and the device's own epoll set is one fd in `loop`, served on
 * the loop's thread.
 *
 * Bounds: VSOCK_MAX_CONNS connections; per connection at most
 * VSOCK_CONN_BUF_ALLOC bytes of guest data buffered (the buf_alloc we
 * advertise), and nothing buffered the other way: host data is read straight
 * into the guest's rx buffers, only as much as the guest's credit allows.
 */
#ifndef SM_DEVICES_VIRTIO_VSOCK_H
#define SM_DEVICES_VIRTIO_VSOCK_H

#include <stdint.h>

#include "supermachine.h"
#include "devices/virtio/virtio.h"
#include "machine/event_loop.h"

#define VIRTIO_VSOCK_F_STREAM   0
#define VIRTIO_VSOCK_QUEUE_RX    0
#define VIRTIO_VSOCK_QUEUE_TX    1
#define VIRTIO_VSOCK_QUEUE_EVENT 2
#define VIRTIO_VSOCK_QUEUE_SIZE  256
#define VIRTIO_VSOCK_CONFIG_SIZE 8

struct vsock_config {
    uint64_t guest_cid;      /* 3 .. 0xfffffffe */
    const char *uds_path;    /* may be NULL; copied */
    const char *exec_path;   /* may be NULL; copied */
    uint32_t exec_port;      /* guest port exec_path connections reach */
    uint32_t connect_timeout_ms; /* a host client not connected this long after
                                    accept (no CONNECT line, no answer from the
                                    guest) is closed; 0: VSOCK_CONNECT_TIMEOUT_MS */
    int log_fd;              /* where to say why a connection ended (the VMM's
                                stderr), -1 for nowhere; 0 is taken as -1 so
                                that a zeroed config logs nothing */
};

#define VSOCK_CONNECT_TIMEOUT_MS 10000u

/*
 * Creates the device, its listening sockets and its registration in loop
 * (which must outlive the device; NULL leaves the sockets unserved, for
 * tests). NULL with *err filled on failure: a path too long for sun_path,
 * a missing directory, a non-socket file or a live socket at a path, a bad
 * CID. Hand the device to a transport, which then owns it; its destroy
 * closes and unlinks both sockets.
 *
 * A device reset by the driver drops every connection the guest knew of;
 * host clients not yet offered to the guest wait for the next driver.
 */
struct virtio_device *virtio_vsock_create(const struct vsock_config *cfg, struct event_loop *loop, sm_error *err);

/* Before a snapshot's device state is restored: until the transport reset
 * that follows, packets the guest had queued are returned unread. */
void virtio_vsock_begin_restore(struct virtio_device *dev);

/*
 * Drops every connection (their host sockets are closed, so host peers see
 * the connection end) and sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET to the
 * guest (now, or as soon as it posts an event buffer). For after a snapshot
 * restore. Takes the transport lock: call it from the event loop thread,
 * never from inside a device op.
 */
void virtio_vsock_transport_reset(struct virtio_device *dev);

/* Counters for tests and diagnostics. */
struct vsock_stats {
    uint32_t connections;      /* open now */
    uint64_t rx_packets;       /* packets given to the guest */
    uint64_t tx_packets;       /* packets taken from the guest */
    uint64_t rst_sent;
    uint64_t rst_dropped;      /* replies to unknown connections lost: queue full */
    uint64_t malformed;        /* short header, len beyond the buffers, ... */
    uint64_t wrong_cid;        /* dropped: src_cid is not the guest's, or dst_cid not the host */
    uint64_t protocol_errors;  /* well-formed but wrong for the connection's state */
    uint64_t connect_timeouts; /* host clients given up on before the guest answered */
    uint64_t bytes_to_guest;
    uint64_t bytes_to_host;
};
void virtio_vsock_stats(struct virtio_device *dev, struct vsock_stats *out);

#endif
