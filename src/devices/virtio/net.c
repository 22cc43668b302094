/*
 * virtio-net: Ethernet frames between the guest's two queues and a back end.
 * Interface and thread rules: net.h.
 *
 * Only VIRTIO_NET_F_MAC is offered, so the 12-byte header in front of every
 * frame (VERSION_1 layout, little-endian) carries no work for either side:
 *
 *   off  size  field        transmit (driver -> device)   receive (device -> driver)
 *   0    1     flags        must be 0 (no checksum offload) 0
 *   1    1     gso_type     must be 0 (no segmentation)     0 (GSO_NONE)
 *   2    2     hdr_len      ignored                         0
 *   4    2     gso_size     ignored                         0
 *   6    2     csum_start   ignored                         0
 *   8    2     csum_offset  ignored                         0
 *   10   2     num_buffers  ignored                         1 (no mergeable buffers)
 *
 * A frame may be split over the chain's buffers at any byte, header included:
 * Linux sends header and frame in one buffer or two (more with indirect
 * descriptors), and without mergeable or big receive buffers it posts one
 * buffer of header + 1518 bytes per frame (older kernels: the header and the
 * data as two buffers of one chain).
 *
 * Every chain gets a defined answer; a transmit chain's used length is always
 * 0 (the device writes nothing into it):
 *
 *   transmit chain (queue 1)                        device
 *   any writable buffer (even an empty one)         dropped, tx_dropped
 *   fewer than 12 readable bytes (no whole header)  dropped, tx_dropped
 *   header flags or gso_type not 0 (offloads never  dropped, tx_dropped: its checksum or
 *     offered)                                        segmentation would be left undone
 *   frame shorter than 14 bytes (no Ethernet header) dropped, tx_dropped
 *   frame longer than 1514 bytes                    dropped, tx_dropped
 *   otherwise                                       the frame to backend->send, tx_frames
 *
 *   frame from the back end (receive, queue 0)      device
 *   device not live (before DRIVER_OK, after a      false, rx_dropped; no chain taken
 *     reset or a broken ring)
 *   shorter than 14 or longer than 1514 bytes      false, rx_dropped; no chain taken
 *   no chain posted                                 false, rx_dropped
 *   a chain with a readable buffer                  chain returned with used length 0;
 *                                                   false, rx_dropped
 *   a chain of fewer than 12 + frame writable bytes the same (the spec asks for at least
 *                                                   12 + 1514; a smaller chain that holds
 *                                                   this frame is used all the same)
 *   otherwise                                       header + frame written, used length
 *                                                   12 + frame; true, rx_frames
 *
 *   either queue
 *   a ring the walker reports broken (head or next  DEVICE_NEEDS_RESET; the device stops
 *     out of range, a loop, a buffer outside RAM,   using both queues until the driver
 *     a readable buffer after a writable one, ...)  resets it; chains already handled
 *                                                   stay used
 *
 * Interrupts: one per transmit kick that returned chains, one per received
 * frame, none while the driver sets VRING_AVAIL_F_NO_INTERRUPT.
 *
 * State: nothing beyond the transport's queues (the MAC is fixed at creation),
 * so a restored transport's activate simply resumes on mid-stream queues.
 */
#include "devices/virtio/net.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HDR_FLAGS_OFF       0
#define HDR_GSO_TYPE_OFF    1
#define HDR_NUM_BUFFERS_OFF 10

struct net {
    struct virtio_device dev;
    uint8_t config[VIRTIO_NET_CONFIG_SIZE];
    struct net_backend backend;
    /* The queues may be used: DRIVER_OK seen, no reset or broken ring since.
     * virtio_net_receive comes from another thread at any time and must not
     * touch a queue the driver has not finished setting up. */
    bool live;
    struct virtio_net_stats stats;
    uint8_t frame[VIRTIO_NET_MAX_FRAME]; /* a transmitted frame, gathered from its buffers */
    struct vq_chain chain;               /* scratch, too big for a vCPU thread's stack; the lock covers it */
};

static const struct virtio_device_ops net_ops;

static void stop_on_broken_ring(struct net *n)
{
    virtio_device_set_needs_reset(&n->dev);
    n->live = false;
}

/* --- transmit ---------------------------------------------------------------------------- */

/* Whether the chain holds one frame we may send (see the table at the top); gathers it into n->frame. */
static bool gather_frame(struct net *n, const struct vq_chain *c, size_t *len)
{
    if (c->nbufs > c->nreadable || c->readable_bytes < VIRTIO_NET_HDR_SIZE)
        return false;
    uint64_t frame_len = c->readable_bytes - VIRTIO_NET_HDR_SIZE;
    if (frame_len < VIRTIO_NET_MIN_FRAME || frame_len > VIRTIO_NET_MAX_FRAME)
        return false;
    uint8_t hdr[VIRTIO_NET_HDR_SIZE];
    vq_chain_read(c, 0, hdr, sizeof hdr);
    if (hdr[HDR_FLAGS_OFF] || hdr[HDR_GSO_TYPE_OFF])
        return false;
    /* A private copy: the back end must not see bytes the guest changes meanwhile. */
    *len = (size_t)vq_chain_read(c, VIRTIO_NET_HDR_SIZE, n->frame, frame_len);
    return true;
}

static void transmit_chain(struct net *n, const struct vq_chain *c)
{
    size_t len;
    if (!gather_frame(n, c, &len)) {
        n->stats.tx_dropped++;
        return;
    }
    n->backend.send(n->backend.ctx, n->frame, len);
    n->stats.tx_frames++;
}

