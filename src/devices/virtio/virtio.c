/* Helpers every virtio device uses to reach its transport (see virtio.h). */
#include "devices/virtio/virtio.h"

#include <stddef.h>

void virtio_device_notify_used(struct virtio_device *dev)
{
    if (dev->transport_ops && dev->transport_ops->notify_used)
        dev->transport_ops->notify_used(dev->transport);
}

void virtio_device_notify_config(struct virtio_device *dev)
{
    if (dev->transport_ops && dev->transport_ops->notify_config)
        dev->transport_ops->notify_config(dev->transport);
}

void virtio_device_set_needs_reset(struct virtio_device *dev)
{
    if (dev->transport_ops && dev->transport_ops->set_needs_reset)
        dev->transport_ops->set_needs_reset(dev->transport);
}

void virtio_device_lock(struct virtio_device *dev)
{
    if (dev->transport_ops && dev->transport_ops->lock)
        dev->transport_ops->lock(dev->transport);
}

void virtio_device_unlock(struct virtio_device *dev)
{
    if (dev->transport_ops && dev->transport_ops->unlock)
        dev->transport_ops->unlock(dev->transport);
}

bool virtio_device_has_feature(const struct virtio_device *dev, unsigned bit)
{
    return bit < 64 && (dev->driver_features >> bit) & 1;
}

int virtio_device_complete(struct virtio_device *dev, uint16_t q, uint16_t head, uint32_t written)
{
    if (!dev->queues || q >= dev->ops->num_queues)
        return -1;
    struct virtqueue *vq = &dev->queues[q];
    if (vq_push(vq, dev->mem, head, written) < 0) {
        virtio_device_set_needs_reset(dev);
        return -1;
    }
    if (vq_should_interrupt(vq, dev->mem))
        virtio_device_notify_used(dev);
    return 0;
}

void virtio_device_destroy(struct virtio_device *dev)
{
    if (dev && dev->ops && dev->ops->destroy)
        dev->ops->destroy(dev);
}
