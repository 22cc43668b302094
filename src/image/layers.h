/* OCI layer flattening: the changesets of an image, applied in order, as one
 * tar stream of the merged tree (src/image/layers.c; rules in its table). */
#ifndef SM_IMAGE_LAYERS_H
#define SM_IMAGE_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "supermachine.h"

/* Bounds on hostile layers; going past one is SM_E_LIMIT. */
#define LAYERS_MAX_LAYERS 1000u          /* layers per image */
#define LAYERS_MAX_ENTRIES 10000000u     /* tar entries read, all layers together */
#define LAYERS_MAX_METADATA (1ull << 30) /* bytes of paths, xattrs and tree kept in memory */
#define LAYERS_MAX_XATTR_VALUE 65536u    /* bytes of one value (Linux's XATTR_SIZE_MAX) */
#define LAYERS_MAX_XATTRS_TOTAL 131072u  /* bytes of names and values of one entry */

/* What layers_flatten did. */
struct layers_stats {
    uint64_t entries;        /* entries in the merged tar (folders, files, links, nodes) */
    uint64_t bytes;          /* file data written */
    uint64_t whiteouts;      /* whiteout and opaque markers read */
    uint64_t xattrs_dropped; /* xattrs outside user./trusted./security., which squashfs cannot keep */
    uint64_t sockets_dropped;/* socket entries (meaningless in an image) */
};

/* Layers bottom first; each a tar, plain or gzip- or zstd-compressed
 * (libarchive detects the filter). Writes the merged tree as one pax tar to
 * out_fd: every folder first (parents before children, the root as "./"),
 * then regular files, symlinks and device nodes with their data, then the
 * extra names of hard-linked files. Owners are numeric only (no user names).
 *
 * Reads every layer twice (once for the tree, once for the data), never
 * holding file contents in memory. If out_fd is a socket, writes use
 * MSG_NOSIGNAL; if it is a pipe, a reader that goes away raises SIGPIPE, so
 * pass a socket (rootfs_build does) or ignore SIGPIPE.
 *
 * Errors name the layer and the entry: "layer 2 of 3 (sha256:0123abcd4567):
 * entry '../x': a path that leaves the root". SM_E_NOTFOUND/SM_E_IO for a
 * layer that cannot be opened or read, SM_E_INVALID for a corrupt or hostile
 * layer, SM_E_LIMIT past a bound above, SM_E_IO when out_fd fails. On error,
 * part of the tar may have been written: the caller discards it. st may be
 * NULL; it is filled on success.
 *
 * max_unpacked caps the bytes of file data in all the layers together (each
 * entry's size as its tar header gives it, counted when the header is read,
 * before its data is decompressed, so a decompression bomb costs nothing):
 * past it, SM_E_LIMIT names the cap, the layer and the entry. It bounds what
 * is written too. SM_PULL_DEFAULT_MAX_UNPACKED is the library's default. */
sm_code layers_flatten(const char *const *layer_paths, size_t n, int out_fd, uint64_t max_unpacked,
                       struct layers_stats *st, sm_error *err);

#endif
