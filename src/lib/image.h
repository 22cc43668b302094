/* Images (src/lib/image.c) and what they need from the VM config (vm.c). */
#ifndef SM_LIB_IMAGE_H
#define SM_LIB_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "supermachine.h"

uint32_t vm_config_memory_mib(const sm_vm_config *cfg);
uint32_t vm_config_volume_count(const sm_vm_config *cfg);
/* The volumes a running VM has mounted (its vm.info's). */
uint32_t vm_volume_count(const sm_vm *vm);
uint32_t vm_config_cpus(const sm_vm_config *cfg);
/* The configured kernel or initramfs, or the one the asset lookup finds. */
sm_code vm_config_kernel_path(const sm_vm_config *cfg, char *out, size_t cap, sm_error *err);
sm_code vm_config_initrd_path(const sm_vm_config *cfg, char *out, size_t cap, sm_error *err);

/* What an OCI image adds to a bake (src/lib/oci_image.c). */
struct image_bake_extra {
    const char *disk;          /* the root disk image, or NULL */
    const char *cmdline;       /* extra kernel parameters, or NULL */
    const char *ref, *digest;  /* recorded in image.info, or NULL */
    const char *config_json;   /* kept as oci-config.json, or NULL */
    size_t config_len;
};
/* sm_image_bake with extras (x may be NULL). */
sm_code image_bake(const sm_store *store, const char *name, const sm_vm_config *cfg, const struct image_bake_extra *x,
                   sm_image **out, sm_error *err);
/* name's folder in the store's images (need not exist); SM_E_INVALID for a bad name. */
sm_code image_named_dir(const sm_store *store, const char *name, char *out, size_t cap, sm_error *err);
/* sm_image_from_snapshot for an image of this store (NULL: default): VMs
 * restored from it keep their state in the store. */
sm_code image_open_dir(const sm_store *store, const char *dir, sm_image **out, sm_error *err);
/* What sm_vm_config_image sets: the snapshot folder to restore (NULL: boot)
 * and the VM folder of the image's store (NULL: the default). */
sm_code vm_config_set_image(sm_vm_config *cfg, const char *dir, const char *vms, const char *images);

#endif
