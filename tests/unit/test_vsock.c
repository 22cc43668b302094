/*
 * virtio-vsock end to end without KVM: the test plays the guest driver over a
 * fake guest memory behind the real virtio-mmio transport, and the host side
 * through real Unix sockets in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/vsock.h"
#include "devices/virtio/vsock_conn.h"
#include "helpers/virtio_driver.h"
#include "machine/event_loop.h"

#define GUEST_CID   42u
#define EXEC_PORT   1024u
#define QSIZE       64u
#define RAM_BYTES   (16u << 20)
#define RX_BUF_DATA 4096u
#define RX_BUFS     (QSIZE / 2)          /* two descriptors each: split mid-header */
#define RX_AREA     0x100000ull
#define RX_STRIDE   0x2000ull
#define TX_AREA     0x400000ull
#define TX_STRIDE   0x11000ull           /* header + the largest payload */
#define EVENT_AREA  0x300000ull

/* --- the fake guest -------------------------------------------------------------------- */

struct guest {
    uint8_t *ram;
    struct guest_memory mem;
    struct drv_irq irq;
    struct event_loop loop;
    struct virtio_mmio *t;
    struct virtio_device *dev;
    struct drv_queue q[3];   /* rx, tx, event */
    uint16_t tx_next_desc;   /* tx_send's next descriptor, in turn */
    char dir[64];
    char uds[128];
    char exec[128];
};

static struct guest *G;
static uint32_t fixture_timeout_ms; /* connect_timeout_ms for the next setup (0: default) */

/* Rx buffer i: descriptor 2i holds the first 20 header bytes, 2i+1 the rest. */
static void post_rx(struct guest *g, uint16_t i)
{
    uint64_t buf = RX_AREA + RX_STRIDE * i;
    drv_queue_put_desc(&g->q[0], (uint16_t)(2 * i), buf, 20, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, (uint16_t)(2 * i + 1));
    drv_queue_put_desc(&g->q[0], (uint16_t)(2 * i + 1), buf + 20, VSOCK_HDR_SIZE - 20 + RX_BUF_DATA, VIRTQ_DESC_F_WRITE, 0);
    drv_publish(&g->q[0], (uint16_t)(2 * i));
}

static void post_all_rx(struct guest *g)
{
    for (uint16_t i = 0; i < RX_BUFS; i++)
        post_rx(g, i);
    drv_kick(g->t, 0);
}

static void setup_queue(struct guest *g, int q, uint64_t base)
{
    drv_queue_init(&g->q[q], g->ram, QSIZE, base, base + 0x1000, base + 0x2000);
    drv_write(g->t, REG_QUEUE_SEL, (uint32_t)q);
    assert_int_equal(drv_read(g->t, REG_QUEUE_NUM_MAX), VIRTIO_VSOCK_QUEUE_SIZE);
    drv_setup_queue(g->t, (uint32_t)q, QSIZE, g->q[q].desc, g->q[q].avail, g->q[q].used);
}

