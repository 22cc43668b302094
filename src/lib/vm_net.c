/*
 * A VM config's network (sm_vm_config_net, _allow, _deny, _publish): the
 * user's text checked here, before any VM starts, with the protocol's
 * parsers (src/protocol/net_policy.h) that the VMM uses again on its side.
 * A host name is the library's to resolve: the VMM takes addresses only.
 */
#include "lib/vm_net.h"
#include "base/error.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

void vm_net_init(struct vm_net *n)
{
    memset(n, 0, sizeof *n);
    net_policy_init(&n->policy);
}

/* "NAME[:PORT]" into its parts; false when the port is not 1-65535. */
static bool split_name(const char *text, char *name, size_t cap, char *port, size_t pcap)
{
    const char *colon = strrchr(text, ':');
    size_t len = colon ? (size_t)(colon - text) : strlen(text);
    if (len == 0 || len >= cap)
        return false;
    memcpy(name, text, len);
    name[len] = 0;
    port[0] = 0;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 1 || p > 65535 || (size_t)snprintf(port, pcap, ":%ld", p) >= pcap)
            return false;
    }
    return true;
}

/* A host name's IPv4 addresses, each a rule of the same action and port. */
static sm_code add_resolved(struct net_policy *p, enum net_action action, const char *text, const char *parse_why,
                            sm_error *err)
{
    char name[256], port[8];
    if (!split_name(text, name, sizeof name, port, sizeof port) || strchr(name, '/') || strchr(name, '['))
        return error_set(err, SM_E_INVALID, "%s", parse_why);
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *list = NULL;
    int e = getaddrinfo(name, NULL, &hints, &list);
    if (e)
        return error_set(err, SM_E_INVALID, "%s %s: not an address, and the name does not resolve (%s)",
                         net_action_option(action), text, gai_strerror(e));
    sm_code rc = SM_OK;
    for (struct addrinfo *a = list; a && !rc; a = a->ai_next) {
        char addr[INET_ADDRSTRLEN], rule_text[NET_RULE_TEXT_MAX], why[256];
        struct net_rule r;
        inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, addr, sizeof addr);
        snprintf(rule_text, sizeof rule_text, "%s%s", addr, port);
        if (!net_rule_parse(rule_text, action, &r, why, sizeof why) || !net_policy_add(p, &r, why, sizeof why))
            rc = error_set(err, SM_E_INVALID, "%s %s (%s): %s", net_action_option(action), text, addr, why);
    }
    freeaddrinfo(list);
    return rc;
}

sm_code vm_net_add_rule(struct vm_net *n, enum net_action action, const char *text, sm_error *err)
{
    if (!text)
        return error_set(err, SM_E_INVALID, "%s: no rule given", net_action_option(action));
    struct net_rule r;
    char why[256];
    if (net_rule_parse(text, action, &r, why, sizeof why)) {
        if (!net_policy_add(&n->policy, &r, why, sizeof why))
            return error_set(err, SM_E_LIMIT, "%s", why);
        return SM_OK;
    }
    /* Digits, dots and colons only: a mistyped address, not a name. */
    if (strspn(text, "0123456789.:[]/") == strlen(text))
        return error_set(err, SM_E_INVALID, "%s", why);
    return add_resolved(&n->policy, action, text, why, err);
}

sm_code vm_net_publish(struct vm_net *n, const char *spec, sm_error *err)
{
    char why[256];
    if (!spec || !net_ports_add(&n->ports, spec, why, sizeof why))
        return error_set(err, SM_E_INVALID, "%s", spec ? why : "-p: no port given");
    return SM_OK;
}
