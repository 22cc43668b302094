/*
 * The guest network's policy, for both sides of the VMM's process boundary:
 * the library and CLI parse and check the user's flags before any VM starts,
 * pass them to the VMM as arguments, and the VMM's NAT (libslirp) asks
 * net_policy_allows() for every connection the guest opens. Pure: no
 * sockets, no name lookups.
 *
 *   flag                              meaning
 *   --allow ADDR[/PREFIX][:PORT]      allow these destinations (repeatable)
 *   --deny ADDR[/PREFIX][:PORT]       deny these destinations (repeatable)
 *   --net off                         no network device at all
 *   -p [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]
 *                                     publish a guest port on the host
 *
 * ADDR is an address, never a host name: the library resolves names to
 * addresses before it builds rules. IPv4 is a.b.c.d; IPv6 goes in brackets
 * when a port follows ([2001:db8::1]/64:443, [::1]:8080), and may go without
 * them otherwise (fc00::/7). PREFIX defaults to the whole address (32 or 128)
 * and ADDR must have no bits set past it: 10.0.0.1/8 is refused (did the user
 * mean 10.0.0.0/8 or 10.0.0.1/32?) rather than quietly widened. PORT is
 * 1-65535, or absent for every port; a rule names no protocol, its port is
 * TCP's and UDP's alike.
 *
 * How a destination is judged (net_policy_allows):
 *   1. an IPv6 address that embeds an IPv4 one (::ffff:a.b.c.d, and NAT64's
 *      64:ff9b::a.b.c.d) is judged as that IPv4 address, by the rules and
 *      the defaults alike; so IPv6 rules inside those two ranges are refused
 *      (write them as IPv4), and IPv6 rules around them never match them;
 *   2. the first of the user's rules that matches decides, in the order given;
 *   3. otherwise the defaults (table below, net_defaults()) decide: the first
 *      row that matches;
 *   4. otherwise allowed: the public internet.
 * A rule with a port matches only destinations with that port; traffic without
 * ports (ICMP, asked about with port 0) matches only rules without one.
 *
 * Defaults (the guest sees the host through the NAT's own addresses, which
 * libslirp also uses: 10.0.2.2 and fec0::2 are the host's loopback):
 *
 *   destination                 decision  why
 *   10.0.2.3/32 port 53         allow     the NAT's DNS resolver (NET_NAT_DNS4)
 *   fec0::3/128 port 53         allow     the NAT's DNS resolver (NET_NAT_DNS6)
 *   10.0.2.2/32                 deny      the host, through the NAT (NET_NAT_HOST4)
 *   fec0::2/128                 deny      the host, through the NAT (NET_NAT_HOST6)
 *   127.0.0.0/8, ::1/128        deny      loopback
 *   0.0.0.0/8, ::/128           deny      unspecified ("this network")
 *   ::/96                       deny      IPv4-compatible IPv6 (deprecated)
 *   169.254.0.0/16, fe80::/10   deny      link-local (169.254.169.254: cloud metadata)
 *   fec0::/10                   deny      site-local (deprecated; the NAT's IPv6 network)
 *   10.0.0.0/8                  deny      private (RFC 1918)
 *   172.16.0.0/12               deny      private (RFC 1918)
 *   192.168.0.0/16              deny      private (RFC 1918)
 *   100.64.0.0/10               deny      shared address space (carrier-grade NAT)
 *   fc00::/7                    deny      unique local
 *   192.0.0.0/24                deny      IETF protocol assignments
 *   198.18.0.0/15               deny      benchmarking (used as private space)
 *   224.0.0.0/4, ff00::/8       deny      multicast
 *   255.255.255.255/32          deny      broadcast
 *   240.0.0.0/4                 deny      reserved
 *   64:ff9b:1::/48              deny      local-use NAT64 (embeds private IPv4)
 *   2002::/16                   deny      6to4 (deprecated; embeds any IPv4)
 *   anything else               allow     the public internet
 *
 * A user rule comes first, so `--allow 10.0.2.2:8080` opens that one port of
 * the host, and `--deny 203.0.113.0/24` closes part of the internet.
 */
#ifndef SM_PROTOCOL_NET_POLICY_H
#define SM_PROTOCOL_NET_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h> /* AF_INET, AF_INET6: the families used here */

/* ---- the NAT's addresses, as the guest sees them (libslirp's defaults) ---- */

#define NET_NAT_HOST4 "10.0.2.2" /* the host's loopback */
#define NET_NAT_DNS4 "10.0.2.3"  /* the NAT's DNS resolver */
#define NET_NAT_HOST6 "fec0::2"
#define NET_NAT_DNS6 "fec0::3"
#define NET_DNS_PORT 53

/* ---- limits ------------------------------------------------------------- */

#define NET_POLICY_MAX_RULES 64
#define NET_MAX_PORTS 32
/* The longest rule or port text the formatters write, NUL included:
 * "[" 45 "]/128:65535" and "[" 45 "]:65535:65535/tcp". */
#define NET_RULE_TEXT_MAX 64
#define NET_PORT_TEXT_MAX 72

/* The VMM's option names for the policy (argv pairs, see net_policy_argv). */
#define NET_OPT_ALLOW "--allow"
#define NET_OPT_DENY "--deny"
#define NET_OPT_NET "--net" /* value "off"; absent: on */

