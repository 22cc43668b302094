/*
 * libFuzzer target: a hostile guest driver against virtio-vsock.
 *
 * The device sits behind the real virtio-mmio transport over a 1 MiB fake
 * guest memory, with its Unix sockets in a temporary directory and a host
 * listener at "<uds>_1000" for guest connects. Each input is a script of
 * commands: raw descriptors anywhere (out-of-range addresses, loops, bad
 * lengths), avail ring entries and indices, well-formed or mangled vsock
 * packets, rx buffers of odd sizes, a guest that answers REQUESTs so
 * connections reach the established state, host clients that connect, write
 * and close, transport and device resets. The device must never crash,
 * hang, leak or touch memory outside guest RAM.
 *
 * Input: a sequence of (opcode byte, operands); a short read ends the script.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio/mmio.h"
#include "devices/virtio/vsock.h"
#include "devices/virtio/vsock_conn.h"
#include "machine/event_loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CID        3u
#define RAM        (1u << 20)
#define QSIZE      16u
#define BUF_AREA   0x40000u
#define BUF_STRIDE 0x11000u      /* header + the largest payload */
#define NBUFS      ((RAM - BUF_AREA) / BUF_STRIDE)
#define MAX_CLIENTS 8
#define GUEST_PORT_LISTENED 1000u
#define MAX_SILENT 4

struct fuzz_state {
    uint8_t *ram;
    struct guest_memory mem;
    struct irq_line irq;
    struct event_loop loop;
    struct virtio_mmio *t;
    struct virtio_device *dev;
    char uds[96], exec[96], peer[112];
    int peer_listener;
    int clients[MAX_CLIENTS];
    int silent_peers[MAX_SILENT];
    unsigned next_silent;
    uint16_t avail_idx[3];
    uint16_t used_seen[3];
    unsigned next_buf;
};

static struct fuzz_state S;

struct cursor {
    const uint8_t *p;
    size_t n;
};

static int take(struct cursor *c, void *out, size_t len)
{
    if (c->n < len)
        return -1;
    memcpy(out, c->p, len);
    c->p += len;
    c->n -= len;
    return 0;
}

static void reg_write(uint64_t off, uint32_t v) { virtio_mmio_bus_ops.write(S.t, off, (const uint8_t *)&v, 4); }

static uint64_t qbase(int q) { return 0x10000ull * (uint64_t)(q + 1); }