/*
 * Sends what the driver posted, at most one ring's worth per kick (chains
 * added meanwhile come with their own kick), with one interrupt for the batch.
 */
static void transmit(struct net *n)
{
    struct virtqueue *vq = &n->dev.queues[VIRTIO_NET_TX_QUEUE];
    uint32_t returned = 0;
    while (returned < vq->size) {
        int rc = vq_pop(vq, n->dev.mem, &n->chain);
        if (rc == 0)
            break;
        if (rc > 0)
            transmit_chain(n, &n->chain);
        if (rc < 0 || vq_push(vq, n->dev.mem, n->chain.head, 0) < 0) {
            stop_on_broken_ring(n);
            break;
        }
        returned++;
    }
    if (returned && vq_should_interrupt(vq, n->dev.mem))
        virtio_device_notify_used(&n->dev);
}

/* --- receive ------------------------------------------------------------------------------ */

static bool chain_holds(const struct vq_chain *c, size_t frame_len)
{
    return c->nreadable == 0 && c->writable_bytes >= VIRTIO_NET_HDR_SIZE + frame_len;
}

/* Writes header and frame into a chain that holds them; returns the used length. */
static uint32_t fill_chain(const struct vq_chain *c, const uint8_t *frame, size_t len)
{
    uint8_t hdr[VIRTIO_NET_HDR_SIZE] = { 0 };
    hdr[HDR_NUM_BUFFERS_OFF] = 1; /* le16 1 */
    vq_chain_write(c, 0, hdr, sizeof hdr);
    vq_chain_write(c, VIRTIO_NET_HDR_SIZE, frame, len);
    return (uint32_t)(VIRTIO_NET_HDR_SIZE + len);
}

/* One frame into the next receive chain (see the table at the top); with the lock held. */
static bool deliver(struct net *n, const uint8_t *frame, size_t len)
{
    if (!n->live || !frame || len < VIRTIO_NET_MIN_FRAME || len > VIRTIO_NET_MAX_FRAME)
        return false;
    int rc = vq_pop(&n->dev.queues[VIRTIO_NET_RX_QUEUE], n->dev.mem, &n->chain);
    if (rc == 0)
        return false;
    if (rc < 0) {
        stop_on_broken_ring(n);
        return false;
    }
    uint32_t used = chain_holds(&n->chain, len) ? fill_chain(&n->chain, frame, len) : 0;
    if (virtio_device_complete(&n->dev, VIRTIO_NET_RX_QUEUE, n->chain.head, used) < 0) {
        n->live = false; /* complete asked for the reset */
        return false;
    }
    return used != 0;
}

bool virtio_net_receive(struct virtio_device *dev, const uint8_t *frame, size_t len)
{
    if (!dev || dev->ops != &net_ops)
        return false;
    struct net *n = dev->priv;
    virtio_device_lock(dev);
    bool delivered = deliver(n, frame, len);
    if (delivered)
        n->stats.rx_frames++;
    else
        n->stats.rx_dropped++;
    virtio_device_unlock(dev);
    return delivered;
}

void virtio_net_stats(struct virtio_device *dev, struct virtio_net_stats *out)
{
    *out = (struct virtio_net_stats){ 0 };
    if (!dev || dev->ops != &net_ops)
        return;
    virtio_device_lock(dev);
    *out = ((struct net *)dev->priv)->stats;
    virtio_device_unlock(dev);
}

/* --- device ops --------------------------------------------------------------------------- */

static void net_queue_notify(struct virtio_device *dev, uint16_t q)
{
    struct net *n = dev->priv;
    /* New receive buffers need no work now: the back end's next frame finds them. */
    if (q == VIRTIO_NET_TX_QUEUE && n->live)
        transmit(n);
}

/* Also what a restored transport calls: the queues may be mid-stream, which changes nothing here. */
static int net_activate(struct virtio_device *dev)
{
    ((struct net *)dev->priv)->live = true;
    return 0;
}

static void net_reset(struct virtio_device *dev) { ((struct net *)dev->priv)->live = false; }

static void net_read_config(struct virtio_device *dev, uint32_t off, void *data, uint32_t len)
{
    const struct net *n = dev->priv;
    memcpy(data, n->config + off, len); /* the transport checked off + len <= config_size */
}

static void net_destroy(struct virtio_device *dev) { free(dev->priv); }

/* No write_config: the MAC is the host's choice (VIRTIO_NET_F_CTRL_MAC_ADDR is not offered). */
static const struct virtio_device_ops net_ops = {
    .name = "net",
    .device_id = VIRTIO_ID_NET,
    .num_queues = 2,
    .queue_max_size = VIRTIO_NET_QUEUE_SIZE,
    .features = 1ull << VIRTIO_NET_F_MAC,
    .config_size = VIRTIO_NET_CONFIG_SIZE,
    .read_config = net_read_config,
    .activate = net_activate,
    .queue_notify = net_queue_notify,
    .reset = net_reset,
    .destroy = net_destroy,
};

struct virtio_device *virtio_net_create(const uint8_t mac[6], const struct net_backend *backend)
{
    if (!mac || !backend || !backend->send) {
        errno = EINVAL;
        return NULL;
    }
    struct net *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->dev.ops = &net_ops;
    n->dev.priv = n;
    memcpy(n->config, mac, 6);
    n->backend = *backend;
    return &n->dev;
}
