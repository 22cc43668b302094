#include "protocol/net_policy.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- the defaults (the table in the header, row for row) ------------------- */

#define V4(a, b, c, d) .family = AF_INET, .addr = { a, b, c, d }
#define V6(...) .family = AF_INET6, .addr = { __VA_ARGS__ }

static const struct net_default defaults[] = {
    { { NET_ALLOW, V4(10, 0, 2, 3), .prefix = 32, .port = NET_DNS_PORT }, "the NAT's DNS resolver" },
    { { NET_ALLOW, V6(0xfe, 0xc0, [15] = 3), .prefix = 128, .port = NET_DNS_PORT }, "the NAT's DNS resolver" },
    { { NET_DENY, V4(10, 0, 2, 2), .prefix = 32 }, "the host, through the NAT" },
    { { NET_DENY, V6(0xfe, 0xc0, [15] = 2), .prefix = 128 }, "the host, through the NAT" },
    { { NET_DENY, V4(127, 0, 0, 0), .prefix = 8 }, "loopback" },
    { { NET_DENY, V6([15] = 1), .prefix = 128 }, "loopback" },
    { { NET_DENY, V4(0, 0, 0, 0), .prefix = 8 }, "unspecified (\"this network\")" },
    { { NET_DENY, V6(0), .prefix = 128 }, "unspecified" },
    { { NET_DENY, V6(0), .prefix = 96 }, "IPv4-compatible IPv6 (deprecated)" },
    { { NET_DENY, V4(169, 254, 0, 0), .prefix = 16 }, "link-local (169.254.169.254: cloud metadata)" },
    { { NET_DENY, V6(0xfe, 0x80), .prefix = 10 }, "link-local" },
    { { NET_DENY, V6(0xfe, 0xc0), .prefix = 10 }, "site-local (deprecated; the NAT's IPv6 network)" },
    { { NET_DENY, V4(10, 0, 0, 0), .prefix = 8 }, "private (RFC 1918)" },
    { { NET_DENY, V4(172, 16, 0, 0), .prefix = 12 }, "private (RFC 1918)" },
    { { NET_DENY, V4(192, 168, 0, 0), .prefix = 16 }, "private (RFC 1918)" },
    { { NET_DENY, V4(100, 64, 0, 0), .prefix = 10 }, "shared address space (carrier-grade NAT)" },
    { { NET_DENY, V6(0xfc), .prefix = 7 }, "unique local" },
    { { NET_DENY, V4(192, 0, 0, 0), .prefix = 24 }, "IETF protocol assignments" },
    { { NET_DENY, V4(198, 18, 0, 0), .prefix = 15 }, "benchmarking (used as private space)" },
    { { NET_DENY, V4(224, 0, 0, 0), .prefix = 4 }, "multicast" },
    { { NET_DENY, V6(0xff), .prefix = 8 }, "multicast" },
    { { NET_DENY, V4(255, 255, 255, 255), .prefix = 32 }, "broadcast" },
    { { NET_DENY, V4(240, 0, 0, 0), .prefix = 4 }, "reserved" },
    { { NET_DENY, V6(0x00, 0x64, 0xff, 0x9b, 0x00, 0x01), .prefix = 48 }, "local-use NAT64 (embeds private IPv4)" },
    { { NET_DENY, V6(0x20, 0x02), .prefix = 16 }, "6to4 (deprecated; embeds any IPv4)" },
};

const struct net_default *net_defaults(size_t *count)
{
    *count = sizeof defaults / sizeof defaults[0];
    return defaults;
}

/* IPv6 ranges whose last 32 bits are an IPv4 address that the traffic really
 * goes to: judged as that address, so that ::ffff:10.0.2.2 is the host too. */
static const uint8_t embeds_ipv4[][12] = {
    { [10] = 0xff, [11] = 0xff },  /* ::ffff:0:0/96, IPv4-mapped */
    { 0x00, 0x64, 0xff, 0x9b },    /* 64:ff9b::/96, NAT64's well-known prefix */
};

/* ---- small helpers ------------------------------------------------------------ */

static unsigned family_bits(int family)
{
    return family == AF_INET ? 32 : family == AF_INET6 ? 128 : 0;
}

static bool prefix_matches(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return ((a[whole] ^ b[whole]) & mask) == 0;
}

