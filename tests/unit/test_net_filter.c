/*
 * The egress policy at the wire (src/vmm/net_filter.c): which of the guest's
 * frames reach the NAT, and the refusals a denied connection gets back (a
 * TCP RST or an ICMP "administratively prohibited", checksums verified
 * here independently).
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/net_filter.h"

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t nat_mac[6] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 };

struct frame {
    uint8_t b[1600];
    size_t len;
};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The one's-complement sum a receiver checks: 0xffff when the checksum in
 * the data is right. */
static uint16_t ones_sum(uint32_t sum, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        sum += i % 2 ? p[i] : (uint32_t)p[i] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* Ethernet + IPv4 (no options) from 10.0.2.15 to dst, proto, with room for
 * l4len bytes of transport, which the caller fills. */
static uint8_t *ipv4_frame(struct frame *f, const char *dst, uint8_t proto, size_t l4len)
{
    memset(f, 0, sizeof *f);
    memcpy(f->b, nat_mac, 6);
    memcpy(f->b + 6, guest_mac, 6);
    put16(f->b + 12, 0x0800);
    uint8_t *ip = f->b + 14;
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + l4len));
    ip[8] = 64;
    ip[9] = proto;
    inet_pton(AF_INET, "10.0.2.15", ip + 12);
    assert_int_equal(inet_pton(AF_INET, dst, ip + 16), 1);
    f->len = 14 + 20 + l4len;
    return ip + 20;
}

static void tcp_frame(struct frame *f, const char *dst, uint16_t port, uint8_t flags, uint32_t seq, size_t payload)
{
    uint8_t *t = ipv4_frame(f, dst, 6, 20 + payload);
    put16(t, 40000);
    put16(t + 2, port);
    t[4] = (uint8_t)(seq >> 24), t[5] = (uint8_t)(seq >> 16), t[6] = (uint8_t)(seq >> 8), t[7] = (uint8_t)seq;
    t[12] = 5 << 4;
    t[13] = flags;
}

static void udp_frame(struct frame *f, const char *dst, uint16_t port)
{
    uint8_t *u = ipv4_frame(f, dst, 17, 8 + 4);
    put16(u, 40001);
    put16(u + 2, port);
    put16(u + 4, 12);
    memcpy(u + 8, "ping", 4);
}

static struct net_policy policy;
static struct net_ports ports;

static int setup(void **state)
{
    (void)state;
    net_policy_init(&policy);
    struct net_rule r;
    char why[128];
    assert_true(net_rule_parse("10.0.2.2:8080", NET_ALLOW, &r, why, sizeof why));
    assert_true(net_policy_add(&policy, &r, why, sizeof why));
    assert_true(net_ports_add(&ports, "5353:53/udp", why, sizeof why));
    return 0;
}

static enum net_verdict judge(const struct frame *f)
{
    return net_filter_judge(&policy, &ports, f->b, f->len);
}

static void test_public_internet_passes(void **state)
{
    (void)state;
    struct frame f;
    tcp_frame(&f, "1.1.1.1", 443, 0x02, 1000, 0);
    assert_int_equal(judge(&f), NET_VERDICT_PASS);
    udp_frame(&f, "8.8.8.8", 53);
    assert_int_equal(judge(&f), NET_VERDICT_PASS);
    udp_frame(&f, "10.0.2.3", 53); /* the NAT's resolver */
    assert_int_equal(judge(&f), NET_VERDICT_PASS);
    ipv4_frame(&f, "1.1.1.1", 1, 8); /* ICMP echo */
    assert_int_equal(judge(&f), NET_VERDICT_PASS);
}

static void test_allowed_host_port_only(void **state)
{
    (void)state;
    struct frame f;
    tcp_frame(&f, "10.0.2.2", 8080, 0x02, 1, 0);
    assert_int_equal(judge(&f), NET_VERDICT_PASS);
    tcp_frame(&f, "10.0.2.2", 8081, 0x02, 1, 0);
    assert_int_equal(judge(&f), NET_VERDICT_REFUSE);
    tcp_frame(&f, "127.0.0.1", 8080, 0x02, 1, 0);
    assert_int_equal(judge(&f), NET_VERDICT_REFUSE);
}

