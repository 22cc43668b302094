#include "devices/signal_port.h"

#include <string.h>

#include "protocol/guest_abi.h"

static uint32_t le32(const uint8_t *data, uint32_t len)
{
    uint32_t v = 0;
    memcpy(&v, data, len < 4 ? len : 4);
    return v;
}

static void signal_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct signal_port *sp = opaque;
    uint32_t v = offset == 0 ? atomic_load(&sp->command) : 0;
    memcpy(data, &v, len < 4 ? len : 4);
    if (offset == 0 && len == 4 && atomic_exchange(&sp->ready_written, false) && sp->on_ready)
        sp->on_ready(sp->ctx);
}

static void signal_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct signal_port *sp = opaque;
    uint32_t v = le32(data, len);
    if (offset == 0 && len == 4 && v == SM_SIGNAL_READY)
        atomic_store(&sp->ready_written, true);
    else
        atomic_fetch_add(&sp->unknown_writes, 1);
}

const struct bus_device_ops signal_port_bus_ops = {
    .read = signal_read,
    .write = signal_write,
};
