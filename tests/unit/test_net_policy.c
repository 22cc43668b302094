/*
 * The guest network's policy (src/protocol/net_policy.c): every default range
 * from both sides of its edges, the user's rules before the defaults in their
 * order, IPv6 and the IPv6 forms of IPv4, the parsers' messages, round trips
 * through text and through the VMM's argv, and -p.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "protocol/net_policy.h"

/* ---- helpers ----------------------------------------------------------------- */

struct address {
    int family;
    uint8_t bytes[16];
};

static struct address address_of(const char *text)
{
    struct address a = { 0 };
    if (inet_pton(AF_INET, text, a.bytes) == 1)
        a.family = AF_INET;
    else if (inet_pton(AF_INET6, text, a.bytes) == 1)
        a.family = AF_INET6;
    else
        fail_msg("test address '%s' does not parse", text);
    return a;
}

static bool allows(const struct net_policy *p, const char *addr, uint16_t port)
{
    struct address a = address_of(addr);
    return net_policy_allows(p, a.family, a.bytes, port);
}

static struct net_rule rule(enum net_action action, const char *text)
{
    struct net_rule r;
    char why[256] = "";
    if (!net_rule_parse(text, action, &r, why, sizeof why))
        fail_msg("rule '%s' does not parse: %s", text, why);
    return r;
}

static void add(struct net_policy *p, enum net_action action, const char *text)
{
    struct net_rule r = rule(action, text);
    char why[256] = "";
    assert_true(net_policy_add(p, &r, why, sizeof why));
}

struct verdict {
    const char *addr;
    uint16_t port;
    bool allowed;
};

static void check_verdicts(const struct net_policy *p, const struct verdict *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (allows(p, v[i].addr, v[i].port) != v[i].allowed) {
            struct address a = address_of(v[i].addr);
            char line[256];
            net_policy_describe(p, a.family, a.bytes, v[i].port, line, sizeof line);
            fail_msg("%s port %u: want %s, got: %s", v[i].addr, v[i].port, v[i].allowed ? "allowed" : "denied",
                     line);
        }
    }
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the defaults --------------------------------------------------------------- */

static void test_default_ipv4_ranges(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    static const struct verdict v[] = {
        /* the NAT: DNS only on port 53, the host never */
        { "10.0.2.3", 53, true }, { "10.0.2.3", 54, false }, { "10.0.2.3", 0, false },
        { "10.0.2.2", 53, false }, { "10.0.2.2", 8080, false }, { "10.0.2.4", 53, false },
        /* loopback */
        { "127.0.0.0", 80, false }, { "127.0.0.1", 80, false }, { "127.255.255.255", 80, false },
        { "126.255.255.255", 80, true }, { "128.0.0.0", 80, true },
        /* unspecified */
        { "0.0.0.0", 80, false }, { "0.255.255.255", 80, false }, { "1.0.0.0", 80, true },
        /* RFC 1918 */
        { "10.0.0.0", 80, false }, { "10.255.255.255", 80, false },
        { "9.255.255.255", 80, true }, { "11.0.0.0", 80, true },
        { "172.16.0.0", 80, false }, { "172.31.255.255", 80, false },
        { "172.15.255.255", 80, true }, { "172.32.0.0", 80, true },
        { "192.168.0.0", 80, false }, { "192.168.255.255", 80, false },
        { "192.167.255.255", 80, true }, { "192.169.0.0", 80, true },
        /* carrier-grade NAT */
        { "100.64.0.0", 80, false }, { "100.127.255.255", 80, false },
        { "100.63.255.255", 80, true }, { "100.128.0.0", 80, true },
        /* link-local, cloud metadata */
        { "169.254.0.0", 80, false }, { "169.254.169.254", 80, false }, { "169.254.255.255", 80, false },
        { "169.253.255.255", 80, true }, { "169.255.0.0", 80, true },
        /* IETF protocol assignments, benchmarking */
        { "192.0.0.0", 80, false }, { "192.0.0.255", 80, false },
        { "191.255.255.255", 80, true }, { "192.0.1.0", 80, true },
        { "198.18.0.0", 80, false }, { "198.19.255.255", 80, false },
        { "198.17.255.255", 80, true }, { "198.20.0.0", 80, true },
        /* multicast, reserved, broadcast */
        { "224.0.0.0", 80, false }, { "239.255.255.255", 80, false }, { "223.255.255.255", 80, true },
        { "240.0.0.0", 80, false }, { "255.255.255.254", 80, false }, { "255.255.255.255", 80, false },
        /* the public internet */
        { "1.1.1.1", 443, true }, { "8.8.8.8", 53, true }, { "203.0.113.7", 0, true },
    };
    check_verdicts(&p, v, COUNT(v));
}

