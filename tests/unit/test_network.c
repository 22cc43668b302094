/*
 * A VM's network without a VM (src/vmm/network.c): frames written here as a
 * guest would send them go through the egress filter into a real libslirp
 * NAT, which talks to real sockets on this host's loopback; what the NAT
 * sends back to the "guest" is recorded and checked.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/clock.h"
#include "vmm/network.h"

#define WAIT_MS 20000 /* how long an answer may take: it must come, not be quick */

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

/* ---- what the NAT delivers to the guest -------------------------------------------- */

/* The first RECORD_BYTES of each frame (the headers: all a test reads), in
 * room enough that the NAT's resends during a test never fill it. */
#define RECORD_SLOTS 4096
#define RECORD_BYTES 128
struct recorder {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint8_t frames[RECORD_SLOTS][RECORD_BYTES];
    size_t lens[RECORD_SLOTS]; /* the whole frame's */
    size_t count;
};

static struct recorder rec = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { { 0 } }, { 0 }, 0 };

static void record(void *ctx, const uint8_t *frame, size_t len)
{
    struct recorder *r = ctx;
    pthread_mutex_lock(&r->lock);
    if (r->count < RECORD_SLOTS) {
        memcpy(r->frames[r->count], frame, len < RECORD_BYTES ? len : RECORD_BYTES);
        r->lens[r->count++] = len;
        pthread_cond_broadcast(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
}

typedef bool (*frame_match)(const uint8_t *f, size_t len, const void *arg);

/* Waits for a delivered frame that matches; copies it to out. */
static bool wait_frame(frame_match match, const void *arg, uint8_t *out, size_t *out_len)
{
    uint64_t give_up = clock_now_ms() + WAIT_MS;
    pthread_mutex_lock(&rec.lock);
    for (;;) {
        for (size_t i = 0; i < rec.count; i++)
            if (match(rec.frames[i], rec.lens[i], arg)) {
                if (out) {
                    *out_len = rec.lens[i] < RECORD_BYTES ? rec.lens[i] : RECORD_BYTES;
                    memcpy(out, rec.frames[i], *out_len);
                }
                pthread_mutex_unlock(&rec.lock);
                return true;
            }
        if (clock_now_ms() >= give_up)
            break;
        pthread_mutex_unlock(&rec.lock);
        clock_sleep_ms(10);
        pthread_mutex_lock(&rec.lock);
    }
    pthread_mutex_unlock(&rec.lock);
    return false;
}

/* ---- frames a guest sends ------------------------------------------------------------ */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint16_t checksum(uint32_t sum, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        sum += i % 2 ? p[i] : (uint32_t)p[i] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static size_t arp_request(uint8_t *f, const char *target)
{
    memset(f, 0xff, 6);
    memcpy(f + 6, guest_mac, 6);
    put16(f + 12, 0x0806);
    uint8_t *a = f + 14;
    put16(a, 1);
    put16(a + 2, 0x0800);
    a[4] = 6, a[5] = 4;
    put16(a + 6, 1);
    memcpy(a + 8, guest_mac, 6);
    inet_pton(AF_INET, "10.0.2.15", a + 14);
    memset(a + 18, 0, 6);
    inet_pton(AF_INET, target, a + 24);
    return 14 + 28;
}

/* A guest's TCP segment with no payload and no ACK. */
static size_t tcp_segment(uint8_t *f, const uint8_t dst_mac[6], const char *dst, uint16_t sport, uint16_t dport,
                          uint8_t seq, uint8_t flags)
{
    memset(f, 0, 14 + 20 + 20);
    memcpy(f, dst_mac, 6);
    memcpy(f + 6, guest_mac, 6);
    put16(f + 12, 0x0800);
    uint8_t *ip = f + 14, *t = ip + 20;
    ip[0] = 0x45;
    put16(ip + 2, 40);
    ip[8] = 64;
    ip[9] = 6;
    inet_pton(AF_INET, "10.0.2.15", ip + 12);
    inet_pton(AF_INET, dst, ip + 16);
    put16(ip + 10, checksum(0, ip, 20));
    put16(t, sport);
    put16(t + 2, dport);
    t[7] = seq;
    t[12] = 5 << 4;
    t[13] = flags;
    put16(t + 14, 65535);
    uint8_t pseudo[12] = { 0 };
    memcpy(pseudo, ip + 12, 8);
    pseudo[9] = 6;
    put16(pseudo + 10, 20);
    uint32_t sum = 0;
    for (size_t i = 0; i < 12; i++)
        sum += i % 2 ? pseudo[i] : (uint32_t)pseudo[i] << 8;
    put16(t + 16, checksum(sum, t, 20));
    return 54;
}

static size_t tcp_syn(uint8_t *f, const uint8_t dst_mac[6], const char *dst, uint16_t sport, uint16_t dport)
{
    return tcp_segment(f, dst_mac, dst, sport, dport, 1, 0x02);
}

/* ---- matchers ------------------------------------------------------------------------- */

static bool is_arp_reply_from(const uint8_t *f, size_t len, const void *arg)
{
    uint8_t want[4];
    inet_pton(AF_INET, arg, want);
    return len >= 42 && get16(f + 12) == 0x0806 && get16(f + 14 + 6) == 2 && !memcmp(f + 14 + 14, want, 4);
}

struct tcp_want {
    uint16_t sport, dport;
    uint8_t flags;
};

static bool is_tcp(const uint8_t *f, size_t len, const void *arg)
{
    const struct tcp_want *w = arg;
    if (len < 54 || get16(f + 12) != 0x0800 || f[14 + 9] != 6)
        return false;
    const uint8_t *t = f + 14 + (f[14] & 0x0f) * 4;
    return get16(t) == w->sport && get16(t + 2) == w->dport && (t[13] & w->flags) == w->flags;
}

/* ---- fixture ------------------------------------------------------------------------- */

static int listen_loopback(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

static uint16_t free_port(void)
{
    uint16_t port;
    close(listen_loopback(&port));
    return port;
}

static struct vm_network *open_network(const char *allow, struct net_ports *ports)
{
    struct net_policy p;
    net_policy_init(&p);
    char why[160];
    if (allow) {
        struct net_rule r;
        assert_true(net_rule_parse(allow, NET_ALLOW, &r, why, sizeof why));
        assert_true(net_policy_add(&p, &r, why, sizeof why));
    }
    struct vm_network_config cfg = { .policy = &p, .ports = ports, .deliver = record, .deliver_ctx = &rec,
                                     .log_fd = -1 };
    struct vm_network *n = NULL;
    sm_error err = { 0 };
    if (vm_network_open(&cfg, &n, &err) != SM_OK)
        fail_msg("vm_network_open: %s", err.message);
    pthread_mutex_lock(&rec.lock);
    rec.count = 0;
    pthread_mutex_unlock(&rec.lock);
    return n;
}

/* The NAT's MAC, from its answer to the guest's ARP for the gateway. */
static void learn_gateway(struct vm_network *n, uint8_t mac[6])
{
    uint8_t f[64], got[1514];
    size_t len;
    vm_network_send(n, f, arp_request(f, "10.0.2.2"));
    assert_true(wait_frame(is_arp_reply_from, "10.0.2.2", got, &len));
    memcpy(mac, got + 6, 6);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_arp_answered(void **state)
{
    (void)state;
    struct vm_network *n = open_network(NULL, NULL);
    uint8_t mac[6];
    learn_gateway(n, mac);
    vm_network_close(n);
}

/* An allowed port of the host's loopback: the NAT connects to it and the
 * guest gets its SYN-ACK; the listener sees the connection. */
static void test_allowed_host_port_connects(void **state)
{
    (void)state;
    uint16_t port;
    int lfd = listen_loopback(&port);
    char allow[32];
    snprintf(allow, sizeof allow, "10.0.2.2:%u", port);
    struct vm_network *n = open_network(allow, NULL);
    uint8_t mac[6], f[64];
    learn_gateway(n, mac);
    vm_network_send(n, f, tcp_syn(f, mac, "10.0.2.2", 41000, port));
    struct tcp_want w = { .sport = port, .dport = 41000, .flags = 0x12 };
    assert_true(wait_frame(is_tcp, &w, NULL, NULL));
    struct pollfd p = { .fd = lfd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    int c = accept(lfd, NULL, NULL);
    assert_true(c >= 0);
    close(c);
    vm_network_close(n);
    close(lfd);
}

/* Another port of the host: the filter answers with a RST at once, the
 * NAT never sees it, and nothing connects to the listener. */
static void test_denied_host_port_reset(void **state)
{
    (void)state;
    uint16_t port;
    int lfd = listen_loopback(&port);
    struct vm_network *n = open_network("10.0.2.2:1", NULL);
    uint8_t mac[6], f[64];
    learn_gateway(n, mac);
    vm_network_send(n, f, tcp_syn(f, mac, "10.0.2.2", 41001, port));
    struct tcp_want w = { .sport = port, .dport = 41001, .flags = 0x04 };
    assert_true(wait_frame(is_tcp, &w, NULL, NULL));
    struct vm_network_stats st;
    vm_network_stats(n, &st);
    assert_int_equal(st.refused, 1);
    struct pollfd p = { .fd = lfd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 0), 0);
    vm_network_close(n);
    close(lfd);
}

/* Whether the NAT passed a SYN to the guest's port (a host connection to a
 * published port), in any frame recorded so far or until WAIT_MS. */
static bool saw_syn_to_guest_port(uint16_t dport)
{
    bool seen = false;
    uint64_t give_up = clock_now_ms() + WAIT_MS;
    while (!seen && clock_now_ms() < give_up) {
        pthread_mutex_lock(&rec.lock);
        for (size_t i = 0; i < rec.count && !seen; i++) {
            const uint8_t *t = rec.frames[i] + 34;
            seen = rec.lens[i] >= 54 && get16(rec.frames[i] + 12) == 0x0800 && rec.frames[i][23] == 6 &&
                   get16(t + 2) == dport && (t[13] & 0x02);
        }
        pthread_mutex_unlock(&rec.lock);
        clock_sleep_ms(10);
    }
    return seen;
}

/* Connects to the host's loopback port, without waiting for the answer. */
static int connect_loopback(uint16_t port)
{
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int r = connect(c, (struct sockaddr *)&a, sizeof a);
    assert_true(r == 0 || errno == EINPROGRESS);
    return c;
}

/* -p HOSTPORT:80: a connection to the host port reaches the guest as a SYN
 * to port 80 (the guest's address, 10.0.2.15, learned from its ARP). */
static void test_published_port(void **state)
{
    (void)state;
    uint16_t host_port = free_port();
    char text[32];
    snprintf(text, sizeof text, "%u:80", host_port);
    struct net_ports ports = { 0 };
    char why[160];
    assert_true(net_ports_add(&ports, text, why, sizeof why));
    struct vm_network *n = open_network(NULL, &ports);
    uint8_t mac[6];
    learn_gateway(n, mac);
    int c = connect_loopback(host_port);
    assert_true(saw_syn_to_guest_port(80));
    close(c);
    vm_network_close(n);
}

/* A port the host cannot give (already taken) is an error naming it. */
static void test_published_port_in_use(void **state)
{
    (void)state;
    uint16_t port;
    int lfd = listen_loopback(&port);
    char text[32], why[160];
    snprintf(text, sizeof text, "%u:80", port);
    struct net_ports ports = { 0 };
    assert_true(net_ports_add(&ports, text, why, sizeof why));
    struct net_policy p;
    net_policy_init(&p);
    struct vm_network_config cfg = { .policy = &p, .ports = &ports, .deliver = record, .deliver_ctx = &rec,
                                     .log_fd = -1 };
    struct vm_network *n = NULL;
    sm_error err = { 0 };
    assert_int_equal(vm_network_open(&cfg, &n, &err), SM_E_IO);
    assert_null(n);
    assert_non_null(strstr(err.message, text));
    close(lfd);
}

/* A port published while the network runs (sm_vm_expose_tcp's path)
 * reaches the guest as -p does; the same host side twice, or a spec that
 * does not parse, is refused. */
static void test_publish_while_running(void **state)
{
    (void)state;
    struct vm_network *n = open_network(NULL, NULL);
    uint8_t mac[6];
    learn_gateway(n, mac);
    uint16_t host_port = free_port();
    char text[32];
    snprintf(text, sizeof text, "%u:8080", host_port);
    sm_error err = { 0 };
    assert_int_equal(vm_network_publish(n, text, &err), SM_OK);
    int c = connect_loopback(host_port);
    assert_true(saw_syn_to_guest_port(8080));
    close(c);
    assert_int_equal(vm_network_publish(n, text, &err), SM_E_INVALID);
    assert_int_equal(vm_network_publish(n, "80", &err), SM_E_INVALID);
    vm_network_close(n);
}

/* VM_NETWORK_MAX_SOCKETS guest connections hold that many sockets of the
 * NAT; the next SYN is refused with a RST (the NAT never sees it), and the
 * refusal is counted as nat_full. */
static void test_full_nat_refuses_new_flows(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 2 * VM_NETWORK_MAX_SOCKETS), 0);
    socklen_t l = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &l);
    uint16_t port = ntohs(a.sin_port);
    char allow[32];
    snprintf(allow, sizeof allow, "10.0.2.2:%u", port);
    struct vm_network *n = open_network(allow, NULL);
    uint8_t mac[6], f[64];
    learn_gateway(n, mac);
    for (uint16_t i = 0; i < VM_NETWORK_MAX_SOCKETS; i++) {
        pthread_mutex_lock(&rec.lock);
        rec.count = 0;
        pthread_mutex_unlock(&rec.lock);
        uint16_t sport = (uint16_t)(42000 + i);
        vm_network_send(n, f, tcp_syn(f, mac, "10.0.2.2", sport, port));
        struct tcp_want w = { .sport = port, .dport = sport, .flags = 0x12 };
        if (!wait_frame(is_tcp, &w, NULL, NULL))
            fail_msg("no SYN-ACK for connection %u", (unsigned)i);
    }
    uint16_t sport = 42000 + VM_NETWORK_MAX_SOCKETS;
    vm_network_send(n, f, tcp_syn(f, mac, "10.0.2.2", sport, port));
    struct tcp_want rst = { .sport = port, .dport = sport, .flags = 0x04 };
    bool refused = wait_frame(is_tcp, &rst, NULL, NULL);
    struct vm_network_stats st;
    vm_network_stats(n, &st);
    assert_true(refused);
    assert_int_equal(st.nat_full, 1);
    /* The guest resets its first connection: its socket is freed, and a new
     * connection has room again. */
    vm_network_send(n, f, tcp_segment(f, mac, "10.0.2.2", 42000, port, 2, 0x04));
    uint16_t again = 43000;
    vm_network_send(n, f, tcp_syn(f, mac, "10.0.2.2", again, port));
    struct tcp_want ok = { .sport = port, .dport = again, .flags = 0x12 };
    assert_true(wait_frame(is_tcp, &ok, NULL, NULL));
    vm_network_close(n);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arp_answered),
        cmocka_unit_test(test_allowed_host_port_connects),
        cmocka_unit_test(test_denied_host_port_reset),
        cmocka_unit_test(test_published_port),
        cmocka_unit_test(test_published_port_in_use),
        cmocka_unit_test(test_publish_while_running),
        cmocka_unit_test(test_full_nat_refuses_new_flows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