/* ---- rules ---------------------------------------------------------------- */

enum net_action { NET_DENY, NET_ALLOW };

struct net_rule {
    enum net_action action;
    int family;        /* AF_INET or AF_INET6 */
    uint8_t addr[16];  /* network byte order; IPv4 in the first 4, the rest 0 */
    uint8_t prefix;    /* 0-32 or 0-128 */
    uint16_t port;     /* 0: every port */
};

/* "--allow" or "--deny". */
const char *net_action_option(enum net_action action);

/* One rule's text (without the option) into *out; false with why filled: the
 * option and the text quoted, what is wrong, and what is expected. */
bool net_rule_parse(const char *text, enum net_action action, struct net_rule *out, char *why,
                    size_t whylen);

/* The rule's text, which net_rule_parse reads back to the same rule; false if
 * size is too small (NET_RULE_TEXT_MAX always does) or the rule is not valid. */
bool net_rule_format(const struct net_rule *r, char *buf, size_t size);

bool net_rule_equal(const struct net_rule *a, const struct net_rule *b);

/* ---- the policy ------------------------------------------------------------- */

struct net_policy {
    bool enabled;      /* false: --net off, the guest has no network */
    size_t count;
    struct net_rule rules[NET_POLICY_MAX_RULES]; /* first match wins */
};

/* Enabled, no rules of the user's: the defaults alone. */
void net_policy_init(struct net_policy *p);

/* Appends a rule; false with why when the policy is full. */
bool net_policy_add(struct net_policy *p, const struct net_rule *r, char *why, size_t whylen);

/* The rows of the table above, in order; *count gets their number. */
struct net_default {
    struct net_rule rule;
    const char *what; /* for log lines: "link-local (169.254.169.254: cloud metadata)" */
};
const struct net_default *net_defaults(size_t *count);

/* Whether the guest may reach addr (4 or 16 bytes, by family) at port (0: a
 * destination without ports). A disabled policy, or an unknown family, allows
 * nothing. */
bool net_policy_allows(const struct net_policy *p, int family, const uint8_t *addr, uint16_t port);

/* The same decision, explained for a log line: "203.0.113.7:443 allowed:
 * the public internet", "[::ffff:10.0.2.2]:22 (as 10.0.2.2) denied by
 * default (10.0.2.2): the host, through the NAT", "10.0.2.2:8080 allowed
 * by rule 1 (--allow 10.0.2.2:8080)". Returns the decision. */
bool net_policy_describe(const struct net_policy *p, int family, const uint8_t *addr, uint16_t port,
                         char *buf, size_t size);

/* ---- the policy as the VMM's arguments -------------------------------------- */

/* argv pairs in the rules' order: "--allow", "TEXT", "--deny", "TEXT", ...,
 * then "--net", "off" when disabled; NULL-ended. Pointers into out itself.
 * False, with nothing to pass on, when a rule was not made by net_rule_parse
 * or net_policy_add and is not valid. */
#define NET_POLICY_ARGV_MAX (2 * NET_POLICY_MAX_RULES + 3)
struct net_policy_argv {
    char *argv[NET_POLICY_ARGV_MAX];
    int argc;
    char text[NET_POLICY_MAX_RULES][NET_RULE_TEXT_MAX];
};
bool net_policy_argv(const struct net_policy *p, struct net_policy_argv *out);

/* One option of the VMM's command line, for its argument parser: name is
 * "--allow", "--deny" or "--net" (NET_OPT_*). Returns 1 when taken into p, 0
 * when name is none of these (not ours), -1 with why for a bad value or a full
 * policy. */
int net_policy_take_option(struct net_policy *p, const char *name, const char *value, char *why,
                           size_t whylen);

/* A whole list of such pairs (argc even), as net_policy_argv writes them, into
 * a fresh policy; false with why. */
bool net_policy_parse_argv(struct net_policy *p, int argc, char *const *argv, char *why, size_t whylen);

/* ---- published ports (-p) ------------------------------------------------------- */

enum net_proto { NET_TCP, NET_UDP };

struct net_port {
    int family;             /* of the host address: AF_INET or AF_INET6 */
    uint8_t host_addr[16];  /* default 127.0.0.1: only this host */
    uint16_t host_port;     /* 1-65535 */
    uint16_t guest_port;    /* 1-65535 */
    enum net_proto proto;   /* default TCP */
};

/* "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]", HOSTIP IPv4 or bracketed IPv6;
 * false with why (the text quoted, what is expected). */
bool net_port_parse(const char *text, struct net_port *out, char *why, size_t whylen);

/* Always with the host address: "127.0.0.1:8080:80", "[::1]:53:53/udp". */
bool net_port_format(const struct net_port *p, char *buf, size_t size);

bool net_port_equal(const struct net_port *a, const struct net_port *b);

struct net_ports {
    size_t count;
    struct net_port ports[NET_MAX_PORTS];
};

/* Parses text and appends it; false with why when it does not parse, when
 * the list is full, or when its host side (address, port, protocol) is
 * already published. */
bool net_ports_add(struct net_ports *list, const char *text, char *why, size_t whylen);

#endif