static void test_denied_ranges_refused(void **state)
{
    (void)state;
    const char *denied[] = { "169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1" };
    struct frame f;
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        tcp_frame(&f, denied[i], 80, 0x02, 1, 0);
        assert_int_equal(judge(&f), NET_VERDICT_REFUSE);
        udp_frame(&f, denied[i], 53);
        assert_int_equal(judge(&f), NET_VERDICT_REFUSE);
        ipv4_frame(&f, denied[i], 1, 8);
        assert_int_equal(judge(&f), NET_VERDICT_DROP); /* ICMP: no error about an error */
    }
}

/* A SYN to a denied port gets RST|ACK acknowledging it; a segment with an
 * ACK gets a RST carrying that ACK as its sequence (RFC 793). */
static void test_tcp_reset(void **state)
{
    (void)state;
    struct frame f;
    uint8_t out[NET_REFUSAL_MAX];
    tcp_frame(&f, "169.254.169.254", 80, 0x02, 0x01020304, 0);
    size_t n = net_filter_refusal(f.b, f.len, out);
    assert_int_equal(n, 14 + 20 + 20);
    assert_memory_equal(out, guest_mac, 6);
    assert_memory_equal(out + 6, nat_mac, 6);
    const uint8_t *ip = out + 14, *t = ip + 20;
    assert_int_equal(ones_sum(0, ip, 20), 0xffff);
    assert_memory_equal(ip + 12, f.b + 14 + 16, 4); /* from the destination */
    assert_memory_equal(ip + 16, f.b + 14 + 12, 4); /* to the guest */
    assert_int_equal(get16(t), 80);
    assert_int_equal(get16(t + 2), 40000);
    assert_int_equal(t[13], 0x04 | 0x10);
    assert_int_equal(get32(t + 8), 0x01020305);
    uint8_t pseudo[12] = { 0 };
    memcpy(pseudo, ip + 12, 8);
    pseudo[9] = 6;
    put16(pseudo + 10, 20);
    assert_int_equal(ones_sum(ones_sum(0, pseudo, 12), t, 20), 0xffff);

    tcp_frame(&f, "10.9.9.9", 22, 0x10 | 0x08, 7, 5); /* ACK+PSH with 5 bytes */
    uint8_t *in = f.b + 14 + 20;
    in[8] = 0xaa, in[9] = 0xbb, in[10] = 0xcc, in[11] = 0xdd;
    n = net_filter_refusal(f.b, f.len, out);
    assert_int_equal(n, 54);
    assert_int_equal(out[14 + 20 + 13], 0x04);
    assert_int_equal(get32(out + 14 + 20 + 4), 0xaabbccdd);
}

static void test_udp_refused_with_icmp(void **state)
{
    (void)state;
    struct frame f;
    uint8_t out[NET_REFUSAL_MAX];
    udp_frame(&f, "192.168.0.10", 5353);
    assert_int_equal(judge(&f), NET_VERDICT_REFUSE);
    size_t n = net_filter_refusal(f.b, f.len, out);
    assert_int_equal(n, 14 + 20 + 8 + 20 + 8);
    const uint8_t *ip = out + 14, *m = ip + 20;
    assert_int_equal(ip[9], 1);
    assert_int_equal(ones_sum(0, ip, 20), 0xffff);
    assert_int_equal(m[0], 3);
    assert_int_equal(m[1], 13);
    assert_int_equal(ones_sum(0, m, n - 34), 0xffff);
    assert_memory_equal(m + 8, f.b + 14, 28); /* the refused header and 8 bytes */
}

static void test_rst_never_answered(void **state)
{
    (void)state;
    struct frame f;
    uint8_t out[NET_REFUSAL_MAX];
    tcp_frame(&f, "10.1.1.1", 80, 0x04, 1, 0);
    assert_int_equal(judge(&f), NET_VERDICT_PASS); /* opens nothing: the NAT's */
    assert_int_equal(net_filter_refusal(f.b, f.len, out), 0);
    tcp_frame(&f, "10.1.1.1", 80, 0x02 | 0x04, 1, 0); /* SYN+RST: judged, denied, not answered */
    assert_int_equal(judge(&f), NET_VERDICT_DROP);
    assert_int_equal(net_filter_refusal(f.b, f.len, out), 0);
}