static void driver_init(struct guest *g)
{
    drv_negotiate(g->t, DRV_F_VERSION_1);
    for (int q = 0; q < 3; q++) {
        memset(g->ram + 0x10000ull * (uint64_t)(q + 1), 0, 0x3000); /* fresh rings */
        setup_queue(g, q, 0x10000ull * (uint64_t)(q + 1));
    }
    g->tx_next_desc = 0;
    drv_driver_ok(g->t);
    assert_int_equal(drv_read(g->t, REG_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
}

static int setup(void **state)
{
    struct guest *g = calloc(1, sizeof *g);
    g->ram = drv_ram_create(&g->mem, RAM_BYTES);
    drv_irq_init(&g->irq);
    assert_int_equal(evl_init(&g->loop), 0);
    strcpy(g->dir, "/tmp/sm-vsock-XXXXXX");
    assert_non_null(mkdtemp(g->dir));
    snprintf(g->uds, sizeof g->uds, "%s/v.sock", g->dir);
    snprintf(g->exec, sizeof g->exec, "%s/exec.sock", g->dir);
    struct vsock_config cfg = { .guest_cid = GUEST_CID, .uds_path = g->uds, .exec_path = g->exec,
                                .exec_port = EXEC_PORT, .connect_timeout_ms = fixture_timeout_ms };
    sm_error err = { 0 };
    g->dev = virtio_vsock_create(&cfg, &g->loop, &err);
    if (!g->dev)
        fail_msg("create: %s", err.message);
    g->t = virtio_mmio_create(g->dev, &g->mem, &g->irq.line);
    assert_non_null(g->t);
    driver_init(g);
    G = g;
    *state = g;
    return 0;
}

static int setup_short_timeout(void **state)
{
    fixture_timeout_ms = 100;
    int rc = setup(state);
    fixture_timeout_ms = 0;
    return rc;
}

static int teardown(void **state)
{
    struct guest *g = *state;
    virtio_mmio_destroy(g->t);
    /* destroy closed and unlinked both sockets */
    struct stat st;
    assert_int_equal(stat(g->uds, &st), -1);
    assert_int_equal(stat(g->exec, &st), -1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g->dir);
    assert_int_equal(system(cmd), 0);
    evl_destroy(&g->loop);
    free(g->ram);
    free(g);
    return 0;
}

/* Runs the event loop until nothing is ready (a bounded number of rounds). */
/* Runs the device's events until it is idle. The short wait (not 0) keeps a
 * loaded machine, where a socket event can lag, from ending the pump early. */
static void pump(struct guest *g)
{
    for (int i = 0; i < 64 && evl_run_once(&g->loop, 5) > 0; i++)
        ;
}

struct pkt {
    struct vsock_hdr h;
    uint32_t used_len;
    uint8_t data[RX_BUF_DATA];
};

/* Takes one packet the device put in the rx queue, reposting its buffer. 1 or 0. */
static int rx_take(struct guest *g, struct pkt *p)
{
    uint32_t head, len;
    if (!drv_next_used(&g->q[0], &head, &len))
        return 0;
    assert_true(head % 2 == 0 && head < QSIZE);
    uint64_t buf = RX_AREA + RX_STRIDE * (head / 2);
    assert_true(len >= VSOCK_HDR_SIZE && len <= VSOCK_HDR_SIZE + RX_BUF_DATA);
    vsock_hdr_decode(g->ram + buf, &p->h);
    assert_int_equal(p->h.len, len - VSOCK_HDR_SIZE);
    memcpy(p->data, g->ram + buf + VSOCK_HDR_SIZE, p->h.len);
    p->used_len = len;
    post_rx(g, (uint16_t)(head / 2));
    drv_kick(g->t, 0);
    return 1;
}

/* Waits (pumping the loop) for the next rx packet; fails the test after ~2 s. */
static void rx_expect(struct guest *g, struct pkt *p)
{
    for (int i = 0; i < 200; i++) {
        if (rx_take(g, p))
            return;
        evl_run_once(&g->loop, 10);
    }
    fail_msg("no rx packet from the device");
}

static void expect_no_rx(struct guest *g)
{
    struct pkt p;
    pump(g);
    if (rx_take(g, &p))
        fail_msg("unexpected rx packet op %s", vsock_op_name(p.h.op));
}

/* Sends one packet on the tx queue (header + payload in one descriptor). */
static void tx_send(struct guest *g, const struct vsock_hdr *h, const void *data, uint32_t len)
{
    struct drv_queue *fq = &g->q[1];
    uint16_t d = (uint16_t)(g->tx_next_desc++ % QSIZE);
    uint64_t buf = TX_AREA + TX_STRIDE * d;
    vsock_hdr_encode(h, g->ram + buf);
    if (len)
        memcpy(g->ram + buf + VSOCK_HDR_SIZE, data, len);
    drv_queue_put_desc(&g->q[1], d, buf, VSOCK_HDR_SIZE + len, 0, 0);
    drv_publish(&g->q[1], d);
    drv_kick(g->t, 1);
    assert_int_equal(drv_used_idx(fq), fq->avail_idx); /* tx completes at once */
}

static struct vsock_hdr ghdr(uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t buf_alloc, uint32_t fwd_cnt)
{
    return (struct vsock_hdr){ .src_cid = GUEST_CID, .dst_cid = VSOCK_HOST_CID, .src_port = src_port,
                               .dst_port = dst_port, .type = VSOCK_TYPE_STREAM, .op = op,
                               .buf_alloc = buf_alloc, .fwd_cnt = fwd_cnt };
}

static void tx_op(struct guest *g, uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t flags)
{
    struct vsock_hdr h = ghdr(src_port, dst_port, op, 65536, 0);
    h.flags = flags;
    tx_send(g, &h, NULL, 0);
}

static int unix_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static int unix_listen(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static void write_all(int fd, const void *p, size_t len)
{
    assert_int_equal(write(fd, p, len), (ssize_t)len);
}

/* Reads exactly len bytes, pumping the loop while waiting. */
static void read_exact(struct guest *g, int fd, void *buf, size_t len)
{
    size_t got = 0;
    for (int i = 0; i < 400 && got < len; i++) {
        ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        assert_true(n < 0 && errno == EAGAIN);
        evl_run_once(&g->loop, 5);
    }
    assert_int_equal(got, len);
}

/* Whether the host peer sees the end of the stream (EOF or reset) within ~1 s. */
static bool host_sees_end(struct guest *g, int fd)
{
    for (int i = 0; i < 100; i++) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return true;
        assert_true(n < 0);
        evl_run_once(&g->loop, 10);
    }
    return false;
}

static struct vsock_stats stats(struct guest *g)
{
    struct vsock_stats s;
    virtio_vsock_stats(g->dev, &s);
    return s;
}

/* Host client on the uds socket through CONNECT/OK to an established connection. */
static int host_connect(struct guest *g, uint32_t guest_port, struct pkt *req)
{
    int fd = unix_connect(g->uds);
    char line[32];
    int n = snprintf(line, sizeof line, "CONNECT %u\n", guest_port);
    write_all(fd, line, (size_t)n);
    rx_expect(g, req);
    assert_int_equal(req->h.op, VSOCK_OP_REQUEST);
    assert_int_equal(req->h.src_cid, VSOCK_HOST_CID);
    assert_int_equal(req->h.dst_cid, GUEST_CID);
    assert_int_equal(req->h.dst_port, guest_port);
    assert_int_equal(req->h.type, VSOCK_TYPE_STREAM);
    assert_int_equal(req->h.buf_alloc, VSOCK_CONN_BUF_ALLOC);
    tx_op(g, guest_port, req->h.src_port, VSOCK_OP_RESPONSE, 0);
    char ok[32];
    n = snprintf(line, sizeof line, "OK %u\n", req->h.src_port);
    read_exact(g, fd, ok, (size_t)n);
    assert_memory_equal(ok, line, (size_t)n);
    return fd;
}

/* --- tests -------------------------------------------------------------------------------- */

static void test_header_layout(void **state)
{
    (void)state;
    struct vsock_hdr h = { .src_cid = 0x0102030405060708ull, .dst_cid = 2, .src_port = 0x11223344,
                           .dst_port = 0x55667788, .len = 0x99, .type = 1, .op = 5, .flags = 3,
                           .buf_alloc = 0xaabbccdd, .fwd_cnt = 0x01020304 };
    uint8_t raw[VSOCK_HDR_SIZE];
    vsock_hdr_encode(&h, raw);
    assert_int_equal(raw[0], 0x08);
    assert_int_equal(raw[7], 0x01);
    assert_int_equal(raw[8], 2);
    assert_int_equal(raw[16], 0x44);
    assert_int_equal(raw[20], 0x88);
    assert_int_equal(raw[24], 0x99);
    assert_int_equal(raw[28], 1);
    assert_int_equal(raw[30], 5);
    assert_int_equal(raw[32], 3);
    assert_int_equal(raw[36], 0xdd);
    assert_int_equal(raw[43], 0x01);
    struct vsock_hdr back;
    vsock_hdr_decode(raw, &back);
    assert_int_equal(back.src_cid, h.src_cid);
    assert_int_equal(back.dst_cid, h.dst_cid);
    assert_int_equal(back.src_port, h.src_port);
    assert_int_equal(back.dst_port, h.dst_port);
    assert_int_equal(back.len, h.len);
    assert_int_equal(back.type, h.type);
    assert_int_equal(back.op, h.op);
    assert_int_equal(back.flags, h.flags);
    assert_int_equal(back.buf_alloc, h.buf_alloc);
    assert_int_equal(back.fwd_cnt, h.fwd_cnt);
}

static void test_connect_line_and_credit(void **state)
{
    (void)state;
    uint32_t port = 0;
    assert_int_equal(vsock_parse_connect_line("CONNECT 1024\n", 13, &port), 0);
    assert_int_equal(port, 1024);
    assert_int_equal(vsock_parse_connect_line("CONNECT 4294967295\n", 19, &port), 0);
    assert_int_equal(port, UINT32_MAX);
    assert_int_equal(vsock_parse_connect_line("CONNECT 4294967296\n", 19, &port), -1);
    assert_int_equal(vsock_parse_connect_line("CONNECT \n", 9, &port), -1);
    assert_int_equal(vsock_parse_connect_line("CONNECT 12a\n", 12, &port), -1);
    assert_int_equal(vsock_parse_connect_line("connect 12\n", 11, &port), -1);
    assert_int_equal(vsock_parse_connect_line("CONNECT 12", 10, &port), -1);

    struct vsock_conn c = { .peer_buf_alloc = 1000, .peer_fwd_cnt = UINT32_MAX - 10, .tx_cnt = 89 };
    assert_int_equal(vsock_conn_peer_credit(&c), 900); /* 100 in flight across the wrap */
    c.peer_fwd_cnt = 200;                              /* the guest claims more than we sent */
    assert_int_equal(vsock_conn_peer_credit(&c), 0);
    /* Our own fwd_cnt wraps too: half the buffer freed since the last update, across the wrap. */
    c.fwd_cnt_sent = UINT32_MAX - 20;
    c.fwd_cnt = VSOCK_CONN_BUF_ALLOC / 2 - 22;
    assert_false(vsock_conn_credit_update_due(&c));
    c.fwd_cnt++;
    assert_true(vsock_conn_credit_update_due(&c));
}

static void test_table(void **state)
{
    (void)state;
    struct vsock_conn_table t;
    assert_int_equal(vsock_table_init(&t, 4), 0);
    struct vsock_conn *c[5];
    for (int i = 0; i < 4; i++) {
        c[i] = vsock_table_alloc(&t);
        assert_non_null(c[i]);
        assert_int_equal(vsock_table_bind(&t, c[i], 100, (uint32_t)i), 0);
    }
    assert_null(vsock_table_alloc(&t));
    assert_int_equal(vsock_table_bind(&t, c[0], 100, 1), -1);
    assert_ptr_equal(vsock_table_find(&t, 100, 2), c[2]);
    assert_null(vsock_table_find(&t, 101, 2));
    uint32_t gen = c[2]->gen;
    vsock_table_release(&t, c[2]);
    assert_null(vsock_table_find(&t, 100, 2));
    c[4] = vsock_table_alloc(&t);
    assert_ptr_equal(c[4], c[2]);
    assert_int_not_equal(c[4]->gen, gen);
    uint32_t p = vsock_table_ephemeral_port(&t, 7);
    assert_int_equal(vsock_table_bind(&t, c[4], p, 7), 0);
    assert_int_not_equal(vsock_table_ephemeral_port(&t, 7), p);

    struct vsock_ring r = { 0 };
    uint8_t buf[10] = "abcdefghij", out[16];
    assert_int_equal(vsock_ring_push(&r, 16, buf, 10), 0);
    vsock_ring_consume(&r, 8);
    assert_int_equal(vsock_ring_push(&r, 16, buf, 10), 0); /* wraps */
    assert_int_equal(vsock_ring_push(&r, 16, buf, 5), -1); /* 12 + 5 > 16: nothing taken */
    struct iovec iov[2];
    int n = vsock_ring_iov(&r, iov);
    assert_int_equal(n, 2);
    memcpy(out, iov[0].iov_base, iov[0].iov_len);
    memcpy(out + iov[0].iov_len, iov[1].iov_base, iov[1].iov_len);
    assert_memory_equal(out, "ijabcdefghij", 12);
    vsock_ring_free(&r);
    vsock_table_destroy(&t);

    /* Guest connections leave the reserved slots to the host's. */
    assert_int_equal(vsock_table_init(&t, 4), 0);
    assert_non_null(vsock_table_alloc_leaving(&t, 2));
    assert_non_null(vsock_table_alloc_leaving(&t, 2));
    assert_null(vsock_table_alloc_leaving(&t, 2));
    assert_non_null(vsock_table_alloc(&t));
    assert_non_null(vsock_table_alloc(&t));
    assert_null(vsock_table_alloc(&t));
    vsock_table_destroy(&t);
}

/* Root only: a process of another user connects to the exec socket and
 * gets EOF at once (SO_PEERCRED), nothing reaching the guest. */
static void test_other_user_refused(void **state)
{
    struct guest *g = *state;
    if (geteuid() != 0)
        skip();
    post_all_rx(g);
    /* Folder and socket open to all, so that only the check stands in the way. */
    assert_int_equal(chmod(g->dir, 0711), 0);
    assert_int_equal(chmod(g->exec, 0777), 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(3);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(g->exec) >= sizeof sa.sun_path)
            _exit(5);
        memcpy(sa.sun_path, g->exec, strlen(g->exec) + 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
            _exit(4);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char c;
        _exit(poll(&p, 1, 10000) == 1 && recv(fd, &c, 1, 0) == 0 ? 0 : 1);
    }
    int status = 0;
    for (int i = 0; i < 2000 && waitpid(pid, &status, WNOHANG) == 0; i++)
        evl_run_once(&g->loop, 5);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(stats(g).connections, 0);
    assert_int_equal(stats(g).rx_packets, 0); /* no REQUEST went to the guest */
}

static void test_create_errors(void **state)
{
    struct guest *g = *state;
    sm_error err = { 0 };
    char path[300];
    memset(path, 'a', 200);
    path[200] = 0;
    struct vsock_config cfg = { .guest_cid = 5, .uds_path = path };
    assert_null(virtio_vsock_create(&cfg, &g->loop, &err));
    assert_int_equal(err.code, SM_E_INVALID);
    assert_non_null(strstr(err.message, "bytes"));

    snprintf(path, sizeof path, "%s/no/such/dir/v.sock", g->dir);
    assert_null(virtio_vsock_create(&cfg, &g->loop, &err));
    assert_int_equal(err.code, SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "directory"));

    snprintf(path, sizeof path, "%s/file", g->dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    close(fd);
    assert_null(virtio_vsock_create(&cfg, &g->loop, &err));
    assert_non_null(strstr(err.message, "not a socket"));

    cfg.uds_path = g->uds; /* live: this fixture's device listens there */
    assert_null(virtio_vsock_create(&cfg, &g->loop, &err));
    assert_non_null(strstr(err.message, "in use"));

    cfg.guest_cid = 2;
    assert_null(virtio_vsock_create(&cfg, &g->loop, &err));
    assert_int_equal(err.code, SM_E_INVALID);

    /* A stale socket file (nobody listening) is replaced. */
    snprintf(path, sizeof path, "%s/stale.sock", g->dir);
    close(unix_listen(path));
    cfg = (struct vsock_config){ .guest_cid = 5, .uds_path = path };
    struct virtio_device *d = virtio_vsock_create(&cfg, NULL, &err);
    assert_non_null(d);
    close(unix_connect(path));
    virtio_device_destroy(d);
    struct stat st;
    assert_int_equal(stat(path, &st), -1);
}

static void test_config_space(void **state)
{
    struct guest *g = *state;
    uint8_t b[8] = { 0 };
    virtio_mmio_bus_ops.read(g->t, 0x100, b, 8);
    uint64_t cid;
    memcpy(&cid, b, 8);
    assert_int_equal(cid, GUEST_CID);
    assert_int_equal(drv_read(g->t, REG_DEVICE_ID), VIRTIO_ID_VSOCK);
}

static void test_host_connect_and_data(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    struct pkt p;
    int fd = host_connect(g, 5000, &p);
    uint32_t host_port = p.h.src_port;
    assert_true(host_port >= (1u << 30));

    write_all(fd, "hello", 5);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RW);
    assert_int_equal(p.h.src_port, host_port);
    assert_int_equal(p.h.dst_port, 5000);
    assert_int_equal(p.h.len, 5);
    assert_memory_equal(p.data, "hello", 5);

    struct vsock_hdr h = ghdr(5000, host_port, VSOCK_OP_RW, 65536, 5);
    h.len = 5;
    tx_send(g, &h, "world", 5);
    char buf[5];
    read_exact(g, fd, buf, 5);
    assert_memory_equal(buf, "world", 5);

    /* The guest closes: SHUTDOWN both ways; the device answers RST and the host sees EOF. */
    tx_op(g, 5000, host_port, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
    assert_true(host_sees_end(g, fd));
    assert_int_equal(stats(g).connections, 0);
    close(fd);
}

static void test_host_close_sends_shutdown(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    struct pkt p;
    int fd = host_connect(g, 77, &p);
    uint32_t host_port = p.h.src_port;
    write_all(fd, "bye", 3);
    close(fd);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RW);
    assert_memory_equal(p.data, "bye", 3);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_SHUTDOWN);
    assert_int_equal(p.h.flags, VSOCK_SHUTDOWN_SEND);
    /* Guest finishes too: RST back, connection gone. */
    tx_op(g, 77, host_port, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
    assert_int_equal(stats(g).connections, 0);
}

/* Half close: the guest stops sending (the host sees EOF) yet still receives. */
static void test_guest_half_close(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    struct pkt p;
    int fd = host_connect(g, 88, &p);
    uint32_t host_port = p.h.src_port;
    struct vsock_hdr h = ghdr(88, host_port, VSOCK_OP_RW, 65536, 0);
    h.len = 4;
    tx_send(g, &h, "last", 4);
    tx_op(g, 88, host_port, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND);
    char buf[4];
    read_exact(g, fd, buf, 4);
    assert_memory_equal(buf, "last", 4);
    assert_true(host_sees_end(g, fd)); /* EOF after the data */
    write_all(fd, "reply", 5);         /* the other direction still works */
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RW);
    assert_memory_equal(p.data, "reply", 5);
    /* Data after the guest's own SHUTDOWN SEND breaks the protocol: reset. */
    h.len = 1;
    tx_send(g, &h, "x", 1);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
    assert_int_equal(stats(g).protocol_errors, 1);
    close(fd);
}