static bool host_bits_clear(const uint8_t *addr, unsigned prefix, unsigned bits)
{
    for (unsigned bit = prefix; bit < bits; bit++)
        if (addr[bit / 8] & (0x80 >> (bit % 8)))
            return false;
    return true;
}

static void clear_host_bits(uint8_t *addr, unsigned prefix, unsigned bits)
{
    for (unsigned bit = prefix; bit < bits; bit++)
        addr[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
}

/* Whether an IPv6 prefix lies inside a range judged as IPv4 (then it could
 * never match anything). */
static bool inside_embedding_range(const uint8_t *addr, unsigned prefix)
{
    if (prefix < 96)
        return false;
    for (size_t i = 0; i < sizeof embeds_ipv4 / sizeof embeds_ipv4[0]; i++)
        if (!memcmp(addr, embeds_ipv4[i], 12))
            return true;
    return false;
}

/* Digits only (no sign, no space), 1..max; false otherwise. */
static bool parse_number(const char *s, size_t len, unsigned max, unsigned *out)
{
    if (len == 0 || len > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* What a parser is reading, for its messages: "--deny '10.0.0.1/8': ...". */
struct reading {
    const char *option;
    const char *text;
    char *why;
    size_t whylen;
};

__attribute__((format(printf, 2, 3))) static bool fail(const struct reading *r, const char *fmt, ...)
{
    if (!r->why || !r->whylen)
        return false;
    int n = snprintf(r->why, r->whylen, "%s '%.100s': ", r->option, r->text);
    if (n < 0 || (size_t)n >= r->whylen)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why + n, r->whylen - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

/* An address's text (len bytes of s) into family and addr. */
static bool parse_address(const struct reading *r, const char *s, size_t len, int *family, uint8_t *addr)
{
    char text[INET6_ADDRSTRLEN];
    if (len == 0)
        return fail(r, "the address is missing");
    if (len >= sizeof text)
        return fail(r, "'%.*s' is too long for an IP address", (int)len, s);
    memcpy(text, s, len);
    text[len] = 0;
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, text, addr) == 1)
        *family = AF_INET;
    else if (inet_pton(AF_INET6, text, addr) == 1)
        *family = AF_INET6;
    else
        return fail(r, "'%s' is not an IPv4 (a.b.c.d) or IPv6 address (host names are resolved "
                       "before rules are made)", text);
    return true;
}

static bool parse_port(const struct reading *r, const char *what, const char *s, size_t len, uint16_t *port)
{
    unsigned v;
    if (!parse_number(s, len, 65535, &v) || v == 0)
        return fail(r, "%s '%.*s' is not a port number (1-65535)", what, (int)len, s);
    *port = (uint16_t)v;
    return true;
}

static int address_text(int family, const uint8_t *addr, bool bracket, char *buf, size_t size)
{
    char text[INET6_ADDRSTRLEN];
    if (!inet_ntop(family, addr, text, sizeof text))
        return -1;
    bracket = bracket && family == AF_INET6;
    return snprintf(buf, size, "%s%s%s", bracket ? "[" : "", text, bracket ? "]" : "");
}

/* ---- rules ------------------------------------------------------------------------ */

const char *net_action_option(enum net_action action)
{
    return action == NET_ALLOW ? NET_OPT_ALLOW : NET_OPT_DENY;
}

#define RULE_SYNTAX "expected ADDR[/PREFIX][:PORT], with an IPv6 ADDR in brackets before a port"

/* Where the address ends in a rule's text: after "]" if bracketed; else,
 * for IPv6 (two colons or more), at "/" (a colon is the address's own); for
 * IPv4 at "/" or ":". *start and *len get the address itself. */
static bool find_rule_address(const struct reading *r, const char **start, size_t *len, const char **rest)
{
    const char *text = r->text;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close)
            return fail(r, "'[' without ']'; " RULE_SYNTAX);
        *start = text + 1;
        *len = (size_t)(close - text - 1);
        *rest = close + 1;
        return true;
    }
    size_t head = strcspn(text, "/");
    const char *colon = memchr(text, ':', head);
    bool ipv6 = colon && memchr(colon + 1, ':', head - (size_t)(colon - text) - 1);
    *start = text;
    *len = ipv6 ? head : strcspn(text, "/:");
    *rest = text + *len;
    if (ipv6 && strchr(*rest, ':'))
        return fail(r, "a port after an IPv6 address needs the address in brackets, as in [2001:db8::1]/64:443");
    return true;
}

