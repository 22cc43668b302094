/*
 * virtio-rng: the driver posts device-writable buffers on queue 0; we fill
 * them with host randomness and return them with the byte count.
 */
#include "devices/virtio/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

struct rng {
    struct virtio_device dev;
    struct vq_chain chain; /* scratch, too big for a vCPU thread's stack */
};

/* Fills up to `len` bytes at p; returns how many were filled. */
static uint32_t fill_random(uint8_t *p, uint32_t len)
{
    uint32_t done = 0;
    while (done < len) {
        ssize_t n = getrandom(p + done, len - done, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (uint32_t)n;
    }
    return done;
}

/* Fills the chain's writable buffers, at most VIRTIO_RNG_MAX_REQUEST bytes in all. */
static uint32_t fill_chain(const struct vq_chain *chain)
{
    uint32_t written = 0;
    for (uint16_t i = chain->nreadable; i < chain->nbufs && written < VIRTIO_RNG_MAX_REQUEST; i++) {
        const struct vq_buf *b = &chain->bufs[i];
        uint32_t want = b->len;
        if (want > VIRTIO_RNG_MAX_REQUEST - written)
            want = VIRTIO_RNG_MAX_REQUEST - written;
        uint32_t got = fill_random(b->host, want);
        written += got;
        if (got < want)
            break;
    }
    return written;
}

static void rng_queue_notify(struct virtio_device *dev, uint16_t q)
{
    struct rng *r = dev->priv;
    struct virtqueue *vq = &dev->queues[q];
    /* At most one ring's worth per kick; buffers added meanwhile come with their own kick. */
    for (uint32_t n = 0; n < vq->size; n++) {
        int rc = vq_pop(vq, dev->mem, &r->chain);
        if (rc == 0)
            return;
        if (rc < 0) {
            virtio_device_set_needs_reset(dev);
            return;
        }
        if (virtio_device_complete(dev, q, r->chain.head, fill_chain(&r->chain)) < 0)
            return;
    }
}

static void rng_destroy(struct virtio_device *dev) { free(dev->priv); }

static const struct virtio_device_ops rng_ops = {
    .name = "rng",
    .device_id = VIRTIO_ID_RNG,
    .num_queues = 1,
    .queue_max_size = VIRTIO_RNG_QUEUE_SIZE,
    .features = 0,
    .config_size = 0,
    .queue_notify = rng_queue_notify,
    .destroy = rng_destroy,
};

struct virtio_device *virtio_rng_create(void)
{
    struct rng *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->dev.ops = &rng_ops;
    r->dev.priv = r;
    return &r->dev;
}
