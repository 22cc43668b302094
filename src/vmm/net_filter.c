#include "vmm/net_filter.h"

#include <stdbool.h>
#include <string.h>

/* Offsets, RFC 791 (IPv4), RFC 793 (TCP), RFC 768 (UDP), RFC 792 (ICMP). */
#define ETH_HLEN 14
#define ETH_TYPE_IPV4 0x0800
#define ETH_TYPE_ARP 0x0806
#define IP_MIN_HLEN 20
#define IP_PROTO_ICMP 1
#define IP_PROTO_TCP 6
#define IP_PROTO_UDP 17
#define IP_FRAG_OFFSET_MASK 0x1fff
#define IP_FLAG_DF 0x4000
#define TCP_MIN_HLEN 20
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define UDP_HLEN 8
#define ICMP_UNREACHABLE 3
#define ICMP_ADMIN_PROHIBITED 13
#define ICMP_HLEN 8
#define ICMP_QUOTED_PAYLOAD 8
#define REPLY_TTL 64

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* An IPv4 packet inside a frame, its lengths checked against the frame. */
struct ipv4 {
    const uint8_t *hdr;  /* the IP header */
    size_t hlen;         /* its length, 20..60 */
    const uint8_t *l4;   /* what follows it */
    size_t l4len;        /* per the total length field, within the frame */
    uint8_t proto;
    bool first_fragment; /* fragment offset 0: the transport header is here */
};

static bool parse_ipv4(const uint8_t *frame, size_t len, struct ipv4 *ip)
{
    if (len < ETH_HLEN + IP_MIN_HLEN)
        return false;
    const uint8_t *h = frame + ETH_HLEN;
    size_t avail = len - ETH_HLEN;
    size_t hlen = (size_t)(h[0] & 0x0f) * 4;
    size_t total = get16(h + 2);
    if ((h[0] >> 4) != 4 || hlen < IP_MIN_HLEN || hlen > avail || total < hlen || total > avail)
        return false;
    *ip = (struct ipv4){ .hdr = h, .hlen = hlen, .l4 = h + hlen, .l4len = total - hlen, .proto = h[9],
                         .first_fragment = (get16(h + 6) & IP_FRAG_OFFSET_MASK) == 0 };
    return true;
}

/* The transport header the verdict needs is whole in the packet. */
static bool ports_readable(const struct ipv4 *ip)
{
    if (ip->proto == IP_PROTO_TCP)
        return ip->l4len >= TCP_MIN_HLEN;
    if (ip->proto == IP_PROTO_UDP)
        return ip->l4len >= UDP_HLEN;
    return true;
}

static bool has_ports(const struct ipv4 *ip)
{
    return ip->first_fragment && (ip->proto == IP_PROTO_TCP || ip->proto == IP_PROTO_UDP);
}

/* A TCP segment that cannot open a connection, or a UDP reply of a
 * published service: not the policy's to judge. */
static bool opens_nothing(const struct ipv4 *ip, const struct net_ports *ports)
{
    if (!ip->first_fragment)
        return false;
    if (ip->proto == IP_PROTO_TCP)
        return (ip->l4[13] & (TCP_SYN | TCP_ACK)) != TCP_SYN;
    if (ip->proto != IP_PROTO_UDP || !ports)
        return false;
    uint16_t from = get16(ip->l4);
    for (size_t i = 0; i < ports->count; i++)
        if (ports->ports[i].proto == NET_UDP && ports->ports[i].guest_port == from)
            return true;
    return false;
}

enum net_verdict net_filter_judge(const struct net_policy *p, const struct net_ports *ports, const uint8_t *frame,
                                  size_t len)
{
    if (len < ETH_HLEN)
        return NET_VERDICT_DROP;
    uint16_t type = get16(frame + 12);
    if (type == ETH_TYPE_ARP)
        return NET_VERDICT_PASS;
    struct ipv4 ip;
    if (type != ETH_TYPE_IPV4 || !parse_ipv4(frame, len, &ip))
        return NET_VERDICT_DROP;
    if (ip.first_fragment && !ports_readable(&ip))
        return NET_VERDICT_DROP;
    if (opens_nothing(&ip, ports))
        return NET_VERDICT_PASS;
    uint16_t port = has_ports(&ip) ? get16(ip.l4 + 2) : 0;
    if (net_policy_allows(p, AF_INET, ip.hdr + 16, port))
        return NET_VERDICT_PASS;
    if (!has_ports(&ip))
        return NET_VERDICT_DROP;
    if (ip.proto == IP_PROTO_TCP && (ip.l4[13] & TCP_RST))
        return NET_VERDICT_DROP; /* a RST is never answered */
    return NET_VERDICT_REFUSE;
}

/* ---- refusals --------------------------------------------------------------- */