static void set_desc(int q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    uint8_t *d = S.ram + qbase(q) + 16ull * (i % QSIZE);
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

static void publish(int q, uint16_t head)
{
    uint64_t avail = qbase(q) + 0x1000;
    memcpy(S.ram + avail + 4 + 2ull * (S.avail_idx[q] % QSIZE), &head, 2);
    S.avail_idx[q]++;
    memcpy(S.ram + avail + 2, &S.avail_idx[q], 2);
    virtio_mmio_queue_notify(S.t, (uint16_t)q);
}

static void driver_init(void)
{
    reg_write(0x070, 0);
    memset(S.ram, 0, BUF_AREA);
    memset(S.avail_idx, 0, sizeof S.avail_idx);
    memset(S.used_seen, 0, sizeof S.used_seen);
    reg_write(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    reg_write(0x024, 1);
    reg_write(0x020, 1);
    reg_write(0x024, 0);
    reg_write(0x020, 1u << VIRTIO_F_RING_INDIRECT_DESC);
    reg_write(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    for (int q = 0; q < 3; q++) {
        reg_write(0x030, (uint32_t)q);
        reg_write(0x038, QSIZE);
        reg_write(0x080, (uint32_t)qbase(q));
        reg_write(0x090, (uint32_t)qbase(q) + 0x1000);
        reg_write(0x0a0, (uint32_t)qbase(q) + 0x2000);
        reg_write(0x044, 1);
    }
    reg_write(0x070, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                         VIRTIO_STATUS_DRIVER_OK);
}

/* At exit: the device closes and unlinks its sockets; the peer socket and directory go too. */
static void cleanup(void)
{
    virtio_mmio_destroy(S.t);
    S.t = NULL;
    if (S.peer_listener >= 0)
        close(S.peer_listener);
    unlink(S.peer);
    char *slash = strrchr(S.peer, '/');
    if (slash) {
        *slash = 0;
        rmdir(S.peer);
    }
}

static int init_once(void)
{
    signal(SIGPIPE, SIG_IGN); /* the harness's own writes to closed clients */
    char dir[] = "/tmp/sm-fuzz-vsock-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    snprintf(S.uds, sizeof S.uds, "%s/v.sock", dir);
    snprintf(S.exec, sizeof S.exec, "%s/e.sock", dir);
    snprintf(S.peer, sizeof S.peer, "%s_%u", S.uds, GUEST_PORT_LISTENED);
    S.ram = aligned_alloc(4096, RAM);
    if (!S.ram || evl_init(&S.loop) < 0)
        return -1;
    gm_init_buffer(&S.mem, S.ram, RAM);
    struct vsock_config cfg = { .guest_cid = CID, .uds_path = S.uds, .exec_path = S.exec, .exec_port = 1024,
                                .connect_timeout_ms = 2 /* so some inputs see a host connect time out */ };
    sm_error err;
    S.dev = virtio_vsock_create(&cfg, &S.loop, &err);
    if (!S.dev)
        return -1;
    S.t = virtio_mmio_create(S.dev, &S.mem, &S.irq);
    if (!S.t)
        return -1;
    S.peer_listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    atexit(cleanup);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", S.peer);
    if (bind(S.peer_listener, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(S.peer_listener, 64) < 0)
        return -1;
    for (int i = 0; i < MAX_CLIENTS; i++)
        S.clients[i] = -1;
    for (int i = 0; i < MAX_SILENT; i++)
        S.silent_peers[i] = -1;
    return 0;
}

static void pump(void)
{
    for (int i = 0; i < 16 && evl_run_once(&S.loop, 0) > 0; i++)
        ;
}

/* The peer listener's side: accept, answer a little, and close, or keep the
 * connection open without ever reading it (so the device's buffer fills). */
static void serve_peer(int keep)
{
    for (int i = 0; i < 8; i++) {
        int fd = accept4(S.peer_listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        ssize_t n = write(fd, "peer", 4);
        (void)n;
        int *slot = &S.silent_peers[S.next_silent++ % MAX_SILENT];
        if (*slot >= 0)
            close(*slot);
        *slot = -1;
        if (keep)
            *slot = fd;
        else
            close(fd);
    }
}

static uint64_t buf_addr(void) { return BUF_AREA + (uint64_t)(S.next_buf++ % NBUFS) * BUF_STRIDE; }

/* A packet from the input, mostly well-formed so it gets past the first checks. */
static void cmd_packet(struct cursor *c)
{
    uint8_t mode, raw[VSOCK_HDR_SIZE];
    uint16_t payload, split;
    if (take(c, &mode, 1) || take(c, raw, sizeof raw) || take(c, &payload, 2) || take(c, &split, 2))
        return;
    struct vsock_hdr h;
    vsock_hdr_decode(raw, &h);
    if (mode & 1) {
        h.src_cid = CID;
        h.dst_cid = VSOCK_HOST_CID;
    }
    if (mode & 2)
        h.type = VSOCK_TYPE_STREAM;
    if (mode & 4)
        h.op = (uint16_t)(h.op % 8);
    if (mode & 8)
        h.len = payload;
    if (mode & 16)
        h.dst_port = GUEST_PORT_LISTENED;
    uint32_t total = VSOCK_HDR_SIZE + (payload % (BUF_STRIDE - VSOCK_HDR_SIZE));
    uint64_t addr = buf_addr();
    vsock_hdr_encode(&h, S.ram + addr);
    uint16_t head = (uint16_t)(S.avail_idx[1] % QSIZE);
    uint32_t cut = split % (total + 1);
    if (mode & 32 && cut > 0 && cut < total) {
        uint16_t second = (uint16_t)((head + 1) % QSIZE);
        set_desc(1, head, addr, cut, VIRTQ_DESC_F_NEXT, second);
        set_desc(1, second, addr + cut, total - cut, 0, 0);
    } else {
        set_desc(1, head, addr, total, 0, 0);
    }
    publish(1, head);
}

static void cmd_raw_desc(struct cursor *c)
{
    uint8_t q, idx;
    uint32_t addr, len;
    uint16_t flags, next;
    if (take(c, &q, 1) || take(c, &idx, 1) || take(c, &addr, 4) || take(c, &len, 4) || take(c, &flags, 2) ||
        take(c, &next, 2))
        return;
    set_desc(q % 3, idx, addr, len, flags, next);
}

static void cmd_publish(struct cursor *c)
{
    uint8_t q;
    uint16_t head;
    if (take(c, &q, 1) || take(c, &head, 2))
        return;
    publish(q % 3, head);
}

static void cmd_post_rx(struct cursor *c)
{
    uint8_t count;
    uint16_t len;
    if (take(c, &count, 1) || take(c, &len, 2))
        return;
    for (unsigned i = 0; i < count % QSIZE; i++) {
        uint16_t head = (uint16_t)(S.avail_idx[0] % QSIZE);
        set_desc(0, head, buf_addr(), len, VIRTQ_DESC_F_WRITE, 0);
        publish(0, head);
    }
}

/* Reads what the device sent and, as a cooperative guest would, accepts REQUESTs. */
static void cmd_guest_reads(struct cursor *c)
{
    uint8_t answer;
    if (take(c, &answer, 1))
        return;
    uint64_t used = qbase(0) + 0x2000;
    uint16_t idx;
    memcpy(&idx, S.ram + used + 2, 2);
    for (int n = 0; S.used_seen[0] != idx && n < (int)QSIZE; n++) {
        uint32_t head;
        memcpy(&head, S.ram + used + 4 + 8ull * (S.used_seen[0] % QSIZE), 4);
        S.used_seen[0]++;
        uint64_t addr;
        memcpy(&addr, S.ram + qbase(0) + 16ull * (head % QSIZE), 8);
        if (addr > RAM - VSOCK_HDR_SIZE)
            continue;
        struct vsock_hdr h;
        vsock_hdr_decode(S.ram + addr, &h);
        if (h.op != VSOCK_OP_REQUEST && !(answer & 1))
            continue;
        struct vsock_hdr r = { .src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = h.dst_port,
                               .dst_port = h.src_port, .type = VSOCK_TYPE_STREAM,
                               .op = h.op == VSOCK_OP_REQUEST ? VSOCK_OP_RESPONSE : VSOCK_OP_CREDIT_UPDATE,
                               .buf_alloc = answer & 2 ? 0 : 65536, .fwd_cnt = h.len };
        uint64_t out = buf_addr();
        vsock_hdr_encode(&r, S.ram + out);
        uint16_t d = (uint16_t)(S.avail_idx[1] % QSIZE);
        set_desc(1, d, out, VSOCK_HDR_SIZE, 0, 0);
        publish(1, d);
    }
}

static void cmd_client(struct cursor *c)
{
    uint8_t what, slot;
    uint16_t port;
    if (take(c, &what, 1) || take(c, &slot, 1) || take(c, &port, 2))
        return;
    int *fd = &S.clients[slot % MAX_CLIENTS];
    switch (what % 5) {
    case 0:
    case 1:
    case 4: {
        if (*fd >= 0)
            close(*fd);
        *fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", what % 5 == 1 ? S.exec : S.uds);
        if (connect(*fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            close(*fd);
            *fd = -1;
        } else if (what % 5 == 0) {
            char line[32];
            int n = snprintf(line, sizeof line, "CONNECT %u\n", port);
            ssize_t w = write(*fd, line, (size_t)n);
            (void)w;
        } else if (what % 5 == 4) {
            /* A handshake line from the input: any bytes, any length up to 63. */
            uint8_t line[64];
            size_t n = port % sizeof line;
            if (take(c, line, n) == 0) {
                ssize_t w = write(*fd, line, n);
                (void)w;
            }
        }
        break;
    }
    case 2:
        if (*fd >= 0) {
            static const uint8_t junk[4096];
            ssize_t w = write(*fd, junk, port % sizeof junk);
            (void)w;
            uint8_t sink[4096];
            ssize_t r = read(*fd, sink, sizeof sink);
            (void)r;
        }
        break;
    default:
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
        break;
    }
}

static void cmd_corrupt_avail_idx(struct cursor *c)
{
    uint8_t q;
    uint16_t v;
    if (take(c, &q, 1) || take(c, &v, 2))
        return;
    memcpy(S.ram + qbase(q % 3) + 0x1000 + 2, &v, 2);
    virtio_mmio_queue_notify(S.t, (uint16_t)(q % 3));
}

static void cmd_post_event(void)
{
    uint16_t head = (uint16_t)(S.avail_idx[2] % QSIZE);
    set_desc(2, head, buf_addr(), 4, VIRTQ_DESC_F_WRITE, 0);
    publish(2, head);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready = 0;
    if (!ready) {
        if (init_once() < 0)
            abort(); /* the harness itself could not start: not a finding */
        ready = 1;
    }
    driver_init();
    struct cursor c = { data, size };
    uint8_t op;
    for (int steps = 0; steps < 256 && take(&c, &op, 1) == 0; steps++) {
        switch (op % 12) {
        case 0: cmd_packet(&c); break;
        case 1: cmd_raw_desc(&c); break;
        case 2: cmd_publish(&c); break;
        case 3: cmd_post_rx(&c); break;
        case 4: cmd_guest_reads(&c); break;
        case 5: cmd_client(&c); break;
        case 6: pump(); break;
        case 7: {
            uint8_t keep = 0;
            take(&c, &keep, 1);
            serve_peer(keep & 1);
            break;
        }
        case 8: virtio_vsock_transport_reset(S.dev); break;
        case 9: cmd_corrupt_avail_idx(&c); break;
        case 10: cmd_post_event(); break;
        default: driver_init(); break;
        }
    }
    /* Leave nothing behind for the next input. */
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (S.clients[i] >= 0)
            close(S.clients[i]);
        S.clients[i] = -1;
    }
    serve_peer(0);
    for (int i = 0; i < MAX_SILENT; i++) {
        if (S.silent_peers[i] >= 0)
            close(S.silent_peers[i]);
        S.silent_peers[i] = -1;
    }
    virtio_vsock_transport_reset(S.dev);
    struct vsock_stats st;
    virtio_vsock_stats(S.dev, &st);
    if (st.connections != 0)
        abort(); /* a transport reset must drop every connection */
    pump();
    return 0;
}
