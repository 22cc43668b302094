/* A root filesystem folder (an OCI bundle's root.path) as an image: its
 * content key (a walk of its metadata) and, later, its squashfs. */
#ifndef SM_IMAGE_ROOTFS_DIR_H
#define SM_IMAGE_ROOTFS_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "image/digest.h"
#include "supermachine.h"

/* Bounds on the walk: a deeper or larger tree is refused (SM_E_LIMIT). */
#define ROOTFS_DIR_MAX_DEPTH 128
#define ROOTFS_DIR_MAX_ENTRIES 2000000u

struct rootfs_dir_limits {
    unsigned max_depth;   /* folders below dir; 0: ROOTFS_DIR_MAX_DEPTH */
    uint64_t max_entries; /* 0: ROOTFS_DIR_MAX_ENTRIES */
};

/* The content key of the tree at dir: "sha256:<hex>" over a canonical walk.
 * Names are sorted bytewise; symlinks are not followed; mount points below
 * dir are hashed as entries but not entered (as gensquashfs
 * --one-file-system does). Per entry, in this order:
 *
 *   | field        | encoding                                      |
 *   |--------------|-----------------------------------------------|
 *   | path length  | u32 little endian                             |
 *   | path         | relative to dir ("" for dir itself), no NUL   |
 *   | mode         | u32 LE (type bits and permissions: st_mode)   |
 *   | uid, gid     | u32 LE each                                   |
 *   | size         | u64 LE (0 for folders: their size varies)     |
 *   | mtime        | i64 LE ns (regular files with data; else 0)   |
 *   | rdev         | u64 LE (devices only, 0 otherwise)            |
 *   | target len   | u32 LE, then the symlink target (0 if none)   |
 *
 * Only the times of regular files with data count: engines make mount
 * points and links in each container's root (an empty /run/.containerenv,
 * /etc/mtab), which must not make a new image.
 * File contents are NOT read, for speed: an edit in place that keeps a
 * file's size and mtime is not seen (the cached image is used). limits may
 * be NULL. SM_E_INVALID when dir is not a folder; SM_E_IO for an unreadable
 * entry; SM_E_LIMIT past the bounds. */
sm_code rootfs_dir_key(const char *dir, const struct rootfs_dir_limits *limits,
                       char out[OCI_DIGEST_SIZE], sm_error *err);

#endif