static void test_guest_refuses_and_rst(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    int fd = unix_connect(g->uds);
    write_all(fd, "CONNECT 9\n", 10);
    struct pkt p;
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_REQUEST);
    tx_op(g, 9, p.h.src_port, VSOCK_OP_RST, 0);
    assert_true(host_sees_end(g, fd));
    close(fd);
    expect_no_rx(g); /* an RST is never answered */

    /* A bad handshake line closes the client without bothering the guest. */
    fd = unix_connect(g->uds);
    write_all(fd, "HELLO THERE, THIS IS NOT A CONNECT LINE AT ALL\n", 47);
    assert_true(host_sees_end(g, fd));
    close(fd);
    expect_no_rx(g);
    assert_int_equal(stats(g).connections, 0);
}

static void test_exec_socket(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    int fd = unix_connect(g->exec);
    write_all(fd, "frame", 5); /* the client talks at once: no handshake */
    struct pkt p;
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_REQUEST);
    assert_int_equal(p.h.dst_port, EXEC_PORT);
    uint32_t host_port = p.h.src_port;
    tx_op(g, EXEC_PORT, host_port, VSOCK_OP_RESPONSE, 0);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RW);
    assert_memory_equal(p.data, "frame", 5); /* no "OK" line was written or expected */
    struct vsock_hdr h = ghdr(EXEC_PORT, host_port, VSOCK_OP_RW, 65536, 5);
    h.len = 3;
    tx_send(g, &h, "out", 3);
    char buf[3];
    read_exact(g, fd, buf, 3);
    assert_memory_equal(buf, "out", 3);
    tx_op(g, EXEC_PORT, host_port, VSOCK_OP_RST, 0);
    assert_true(host_sees_end(g, fd));
    close(fd);
}

/* A client that leaves before the guest answers: the guest gets an RST, the slot is freed. */
static void test_client_leaves_while_connecting(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    int fd = unix_connect(g->exec);
    struct pkt p;
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_REQUEST);
    uint32_t host_port = p.h.src_port;
    close(fd);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
    assert_int_equal(p.h.src_port, host_port);
    assert_int_equal(stats(g).connections, 0);
    /* Its late RESPONSE is for nothing: refused with RST. */
    tx_op(g, EXEC_PORT, host_port, VSOCK_OP_RESPONSE, 0);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
}

static void test_guest_connects_to_host(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    char path[160];
    snprintf(path, sizeof path, "%s_%u", g->uds, 1234u);
    int lfd = unix_listen(path);

    tx_op(g, 40000, 1234, VSOCK_OP_REQUEST, 0);
    struct pkt p;
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RESPONSE);
    assert_int_equal(p.h.src_port, 1234);
    assert_int_equal(p.h.dst_port, 40000);
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);

    struct vsock_hdr h = ghdr(40000, 1234, VSOCK_OP_RW, 65536, 0);
    h.len = 4;
    tx_send(g, &h, "ping", 4);
    char buf[4];
    read_exact(g, fd, buf, 4);
    assert_memory_equal(buf, "ping", 4);
    write_all(fd, "pong", 4);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RW);
    assert_memory_equal(p.data, "pong", 4);

    /* Guest RST: the host peer sees the end. */
    tx_op(g, 40000, 1234, VSOCK_OP_RST, 0);
    assert_true(host_sees_end(g, fd));
    close(fd);
    close(lfd);

    /* Nobody listens on port 4321: refused with RST. */
    tx_op(g, 40001, 4321, VSOCK_OP_REQUEST, 0);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
    assert_int_equal(p.h.src_port, 4321);
    assert_int_equal(p.h.dst_port, 40001);
}

