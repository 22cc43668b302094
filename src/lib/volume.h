/* Volumes (supermachine.h's sm_volume_*): what sm_vm_start needs of them. */
#ifndef SM_LIB_VOLUME_H
#define SM_LIB_VOLUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "supermachine.h"

/* 16 MiB to 16 TiB. */
bool volume_size_ok(uint64_t bytes);

/* The file of source (a volume name, or a path with a '/') into out: a
 * named volume that does not exist is made with create_size. SM_E_BUSY when
 * a VM holds it so that this one could not (read_only: only a writer
 * counts). */
sm_code volume_resolve(const sm_store *store, const char *source, bool read_only, uint64_t create_size, char *out,
                       size_t cap, sm_error *err);

#endif
