/*
 * libFuzzer target: the guest network's policy (src/protocol/net_policy.c).
 * The input is tried whole as a rule and as a -p; what parses must format,
 * and its text parse back to the same. Its lines ("+TEXT" allow, else deny)
 * make a policy, which must cross the VMM's argv unchanged; then addresses
 * and ports taken from the input are judged by it: allows and describe
 * agree, and an IPv4 address is judged the same in its IPv6 forms.
 *
 *   build/fuzz/fuzz_net_policy -max_total_time=60
 */
#include "protocol/net_policy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void rule_round_trip(const char *text, enum net_action action)
{
    struct net_rule r, back;
    char why[256], formatted[NET_RULE_TEXT_MAX];
    if (!net_rule_parse(text, action, &r, why, sizeof why))
        return;
    if (!net_rule_format(&r, formatted, sizeof formatted))
        abort();
    if (!net_rule_parse(formatted, action, &back, why, sizeof why) || !net_rule_equal(&r, &back))
        abort();
}

static void port_round_trip(const char *text)
{
    struct net_port p, back;
    char why[256], formatted[NET_PORT_TEXT_MAX];
    if (!net_port_parse(text, &p, why, sizeof why))
        return;
    if (!net_port_format(&p, formatted, sizeof formatted))
        abort();
    if (!net_port_parse(formatted, &back, why, sizeof why) || !net_port_equal(&p, &back))
        abort();
    struct net_ports list = { 0 };
    if (!net_ports_add(&list, text, why, sizeof why) || net_ports_add(&list, formatted, why, sizeof why))
        abort(); /* the same host side twice clashes */
}

/* Each line a rule; lines that do not parse are left out. */
static void policy_of_lines(char *text, struct net_policy *p)
{
    net_policy_init(p);
    char why[256];
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        struct net_rule r;
        enum net_action action = line[0] == '+' ? NET_ALLOW : NET_DENY;
        if (net_rule_parse(line + (line[0] == '+'), action, &r, why, sizeof why))
            (void)net_policy_add(p, &r, why, sizeof why);
    }
}

static void policy_round_trip(const struct net_policy *p)
{
    struct net_policy_argv v;
    struct net_policy back;
    char why[256];
    if (!net_policy_argv(p, &v))
        abort(); /* every rule came through net_policy_add */
    if (!net_policy_parse_argv(&back, v.argc, v.argv, why, sizeof why) || back.count != p->count ||
        back.enabled != p->enabled)
        abort();
    for (size_t i = 0; i < p->count; i++)
        if (!net_rule_equal(&back.rules[i], &p->rules[i]))
            abort();
}

static bool judge(const struct net_policy *p, int family, const uint8_t *addr, uint16_t port)
{
    char line[160];
    bool allowed = net_policy_allows(p, family, addr, port);
    if (net_policy_describe(p, family, addr, port, line, sizeof line) != allowed || !memchr(line, 0, sizeof line))
        abort();
    return allowed;
}

/* 16 address bytes and 2 port bytes at a time from the input. */
static void judge_addresses(const struct net_policy *p, const uint8_t *data, size_t size)
{
    static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff }, nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
    for (size_t at = 0; at + 18 <= size && at < 18 * 32; at += 18) {
        const uint8_t *addr = data + at;
        uint16_t port = (uint16_t)(data[at + 16] << 8 | data[at + 17]);
        (void)judge(p, AF_INET6, addr, port);
        (void)judge(p, data[at] & 1 ? AF_INET : 12345, addr, port);
        bool as_ipv4 = judge(p, AF_INET, addr, port);
        uint8_t six[16];
        memcpy(six, mapped, 12);
        memcpy(six + 12, addr, 4);
        if (judge(p, AF_INET6, six, port) != as_ipv4)
            abort();
        memcpy(six, nat64, 12);
        if (judge(p, AF_INET6, six, port) != as_ipv4)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    rule_round_trip(text, NET_ALLOW);
    rule_round_trip(text, NET_DENY);
    port_round_trip(text);
    struct net_policy *p = malloc(sizeof *p);
    if (p) {
        policy_of_lines(text, p);
        p->enabled = !(size && data[0] == '!');
        policy_round_trip(p);
        judge_addresses(p, data, size);
        free(p);
    }
    free(text);
    return 0;
}