/* "/PREFIX" and ":PORT", both optional, in that order. */
static bool parse_rule_tail(const struct reading *r, const char *rest, struct net_rule *out)
{
    unsigned bits = family_bits(out->family);
    out->prefix = (uint8_t)bits;
    if (*rest == '/') {
        size_t len = strcspn(rest + 1, ":");
        unsigned v;
        if (!parse_number(rest + 1, len, bits, &v))
            return fail(r, "prefix '/%.*s' is not a number from 0 to %u", (int)len, rest + 1, bits);
        out->prefix = (uint8_t)v;
        rest += 1 + len;
    }
    if (*rest == ':')
        return parse_port(r, "port", rest + 1, strlen(rest + 1), &out->port);
    if (*rest)
        return fail(r, "unexpected '%s' after the address; " RULE_SYNTAX, rest);
    return true;
}

/* The rule's meaning, beyond its syntax: no bits past the prefix, nothing
 * that could never match. */
static bool check_rule(const struct reading *r, const struct net_rule *rule)
{
    unsigned bits = family_bits(rule->family);
    char addr[INET6_ADDRSTRLEN], network[INET6_ADDRSTRLEN];
    inet_ntop(rule->family, rule->addr, addr, sizeof addr);
    if (!host_bits_clear(rule->addr, rule->prefix, bits)) {
        uint8_t masked[16];
        memcpy(masked, rule->addr, sizeof masked);
        clear_host_bits(masked, rule->prefix, bits);
        inet_ntop(rule->family, masked, network, sizeof network);
        return fail(r, "%s has bits set past the /%u prefix: write %s/%u for the network, or %s/%u "
                       "for the one address", addr, rule->prefix, network, rule->prefix, addr, bits);
    }
    if (rule->family == AF_INET6 && inside_embedding_range(rule->addr, rule->prefix)) {
        inet_ntop(AF_INET, rule->addr + 12, network, sizeof network);
        return fail(r, "%s embeds the IPv4 address %s, and is judged as that: write the rule as IPv4 "
                       "(%s/%u)", addr, network, network, rule->prefix - 96u);
    }
    return true;
}

bool net_rule_parse(const char *text, enum net_action action, struct net_rule *out, char *why, size_t whylen)
{
    const struct reading r = { net_action_option(action), text ? text : "", why, whylen };
    memset(out, 0, sizeof *out);
    out->action = action;
    if (!*r.text)
        return fail(&r, "an empty rule; " RULE_SYNTAX);
    const char *start = r.text, *rest = r.text;
    size_t len = 0;
    if (!find_rule_address(&r, &start, &len, &rest) || !parse_address(&r, start, len, &out->family, out->addr))
        return false;
    if (r.text[0] == '[' && out->family != AF_INET6)
        return fail(&r, "brackets are for IPv6 addresses; write an IPv4 address as a.b.c.d");
    return parse_rule_tail(&r, rest, out) && check_rule(&r, out);
}

bool net_rule_format(const struct net_rule *r, char *buf, size_t size)
{
    unsigned bits = family_bits(r->family);
    if (!bits || r->prefix > bits)
        return false;
    int n = address_text(r->family, r->addr, r->port != 0, buf, size);
    if (n < 0 || (size_t)n >= size)
        return false;
    size_t used = (size_t)n;
    if (r->prefix < bits)
        n = snprintf(buf + used, size - used, "/%u", r->prefix);
    else
        n = 0;
    if (n < 0 || (used += (size_t)n) >= size)
        return false;
    n = r->port ? snprintf(buf + used, size - used, ":%u", r->port) : 0;
    return n >= 0 && used + (size_t)n < size;
}

bool net_rule_equal(const struct net_rule *a, const struct net_rule *b)
{
    return a->action == b->action && a->family == b->family && a->prefix == b->prefix && a->port == b->port &&
           !memcmp(a->addr, b->addr, sizeof a->addr);
}

/* ---- the policy -------------------------------------------------------------------- */

void net_policy_init(struct net_policy *p)
{
    memset(p, 0, sizeof *p);
    p->enabled = true;
}

static bool rule_is_valid(const struct net_rule *r)
{
    unsigned bits = family_bits(r->family);
    if (!bits || r->prefix > bits || (r->action != NET_ALLOW && r->action != NET_DENY))
        return false;
    /* Over all 16 bytes: an IPv4 rule's unused 12 must be 0 too, as parsed. */
    if (!host_bits_clear(r->addr, r->prefix, 128))
        return false;
    const struct reading quiet = { "", "", NULL, 0 };
    return check_rule(&quiet, r);
}

