/*
 * A VM's network: a user-mode NAT (libslirp) of its own, so no root, tap or
 * bridge is needed and every VM, every clone of one snapshot included, has
 * the same addresses without clashing:
 *
 *   guest             10.0.2.15/24 (the agent sets it), gateway 10.0.2.2
 *   10.0.2.2          the host's loopback, where the policy allows it
 *   10.0.2.3          the NAT's DNS resolver, forwarding to the host's
 *
 * libslirp is not thread-safe, so it lives on one thread of its own here:
 * the guest's frames (from the virtio-net device, on vCPU or event-loop
 * threads) are queued to it, judged by the egress policy (net_filter.h) and
 * handed to the NAT there; the NAT's frames for the guest leave through the
 * deliver callback, on that thread.
 */
#ifndef SM_VMM_NETWORK_H
#define SM_VMM_NETWORK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/net_policy.h"
#include "supermachine.h"

struct vm_network;

/* The NAT's host sockets (each guest connection or UDP flow, each published
 * port: one descriptor of the VMM's each): beyond, new flows are refused as
 * the policy refuses (RST, ICMP), so a guest cannot take every descriptor
 * of the VMM and starve its devices. */
#define VM_NETWORK_MAX_SOCKETS 256

struct vm_network_config {
    const struct net_policy *policy; /* copied */
    const struct net_ports *ports;   /* published guest ports; copied; may be NULL */
    /* Frames for the guest. Called on the network's thread. */
    void (*deliver)(void *ctx, const uint8_t *frame, size_t len);
    void *deliver_ctx;
    int log_fd;                      /* refusals and NAT errors, a line each; -1: none */
    bool confine;                    /* the thread loads its seccomp filter (confine.h) */
};

struct vm_network_stats {
    uint64_t to_nat, refused, dropped, queue_full, to_guest;
    uint64_t nat_full; /* flows refused because the NAT had VM_NETWORK_MAX_SOCKETS open */
};

/* Creates the NAT, publishes the ports (a port that cannot be bound is an
 * error naming it) and starts the thread. */
sm_code vm_network_open(const struct vm_network_config *cfg, struct vm_network **out, sm_error *err);
/* A frame from the guest (Ethernet header first): copied and queued; never
 * blocks (a full queue drops it, as a NIC would). Any thread. */
void vm_network_send(struct vm_network *n, const uint8_t *frame, size_t len);
void vm_network_stats(struct vm_network *n, struct vm_network_stats *out);
/* Publishes one more port while the VM runs ("[HOSTIP:]HOSTPORT:GUESTPORT",
 * as -p): done on the network's thread; this waits for its answer. */
sm_code vm_network_publish(struct vm_network *n, const char *spec, sm_error *err);
/* While held, nothing is delivered to the guest (frames for it are
 * dropped, as by a NIC with no buffers: TCP resends): the guest's memory and
 * queues stay still while the VM is paused for a snapshot. Returns once no
 * delivery is under way. */
void vm_network_hold(struct vm_network *n, bool hold);
/* Stops the thread and frees everything. NULL is fine. */
void vm_network_close(struct vm_network *n);

#endif
