/*
 * virtio-blk (virtio 1.1 section 5.2): device ID 2, one request queue of
 * VIRTIO_BLK_QUEUE_SIZE entries, backed by an image file read with
 * pread(2). Two kinds:
 *   - read-only: an image's root filesystem (erofs/squashfs), shared by
 *     every VM of that image; nothing ever writes to the file;
 *   - writable: a volume (ext4), one VM's at a time; T_OUT is pwrite(2),
 *     T_FLUSH is fdatasync(2).
 *
 * Features offered: VIRTIO_BLK_F_RO (read-only kind: the guest mounts it
 * read-only) or VIRTIO_BLK_F_FLUSH (writable kind), VIRTIO_BLK_F_SEG_MAX
 * and VIRTIO_BLK_F_BLK_SIZE (512). Not offered: SIZE_MAX, GEOMETRY,
 * TOPOLOGY, CONFIG_WCE, MQ, DISCARD, WRITE_ZEROES.
 *
 * Config space (60 bytes, little-endian; fields of features we do not offer
 * read 0; writes are ignored):
 *   off  size  field                      value
 *   0    8     capacity                   image size / 512, rounded down
 *   8    4     size_max                   0 (SIZE_MAX not offered)
 *   12   4     seg_max                    VIRTIO_BLK_SEG_MAX
 *   16   4     geometry                   0
 *   20   4     blk_size                   512
 *   24   8     topology                   0
 *   32   1     writeback                  0
 *   33   1     unused                     0
 *   34   2     num_queues                 0 (MQ not offered)
 *   36   24    discard / write-zeroes     0
 *
 * Snapshots: the device keeps no state beyond its queues (the transport
 * saves those) and its backing file. A restored VM gets a fresh device on
 * the same image. (A VM with a writable disk is never snapshotted: see
 * persist.c.) The image must not change between the bake and any
 * restore: the guest's page cache, saved in the snapshot, holds blocks of
 * it (the caller keys images by digest so a changed image is a new image).
 */
#ifndef SM_DEVICES_VIRTIO_BLK_H
#define SM_DEVICES_VIRTIO_BLK_H

#include "devices/virtio/virtio.h"

#define VIRTIO_BLK_QUEUE_SIZE  256
/*
 * Data buffers per request a driver may use. Linux adds a header and a
 * status descriptor to seg_max, so a request is at most seg_max + 2 =
 * VQ_MAX_CHAIN_BUFS buffers: exactly what vq_pop accepts in one chain.
 */
#define VIRTIO_BLK_SEG_MAX     (VQ_MAX_CHAIN_BUFS - 2)
#define VIRTIO_BLK_SECTOR_SIZE 512u
#define VIRTIO_BLK_ID_BYTES    20u
#define VIRTIO_BLK_CONFIG_SIZE 60u

/* Feature bits (section 5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_RO       5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH    9

/* Request types (section 5.2.6). */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

/* Status byte values. */
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

/*
 * Creates the device over fd, an open image file (regular file or block
 * device) opened read-only. Takes ownership of fd: virtio_device_destroy
 * closes it, and so does a failed create. The capacity is the file's size
 * rounded down to a whole number of 512-byte sectors: a trailing partial
 * sector is invisible to the guest (image builders pad to a block size, so
 * this loses nothing in practice). The size is read once, here.
 *
 * serial: the ID string for VIRTIO_BLK_T_GET_ID, at most 20 bytes, copied;
 * NULL means an empty ID.
 *
 * NULL with errno: EBADF (fd not open), EINVAL (fd open for writing, not a
 * regular file or block device, or serial longer than 20 bytes), ENOMEM,
 * or what fstat/lseek reported.
 */
struct virtio_device *virtio_blk_create(int fd, const char *serial);

/* The same over fd opened read-write (EINVAL otherwise): a writable disk. */
struct virtio_device *virtio_blk_create_writable(int fd, const char *serial);

/* The capacity in 512-byte sectors (tests, diagnostics). */
uint64_t virtio_blk_capacity(const struct virtio_device *dev);

#endif
