/* Pruning an image store's OCI files (src/lib/prune.c), and the lock that
 * keeps a prune away from a pull. */
#ifndef SM_LIB_PRUNE_H
#define SM_LIB_PRUNE_H

#include <stdbool.h>

#include "supermachine.h"

/* Locks the OCI store oci_dir (IMAGES/.oci) through its file `lock`:
 * shared for a pull (waits while a prune runs), exclusive for a prune
 * (SM_E_BUSY at once while a pull runs). *fd is the lock's: close it to
 * let go. */
/* A folder's root filesystem in IMAGES/.oci/rootfs is named
 * ROOTFS_DIR_PREFIX + the hex of its key + ".sqfs" (rootfs_image.c). */
#define ROOTFS_DIR_PREFIX "dir-"

sm_code oci_store_lock(const char *oci_dir, bool exclusive, int *fd, sm_error *err);

#endif