bool net_policy_add(struct net_policy *p, const struct net_rule *r, char *why, size_t whylen)
{
    if (!rule_is_valid(r)) {
        snprintf(why, whylen, "not a valid rule (unknown family, prefix too long, or bits past the prefix)");
        return false;
    }
    if (p->count >= NET_POLICY_MAX_RULES) {
        char text[NET_RULE_TEXT_MAX] = "?";
        net_rule_format(r, text, sizeof text);
        snprintf(why, whylen, "%s %s: too many rules (at most %d --allow and --deny in all)",
                 net_action_option(r->action), text, NET_POLICY_MAX_RULES);
        return false;
    }
    p->rules[p->count++] = *r;
    return true;
}

/* A destination as it is judged: IPv4 when it embeds IPv4. */
struct destination {
    int family;
    uint8_t addr[16];
    uint16_t port;
    bool unwrapped; /* an IPv6 address judged as its embedded IPv4 */
};

static bool destination_of(int family, const uint8_t *addr, uint16_t port, struct destination *d)
{
    memset(d, 0, sizeof *d);
    d->port = port;
    if (family == AF_INET) {
        d->family = AF_INET;
        memcpy(d->addr, addr, 4);
        return true;
    }
    if (family != AF_INET6)
        return false;
    d->family = AF_INET6;
    memcpy(d->addr, addr, 16);
    if (inside_embedding_range(d->addr, 128)) {
        d->family = AF_INET;
        memmove(d->addr, d->addr + 12, 4);
        memset(d->addr + 4, 0, 12);
        d->unwrapped = true;
    }
    return true;
}

static bool rule_matches(const struct net_rule *r, const struct destination *d)
{
    return r->family == d->family && (r->port == 0 || r->port == d->port) &&
           prefix_matches(r->addr, d->addr, r->prefix);
}

enum decided_by { BY_OFF, BY_FAMILY, BY_RULE, BY_DEFAULT, BY_INTERNET };

struct decision {
    bool allowed;
    enum decided_by by;
    size_t index; /* of the rule or the default row */
};

static struct decision decide(const struct net_policy *p, const struct destination *d, bool known_family)
{
    if (!p->enabled)
        return (struct decision){ false, BY_OFF, 0 };
    if (!known_family)
        return (struct decision){ false, BY_FAMILY, 0 };
    for (size_t i = 0; i < p->count && i < NET_POLICY_MAX_RULES; i++)
        if (rule_matches(&p->rules[i], d))
            return (struct decision){ p->rules[i].action == NET_ALLOW, BY_RULE, i };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (rule_matches(&defaults[i].rule, d))
            return (struct decision){ defaults[i].rule.action == NET_ALLOW, BY_DEFAULT, i };
    return (struct decision){ true, BY_INTERNET, 0 };
}

bool net_policy_allows(const struct net_policy *p, int family, const uint8_t *addr, uint16_t port)
{
    struct destination d;
    bool known = destination_of(family, addr, port, &d);
    return decide(p, &d, known).allowed;
}

/* "a.b.c.d:port", "[v6]:port", or without ":port" for port 0. */
static int endpoint_text(int family, const uint8_t *addr, uint16_t port, char *buf, size_t size)
{
    int n = address_text(family, addr, port != 0, buf, size);
    if (n < 0 || (size_t)n >= size || !port)
        return n;
    int m = snprintf(buf + n, size - (size_t)n, ":%u", port);
    return m < 0 ? m : n + m;
}

