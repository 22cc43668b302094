/*
 * The egress policy at the wire: every frame the guest sends is judged here
 * before the NAT (libslirp) sees it, so the guest cannot reach what the
 * policy (src/protocol/net_policy.h) denies, whatever it puts in its frames.
 * Everything in a frame is the guest's and hostile: every length is checked
 * against the frame before it is read.
 *
 *   the guest's frame                                verdict
 *   shorter than an Ethernet header                  drop
 *   ARP                                              pass (the NAT answers for its addresses)
 *   IPv4 whose header or total length does not fit   drop
 *   IPv4 options or a header over 60 bytes           judged as any (IHL is checked)
 *   IPv4 TCP without SYN, or SYN with ACK            pass: no connection starts (the NAT
 *                                                    resets what it does not know; a SYN-ACK
 *                                                    answers a connection from the host, -p)
 *   IPv4 UDP from a published UDP guest port         pass: the service's replies (-p .../udp)
 *   IPv4 TCP SYN, UDP; first fragment, ports read    judged on (destination, port)
 *   IPv4 TCP/UDP, first fragment, ports cut off      drop
 *   IPv4 later fragments, ICMP, other protocols      judged on (destination, port 0)
 *   IPv4 TCP judged denied                           refuse: a TCP RST to the guest
 *   IPv4 UDP judged denied                           refuse: ICMP unreachable, "administratively
 *                                                    prohibited" (code 13), to the guest
 *   IPv4 ICMP or other judged denied                 drop (an error about an error would loop)
 *   IPv6 and every other EtherType                   drop (the NAT runs IPv4 only)
 *
 * A refusal is what a firewall answers, so a denied connect() fails at once
 * with ECONNREFUSED or EHOSTUNREACH instead of hanging until its timeout.
 */
#ifndef SM_VMM_NET_FILTER_H
#define SM_VMM_NET_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/net_policy.h"

enum net_verdict {
    NET_VERDICT_PASS,   /* hand the frame to the NAT */
    NET_VERDICT_DROP,   /* malformed, or denied without a reply */
    NET_VERDICT_REFUSE, /* denied: answer with net_filter_refusal */
};

/* Whether the frame would start a flow of the NAT (a TCP SYN, or UDP, with
 * readable ports: what the policy judges), so that a full NAT can refuse it
 * as the policy refuses. */
bool net_filter_opens_flow(const struct net_ports *ports, const uint8_t *frame, size_t len);

/* The refusal frames' largest size: Ethernet + IPv4 + ICMP + the guest's
 * IPv4 header (60 at most) + 8 bytes of its payload. */
#define NET_REFUSAL_MAX (14 + 20 + 8 + 60 + 8)

/* ports: the published ones (may be NULL). */
enum net_verdict net_filter_judge(const struct net_policy *p, const struct net_ports *ports, const uint8_t *frame,
                                  size_t len);

/* The frame that refuses `frame` (one judged NET_VERDICT_REFUSE): a TCP RST
 * or an ICMP unreachable from the destination to the guest. Returns its
 * length (<= NET_REFUSAL_MAX), or 0 when the frame has nothing to refuse. */
size_t net_filter_refusal(const uint8_t *frame, size_t len, uint8_t out[NET_REFUSAL_MAX]);

#endif
