/* A VM config's network, checked before any VM starts (vm_net.c). */
#ifndef SM_LIB_VM_NET_H
#define SM_LIB_VM_NET_H

#include "protocol/net_policy.h"
#include "supermachine.h"

struct vm_net {
    struct net_policy policy;
    struct net_ports ports;
};

void vm_net_init(struct vm_net *n);
/* A rule's text (an address rule, or NAME[:PORT] resolved to IPv4 rules). */
sm_code vm_net_add_rule(struct vm_net *n, enum net_action action, const char *text, sm_error *err);
sm_code vm_net_publish(struct vm_net *n, const char *spec, sm_error *err);

#endif