/* The guest reuses a port pair whose RST has not reached it yet: the new connection wins. */
static void test_guest_reconnect_while_closing(void **state)
{
    struct guest *g = *state;
    char path[160];
    snprintf(path, sizeof path, "%s_%u", g->uds, 1234u);
    int lfd = unix_listen(path);
    tx_op(g, 50000, 1234, VSOCK_OP_REQUEST, 0);
    tx_op(g, 50000, 1234, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
    tx_op(g, 50000, 1234, VSOCK_OP_REQUEST, 0);
    post_all_rx(g);
    struct pkt p;
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RESPONSE);
    expect_no_rx(g);
    assert_int_equal(stats(g).connections, 1);
    close(lfd);
}

/* 32 exec clients at once, each echoed by the "agent" (this test) through the device. */
#define NCLIENTS 32
#define PER_CLIENT (96u * 1024)
struct echo_conn {
    int fd;
    uint32_t host_port;
    bool accepted;
    uint8_t pending[65536];
    uint32_t pend_len;
    uint32_t consumed;        /* guest fwd_cnt: bytes moved out of its receive buffer */
    uint32_t peer_buf, peer_fwd, tx_cnt;
    uint32_t host_sent, host_got;
};

static uint8_t echo_byte(int i, uint32_t off) { return (uint8_t)(off * 13 + (uint32_t)i * 101 + (off >> 11)); }

static struct echo_conn *echo_find(struct echo_conn *ec, uint32_t host_port)
{
    for (int i = 0; i < NCLIENTS; i++)
        if (ec[i].accepted && ec[i].host_port == host_port)
            return &ec[i];
    return NULL;
}

static void echo_guest_step(struct guest *g, struct echo_conn *ec, int *next_accept)
{
    struct pkt p;
    while (rx_take(g, &p)) {
        if (p.h.op == VSOCK_OP_REQUEST) {
            assert_int_equal(p.h.dst_port, EXEC_PORT);
            assert_true(*next_accept < NCLIENTS);
            struct echo_conn *e = &ec[(*next_accept)++];
            e->accepted = true;
            e->host_port = p.h.src_port;
            e->peer_buf = p.h.buf_alloc;
            e->peer_fwd = p.h.fwd_cnt;
            tx_op(g, EXEC_PORT, e->host_port, VSOCK_OP_RESPONSE, 0);
            continue;
        }
        struct echo_conn *e = echo_find(ec, p.h.src_port);
        assert_non_null(e);
        e->peer_buf = p.h.buf_alloc;
        e->peer_fwd = p.h.fwd_cnt;
        if (p.h.op == VSOCK_OP_RW) {
            assert_true(e->pend_len + p.h.len <= sizeof e->pending); /* our 64 KiB credit held */
            memcpy(e->pending + e->pend_len, p.data, p.h.len);
            e->pend_len += p.h.len;
        } else {
            assert_int_equal(p.h.op, VSOCK_OP_CREDIT_UPDATE);
        }
    }
    for (int i = 0; i < NCLIENTS; i++) {
        struct echo_conn *e = &ec[i];
        uint32_t credit = e->peer_buf - (e->tx_cnt - e->peer_fwd);
        uint32_t off = 0;
        while (e->accepted && off < e->pend_len && credit > 0) {
            uint32_t len = e->pend_len - off;
            if (len > 4096)
                len = 4096;
            if (len > credit)
                len = credit;
            e->consumed += len;
            struct vsock_hdr h = ghdr(EXEC_PORT, e->host_port, VSOCK_OP_RW, 65536, e->consumed);
            h.len = len;
            tx_send(g, &h, e->pending + off, len);
            e->tx_cnt += len;
            credit -= len;
            off += len;
        }
        memmove(e->pending, e->pending + off, e->pend_len - off);
        e->pend_len -= off;
    }
}

static void test_concurrent_exec_echo(void **state)
{
    struct guest *g = *state;
    static struct echo_conn ec[NCLIENTS];
    memset(ec, 0, sizeof ec);
    post_all_rx(g);
    for (int i = 0; i < NCLIENTS; i++) {
        ec[i].fd = unix_connect(g->exec);
        fcntl(ec[i].fd, F_SETFL, O_NONBLOCK);
    }
    int accepted = 0, done = 0;
    for (int round = 0; done < NCLIENTS && round < 100000; round++) {
        done = 0;
        for (int i = 0; i < NCLIENTS; i++) {
            struct echo_conn *e = &ec[i];
            uint8_t buf[8192];
            if (e->host_sent < PER_CLIENT) {
                uint32_t len = PER_CLIENT - e->host_sent < sizeof buf ? PER_CLIENT - e->host_sent : (uint32_t)sizeof buf;
                for (uint32_t k = 0; k < len; k++)
                    buf[k] = echo_byte(i, e->host_sent + k);
                ssize_t n = write(e->fd, buf, len);
                if (n > 0)
                    e->host_sent += (uint32_t)n;
            }
            ssize_t n = recv(e->fd, buf, sizeof buf, MSG_DONTWAIT);
            for (ssize_t k = 0; k < n; k++)
                if (buf[k] != echo_byte(i, e->host_got + (uint32_t)k))
                    fail_msg("client %d byte %u differs", i, e->host_got + (uint32_t)k);
            if (n > 0)
                e->host_got += (uint32_t)n;
            done += e->host_got == PER_CLIENT;
        }
        pump(g);
        echo_guest_step(g, ec, &accepted);
    }
    assert_int_equal(accepted, NCLIENTS);
    assert_int_equal(done, NCLIENTS);
    assert_int_equal(stats(g).connections, NCLIENTS);
    assert_int_equal(stats(g).protocol_errors, 0);
    for (int i = 0; i < NCLIENTS; i++)
        close(ec[i].fd);
}

/* Bulk test size: 4 MiB, or SM_VSOCK_TEST_MB (1..1024) for a longer run. */
static double now_s(void) { return (double)clock_now_ns() / 1e9; }

static uint32_t bulk_bytes(void)
{
    const char *s = getenv("SM_VSOCK_TEST_MB");
    long mb = s ? strtol(s, NULL, 10) : 4;
    return (uint32_t)(mb >= 1 && mb <= 1024 ? mb : 4) << 20;
}

/* 4 MiB host -> guest through a 64 KiB guest buffer; the guest app consumes slowly. */
static void test_bulk_host_to_guest_respects_credit(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    struct pkt p;
    int fd = host_connect(g, 6000, &p);
    uint32_t host_port = p.h.src_port;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    /* A buffer size that is no multiple of any read size, so credit cuts reads short. */
    const uint32_t total = bulk_bytes(), guest_buf = 50000;
    uint32_t sent = 0, received = 0, consumed = 0;
    struct vsock_hdr upd = ghdr(6000, host_port, VSOCK_OP_CREDIT_UPDATE, guest_buf, 0);
    tx_send(g, &upd, NULL, 0);
    uint32_t full = 0; /* rounds where the guest's buffer was exactly full */
    double t0 = now_s();
    for (uint32_t rounds = 0; received < total && rounds < total / 16; rounds++) {
        uint8_t chunk[8192];
        for (int k = 0; k < 8 && sent < total; k++) {
            uint32_t want = total - sent < sizeof chunk ? total - sent : (uint32_t)sizeof chunk;
            for (uint32_t i = 0; i < want; i++)
                chunk[i] = (uint8_t)((sent + i) * 131 + ((sent + i) >> 13));
            ssize_t n = write(fd, chunk, want);
            if (n <= 0)
                break;
            sent += (uint32_t)n;
        }
        pump(g);
        while (rx_take(g, &p)) {
            assert_int_equal(p.h.op, VSOCK_OP_RW);
            for (uint32_t i = 0; i < p.h.len; i++)
                if (p.data[i] != (uint8_t)((received + i) * 131 + ((received + i) >> 13)))
                    fail_msg("byte %u differs", received + i);
            received += p.h.len;
            /* The device never has more in flight than the guest's buffer. */
            assert_true(received - consumed <= guest_buf);
        }
        full += received - consumed == guest_buf;
        /* The guest app now and then reads half of what is buffered, and says so. */
        if (rounds % 4 == 3 && received > consumed) {
            consumed += (received - consumed + 1) / 2;
            upd = ghdr(6000, host_port, VSOCK_OP_CREDIT_UPDATE, guest_buf, consumed);
            tx_send(g, &upd, NULL, 0);
        }
    }
    assert_int_equal(received, total);
    assert_int_equal(stats(g).bytes_to_guest, total);
    print_message("host->guest: %u MiB in %.3f s\n", total >> 20, now_s() - t0);
    assert_true(full > 0); /* the device filled the guest's buffer to the byte, never past it */
    close(fd);
}