static void test_malformed_dropped(void **state)
{
    (void)state;
    struct frame f;
    tcp_frame(&f, "1.1.1.1", 443, 0x02, 1, 0);
    assert_int_equal(net_filter_judge(&policy, &ports, f.b, 13), NET_VERDICT_DROP);   /* no Ethernet header */
    assert_int_equal(net_filter_judge(&policy, &ports, f.b, 14 + 19), NET_VERDICT_DROP); /* IP header cut */
    f.b[14] = 0x44;                                                          /* IHL 4: below 20 bytes */
    assert_int_equal(judge(&f), NET_VERDICT_DROP);
    f.b[14] = 0x4f;                                                          /* IHL 15: past the frame */
    assert_int_equal(judge(&f), NET_VERDICT_DROP);
    f.b[14] = 0x65;                                                          /* version 6 in an IPv4 frame */
    assert_int_equal(judge(&f), NET_VERDICT_DROP);
    f.b[14] = 0x45;
    put16(f.b + 14 + 2, 2000);                                               /* total length past the frame */
    assert_int_equal(judge(&f), NET_VERDICT_DROP);
    put16(f.b + 14 + 2, 20 + 10);                                            /* TCP header cut to 10 bytes */
    assert_int_equal(judge(&f), NET_VERDICT_DROP);
    put16(f.b + 12, 0x86dd);                                                 /* IPv6: the NAT runs IPv4 */
    assert_int_equal(judge(&f), NET_VERDICT_DROP);
    put16(f.b + 12, 0x0806);                                                 /* ARP passes */
    assert_int_equal(judge(&f), NET_VERDICT_PASS);
}

/* A later fragment has no ports: judged by its address alone. */
static void test_later_fragments(void **state)
{
    (void)state;
    struct frame f;
    uint8_t out[NET_REFUSAL_MAX];
    tcp_frame(&f, "1.1.1.1", 443, 0x02, 1, 0);
    put16(f.b + 14 + 6, 0x0010); /* offset 16 * 8 bytes */
    assert_int_equal(judge(&f), NET_VERDICT_PASS);
    tcp_frame(&f, "10.0.2.2", 8080, 0x02, 1, 0); /* allowed only with its port */
    put16(f.b + 14 + 6, 0x0010);
    assert_int_equal(judge(&f), NET_VERDICT_DROP);
    assert_int_equal(net_filter_refusal(f.b, f.len, out), 0);
}

/* Only a SYN opens a connection: the rest of TCP is the NAT's (it resets
 * segments of connections it does not know), and a SYN-ACK answers a
 * connection the host opened through a published port. */
static void test_only_syn_is_judged(void **state)
{
    (void)state;
    struct frame f;
    tcp_frame(&f, "10.0.2.2", 40123, 0x12, 1, 0); /* SYN-ACK to the host */
    assert_int_equal(judge(&f), NET_VERDICT_PASS);
    tcp_frame(&f, "10.0.2.2", 40123, 0x10, 1, 0); /* ACK */
    assert_int_equal(judge(&f), NET_VERDICT_PASS);
    tcp_frame(&f, "10.0.2.2", 40123, 0x02, 1, 0); /* SYN: judged */
    assert_int_equal(judge(&f), NET_VERDICT_REFUSE);
}

/* UDP from a published UDP guest port passes (the service's replies);
 * from any other port it is judged. */
static void test_published_udp_replies(void **state)
{
    (void)state;
    struct frame f;
    udp_frame(&f, "10.0.2.2", 40000);
    put16(f.b + 34, 53);
    assert_int_equal(judge(&f), NET_VERDICT_PASS);
    put16(f.b + 34, 54);
    assert_int_equal(judge(&f), NET_VERDICT_REFUSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_internet_passes),
        cmocka_unit_test(test_allowed_host_port_only),
        cmocka_unit_test(test_denied_ranges_refused),
        cmocka_unit_test(test_tcp_reset),
        cmocka_unit_test(test_udp_refused_with_icmp),
        cmocka_unit_test(test_rst_never_answered),
        cmocka_unit_test(test_malformed_dropped),
        cmocka_unit_test(test_later_fragments),
        cmocka_unit_test(test_only_syn_is_judged),
        cmocka_unit_test(test_published_udp_replies),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
