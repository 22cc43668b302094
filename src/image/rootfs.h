/* The guest's root filesystem image: an OCI image's layers, flattened
 * (image/layers.h) and packed by tar2sqfs into one read-only squashfs
 * (src/image/rootfs.c). */
#ifndef SM_IMAGE_ROOTFS_H
#define SM_IMAGE_ROOTFS_H

#include <stddef.h>

#include "image/layers.h"
#include "supermachine.h"

/* The squashfs packer: squashfs-tools-ng's tar2sqfs, found through PATH. */
#define ROOTFS_TOOL "tar2sqfs"
#define ROOTFS_TOOL_PACKAGE "squashfs-tools-ng"

/* Builds a squashfs (zstd, xattrs, owners and times kept) at out_path from
 * the layers (bottom first; see layers_flatten). Written to
 * out_path.tmp.<pid>, fsync'd, renamed over out_path, its folder fsync'd;
 * removed on any failure, so out_path is either the whole image or untouched.
 * SM_E_UNSUPPORTED when tar2sqfs is not installed; SM_E_IO when it fails (its
 * message is quoted); layers_flatten's errors otherwise. st may be NULL. */
sm_code rootfs_build(const char *const *layer_paths, size_t n, const char *out_path, struct layers_stats *st,
                     sm_error *err);

#endif
