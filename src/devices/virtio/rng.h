/*
 * virtio-rng (entropy device, virtio 1.1 section 5.4): device ID 4, one
 * request queue, no config space, no feature bits. Each chain's writable
 * buffers are filled from getrandom(2), at most VIRTIO_RNG_MAX_REQUEST bytes
 * per chain (the spec lets the device fill less than offered).
 */
#ifndef SM_DEVICES_VIRTIO_RNG_H
#define SM_DEVICES_VIRTIO_RNG_H

#include "devices/virtio/virtio.h"

#define VIRTIO_RNG_QUEUE_SIZE   64
#define VIRTIO_RNG_MAX_REQUEST  4096

/* NULL when out of memory. Hand it to a transport, which then owns it. */
struct virtio_device *virtio_rng_create(void);

#endif
