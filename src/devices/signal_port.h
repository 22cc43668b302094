/*
 * The signal port: how the guest agent tells the VMM it is ready and learns
 * what to do next, without any driver. The format is in
 * src/protocol/guest_abi.h, shared with the agent.
 */
#ifndef SM_DEVICES_SIGNAL_PORT_H
#define SM_DEVICES_SIGNAL_PORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/bus.h"

struct signal_port {
    void (*on_ready)(void *ctx); /* called at the read that follows READY */
    void *ctx;
    _Atomic uint32_t command;   /* what a guest read returns: SM_SIGNAL_CMD_* */
    _Atomic bool ready_written; /* step 1 seen, step 2 not yet */
    _Atomic uint64_t unknown_writes;
};

/* opaque = struct signal_port *; the window is 4 bytes at SM_SIGNAL_PORT. */
extern const struct bus_device_ops signal_port_bus_ops;

#endif