static void test_default_ipv6_ranges(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    static const struct verdict v[] = {
        /* the NAT's IPv6 side */
        { "fec0::3", 53, true }, { "fec0::3", 54, false }, { "fec0::2", 53, false }, { "fec0::2", 22, false },
        /* loopback, unspecified, IPv4-compatible */
        { "::1", 80, false }, { "::", 80, false }, { "::2", 80, false }, { "::ffff:ffff", 80, false },
        { "::1:0:0", 80, true }, { "::fffe:ffff:ffff", 80, true },
        /* link-local and site-local: fe80::/10, fec0::/10 */
        { "fe80::", 80, false }, { "fe80::1", 80, false }, { "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, false },
        { "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, true },
        { "fec0::", 80, false }, { "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, false },
        /* unique local fc00::/7 */
        { "fc00::", 80, false }, { "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, false },
        { "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, true }, { "fe00::", 80, true },
        /* multicast ff00::/8 */
        { "ff00::", 80, false }, { "ff02::1", 80, false }, { "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, false },
        /* local-use NAT64 and 6to4 */
        { "64:ff9b:1::", 80, false }, { "64:ff9b:1:ffff:ffff:ffff:ffff:ffff", 80, false },
        { "64:ff9b:0:ffff::", 80, true }, { "64:ff9b:2::", 80, true },
        { "2002::", 80, false }, { "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, false },
        { "2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, true }, { "2003::", 80, true },
        /* the public internet */
        { "2606:4700::1111", 443, true }, { "2001:4860:4860::8888", 53, true },
    };
    check_verdicts(&p, v, COUNT(v));
}

/* ::ffff:a.b.c.d and 64:ff9b::a.b.c.d are judged as a.b.c.d. */
static void test_embedded_ipv4_judged_as_ipv4(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    static const struct verdict defaults_only[] = {
        { "::ffff:10.0.2.2", 80, false }, { "::ffff:10.0.2.3", 53, true }, { "::ffff:10.0.2.3", 80, false },
        { "::ffff:127.0.0.1", 80, false }, { "::ffff:169.254.169.254", 80, false },
        { "::ffff:192.168.1.1", 80, false }, { "::ffff:0.0.0.0", 80, false },
        { "::ffff:1.1.1.1", 443, true },
        { "64:ff9b::10.0.2.2", 80, false }, { "64:ff9b::172.16.0.1", 80, false },
        { "64:ff9b::1.1.1.1", 443, true },
    };
    check_verdicts(&p, defaults_only, COUNT(defaults_only));
    /* The user's IPv4 rules see them too, and IPv6 rules around them do not. */
    add(&p, NET_ALLOW, "10.0.2.2:8080");
    add(&p, NET_DENY, "1.1.1.1");
    add(&p, NET_DENY, "::/0");
    static const struct verdict with_rules[] = {
        { "::ffff:10.0.2.2", 8080, true }, { "64:ff9b::10.0.2.2", 8080, true },
        { "::ffff:1.1.1.1", 443, false }, { "::ffff:8.8.8.8", 443, true },
        { "2606:4700::1111", 443, false },
    };
    check_verdicts(&p, with_rules, COUNT(with_rules));
}

/* The table is what the header says: rows without host bits, texts that
 * parse back, and the NAT's addresses the named constants. */
static void test_defaults_table(void **state)
{
    (void)state;
    size_t n;
    const struct net_default *rows = net_defaults(&n);
    assert_true(n > 20);
    for (size_t i = 0; i < n; i++) {
        char text[NET_RULE_TEXT_MAX], why[256] = "";
        struct net_rule back;
        assert_true(net_rule_format(&rows[i].rule, text, sizeof text));
        if (!net_rule_parse(text, rows[i].rule.action, &back, why, sizeof why))
            fail_msg("default row %zu (%s): %s", i, text, why);
        assert_true(net_rule_equal(&back, &rows[i].rule));
        assert_non_null(rows[i].what);
    }
    struct net_rule dns4 = rule(NET_ALLOW, NET_NAT_DNS4 ":53"), dns6 = rule(NET_ALLOW, "[" NET_NAT_DNS6 "]:53");
    struct net_rule host4 = rule(NET_DENY, NET_NAT_HOST4), host6 = rule(NET_DENY, NET_NAT_HOST6);
    assert_true(net_rule_equal(&rows[0].rule, &dns4));
    assert_true(net_rule_equal(&rows[1].rule, &dns6));
    assert_true(net_rule_equal(&rows[2].rule, &host4));
    assert_true(net_rule_equal(&rows[3].rule, &host6));
}

/* ---- the user's rules -------------------------------------------------------------- */

static void test_first_match_wins(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    add(&p, NET_DENY, "203.0.113.0/24");
    add(&p, NET_ALLOW, "203.0.113.7");
    assert_false(allows(&p, "203.0.113.7", 443));
    net_policy_init(&p);
    add(&p, NET_ALLOW, "203.0.113.7");
    add(&p, NET_DENY, "203.0.113.0/24");
    assert_true(allows(&p, "203.0.113.7", 443));
    assert_false(allows(&p, "203.0.113.8", 443));
    assert_true(allows(&p, "203.0.114.1", 443));
}

static void test_allow_overrides_default(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    add(&p, NET_ALLOW, "10.0.2.2:8080");
    add(&p, NET_ALLOW, "[fec0::2]:8080");
    add(&p, NET_ALLOW, "192.168.0.0/16:5432");
    static const struct verdict v[] = {
        { "10.0.2.2", 8080, true }, { "10.0.2.2", 8081, false }, { "10.0.2.2", 0, false },
        { "fec0::2", 8080, true }, { "fec0::2", 22, false },
        { "192.168.3.4", 5432, true }, { "192.168.3.4", 5433, false }, { "10.0.0.1", 5432, false },
    };
    check_verdicts(&p, v, COUNT(v));
}

static void test_deny_overrides_internet(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    add(&p, NET_DENY, "1.1.1.1:443");
    add(&p, NET_DENY, "2001:db8::/32");
    add(&p, NET_DENY, "10.0.2.3:53"); /* the DNS exception, withdrawn */
    static const struct verdict v[] = {
        { "1.1.1.1", 443, false }, { "1.1.1.1", 80, true }, { "1.1.1.2", 443, true },
        { "2001:db8::1", 443, false }, { "2001:db8:ffff::", 80, false }, { "2001:db9::", 80, true },
        { "10.0.2.3", 53, false },
    };
    check_verdicts(&p, v, COUNT(v));
}

static void test_prefix_edges(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    add(&p, NET_DENY, "0.0.0.0/0"); /* all of IPv4, none of IPv6 */
    assert_false(allows(&p, "1.1.1.1", 443));
    assert_false(allows(&p, "::ffff:1.1.1.1", 443));
    assert_true(allows(&p, "2606:4700::1111", 443));

    net_policy_init(&p);
    add(&p, NET_ALLOW, "0.0.0.0/0:443"); /* even the defaults' ranges, on 443 */
    assert_true(allows(&p, "10.0.2.2", 443));
    assert_false(allows(&p, "10.0.2.2", 80));

    net_policy_init(&p);
    add(&p, NET_DENY, "203.0.113.7/32");
    add(&p, NET_DENY, "2606:4700::1111/128");
    add(&p, NET_DENY, "198.51.100.0/31");
    add(&p, NET_DENY, "2001:db8::/127");
    static const struct verdict v[] = {
        { "203.0.113.7", 80, false }, { "203.0.113.6", 80, true }, { "203.0.113.8", 80, true },
        { "2606:4700::1111", 80, false }, { "2606:4700::1110", 80, true }, { "2606:4700::1112", 80, true },
        { "198.51.100.0", 80, false }, { "198.51.100.1", 80, false }, { "198.51.100.2", 80, true },
        { "2001:db8::", 80, false }, { "2001:db8::1", 80, false }, { "2001:db8::2", 80, true },
    };
    check_verdicts(&p, v, COUNT(v));
    /* A prefix of the whole length is the same rule as none. */
    struct net_rule a = rule(NET_DENY, "1.2.3.4/32"), b = rule(NET_DENY, "1.2.3.4");
    assert_true(net_rule_equal(&a, &b));
    a = rule(NET_DENY, "::1/128");
    b = rule(NET_DENY, "[::1]");
    assert_true(net_rule_equal(&a, &b));
    a = rule(NET_DENY, "::/0");
    assert_int_equal(a.prefix, 0);
}

static void test_net_off_and_bad_family(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    add(&p, NET_ALLOW, "1.1.1.1");
    p.enabled = false;
    assert_false(allows(&p, "1.1.1.1", 443));
    assert_false(allows(&p, "10.0.2.3", 53));
    net_policy_init(&p);
    uint8_t addr[16] = { 1, 1, 1, 1 };
    assert_false(net_policy_allows(&p, AF_UNIX, addr, 80));
}

static void test_policy_is_bounded(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    char why[256] = "", text[32];
    for (int i = 0; i < NET_POLICY_MAX_RULES; i++) {
        snprintf(text, sizeof text, "203.0.113.%d", i);
        assert_int_equal(net_policy_take_option(&p, "--deny", text, why, sizeof why), 1);
    }
    assert_int_equal(net_policy_take_option(&p, "--deny", "203.0.113.200", why, sizeof why), -1);
    assert_non_null(strstr(why, "too many rules"));
    assert_int_equal(p.count, NET_POLICY_MAX_RULES);
    /* A rule built by hand must still be one the parser would accept. */
    struct net_rule bad = rule(NET_DENY, "10.0.0.0/8");
    bad.addr[3] = 1;
    net_policy_init(&p);
    assert_false(net_policy_add(&p, &bad, why, sizeof why));
    bad = rule(NET_DENY, "10.0.0.0/8");
    bad.prefix = 33;
    assert_false(net_policy_add(&p, &bad, why, sizeof why));
    bad = rule(NET_DENY, "10.0.0.0/8");
    bad.addr[15] = 1; /* past an IPv4 address's 4 bytes */
    assert_false(net_policy_add(&p, &bad, why, sizeof why));
    bad = rule(NET_DENY, "10.0.0.0/8");
    bad.family = AF_UNIX;
    assert_false(net_policy_add(&p, &bad, why, sizeof why));
    assert_int_equal(p.count, 0);
}

/* ---- the rules' text ------------------------------------------------------------------ */

static void test_rule_fields(void **state)
{
    (void)state;
    struct net_rule r = rule(NET_ALLOW, "[2001:db8::]/64:443");
    struct address a = address_of("2001:db8::");
    assert_int_equal(r.action, NET_ALLOW);
    assert_int_equal(r.family, AF_INET6);
    assert_memory_equal(r.addr, a.bytes, 16);
    assert_int_equal(r.prefix, 64);
    assert_int_equal(r.port, 443);
    r = rule(NET_DENY, "10.0.2.2:8080");
    assert_int_equal(r.action, NET_DENY);
    assert_int_equal(r.family, AF_INET);
    assert_int_equal(r.prefix, 32);
    assert_int_equal(r.port, 8080);
    /* Unbracketed, every colon is the address's: ::1:8080 is an address. */
    r = rule(NET_DENY, "::1:8080");
    assert_int_equal(r.family, AF_INET6);
    assert_int_equal(r.port, 0);
}

static void test_rule_round_trips(void **state)
{
    (void)state;
    static const struct {
        const char *in, *canonical;
    } cases[] = {
        { "1.2.3.4", "1.2.3.4" },
        { "1.2.3.4/32", "1.2.3.4" },
        { "10.0.0.0/8", "10.0.0.0/8" },
        { "10.0.2.2:8080", "10.0.2.2:8080" },
        { "172.16.0.0/12:443", "172.16.0.0/12:443" },
        { "0.0.0.0/0", "0.0.0.0/0" },
        { "1.2.3.4:65535", "1.2.3.4:65535" },
        { "1.2.3.4:00080", "1.2.3.4:80" },
        { "::1", "::1" },
        { "[::1]", "::1" },
        { "[::1]:8080", "[::1]:8080" },
        { "[2001:db8::1]/128:443", "[2001:db8::1]:443" },
        { "[2001:DB8::]/64:443", "[2001:db8::]/64:443" },
        { "2001:0db8:0000::/32", "2001:db8::/32" },
        { "::/0", "::/0" },
        { "[::]/0:53", "[::]/0:53" },
        { "fc00::/7", "fc00::/7" },
        { "::1.2.3.4", "::1.2.3.4" },
        { "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]/128:65535", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535" },
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        for (int action = NET_DENY; action <= NET_ALLOW; action++) {
            struct net_rule r = rule((enum net_action)action, cases[i].in), back;
            char text[NET_RULE_TEXT_MAX], why[256] = "";
            assert_true(net_rule_format(&r, text, sizeof text));
            assert_string_equal(text, cases[i].canonical);
            assert_true(net_rule_parse(text, (enum net_action)action, &back, why, sizeof why));
            assert_true(net_rule_equal(&r, &back));
        }
    }
    /* The longest text fits NET_RULE_TEXT_MAX; one byte less does not. */
    struct net_rule r = rule(NET_DENY, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]/127:65535");
    char text[NET_RULE_TEXT_MAX];
    assert_true(net_rule_format(&r, text, sizeof text));
    assert_false(net_rule_format(&r, text, strlen(text)));
}

/* Each bad text: its message quotes the option and the text, and says what
 * is wrong. */
static void test_rule_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *says;
    } cases[] = {
        { "", "an empty rule; expected ADDR[/PREFIX][:PORT]" },
        { "example.com", "'example.com' is not an IPv4 (a.b.c.d) or IPv6 address (host names are resolved" },
        { "example.com:443", "'example.com' is not an IPv4" },
        { "1.2.3", "'1.2.3' is not an IPv4" },
        { "256.1.1.1", "'256.1.1.1' is not an IPv4" },
        { "010.0.0.1", "'010.0.0.1' is not an IPv4" },
        { " 1.2.3.4", "' 1.2.3.4' is not an IPv4" },
        { "fe80::1%eth0", "'fe80::1%eth0' is not an IPv4" },
        { "1.2.3.4/33", "prefix '/33' is not a number from 0 to 32" },
        { "1.2.3.4/", "prefix '/' is not a number from 0 to 32" },
        { "1.2.3.4/-1", "prefix '/-1' is not a number from 0 to 32" },
        { "1.2.3.4/+8", "prefix '/+8' is not a number from 0 to 32" },
        { "::/129", "prefix '/129' is not a number from 0 to 128" },
        { "1.2.3.4:0", "port '0' is not a port number (1-65535)" },
        { "1.2.3.4:65536", "port '65536' is not a port number (1-65535)" },
        { "1.2.3.4:", "port '' is not a port number (1-65535)" },
        { "1.2.3.4:http", "port 'http' is not a port number (1-65535)" },
        { "1.2.3.4:80 ", "port '80 ' is not a port number (1-65535)" },
        { "1.2.3.4x", "'1.2.3.4x' is not an IPv4" },
        { "[1.2.3.4]:80", "brackets are for IPv6 addresses" },
        { "[::1", "'[' without ']'" },
        { "[::1]x", "unexpected 'x' after the address" },
        { "[]:80", "the address is missing" },
        { "/8", "the address is missing" },
        { "2001:db8::1:443/64:80", "a port after an IPv6 address needs the address in brackets" },
        { "::1/128:80", "a port after an IPv6 address needs the address in brackets" },
        { "10.0.0.1/8", "10.0.0.1 has bits set past the /8 prefix: write 10.0.0.0/8 for the network, or "
                        "10.0.0.1/32 for the one address" },
        { "2001:db8::1/64", "2001:db8::1 has bits set past the /64 prefix: write 2001:db8::/64" },
        { "::ffff:10.0.2.2", "::ffff:10.0.2.2 embeds the IPv4 address 10.0.2.2, and is judged as that: write the "
                             "rule as IPv4 (10.0.2.2/32)" },
        { "::ffff:10.0.0.0/104", "write the rule as IPv4 (10.0.0.0/8)" },
        { "64:ff9b::1.1.1.1", "embeds the IPv4 address 1.1.1.1" },
        { "[1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa]", "is too long for an IP address" },
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        struct net_rule r;
        char why[512] = "", quoted[128];
        if (net_rule_parse(cases[i].text, NET_DENY, &r, why, sizeof why))
            fail_msg("'%s' parsed", cases[i].text);
        snprintf(quoted, sizeof quoted, "--deny '%s': ", cases[i].text);
        if (strncmp(why, quoted, strlen(quoted)) != 0 || !strstr(why, cases[i].says))
            fail_msg("'%s': message '%s' does not start '%s' and say '%s'", cases[i].text, why, quoted,
                     cases[i].says);
    }
    /* The action names the option in the message. */
    struct net_rule r;
    char why[256];
    assert_false(net_rule_parse("nope", NET_ALLOW, &r, why, sizeof why));
    assert_true(strncmp(why, "--allow 'nope': ", 16) == 0);
    /* Host bits past a prefix: refused, not masked; /0 with a set bit too. */
    assert_false(net_rule_parse("1.0.0.0/0", NET_DENY, &r, why, sizeof why));
    assert_true(net_rule_parse("10.0.0.0/7", NET_DENY, &r, why, sizeof why));
    assert_false(net_rule_parse("11.0.0.0/7", NET_DENY, &r, why, sizeof why));
    /* IPv6 rules around the embedded ranges are fine (they just do not match them). */
    assert_true(net_rule_parse("::fffe:0:0/95", NET_DENY, &r, why, sizeof why));
    assert_true(net_rule_parse("64:ff9b::/64", NET_DENY, &r, why, sizeof why));
}

/* ---- describe ------------------------------------------------------------------------ */

static void check_describe(const struct net_policy *p, const char *addr, uint16_t port, const char *want)
{
    struct address a = address_of(addr);
    char line[256];
    bool allowed = net_policy_describe(p, a.family, a.bytes, port, line, sizeof line);
    assert_string_equal(line, want);
    assert_int_equal(allowed, net_policy_allows(p, a.family, a.bytes, port));
}

static void test_describe(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    add(&p, NET_ALLOW, "10.0.2.2:8080");
    add(&p, NET_DENY, "2001:db8::/32");
    check_describe(&p, "10.0.2.2", 8080, "10.0.2.2:8080 allowed by rule 1 (--allow 10.0.2.2:8080)");
    check_describe(&p, "2001:db8::5", 443, "[2001:db8::5]:443 denied by rule 2 (--deny 2001:db8::/32)");
    check_describe(&p, "10.0.2.2", 22, "10.0.2.2:22 denied by default (10.0.2.2): the host, through the NAT");
    check_describe(&p, "::ffff:169.254.169.254", 80,
                   "[::ffff:169.254.169.254]:80 (as 169.254.169.254) denied by default (169.254.0.0/16): "
                   "link-local (169.254.169.254: cloud metadata)");
    check_describe(&p, "10.0.2.3", 53, "10.0.2.3:53 allowed by default (10.0.2.3:53): the NAT's DNS resolver");
    check_describe(&p, "1.1.1.1", 443, "1.1.1.1:443 allowed: the public internet");
    check_describe(&p, "ff02::1", 0, "ff02::1 denied by default (ff00::/8): multicast");
    p.enabled = false;
    check_describe(&p, "1.1.1.1", 443, "1.1.1.1:443 denied: the network is off");
    char line[8];
    uint8_t addr[16] = { 0 };
    net_policy_init(&p);
    assert_true(net_policy_describe(&p, AF_INET, (const uint8_t *)"\x01\x01\x01\x01", 443, line, sizeof line));
    assert_int_equal(strlen(line), sizeof line - 1); /* truncated, ended */
    assert_false(net_policy_describe(&p, 12345, addr, 1, line, sizeof line));
}

/* ---- as the VMM's arguments -------------------------------------------------------------- */

static void test_policy_argv_round_trip(void **state)
{
    (void)state;
    struct net_policy p, back;
    net_policy_init(&p);
    add(&p, NET_ALLOW, "10.0.2.2:8080");
    add(&p, NET_DENY, "203.0.113.0/24");
    add(&p, NET_ALLOW, "[2001:db8::]/64:443");
    add(&p, NET_DENY, "::/0");
    struct net_policy_argv v;
    assert_true(net_policy_argv(&p, &v));
    assert_int_equal(v.argc, 8);
    const char *want[] = { "--allow", "10.0.2.2:8080", "--deny", "203.0.113.0/24",
                           "--allow", "[2001:db8::]/64:443", "--deny", "::/0" };
    for (int i = 0; i < v.argc; i++)
        assert_string_equal(v.argv[i], want[i]);
    assert_null(v.argv[v.argc]);
    char why[256] = "";
    assert_true(net_policy_parse_argv(&back, v.argc, v.argv, why, sizeof why));
    assert_true(back.enabled);
    assert_int_equal(back.count, p.count);
    for (size_t i = 0; i < p.count; i++)
        assert_true(net_rule_equal(&back.rules[i], &p.rules[i]));

    /* --net off travels too, and the default (on) is not written. */
    p.enabled = false;
    assert_true(net_policy_argv(&p, &v));
    assert_int_equal(v.argc, 10);
    assert_string_equal(v.argv[8], "--net");
    assert_string_equal(v.argv[9], "off");
    assert_true(net_policy_parse_argv(&back, v.argc, v.argv, why, sizeof why));
    assert_false(back.enabled);
    net_policy_init(&p);
    assert_true(net_policy_argv(&p, &v));
    assert_int_equal(v.argc, 0);
    assert_null(v.argv[0]);

    /* A rule put in by hand that cannot be written fails the whole policy:
     * leaving out a deny would open what it closed. */
    add(&p, NET_DENY, "203.0.113.0/24");
    p.rules[0].prefix = 200;
    assert_false(net_policy_argv(&p, &v));
    p.rules[0].prefix = 24;
    p.rules[0].addr[3] = 1;
    assert_false(net_policy_argv(&p, &v));
}

static void test_take_option(void **state)
{
    (void)state;
    struct net_policy p;
    net_policy_init(&p);
    char why[256] = "";
    assert_int_equal(net_policy_take_option(&p, "--kernel", "k", why, sizeof why), 0);
    assert_int_equal(net_policy_take_option(&p, "--net", "off", why, sizeof why), 1);
    assert_false(p.enabled);
    assert_int_equal(net_policy_take_option(&p, "--net", "on", why, sizeof why), 1);
    assert_true(p.enabled);
    assert_int_equal(net_policy_take_option(&p, "--net", "maybe", why, sizeof why), -1);
    assert_string_equal(why, "--net 'maybe': expected on or off");
    assert_int_equal(net_policy_take_option(&p, "--allow", "1.2.3.4/8", why, sizeof why), -1);
    assert_non_null(strstr(why, "--allow '1.2.3.4/8': "));
    assert_int_equal(p.count, 0);
    char *odd[] = { "--deny", "1.2.3.4", "--allow" };
    assert_false(net_policy_parse_argv(&p, 3, odd, why, sizeof why));
    assert_string_equal(why, "'--allow' without a value");
    char *unknown[] = { "--permit", "1.2.3.4" };
    assert_false(net_policy_parse_argv(&p, 2, unknown, why, sizeof why));
    assert_string_equal(why, "unknown network option '--permit'");
}

/* ---- -p ---------------------------------------------------------------------------------- */

static struct net_port port(const char *text)
{
    struct net_port p;
    char why[256] = "";
    if (!net_port_parse(text, &p, why, sizeof why))
        fail_msg("-p '%s' does not parse: %s", text, why);
    return p;
}

static void test_port_parse(void **state)
{
    (void)state;
    struct net_port p = port("8080:80");
    struct address loopback = address_of("127.0.0.1");
    assert_int_equal(p.family, AF_INET);
    assert_memory_equal(p.host_addr, loopback.bytes, 16);
    assert_int_equal(p.host_port, 8080);
    assert_int_equal(p.guest_port, 80);
    assert_int_equal(p.proto, NET_TCP);
    p = port("0.0.0.0:53:5353/udp");
    assert_int_equal(p.family, AF_INET);
    assert_int_equal(p.host_addr[0], 0);
    assert_int_equal(p.host_port, 53);
    assert_int_equal(p.guest_port, 5353);
    assert_int_equal(p.proto, NET_UDP);
    p = port("[::1]:65535:1/tcp");
    assert_int_equal(p.family, AF_INET6);
    assert_int_equal(p.host_addr[15], 1);
    assert_int_equal(p.host_port, 65535);
    assert_int_equal(p.guest_port, 1);

    static const struct {
        const char *in, *canonical;
    } trips[] = {
        { "8080:80", "127.0.0.1:8080:80" },
        { "8080:80/tcp", "127.0.0.1:8080:80" },
        { "8080:80/udp", "127.0.0.1:8080:80/udp" },
        { "192.0.2.1:1:2", "192.0.2.1:1:2" },
        { "[::]:443:8443", "[::]:443:8443" },
        { "[2001:DB8::1]:80:80/udp", "[2001:db8::1]:80:80/udp" },
        { "[1111:2222:3333:4444:5555:6666:123.123.123.123]:65535:65535/udp",
          "[1111:2222:3333:4444:5555:6666:7b7b:7b7b]:65535:65535/udp" },
    };
    for (size_t i = 0; i < COUNT(trips); i++) {
        struct net_port a = port(trips[i].in);
        char text[NET_PORT_TEXT_MAX];
        assert_true(net_port_format(&a, text, sizeof text));
        assert_string_equal(text, trips[i].canonical);
        struct net_port b = port(text);
        assert_true(net_port_equal(&a, &b));
    }
}

static void test_port_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *says;
    } cases[] = {
        { "", "a guest port alone is not enough" },
        { "80", "a guest port alone is not enough (no host port is picked for you); expected "
                "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]" },
        { "0:80", "host port '0' is not a port number (1-65535)" },
        { "8080:0", "guest port '0' is not a port number (1-65535)" },
        { "8080:65536", "guest port '65536' is not a port number" },
        { "8080:", "guest port '' is not a port number" },
        { ":80", "host port '' is not a port number" },
        { "8000-8010:8000-8010", "host port '8000-8010' is not a port number" },
        { "8080:80/sctp", "unknown protocol 'sctp'; expected /tcp or /udp" },
        { "8080:80/", "unknown protocol ''" },
        { "::1:8080:80", "too many ':' (an IPv6 host address goes in brackets: [::1]:8080:80)" },
        { "localhost:8080:80", "'localhost' is not an IPv4" },
        { "::80", "the address is missing" },
        { "[::1]8080:80", "a bracketed host address must be followed by ']:'" },
        { "[::1:8080:80", "a bracketed host address must be followed by ']:'" },
        { "[1.2.3.4]:8080:80", "brackets are for IPv6 addresses" },
        { "[::1]:8080", "the guest port is missing" },
        { "1.2.3.4:x:80", "host port 'x' is not a port number" },
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        struct net_port p;
        char why[512] = "", quoted[128];
        if (net_port_parse(cases[i].text, &p, why, sizeof why))
            fail_msg("-p '%s' parsed", cases[i].text);
        snprintf(quoted, sizeof quoted, "-p '%s': ", cases[i].text);
        if (strncmp(why, quoted, strlen(quoted)) != 0 || !strstr(why, cases[i].says))
            fail_msg("'%s': message '%s' does not start '%s' and say '%s'", cases[i].text, why, quoted,
                     cases[i].says);
    }
}

static void test_ports_list(void **state)
{
    (void)state;
    struct net_ports list = { 0 };
    char why[256] = "";
    assert_true(net_ports_add(&list, "8080:80", why, sizeof why));
    assert_true(net_ports_add(&list, "8080:80/udp", why, sizeof why));    /* other protocol */
    assert_true(net_ports_add(&list, "192.0.2.1:8080:81", why, sizeof why)); /* other address */
    assert_false(net_ports_add(&list, "127.0.0.1:8080:90", why, sizeof why));
    assert_string_equal(why, "-p '127.0.0.1:8080:90': host port 8080/tcp is already published (127.0.0.1:8080:80)");
    assert_false(net_ports_add(&list, "0.0.0.0:8080:90", why, sizeof why)); /* every address, 127.0.0.1 too */
    assert_false(net_ports_add(&list, "[::]:8080:90", why, sizeof why));
    assert_false(net_ports_add(&list, "nope", why, sizeof why));
    assert_int_equal(list.count, 3);
    char text[32];
    for (int i = (int)list.count; i < NET_MAX_PORTS; i++) {
        snprintf(text, sizeof text, "%d:80", 10000 + i);
        assert_true(net_ports_add(&list, text, why, sizeof why));
    }
    assert_false(net_ports_add(&list, "9999:80", why, sizeof why));
    assert_non_null(strstr(why, "too many published ports"));
    assert_int_equal(list.count, NET_MAX_PORTS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_ipv4_ranges),
        cmocka_unit_test(test_default_ipv6_ranges),
        cmocka_unit_test(test_embedded_ipv4_judged_as_ipv4),
        cmocka_unit_test(test_defaults_table),
        cmocka_unit_test(test_first_match_wins),
        cmocka_unit_test(test_allow_overrides_default),
        cmocka_unit_test(test_deny_overrides_internet),
        cmocka_unit_test(test_prefix_edges),
        cmocka_unit_test(test_net_off_and_bad_family),
        cmocka_unit_test(test_policy_is_bounded),
        cmocka_unit_test(test_rule_fields),
        cmocka_unit_test(test_rule_round_trips),
        cmocka_unit_test(test_rule_errors),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_policy_argv_round_trip),
        cmocka_unit_test(test_take_option),
        cmocka_unit_test(test_port_parse),
        cmocka_unit_test(test_port_errors),
        cmocka_unit_test(test_ports_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
