/* Where a VM's files come from (guest kernel, initramfs, the VMM program) and
 * where its state lives (the runtime folder). The search order is the one
 * described in the "VMs" section of supermachine.h. */
#ifndef SM_LIB_ASSETS_H
#define SM_LIB_ASSETS_H

#include <stdbool.h>
#include <stddef.h>

#include "supermachine.h"

typedef enum asset_kind {
    ASSET_KERNEL, /* bzImage */
    ASSET_INITRD, /* initramfs.cpio */
    ASSET_VMM,    /* supermachine-vmm */
} asset_kind;

/* Finds an asset; writes its path to out. SM_E_NOTFOUND names every place
 * looked; SM_E_INVALID when an environment variable names a missing file. */
sm_code assets_find(asset_kind kind, char *out, size_t cap, sm_error *err);

/* RUNTIME/supermachine/vms (see supermachine.h), created (0700) when
 * `create` is set. A /tmp fallback folder must be a real folder owned by
 * this user, or SM_E_IO says why not. */
sm_code assets_vms_dir(char *out, size_t cap, bool create, sm_error *err);

#endif