/* The Internet checksum (RFC 1071) of data, continuing from sum. */
bool net_filter_opens_flow(const struct net_ports *ports, const uint8_t *frame, size_t len)
{
    struct ipv4 ip;
    if (len < ETH_HLEN || get16(frame + 12) != ETH_TYPE_IPV4 || !parse_ipv4(frame, len, &ip))
        return false;
    return has_ports(&ip) && ports_readable(&ip) && !opens_nothing(&ip, ports);
}

static uint32_t sum_words(uint32_t sum, const uint8_t *data, size_t len)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += get16(data + i);
    if (len & 1)
        sum += (uint32_t)data[len - 1] << 8;
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Ethernet and IPv4 headers of a reply to ip: from its destination back to
 * its source, its MAC addresses swapped. Returns where the payload goes. */
static uint8_t *reply_headers(const uint8_t *frame, const struct ipv4 *ip, uint8_t proto, size_t payload_len,
                              uint8_t *out)
{
    memcpy(out, frame + 6, 6);
    memcpy(out + 6, frame, 6);
    put16(out + 12, ETH_TYPE_IPV4);
    uint8_t *h = out + ETH_HLEN;
    memset(h, 0, IP_MIN_HLEN);
    h[0] = 0x45;
    put16(h + 2, (uint16_t)(IP_MIN_HLEN + payload_len));
    put16(h + 6, IP_FLAG_DF);
    h[8] = REPLY_TTL;
    h[9] = proto;
    memcpy(h + 12, ip->hdr + 16, 4);
    memcpy(h + 16, ip->hdr + 12, 4);
    put16(h + 10, fold(sum_words(0, h, IP_MIN_HLEN)));
    return h + IP_MIN_HLEN;
}

/* RFC 793's reset for a segment to a closed port: if it carried an ACK, the
 * RST takes its sequence from it; else the RST acknowledges the segment. */
static size_t tcp_reset(const uint8_t *frame, const struct ipv4 *ip, uint8_t *out)
{
    const uint8_t *in = ip->l4;
    size_t in_hlen = (size_t)(in[12] >> 4) * 4;
    size_t seg_len = in_hlen >= TCP_MIN_HLEN && in_hlen <= ip->l4len ? ip->l4len - in_hlen : 0;
    uint8_t *t = reply_headers(frame, ip, IP_PROTO_TCP, TCP_MIN_HLEN, out);
    memset(t, 0, TCP_MIN_HLEN);
    memcpy(t, in + 2, 2);
    memcpy(t + 2, in, 2);
    if (in[13] & TCP_ACK) {
        memcpy(t + 4, in + 8, 4);
        t[13] = TCP_RST;
    } else {
        uint32_t ack = get32(in + 4) + (uint32_t)seg_len + !!(in[13] & TCP_SYN) + !!(in[13] & TCP_FIN);
        put32(t + 8, ack);
        t[13] = TCP_RST | TCP_ACK;
    }
    t[12] = (TCP_MIN_HLEN / 4) << 4;
    uint8_t pseudo[12];
    memcpy(pseudo, t - IP_MIN_HLEN + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = IP_PROTO_TCP;
    put16(pseudo + 10, TCP_MIN_HLEN);
    put16(t + 16, fold(sum_words(sum_words(0, pseudo, sizeof pseudo), t, TCP_MIN_HLEN)));
    return ETH_HLEN + IP_MIN_HLEN + TCP_MIN_HLEN;
}

/* ICMP destination unreachable, quoting the refused packet's header and the
 * first 8 bytes after it, as RFC 792 asks, so the guest's stack finds the
 * socket it concerns. */
static size_t icmp_prohibited(const uint8_t *frame, const struct ipv4 *ip, uint8_t *out)
{
    size_t quoted = ip->l4len < ICMP_QUOTED_PAYLOAD ? ip->l4len : ICMP_QUOTED_PAYLOAD;
    size_t icmp_len = ICMP_HLEN + ip->hlen + quoted;
    uint8_t *m = reply_headers(frame, ip, IP_PROTO_ICMP, icmp_len, out);
    memset(m, 0, ICMP_HLEN);
    m[0] = ICMP_UNREACHABLE;
    m[1] = ICMP_ADMIN_PROHIBITED;
    memcpy(m + ICMP_HLEN, ip->hdr, ip->hlen + quoted);
    put16(m + 2, fold(sum_words(0, m, icmp_len)));
    return ETH_HLEN + IP_MIN_HLEN + icmp_len;
}

size_t net_filter_refusal(const uint8_t *frame, size_t len, uint8_t out[NET_REFUSAL_MAX])
{
    struct ipv4 ip;
    if (len < ETH_HLEN || get16(frame + 12) != ETH_TYPE_IPV4 || !parse_ipv4(frame, len, &ip) ||
        !has_ports(&ip) || !ports_readable(&ip))
        return 0;
    if (ip.proto == IP_PROTO_TCP)
        return (ip.l4[13] & TCP_RST) ? 0 : tcp_reset(frame, &ip, out);
    return icmp_prohibited(frame, &ip, out);
}
