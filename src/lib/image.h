/* Images (src/lib/image.c) and what they need from the VM config (vm.c). */
#ifndef SM_LIB_IMAGE_H
#define SM_LIB_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "supermachine.h"

uint32_t vm_config_memory_mib(const sm_vm_config *cfg);
uint32_t vm_config_cpus(const sm_vm_config *cfg);
/* The configured kernel or initramfs, or the one the asset lookup finds. */
sm_code vm_config_kernel_path(const sm_vm_config *cfg, char *out, size_t cap, sm_error *err);
sm_code vm_config_initrd_path(const sm_vm_config *cfg, char *out, size_t cap, sm_error *err);

#endif
