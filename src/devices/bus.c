#include "devices/bus.h"

#include <string.h>

static const struct bus_range *find(const struct bus *bus, uint64_t addr, uint32_t len)
{
    for (int i = 0; i < bus->n; i++) {
        const struct bus_range *r = &bus->ranges[i];
        if (addr >= r->base && addr - r->base < r->len && len <= r->len - (addr - r->base))
            return r;
    }
    return NULL;
}

int bus_add(struct bus *bus, uint64_t base, uint64_t len, const struct bus_device_ops *ops, void *opaque)
{
    if (len == 0 || base + len < base || bus->n >= BUS_MAX_RANGES)
        return -1;
    for (int i = 0; i < bus->n; i++) {
        const struct bus_range *r = &bus->ranges[i];
        if (base < r->base + r->len && r->base < base + len)
            return -1;
    }
    bus->ranges[bus->n++] = (struct bus_range){ .base = base, .len = len, .ops = ops, .opaque = opaque };
    return 0;
}

bool bus_read(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len)
{
    const struct bus_range *r = find(bus, addr, len);
    if (!r || !r->ops->read) {
        memset(data, 0xff, len);
        return r != NULL;
    }
    r->ops->read(r->opaque, addr - r->base, data, len);
    return true;
}

bool bus_write(const struct bus *bus, uint64_t addr, const uint8_t *data, uint32_t len)
{
    const struct bus_range *r = find(bus, addr, len);
    if (!r)
        return false;
    if (r->ops->write)
        r->ops->write(r->opaque, addr - r->base, data, len);
    return true;
}
