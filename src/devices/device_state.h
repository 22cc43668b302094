/*
 * How a device saves and restores itself for a snapshot.
 *
 * A device with state a snapshot must keep exports one const struct
 * device_state_ops beside its bus ops. Its state is a plain-data struct of
 * exactly state_size bytes (fixed-size fields, no pointers), described in
 * the device's header; the VMM writes it raw into a snapshot section and
 * hands it back on restore as hostile input. src/vmm/persist.c lists the
 * devices a VM has, so a new device touches its own file and one row there.
 *
 *   save           fills every byte of state (padding too: snapshots of the
 *                  same machine are byte-identical); state is aligned for
 *                  any type
 *   restore        checks every field; a bad one is SM_E_INVALID naming the
 *                  device and field, with the device left as it was
 *   restore_begin  optional: before any device of the VM is restored
 *   restore_end    optional: once every device of the VM restored; for
 *                  host-side state that does not survive a snapshot (host
 *                  connections, say), from the thread that restores
 */
#ifndef SM_DEVICES_DEVICE_STATE_H
#define SM_DEVICES_DEVICE_STATE_H

#include <stddef.h>

#include "supermachine.h"

/* Largest state any device may have (a whole section stays far below SNAP_MAX_SECTION). */
#define DEVICE_STATE_MAX 4096

struct device_state_ops {
    const char *name;        /* for messages */
    size_t state_size;       /* <= DEVICE_STATE_MAX */
    void (*save)(void *dev, void *state);
    sm_code (*restore)(void *dev, const void *state, sm_error *err);
    void (*restore_begin)(void *dev);
    void (*restore_end)(void *dev);
};

#endif