/* 4 MiB guest -> host; the host stops reading for a while, so the guest must run out of credit. */
static void test_bulk_guest_to_host_backpressure(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    struct pkt p;
    int fd = host_connect(g, 7000, &p);
    uint32_t host_port = p.h.src_port;
    uint32_t peer_buf = p.h.buf_alloc, peer_fwd = p.h.fwd_cnt;
    const uint32_t total = bulk_bytes();
    uint32_t sent = 0, got = 0, stalls = 0;
    uint8_t *in = malloc(total);
    double t0 = now_s();
    for (uint32_t rounds = 0; got < total && rounds < total / 16; rounds++) {
        uint32_t credit = peer_buf - (sent - peer_fwd);
        assert_true(credit <= peer_buf);
        if (credit == 0)
            stalls++;
        while (credit > 0 && sent < total) {
            uint32_t len = credit < 4096 ? credit : 4096;
            if (len > total - sent)
                len = total - sent;
            uint8_t data[4096];
            for (uint32_t i = 0; i < len; i++)
                data[i] = (uint8_t)((sent + i) * 7 + 3);
            struct vsock_hdr h = ghdr(7000, host_port, VSOCK_OP_RW, 65536, 0);
            h.len = len;
            tx_send(g, &h, data, len);
            sent += len;
            credit -= len;
        }
        pump(g);
        while (rx_take(g, &p)) {
            assert_int_equal(p.h.op, VSOCK_OP_CREDIT_UPDATE);
            peer_buf = p.h.buf_alloc;
            peer_fwd = p.h.fwd_cnt;
        }
        /* The host reads only on some rounds: its socket fills up meanwhile. */
        if (rounds % 8 == 7) {
            ssize_t n = recv(fd, in + got, total - got, MSG_DONTWAIT);
            if (n > 0)
                got += (uint32_t)n;
        }
    }
    assert_int_equal(got, total);
    assert_int_equal(stats(g).bytes_to_host, total);
    print_message("guest->host: %u MiB in %.3f s, %u credit stalls\n", total >> 20, now_s() - t0, stalls);
    for (uint32_t i = 0; i < total; i++)
        if (in[i] != (uint8_t)(i * 7 + 3))
            fail_msg("byte %u differs", i);
    assert_true(stalls > 0); /* the credit really limited the guest */
    assert_int_equal(stats(g).protocol_errors, 0);
    free(in);
    close(fd);
}

/* The guest stops reading: the device stops at the guest's credit and goes quiet. */
static void test_guest_stops_reading_no_spin(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    struct pkt p;
    int fd = host_connect(g, 8000, &p);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    uint8_t chunk[65536] = { 0 };
    size_t written = 0;
    for (int i = 0; i < 1000; i++) {
        ssize_t n = write(fd, chunk, sizeof chunk);
        if (n > 0)
            written += (size_t)n;
        pump(g);
        while (rx_take(g, &p))
            ;
        if (n < 0)
            break; /* the host socket is full: backpressure reached the writer */
    }
    struct vsock_stats s = stats(g);
    assert_int_equal(s.bytes_to_guest, 65536); /* exactly the credit of the REQUEST's RESPONSE */
    assert_true(written > s.bytes_to_guest);   /* the rest waits in the host socket, not in us */
    int ran = 0;
    for (int i = 0; i < 5; i++)
        ran += evl_run_once(&g->loop, 20);
    assert_int_equal(ran, 0); /* nothing ready: no busy loop */
    close(fd);
}

/* A guest that never answers, a client that never speaks: both given up on, then quiet. */
static void test_connect_timeout(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    int silent = unix_connect(g->uds);     /* never writes its CONNECT line */
    int fd = unix_connect(g->exec);
    struct pkt p;
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_REQUEST);
    uint32_t host_port = p.h.src_port;
    double t0 = now_s();
    assert_true(host_sees_end(g, fd));    /* the guest never answered */
    assert_true(host_sees_end(g, silent));
    double waited = now_s() - t0;
    assert_true(waited < 0.8);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST); /* the guest had the REQUEST: it hears it is off */
    assert_int_equal(p.h.src_port, host_port);
    struct vsock_stats st = stats(g);
    assert_int_equal(st.connect_timeouts, 2);
    assert_int_equal(st.connections, 0);
    close(fd);
    close(silent);
    /* An answered connection is not timed out. */
    fd = host_connect(g, 5, &p);
    for (int i = 0; i < 30; i++)
        evl_run_once(&g->loop, 10);
    assert_int_equal(stats(g).connections, 1);
    assert_int_equal(stats(g).connect_timeouts, 2);
    /* With no deadline left the timer stops: nothing wakes the loop. */
    int ran = 0;
    for (int i = 0; i < 5; i++)
        ran += evl_run_once(&g->loop, 20);
    assert_int_equal(ran, 0);
    close(fd);
}

/* Beyond VSOCK_MAX_CONNS, clients are closed at once; slots come back when clients leave. */
static void test_connection_limit(void **state)
{
    struct guest *g = *state;
    enum { EXTRA = 6, TOTAL = VSOCK_MAX_CONNS + EXTRA };
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2 * TOTAL + 64) {
        rl.rlim_cur = rl.rlim_max < 2 * TOTAL + 64 ? rl.rlim_max : 2 * TOTAL + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < 2 * TOTAL + 64)
            skip();
    }
    static int fds[TOTAL];
    for (int i = 0; i < TOTAL; i++) {
        if (i % 64 == 0)
            pump(g); /* keep the listen backlog short */
        fds[i] = unix_connect(g->exec);
    }
    pump(g);
    pump(g);
    assert_int_equal(stats(g).connections, VSOCK_MAX_CONNS);
    int refused = 0;
    for (int i = 0; i < TOTAL; i++) {
        char c;
        if (recv(fds[i], &c, 1, MSG_DONTWAIT) == 0)
            refused++;
    }
    assert_int_equal(refused, EXTRA);
    for (int i = 0; i < TOTAL; i++)
        close(fds[i]);
    for (int i = 0; i < 50 && stats(g).connections; i++)
        evl_run_once(&g->loop, 10);
    assert_int_equal(stats(g).connections, 0); /* none of them reached the guest: no RST owed */
}

/* The guest posts no rx buffers: the host client waits, nothing spins or piles up. */
static void test_no_rx_buffers(void **state)
{
    struct guest *g = *state;
    int fd = unix_connect(g->uds);
    write_all(fd, "CONNECT 99\n", 11);
    for (int i = 0; i < 20; i++)
        tx_op(g, 5, 6, VSOCK_OP_RW, 0); /* unknown: RST replies queue, boundedly */
    for (int i = 0; i < 300; i++)
        tx_op(g, 5, 6, VSOCK_OP_CREDIT_REQUEST, 0);
    pump(g);
    int ran = 0;
    for (int i = 0; i < 5; i++)
        ran += evl_run_once(&g->loop, 20);
    assert_int_equal(ran, 0);
    struct vsock_stats s = stats(g);
    assert_int_equal(s.rst_dropped, 320 - 128);
    post_all_rx(g);
    struct pkt p;
    int rsts = 0;
    for (;;) {
        rx_expect(g, &p);
        if (p.h.op != VSOCK_OP_RST)
            break;
        rsts++;
    }
    assert_int_equal(rsts, 128);
    assert_int_equal(p.h.op, VSOCK_OP_REQUEST);
    assert_int_equal(p.h.dst_port, 99);
    close(fd);
}

static void test_hostile_packets(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    struct pkt p;
    int fd = host_connect(g, 3000, &p);
    uint32_t host_port = p.h.src_port;

    /* Wrong source CID: dropped silently. */
    struct vsock_hdr h = ghdr(3000, host_port, VSOCK_OP_RW, 65536, 0);
    h.src_cid = 7;
    h.len = 1;
    tx_send(g, &h, "x", 1);
    expect_no_rx(g);
    assert_int_equal(stats(g).wrong_cid, 1);

    /* Header too short for a packet. */
    uint16_t d = (uint16_t)(g->tx_next_desc++ % QSIZE);
    drv_queue_put_desc(&g->q[1], d, TX_AREA + TX_STRIDE * d, 10, 0, 0);
    drv_publish(&g->q[1], d);
    drv_kick(g->t, 1);
    assert_int_equal(stats(g).malformed, 1);

    /* len beyond the buffer: the connection is reset. */
    h = ghdr(3000, host_port, VSOCK_OP_RW, 65536, 0);
    h.len = 5000;
    tx_send(g, &h, "abc", 3);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
    assert_true(host_sees_end(g, fd));
    close(fd);
    assert_int_equal(stats(g).connections, 0);

    /* Unknown op and unknown type on a live connection: reset. */
    fd = host_connect(g, 3001, &p);
    tx_op(g, 3001, p.h.src_port, 99, 0);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
    close(fd);
    tx_op(g, 1, 2, VSOCK_OP_RW, 0); /* unknown connection */
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
    h = ghdr(1, 2, VSOCK_OP_REQUEST, 0, 0);
    h.type = 2; /* SEQPACKET: not offered */
    tx_send(g, &h, NULL, 0);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);

    /* More data than the credit we gave, while the host is not reading: reset. */
    fd = host_connect(g, 3002, &p);
    host_port = p.h.src_port;
    int sndbuf = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof sndbuf);
    uint8_t big[65536] = { 0 };
    h = ghdr(3002, host_port, VSOCK_OP_RW, 65536, 0);
    h.len = sizeof big;
    bool reset = false;
    for (int i = 0; i < 64 && !reset; i++) {
        tx_send(g, &h, big, sizeof big);
        pump(g);
        while (rx_take(g, &p))
            reset |= p.h.op == VSOCK_OP_RST;
    }
    assert_true(reset);
    assert_true(stats(g).protocol_errors >= 1);
    close(fd);
}