bool net_policy_describe(const struct net_policy *p, int family, const uint8_t *addr, uint16_t port,
                         char *buf, size_t size)
{
    struct destination d;
    bool known = destination_of(family, addr, port, &d);
    struct decision verdict = decide(p, &d, known);
    char where[INET6_ADDRSTRLEN + 16] = "", as[INET6_ADDRSTRLEN + 8] = "", rule[NET_RULE_TEXT_MAX] = "";
    const char *outcome = verdict.allowed ? "allowed" : "denied";
    if (known)
        endpoint_text(family, addr, port, where, sizeof where);
    if (d.unwrapped) {
        char v4[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, d.addr, v4, sizeof v4);
        snprintf(as, sizeof as, " (as %s)", v4);
    }
    switch (verdict.by) {
    case BY_OFF: snprintf(buf, size, "%s%s denied: the network is off", where, as); break;
    case BY_FAMILY: snprintf(buf, size, "address family %d denied: neither IPv4 nor IPv6", family); break;
    case BY_RULE:
        net_rule_format(&p->rules[verdict.index], rule, sizeof rule);
        snprintf(buf, size, "%s%s %s by rule %zu (%s %s)", where, as, outcome, verdict.index + 1,
                 net_action_option(p->rules[verdict.index].action), rule);
        break;
    case BY_DEFAULT:
        net_rule_format(&defaults[verdict.index].rule, rule, sizeof rule);
        snprintf(buf, size, "%s%s %s by default (%s): %s", where, as, outcome, rule, defaults[verdict.index].what);
        break;
    case BY_INTERNET: snprintf(buf, size, "%s%s allowed: the public internet", where, as); break;
    }
    return verdict.allowed;
}

/* ---- the policy as the VMM's arguments ------------------------------------------------ */

bool net_policy_argv(const struct net_policy *p, struct net_policy_argv *out)
{
    memset(out, 0, sizeof *out);
    if (p->count > NET_POLICY_MAX_RULES)
        return false;
    int n = 0;
    for (size_t i = 0; i < p->count; i++) {
        /* A rule left out could be a deny: the VMM would allow more. */
        if (!rule_is_valid(&p->rules[i]) || !net_rule_format(&p->rules[i], out->text[i], sizeof out->text[i]))
            return false;
        out->argv[n++] = (char *)net_action_option(p->rules[i].action);
        out->argv[n++] = out->text[i];
    }
    if (!p->enabled) {
        out->argv[n++] = NET_OPT_NET;
        out->argv[n++] = "off";
    }
    out->argv[n] = NULL;
    out->argc = n;
    return true;
}

static int take_net_switch(struct net_policy *p, const char *value, char *why, size_t whylen)
{
    if (!strcmp(value, "off") || !strcmp(value, "on")) {
        p->enabled = !strcmp(value, "on");
        return 1;
    }
    snprintf(why, whylen, NET_OPT_NET " '%.100s': expected on or off", value);
    return -1;
}

int net_policy_take_option(struct net_policy *p, const char *name, const char *value, char *why, size_t whylen)
{
    enum net_action action;
    if (!strcmp(name, NET_OPT_NET))
        return take_net_switch(p, value ? value : "", why, whylen);
    if (!strcmp(name, NET_OPT_ALLOW))
        action = NET_ALLOW;
    else if (!strcmp(name, NET_OPT_DENY))
        action = NET_DENY;
    else
        return 0;
    struct net_rule r;
    if (!net_rule_parse(value, action, &r, why, whylen) || !net_policy_add(p, &r, why, whylen))
        return -1;
    return 1;
}

bool net_policy_parse_argv(struct net_policy *p, int argc, char *const *argv, char *why, size_t whylen)
{
    net_policy_init(p);
    for (int i = 0; i < argc; i += 2) {
        if (i + 1 >= argc) {
            snprintf(why, whylen, "'%.100s' without a value", argv[i]);
            return false;
        }
        int taken = net_policy_take_option(p, argv[i], argv[i + 1], why, whylen);
        if (taken == 0)
            snprintf(why, whylen, "unknown network option '%.100s'", argv[i]);
        if (taken != 1)
            return false;
    }
    return true;
}

/* ---- published ports ----------------------------------------------------------------- */

#define PORT_SYNTAX "expected [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp], with an IPv6 HOSTIP in brackets"

/* The optional "/tcp" or "/udp" at the end; *len gets the length before it. */
static bool parse_proto(const struct reading *r, size_t *len, enum net_proto *proto)
{
    const char *slash = strchr(r->text, '/');
    *proto = NET_TCP;
    *len = strlen(r->text);
    if (!slash)
        return true;
    *len = (size_t)(slash - r->text);
    if (!strcmp(slash + 1, "udp"))
        *proto = NET_UDP;
    else if (strcmp(slash + 1, "tcp") != 0)
        return fail(r, "unknown protocol '%s'; expected /tcp or /udp", slash + 1);
    return true;
}

/* Where the host address ends: after "]:" if bracketed; else before the
 * first of two colons; none with one colon. */
