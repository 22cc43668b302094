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
/* The folder packer, of the same package. */
#define ROOTFS_DIR_TOOL "gensquashfs"

/* Free space wanted for a root filesystem, as a multiple of its layers'
 * (compressed) size. The squashfs of the Debian test image is 0.91 times
 * its gzip layer (see ROOTFS_ZSTD_LEVEL in rootfs.c); twice leaves room for
 * layers that zstd in 128 KiB blocks packs worse than gzip did, and for the
 * bake that follows (a snapshot of the guest's memory). The real size is
 * known only once packed: a disk that fills all the same is reported as
 * such by rootfs_build. */
#define ROOTFS_SPACE_FACTOR 2

/* SM_E_LIMIT ("not enough free space in DIR for the image's root
 * filesystem ...: No space left on device") when out_path's folder has less
 * than ROOTFS_SPACE_FACTOR times the layer files' sizes free. */
sm_code rootfs_check_space(const char *const *layer_paths, size_t n, const char *out_path,
                           sm_error *err);

/* Builds a squashfs (zstd, xattrs, owners and times kept) at out_path from
 * the layers (bottom first; see layers_flatten, which max_unpacked is
 * given to). Written to out_path.tmp.<pid>, fsync'd, renamed over out_path,
 * its folder fsync'd; removed on any failure, so out_path is either the
 * whole image or untouched. SM_E_UNSUPPORTED when tar2sqfs is not
 * installed; SM_E_IO when it fails (its message is quoted), with "No space
 * left on device" when its file system filled up; layers_flatten's errors
 * otherwise. st may be NULL. */
sm_code rootfs_build(const char *const *layer_paths, size_t n, const char *out_path,
                     uint64_t max_unpacked, struct layers_stats *st, sm_error *err);

/* Like rootfs_build, from a root filesystem folder packed by gensquashfs
 * (owners, modes, mtimes and readable xattrs kept; symlinks stored, not
 * followed; mount points below dir not entered). Whole or nothing as
 * rootfs_build; SM_E_UNSUPPORTED when gensquashfs is not installed, SM_E_IO
 * with its message when it fails (an unreadable entry), ENOSPC when the
 * disk filled. */
sm_code rootfs_build_dir(const char *dir, const char *out_path, sm_error *err);

#endif
