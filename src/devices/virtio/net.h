/*
 * virtio-net (virtio 1.2 section 5.1): device ID 1, one receive and one
 * transmit queue, a MAC address in config space. The device moves Ethernet
 * frames between the guest's queues and a back end (struct net_backend):
 * the VMM plugs in the user-mode network (libslirp, under the egress
 * policy); tests plug in a recorder.
 *
 * Every frame carries the 12-byte virtio_net_hdr (VERSION_1 layout) in front
 * of it in the guest's buffers; the back end sees bare Ethernet frames.
 *
 * Threads: the transport calls the device with its lock held; the back end
 * calls virtio_net_receive from the VMM's event loop thread, and the device
 * takes the transport's lock itself there.
 */
#ifndef SM_DEVICES_VIRTIO_NET_H
#define SM_DEVICES_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"

#define VIRTIO_NET_QUEUE_SIZE 256
#define VIRTIO_NET_RX_QUEUE 0
#define VIRTIO_NET_TX_QUEUE 1
/* The one device feature offered (the transport adds VERSION_1 and INDIRECT_DESC). */
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_CONFIG_SIZE 6   /* mac[6]; no status field: VIRTIO_NET_F_STATUS is not offered */
#define VIRTIO_NET_HDR_SIZE 12
/* The shortest frame either way: an Ethernet header (dst, src, type). */
#define VIRTIO_NET_MIN_FRAME 14
/* The largest Ethernet frame either way: 1500-byte MTU + 14-byte header
 * (no VLAN tag, no offloads offered). Longer frames are dropped and counted. */
#define VIRTIO_NET_MAX_FRAME 1514

/* Where transmitted frames go. */
struct net_backend {
    /* A frame the guest sent (Ethernet header first, VIRTIO_NET_MIN_FRAME <=
     * len <= VIRTIO_NET_MAX_FRAME). Called with the transport's lock held: it
     * must not call back into the device. */
    void (*send)(void *ctx, const uint8_t *frame, size_t len);
    void *ctx;
};

struct virtio_net_stats {
    uint64_t tx_frames, rx_frames;
    uint64_t tx_dropped;   /* malformed or oversized chains from the guest */
    uint64_t rx_dropped;   /* frames for the guest it had no (usable) buffer for, or that
                              were not frames (shorter than an Ethernet header, too long) */
};

/* mac: the guest's address (6 bytes); backend->send is required (the
 * struct is copied). NULL with errno: EINVAL for a missing argument, ENOMEM.
 * Hand the device to a transport, which then owns it. */
struct virtio_device *virtio_net_create(const uint8_t mac[6], const struct net_backend *backend);

/* A frame for the guest (Ethernet header first). False (and counted) when
 * the guest has posted no receive buffer or the frame does not fit: a NIC
 * drops what it cannot hold, and TCP in the guest recovers. Any thread but
 * one already inside the transport (a device op, the back end's send). */
bool virtio_net_receive(struct virtio_device *dev, const uint8_t *frame, size_t len);

/* The counters so far (zeros for a device that is not virtio-net). Takes the transport's lock. */
void virtio_net_stats(struct virtio_device *dev, struct virtio_net_stats *out);

#endif