static bool find_host_address(const struct reading *r, size_t len, const char **addr, size_t *addr_len,
                              const char **ports)
{
    const char *text = r->text;
    *addr = NULL;
    *addr_len = 0;
    if (text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (!close || close[1] != ':')
            return fail(r, "a bracketed host address must be followed by ']:'; " PORT_SYNTAX);
        *addr = text + 1;
        *addr_len = (size_t)(close - text - 1);
        *ports = close + 2;
        return true;
    }
    size_t colons = 0;
    for (size_t i = 0; i < len; i++)
        colons += text[i] == ':';
    if (colons == 0)
        return fail(r, "a guest port alone is not enough (no host port is picked for you); " PORT_SYNTAX);
    if (colons > 2)
        return fail(r, "too many ':' (an IPv6 host address goes in brackets: [::1]:8080:80); " PORT_SYNTAX);
    *ports = text;
    if (colons == 2) {
        *addr = text;
        *addr_len = strcspn(text, ":");
        *ports = text + *addr_len + 1;
    }
    return true;
}

bool net_port_parse(const char *text, struct net_port *out, char *why, size_t whylen)
{
    const struct reading r = { "-p", text ? text : "", why, whylen };
    memset(out, 0, sizeof *out);
    out->family = AF_INET;
    out->host_addr[0] = 127;
    out->host_addr[3] = 1;
    size_t len = 0, addr_len = 0;
    const char *addr = NULL, *ports = r.text;
    if (!parse_proto(&r, &len, &out->proto) || !find_host_address(&r, len, &addr, &addr_len, &ports))
        return false;
    if (addr && !parse_address(&r, addr, addr_len, &out->family, out->host_addr))
        return false;
    if (addr && r.text[0] == '[' && out->family != AF_INET6)
        return fail(&r, "brackets are for IPv6 addresses; write an IPv4 host address as a.b.c.d");
    const char *end = r.text + len, *colon = memchr(ports, ':', (size_t)(end - ports));
    if (!colon)
        return fail(&r, "the guest port is missing; " PORT_SYNTAX);
    return parse_port(&r, "host port", ports, (size_t)(colon - ports), &out->host_port) &&
           parse_port(&r, "guest port", colon + 1, (size_t)(end - colon - 1), &out->guest_port);
}

bool net_port_format(const struct net_port *p, char *buf, size_t size)
{
    if (!family_bits(p->family) || !p->host_port || !p->guest_port)
        return false;
    int n = address_text(p->family, p->host_addr, true, buf, size);
    if (n < 0 || (size_t)n >= size)
        return false;
    int m = snprintf(buf + n, size - (size_t)n, ":%u:%u%s", p->host_port, p->guest_port,
                     p->proto == NET_UDP ? "/udp" : "");
    return m >= 0 && (size_t)(n + m) < size;
}

bool net_port_equal(const struct net_port *a, const struct net_port *b)
{
    return a->family == b->family && a->host_port == b->host_port && a->guest_port == b->guest_port &&
           a->proto == b->proto && !memcmp(a->host_addr, b->host_addr, sizeof a->host_addr);
}

static bool is_unspecified(const struct net_port *p)
{
    static const uint8_t zero[16];
    return !memcmp(p->host_addr, zero, sizeof zero);
}

/* Two host sides that cannot both be bound: same protocol and port, and the
 * same address or a wildcard one (0.0.0.0 and :: take every address). */
static bool host_sides_clash(const struct net_port *a, const struct net_port *b)
{
    if (a->proto != b->proto || a->host_port != b->host_port)
        return false;
    return is_unspecified(a) || is_unspecified(b) ||
           (a->family == b->family && !memcmp(a->host_addr, b->host_addr, sizeof a->host_addr));
}

bool net_ports_add(struct net_ports *list, const char *text, char *why, size_t whylen)
{
    struct net_port port;
    if (!net_port_parse(text, &port, why, whylen))
        return false;
    const struct reading r = { "-p", text, why, whylen };
    if (list->count >= NET_MAX_PORTS)
        return fail(&r, "too many published ports (at most %d)", NET_MAX_PORTS);
    for (size_t i = 0; i < list->count; i++) {
        char other[NET_PORT_TEXT_MAX] = "?";
        net_port_format(&list->ports[i], other, sizeof other);
        if (host_sides_clash(&port, &list->ports[i]))
            return fail(&r, "host port %u/%s is already published (%s)", port.host_port,
                        port.proto == NET_UDP ? "udp" : "tcp", other);
    }
    list->ports[list->count++] = port;
    return true;
}