static void test_descriptor_loop_breaks_queue(void **state)
{
    struct guest *g = *state;
    /* Two descriptors pointing at each other. */
    drv_queue_put_desc(&g->q[1], 0, TX_AREA, 16, VIRTQ_DESC_F_NEXT, 1);
    drv_queue_put_desc(&g->q[1], 1, TX_AREA, 16, VIRTQ_DESC_F_NEXT, 0);
    drv_publish(&g->q[1], 0);
    drv_kick(g->t, 1);
    assert_true(drv_read(g->t, REG_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    /* The driver resets and starts over: the device works again. */
    drv_write(g->t, REG_STATUS, 0);
    driver_init(g);
    post_all_rx(g);
    struct pkt p;
    close(host_connect(g, 11, &p));
}

static void test_out_of_range_buffer_breaks_queue(void **state)
{
    struct guest *g = *state;
    drv_queue_put_desc(&g->q[1], 0, RAM_BYTES - 8, 64, 0, 0);
    drv_publish(&g->q[1], 0);
    drv_kick(g->t, 1);
    assert_true(drv_read(g->t, REG_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

static void test_transport_reset(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    struct pkt p;
    int fd = host_connect(g, 4000, &p);
    uint32_t port_before = p.h.src_port;
    /* one event buffer */
    drv_queue_put_desc(&g->q[2], 0, EVENT_AREA, 8, VIRTQ_DESC_F_WRITE, 0);
    memset(g->ram + EVENT_AREA, 0xff, 8);
    drv_publish(&g->q[2], 0);
    drv_kick(g->t, 2);
    virtio_vsock_transport_reset(g->dev);
    assert_true(host_sees_end(g, fd));
    close(fd);
    assert_int_equal(drv_used_idx(&g->q[2]), 1);
    uint32_t id, len;
    drv_used_elem(&g->q[2], 0, &id, &len);
    assert_int_equal(len, 4);
    uint32_t event_id;
    memcpy(&event_id, g->ram + EVENT_AREA, 4);
    assert_int_equal(event_id, VSOCK_EVENT_TRANSPORT_RESET);
    assert_int_equal(stats(g).connections, 0);
    /* Until the guest has handled the event (its driver refills the event
     * queue and kicks it), a new host connection must not reach it: the
     * guest's reset would kill it. */
    int early = unix_connect(g->uds);
    write_all(early, "CONNECT 4001\n", 13);
    expect_no_rx(g);
    drv_publish(&g->q[2], 0);
    drv_kick(g->t, 2);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_REQUEST);
    assert_int_equal(p.h.dst_port, 4001);
    /* A restored guest may still hold a closing socket of the ports the
     * snapshotted VMM used, the first ones of a fresh table (port_before is
     * the very first): the ports after a reset come from elsewhere in the
     * range, not next to them (16 in 3 Gi of landing there). */
    assert_int_equal(port_before, 1u << 30);
    assert_true(p.h.src_port > port_before + 16);
    close(early); /* the client left before the guest answered: the guest gets an RST */
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
    /* And connections after the acknowledgement work as ever. */
    close(host_connect(g, 4002, &p));
}

/* Restoring a snapshot: packets the guest queued before it are returned
 * unread until the transport reset, so a stale REQUEST dials nobody. */
static void test_restore_discards_stale_tx(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    char path[160];
    snprintf(path, sizeof path, "%s_%u", g->uds, 1235u);
    int lfd = unix_listen(path);
    virtio_vsock_begin_restore(g->dev);
    tx_op(g, 40010, 1235, VSOCK_OP_REQUEST, 0);
    expect_no_rx(g);
    struct pollfd pfd = { .fd = lfd, .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 50), 0); /* nobody dialled the listener */
    /* After the reset (and its acknowledgement), the guest's dials work again. */
    drv_queue_put_desc(&g->q[2], 0, EVENT_AREA, 8, VIRTQ_DESC_F_WRITE, 0);
    drv_publish(&g->q[2], 0);
    drv_kick(g->t, 2);
    virtio_vsock_transport_reset(g->dev);
    drv_publish(&g->q[2], 0);
    drv_kick(g->t, 2);
    tx_op(g, 40011, 1235, VSOCK_OP_REQUEST, 0);
    struct pkt p;
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RESPONSE);
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    close(fd);
    close(lfd);
}

static void test_device_reset_drops_connections(void **state)
{
    struct guest *g = *state;
    post_all_rx(g);
    struct pkt p;
    int fd = host_connect(g, 4100, &p);
    drv_write(g->t, REG_STATUS, 0);
    assert_true(host_sees_end(g, fd));
    close(fd);
    assert_int_equal(stats(g).connections, 0);
}

/* --- a Linux 6.1 guest streaming to a slow host ---------------------------------------------
 * The exec connection as issue 15 used it: the host sends a request, then the
 * guest streams output for a long time while the host reads slowly and
 * intermittently. The guest side is a replica of Linux 6.1's
 * virtio_transport_common.c rules, not a well-behaved simplification:
 *   - credit is virtio_transport_get_credit(): u32 peer_buf_alloc -
 *     (tx_cnt - peer_fwd_cnt), capped at the 64 KiB packet size, tx_cnt
 *     counted when the packet is made (so a device that let the guest get
 *     ahead of its buf_alloc would see the u32 wrap into "lots of credit");
 *   - every packet the device sends updates peer_buf_alloc/peer_fwd_cnt;
 *   - packets wait in a FIFO (send_pkt_list) and enter the ring as
 *     descriptors free up, split over 1 to 3 descriptors, and the kick may
 *     come late (an ioeventfd the VMM reads later), so credit updates race
 *     with packets in flight;
 *   - the guest may process its rx queue late (its credit is then stale);
 *   - out of credit it sometimes sends CREDIT_REQUEST (Linux 6.1 never
 *     does; the device must cope either way);
 *   - host->guest bytes count against its 256 KiB buf_alloc, and it sends a
 *     CREDIT_UPDATE when its free space drops under 64 KiB, as Linux does.
 * Meanwhile host clients that never speak keep the connect-deadline timer
 * ticking (connect_timeout_ms is 100 here), so a deadline that could touch an
 * established connection would fire. Everything is driven from this thread
 * from a fixed seed: the run is the same every time. */

#define LX_BUF_ALLOC  (256u * 1024)  /* the guest socket's receive buffer (Linux's default) */
#define LX_MAX_PKT    (64u * 1024)   /* VIRTIO_VSOCK_MAX_PKT_BUF_SIZE */
#define LX_FIFO       4096u
#define LX_SILENT     64             /* silent host clients alive at once, at most */
#define STREAM_REQ    100u           /* the host's request bytes */

static uint8_t out_byte(uint64_t off) { return (uint8_t)(off * 131u + (off >> 9) * 7u + (off >> 17) + (off >> 32)); }
static uint8_t in_byte(uint64_t off) { return (uint8_t)(off * 29u + (off >> 7) + 5u); }

/* Stream size: 64 MiB, or SM_VSOCK_STREAM_MB (1..8192; over 4096 wraps every u32 counter). */
static uint64_t stream_bytes(void)
{
    const char *s = getenv("SM_VSOCK_STREAM_MB");
    long mb = s ? strtol(s, NULL, 10) : 64;
    return (uint64_t)(mb >= 1 && mb <= 8192 ? mb : 64) << 20;
}

struct lx_pkt {
    struct vsock_hdr h;
    uint64_t off;                /* stream offset of an RW payload */
};

struct lx_guest {
    struct guest *g;
    uint32_t rng;
    uint32_t host_port;
    /* struct virtio_vsock_sock, tx half */
    uint32_t tx_cnt, peer_buf_alloc, peer_fwd_cnt;
    /* rx half */
    uint32_t fwd_cnt, last_fwd_cnt, rx_bytes;
    uint64_t rx_total;           /* host->guest bytes received */
    /* send_pkt_list */
    struct lx_pkt fifo[LX_FIFO];
    uint32_t fifo_head, fifo_len;
    /* tx ring: free descriptors and buffers, and what each head holds */
    uint16_t free_desc[QSIZE], nfree;
    bool slot_busy[QSIZE];
    uint16_t head_slot[QSIZE], head_ndesc[QSIZE], head_descs[QSIZE][3];
    uint16_t used_seen;
    uint32_t unkicked;
    /* the app (the agent) */
    uint64_t app_off, total;
    bool asked;                  /* CREDIT_REQUEST sent in this stall */
    uint32_t credit_stalls;      /* writes that found no credit */
    uint32_t max_in_flight;      /* largest tx_cnt - peer_fwd_cnt seen */
};

static uint32_t lx_rand(struct lx_guest *lg)
{
    lg->rng = lg->rng * 1664525u + 1013904223u;
    return lg->rng >> 8;
}

/* virtio_transport_get_credit(), to the letter. */
static uint32_t lx_get_credit(struct lx_guest *lg, uint32_t credit)
{
    uint32_t ret = lg->peer_buf_alloc - (lg->tx_cnt - lg->peer_fwd_cnt);
    if (ret > credit)
        ret = credit;
    lg->tx_cnt += ret;
    return ret;
}

/* virtio_transport_has_space(): an s64 made from a u32 difference, so never negative. */
static int64_t lx_has_space(const struct lx_guest *lg)
{
    int64_t bytes = lg->peer_buf_alloc - (lg->tx_cnt - lg->peer_fwd_cnt);
    return bytes < 0 ? 0 : bytes;
}

/* virtio_transport_alloc_pkt() + inc_tx_pkt(): the header carries our rx credit. */
static void lx_queue(struct lx_guest *lg, uint16_t op, uint32_t flags, uint32_t len, uint64_t off)
{
    assert_true(lg->fifo_len < LX_FIFO);
    lg->last_fwd_cnt = lg->fwd_cnt;
    struct lx_pkt *p = &lg->fifo[(lg->fifo_head + lg->fifo_len++) % LX_FIFO];
    p->h = ghdr(EXEC_PORT, lg->host_port, op, LX_BUF_ALLOC, lg->fwd_cnt);
    p->h.flags = flags;
    p->h.len = len;
    p->off = off;
}

/* vsock_connectible_sendmsg() on a non-blocking socket: the bytes taken. */
static uint32_t lx_send(struct lx_guest *lg, uint32_t len)
{
    uint32_t written = 0;
    while (written < len && lx_has_space(lg) > 0) {
        uint32_t pkt_len = lx_get_credit(lg, len - written > LX_MAX_PKT ? LX_MAX_PKT : len - written);
        if (pkt_len == 0)
            break;
        lx_queue(lg, VSOCK_OP_RW, 0, pkt_len, lg->app_off + written);
        written += pkt_len;
    }
    uint32_t in_flight = lg->tx_cnt - lg->peer_fwd_cnt;
    if (in_flight > lg->max_in_flight)
        lg->max_in_flight = in_flight;
    lg->app_off += written;
    return written;
}

/* One packet into the tx ring, split the way a driver may; false if the ring is full. */
static bool lx_publish(struct lx_guest *lg, const struct lx_pkt *p)
{
    struct guest *g = lg->g;
    uint32_t len = p->h.len, total = VSOCK_HDR_SIZE + len;
    uint16_t ndesc = (uint16_t)(1 + lx_rand(lg) % (len ? 3 : 2));
    int slot = -1;
    for (int s = 0; s < (int)QSIZE && slot < 0; s++)
        if (!lg->slot_busy[s])
            slot = s;
    if (lg->nfree < ndesc || slot < 0)
        return false;
    uint64_t buf = TX_AREA + TX_STRIDE * (uint64_t)slot;
    vsock_hdr_encode(&p->h, g->ram + buf);
    for (uint32_t i = 0; i < len; i++)
        g->ram[buf + VSOCK_HDR_SIZE + i] = out_byte(p->off + i);
    /* Piece boundaries: whole; header | payload; part of the header | rest | rest of the payload. */
    uint32_t cut[4] = { 0, total, total, total };
    if (ndesc == 2)
        cut[1] = len ? VSOCK_HDR_SIZE : 20;
    if (ndesc == 3) {
        cut[1] = 20;
        cut[2] = VSOCK_HDR_SIZE + len / 2;
    }
    uint16_t descs[3];
    for (uint16_t i = 0; i < ndesc; i++)
        descs[i] = lg->free_desc[--lg->nfree];
    uint16_t head = descs[0];
    for (uint16_t i = 0; i < ndesc; i++) {
        bool more = i + 1 < ndesc;
        drv_queue_put_desc(&g->q[1], descs[i], buf + cut[i], cut[i + 1] - cut[i], more ? VIRTQ_DESC_F_NEXT : 0,
                 more ? descs[i + 1] : 0);
        lg->head_descs[head][i] = descs[i];
    }
    lg->head_ndesc[head] = ndesc;
    lg->head_slot[head] = (uint16_t)slot;
    lg->slot_busy[slot] = true;
    drv_publish(&g->q[1], head);
    lg->unkicked++;
    return true;
}

/* send_pkt_work: the FIFO into the ring; the kick now, or (a quarter of the time) later. */
static void lx_flush(struct lx_guest *lg)
{
    while (lg->fifo_len && lx_publish(lg, &lg->fifo[lg->fifo_head])) {
        lg->fifo_head = (lg->fifo_head + 1) % LX_FIFO;
        lg->fifo_len--;
    }
    if (lg->unkicked && lx_rand(lg) % 4 != 0) {
        lg->unkicked = 0;
        drv_kick(lg->g->t, 1);
    }
}

/* The device returned tx chains: their descriptors and buffers are free again. */
static void lx_reclaim(struct lx_guest *lg)
{
    struct guest *g = lg->g;
    const struct drv_queue *tx = &g->q[1];
    while (drv_used_idx(tx) != lg->used_seen) {
        uint32_t head, len;
        drv_used_elem(tx, lg->used_seen % QSIZE, &head, &len);
        lg->used_seen++;
        assert_true(head < QSIZE && lg->head_ndesc[head]);
        for (uint16_t i = 0; i < lg->head_ndesc[head]; i++)
            lg->free_desc[lg->nfree++] = lg->head_descs[head][i];
        lg->head_ndesc[head] = 0;
        lg->slot_busy[lg->head_slot[head]] = false;
    }
}

/* virtio_transport_recv_pkt() for the connected socket. */
static void lx_receive(struct lx_guest *lg)
{
    struct pkt p;
    while (rx_take(lg->g, &p)) {
        assert_int_equal(p.h.src_port, lg->host_port);
        assert_int_equal(p.h.dst_port, EXEC_PORT);
        if (p.h.op == VSOCK_OP_RST)
            fail_msg("the device reset the stream after %llu of %llu bytes (stats: %llu protocol errors, "
                     "%llu malformed)", (unsigned long long)lg->app_off, (unsigned long long)lg->total,
                     (unsigned long long)stats(lg->g).protocol_errors, (unsigned long long)stats(lg->g).malformed);
        lg->peer_buf_alloc = p.h.buf_alloc; /* virtio_transport_space_update() */
        lg->peer_fwd_cnt = p.h.fwd_cnt;
        if (lx_has_space(lg) > 0)
            lg->asked = false;
        if (p.h.op == VSOCK_OP_RW) {
            for (uint32_t i = 0; i < p.h.len; i++)
                if (p.data[i] != in_byte(lg->rx_total + i))
                    fail_msg("host->guest byte %llu differs", (unsigned long long)(lg->rx_total + i));
            lg->rx_total += p.h.len;
            lg->rx_bytes += p.h.len;
            assert_true(lg->rx_bytes <= LX_BUF_ALLOC); /* Linux would drop it silently */
        } else if (p.h.op == VSOCK_OP_CREDIT_REQUEST) {
            lx_queue(lg, VSOCK_OP_CREDIT_UPDATE, 0, 0, 0);
        } else if (p.h.op != VSOCK_OP_CREDIT_UPDATE) {
            fail_msg("unexpected %s in the stream", vsock_op_name(p.h.op));
        }
    }
}

/* The app reads what the host sent: virtio_transport_stream_do_dequeue()'s credit rule. */
static void lx_consume(struct lx_guest *lg)
{
    if (!lg->rx_bytes)
        return;
    uint32_t n = 1 + lx_rand(lg) % lg->rx_bytes;
    lg->rx_bytes -= n;
    lg->fwd_cnt += n;
    uint32_t free_space = LX_BUF_ALLOC - (lg->fwd_cnt - lg->last_fwd_cnt);
    if (free_space < LX_MAX_PKT)
        lx_queue(lg, VSOCK_OP_CREDIT_UPDATE, 0, 0, 0);
}

/* The app's writes: the agent's frames are sometimes small, sometimes up to 512 KiB + header. */
static void lx_app_writes(struct lx_guest *lg)
{
    for (uint32_t k = 1 + lx_rand(lg) % 8; k > 0 && lg->app_off < lg->total; k--) {
        if (lg->fifo_len > LX_FIFO - 128)
            return; /* the app is slower than its kernel: a test resource limit, not a rule */
        uint32_t len = lx_rand(lg) % 2 ? 1 + lx_rand(lg) % 3000 : 1 + lx_rand(lg) % (600u << 10);
        if (len > lg->total - lg->app_off)
            len = (uint32_t)(lg->total - lg->app_off);
        if (lx_send(lg, len) == 0) {
            lg->credit_stalls++;
            if (!lg->asked && lx_rand(lg) % 2) {
                lx_queue(lg, VSOCK_OP_CREDIT_REQUEST, 0, 0, 0);
                lg->asked = true;
            }
            return;
        }
    }
}

/* Runs everything that is ready now, without waiting: the kernel makes a Unix
 * socket writable as soon as its reader takes bytes, so nothing is missed. */
static void pump_now(struct guest *g)
{
    for (int i = 0; i < 256 && evl_run_once(&g->loop, 0) > 0; i++)
        ;
}

static void test_stream_guest_to_slow_host_linux_credit(void **state)
{
    struct guest *g = *state;
    struct lx_guest *lg = calloc(1, sizeof *lg);
    lg->g = g;
    const char *seed = getenv("SM_VSOCK_STREAM_SEED");
    lg->rng = seed ? (uint32_t)strtoul(seed, NULL, 0) : 0x5eed1234u;
    lg->total = stream_bytes();
    for (uint16_t d = 0; d < QSIZE; d++)
        lg->free_desc[lg->nfree++] = (uint16_t)(QSIZE - 1 - d);
    post_all_rx(g);

    /* The library: connect, send the request at once. */
    int fd = unix_connect(g->exec);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    uint8_t req[STREAM_REQ];
    for (uint32_t i = 0; i < STREAM_REQ; i++)
        req[i] = in_byte(i);
    write_all(fd, req, sizeof req);
    uint64_t host_in = STREAM_REQ; /* host->guest bytes written */

    /* The agent's listener accepts: credit from the REQUEST, RESPONSE back. */
    struct pkt p;
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_REQUEST);
    lg->host_port = p.h.src_port;
    lg->peer_buf_alloc = p.h.buf_alloc;
    lg->peer_fwd_cnt = p.h.fwd_cnt;
    lx_queue(lg, VSOCK_OP_RESPONSE, 0, 0, 0);
    lx_flush(lg);
    drv_kick(g->t, 1);
    lg->unkicked = 0;

    int silent[LX_SILENT];
    int nsilent = 0;
    uint64_t got = 0;
    uint32_t stall = 0, rx_lag = 0, rounds = 0, reads = 0, eagain_rounds = 0, last_progress = 0;
    double t0 = now_s();
    for (; got < lg->total; rounds++) {
        /* Stalls last 64 rounds at most: this long without a byte is a stuck stream. */
        if (rounds - last_progress > 50000)
            fail_msg("stuck for %u rounds: host got %llu, guest sent %llu, tx_cnt %u, peer_fwd_cnt %u",
                     rounds - last_progress, (unsigned long long)got, (unsigned long long)lg->app_off, lg->tx_cnt,
                     lg->peer_fwd_cnt);
        lx_reclaim(lg);
        /* The guest: its rx work now or (in a lag) later, its app, its tx work. */
        if (rx_lag)
            rx_lag--;
        else {
            lx_receive(lg);
            if (lx_rand(lg) % 4 == 0)
                lx_consume(lg);
            if (lx_rand(lg) % 64 == 0)
                rx_lag = lx_rand(lg) % 16;
        }
        lx_app_writes(lg);
        lx_flush(lg);

        /* The host: now and then a little stdin; reads in bursts between stalls. */
        if (lx_rand(lg) % 128 == 0 && host_in < (1u << 20)) {
            uint8_t chunk[3000];
            uint32_t n = 1 + lx_rand(lg) % sizeof chunk;
            for (uint32_t i = 0; i < n; i++)
                chunk[i] = in_byte(host_in + i);
            ssize_t w = send(fd, chunk, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                host_in += (uint64_t)w;
        }
        if (stall) {
            stall--;
        } else {
            static uint8_t in[256 << 10];
            uint32_t want = lx_rand(lg) % 4 == 0 ? 1 + lx_rand(lg) % 512 : 1 + lx_rand(lg) % sizeof in;
            ssize_t n = recv(fd, in, want, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                fail_msg("the host saw the stream end after %llu of %llu bytes (%s)", (unsigned long long)got,
                         (unsigned long long)lg->total, n ? strerror(errno) : "EOF");
            eagain_rounds += n < 0;
            for (ssize_t i = 0; i < n; i++)
                if (in[i] != out_byte(got + (uint64_t)i))
                    fail_msg("guest->host byte %llu differs", (unsigned long long)(got + (uint64_t)i));
            if (n > 0) {
                got += (uint64_t)n;
                reads++;
                last_progress = rounds;
            }
            if (lx_rand(lg) % 16 == 0)
                stall = lx_rand(lg) % 64;
        }

        /* Clients that never speak: the deadline timer ticks all along. */
        if (rounds % 512 == 0 && nsilent < LX_SILENT)
            silent[nsilent++] = unix_connect(g->uds);
        if (rounds % 64 == 0)
            usleep(500);
        pump_now(g);
    }
    double secs = now_s() - t0;

    /* The agent half-closes: the host reads the end of the stream, nothing was reset. */
    for (int i = 0; i < 1000 && lg->fifo_len; i++) {
        lx_reclaim(lg);
        lx_flush(lg);
        pump_now(g);
    }
    lx_receive(lg);
    lx_queue(lg, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND, 0, 0);
    for (int i = 0; i < 100 && lg->fifo_len; i++) {
        lx_reclaim(lg);
        lx_flush(lg);
    }
    drv_kick(g->t, 1);
    assert_true(host_sees_end(g, fd));
    struct vsock_stats s = stats(g);
    print_message("guest->host: %llu MiB in %.2f s, %u rounds, %u host reads (%u found nothing), %u guest writes "
                  "without credit, guest in flight at most %u, %llu host->guest bytes, %llu silent clients timed "
                  "out\n",
                  (unsigned long long)(lg->total >> 20), secs, rounds, reads, eagain_rounds, lg->credit_stalls,
                  lg->max_in_flight, (unsigned long long)lg->rx_total, (unsigned long long)s.connect_timeouts);
    assert_int_equal(s.rst_sent, 0);
    assert_int_equal(s.protocol_errors, 0);
    assert_int_equal(s.malformed, 0);
    assert_int_equal(s.bytes_to_host, lg->total);
    assert_true(s.connect_timeouts > 0); /* the timer really ran during the stream */
    assert_true(lg->max_in_flight <= VSOCK_CONN_BUF_ALLOC);
    assert_true(lg->credit_stalls > 0);  /* the host really was slower than the guest... */
    assert_true(eagain_rounds > 0);      /* ...and at times faster */
    assert_int_equal(drv_read(g->t, REG_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
    /* Every stdin byte reached the guest too (drain what is still on the way). */
    for (int i = 0; i < 200 && lg->rx_total < host_in; i++) {
        pump_now(g);
        lx_receive(lg);
        lg->fwd_cnt += lg->rx_bytes;
        lg->rx_bytes = 0;
        lx_queue(lg, VSOCK_OP_CREDIT_UPDATE, 0, 0, 0);
        lx_flush(lg);
        drv_kick(g->t, 1);
        lx_reclaim(lg);
        usleep(1000);
    }
    assert_int_equal(lg->rx_total, host_in);

    /* The host hangs up: SHUTDOWN, then the RST that ends a finished connection. */
    close(fd);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_SHUTDOWN);
    rx_expect(g, &p);
    assert_int_equal(p.h.op, VSOCK_OP_RST);
    for (int i = 0; i < nsilent; i++)
        close(silent[i]);
    free(lg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_layout),
        cmocka_unit_test(test_connect_line_and_credit),
        cmocka_unit_test(test_table),
        cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_connect_and_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_close_sends_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_refuses_and_rst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_user_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_leaves_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_connects_to_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_reconnect_while_closing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_exec_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_host_to_guest_respects_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_guest_to_host_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_stops_reading_no_spin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup_short_timeout, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_rx_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_packets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_descriptor_loop_breaks_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range_buffer_breaks_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_discards_stale_tx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_reset_drops_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_guest_to_slow_host_linux_credit, setup_short_timeout, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
