/*
 * virtio-blk: the driver posts requests on queue 0; each is served
 * synchronously in queue_notify with pread(2) straight into guest buffers,
 * or, on a writable disk (a volume), pwrite(2) straight from them.
 *
 * A request is one chain (virtio 1.1 section 5.2.6):
 *
 *   part      where                          bytes  content
 *   header    first readable bytes (may be   16     le32 type, le32 reserved,
 *             split over several buffers)           le64 sector (512-byte units)
 *   data      writable bytes before status   any    T_IN: image bytes;
 *                                                   T_GET_ID: the ID string
 *   status    the last writable byte         1      OK 0, IOERR 1, UNSUPP 2
 *
 * Readable bytes after the header are a T_OUT's data; a read-only disk
 * never reads them.
 *
 * Every chain gets a defined answer; the used length is the number of
 * data bytes written plus the status byte:
 *
 *   chain                                           status  used length
 *   no writable byte (nowhere to put a status)      none    0
 *   fewer than 16 readable bytes                    IOERR   1
 *   T_IN, data not whole sectors or > MAX_DATA      IOERR   1
 *   T_IN, any sector at or past capacity            IOERR   1
 *   T_IN, pread failed or came up short             IOERR   bytes read + 1
 *   T_IN                                            OK      data + 1
 *   T_OUT, read-only disk (never written)           IOERR   1
 *   T_OUT, data not whole sectors, > MAX_DATA, or   IOERR   1
 *          any sector at or past capacity
 *   T_OUT, pwrite failed or came up short           IOERR   1
 *   T_OUT                                           OK      1
 *   T_FLUSH, read-only disk (nothing to flush)      OK      1
 *   T_FLUSH, writable disk: fdatasync               OK, or IOERR if it failed; 1
 *   T_GET_ID (ID, NUL-padded, cut to the data size) OK      min(data, 20) + 1
 *   anything else (DISCARD, WRITE_ZEROES, ...)      UNSUPP  1
 *
 * MAX_DATA = 0xfffffe00, the most whole sectors whose length plus the
 * status byte fits the used ring's 32-bit length (Linux's own requests are
 * bounded by the same 32-bit size of a bio). A read never goes past the
 * capacity, so a request costs at most one image's worth of pread; a
 * write never grows the file.
 */
#include "devices/virtio/blk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_BYTES 16u
#define MAX_DATA     0xfffffe00ull

struct blk {
    struct virtio_device dev;
    int fd;
    bool writable;
    uint64_t capacity; /* in 512-byte sectors */
    uint8_t config[VIRTIO_BLK_CONFIG_SIZE];
    uint8_t id[VIRTIO_BLK_ID_BYTES]; /* NUL-padded */
    struct vq_chain chain;           /* scratch, too big for a vCPU thread's stack */
};

struct request_header {
    uint32_t type;
    uint64_t sector;
};

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p) { return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32; }

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* --- the chain's two parts ---------------------------------------------------------------- */

/* Copies the header out of the readable buffers (a private copy: the guest may rewrite them). */
static bool read_header(const struct vq_chain *c, struct request_header *out)
{
    uint8_t raw[HEADER_BYTES];
    uint32_t have = 0;
    for (uint16_t i = 0; i < c->nreadable && have < HEADER_BYTES; i++) {
        uint32_t n = (uint32_t)min_u64(c->bufs[i].len, HEADER_BYTES - have);
        memcpy(raw + have, c->bufs[i].host, n);
        have += n;
    }
    if (have < HEADER_BYTES)
        return false;
    out->type = get_le32(raw);
    out->sector = get_le64(raw + 8);
    return true;
}

/* The last writable byte, or NULL when the writable part is empty. */
static uint8_t *status_byte(const struct vq_chain *c)
{
    for (uint16_t i = c->nbufs; i > c->nreadable; i--) {
        const struct vq_buf *b = &c->bufs[i - 1];
        if (b->len)
            return b->host + b->len - 1;
    }
    return NULL;
}

/* pread of exactly len bytes unless the file ends or fails first; returns how many were read. */
static uint64_t pread_full(int fd, uint8_t *dst, uint64_t len, uint64_t offset)
{
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, dst + done, (size_t)(len - done), (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (uint64_t)n;
    }
    return done;
}

/* Fills the first len writable bytes from the image at byte offset; returns how many were filled. */
static uint64_t read_image_into_chain(int fd, const struct vq_chain *c, uint64_t offset, uint64_t len)
{
    uint64_t done = 0;
    for (uint16_t i = c->nreadable; i < c->nbufs && done < len; i++) {
        const struct vq_buf *b = &c->bufs[i];
        uint64_t want = min_u64(b->len, len - done);
        uint64_t got = pread_full(fd, b->host, want, offset + done);
        done += got;
        if (got < want)
            break;
    }
    return done;
}

/* pwrite of exactly len bytes; false if it failed or came up short. */
static bool pwrite_full(int fd, const uint8_t *src, uint64_t len, uint64_t offset)
{
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, src + done, (size_t)(len - done), (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        done += (uint64_t)n;
    }
    return true;
}

/* Writes the readable bytes after the header (len of them) to the image at
 * byte offset. */
static bool write_chain_to_image(int fd, const struct vq_chain *c, uint64_t offset, uint64_t len)
{
    uint64_t skip = HEADER_BYTES, done = 0;
    for (uint16_t i = 0; i < c->nreadable && done < len; i++) {
        const struct vq_buf *b = &c->bufs[i];
        uint64_t at = min_u64(skip, b->len);
        skip -= at;
        uint64_t n = min_u64(b->len - at, len - done);
        if (n && !pwrite_full(fd, b->host + at, n, offset + done))
            return false;
        done += n;
    }
    return done == len;
}

/* Copies len bytes into the start of the writable part (len fits it: the caller checked). */
static void copy_into_chain(const struct vq_chain *c, const uint8_t *src, uint64_t len)
{
    uint64_t done = 0;
    for (uint16_t i = c->nreadable; i < c->nbufs && done < len; i++) {
        const struct vq_buf *b = &c->bufs[i];
        uint64_t n = min_u64(b->len, len - done);
        memcpy(b->host, src + done, (size_t)n);
        done += n;
    }
}

/* --- requests ----------------------------------------------------------------------------- */

/* Whole sectors, at most MAX_DATA, all below the capacity. */
static bool in_bounds(const struct blk *b, uint64_t sector, uint64_t data_len)
{
    if (data_len % VIRTIO_BLK_SECTOR_SIZE || data_len > MAX_DATA)
        return false;
    uint64_t sectors = data_len / VIRTIO_BLK_SECTOR_SIZE;
    /* Written this way round so that no sum can overflow. */
    return sector <= b->capacity && sectors <= b->capacity - sector;
}

static uint8_t serve_read(const struct blk *b, const struct vq_chain *c, uint64_t sector, uint64_t data_len,
                          uint64_t *written)
{
    if (!in_bounds(b, sector, data_len))
        return VIRTIO_BLK_S_IOERR;
    *written = read_image_into_chain(b->fd, c, sector * VIRTIO_BLK_SECTOR_SIZE, data_len);
    return *written == data_len ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
}

static uint8_t serve_write(const struct blk *b, const struct vq_chain *c, uint64_t sector)
{
    if (!b->writable || c->readable_bytes < HEADER_BYTES)
        return VIRTIO_BLK_S_IOERR;
    uint64_t data_len = c->readable_bytes - HEADER_BYTES;
    if (!in_bounds(b, sector, data_len))
        return VIRTIO_BLK_S_IOERR;
    return write_chain_to_image(b->fd, c, sector * VIRTIO_BLK_SECTOR_SIZE, data_len) ? VIRTIO_BLK_S_OK
                                                                                    : VIRTIO_BLK_S_IOERR;
}

static uint8_t serve_flush(const struct blk *b)
{
    if (!b->writable)
        return VIRTIO_BLK_S_OK;
    return fdatasync(b->fd) == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
}

static uint8_t serve_get_id(const struct blk *b, const struct vq_chain *c, uint64_t data_len, uint64_t *written)
{
    *written = min_u64(data_len, VIRTIO_BLK_ID_BYTES);
    copy_into_chain(c, b->id, *written);
    return VIRTIO_BLK_S_OK;
}

/* Serves one chain (see the table at the top); returns the used length. */
static uint32_t serve_chain(const struct blk *b, const struct vq_chain *c)
{
    uint8_t *status = status_byte(c);
    if (!status)
        return 0;
    uint64_t data_len = c->writable_bytes - 1;
    uint64_t written = 0;
    struct request_header h;
    uint8_t result;
    if (!read_header(c, &h)) {
        result = VIRTIO_BLK_S_IOERR;
    } else {
        switch (h.type) {
        case VIRTIO_BLK_T_IN: result = serve_read(b, c, h.sector, data_len, &written); break;
        case VIRTIO_BLK_T_OUT: result = serve_write(b, c, h.sector); break;
        case VIRTIO_BLK_T_FLUSH: result = serve_flush(b); break;
        case VIRTIO_BLK_T_GET_ID: result = serve_get_id(b, c, data_len, &written); break;
        default: result = VIRTIO_BLK_S_UNSUPP; break;
        }
    }
    *status = result;
    return (uint32_t)written + 1; /* written <= MAX_DATA, so this fits */
}

/* --- device ops --------------------------------------------------------------------------- */

/*
 * Serves what the driver posted, at most one ring's worth per kick (buffers
 * added meanwhile come with their own kick), and raises one interrupt for the
 * whole batch rather than one per request: every interrupt costs the guest
 * an exit, and Linux reaps all used buffers per interrupt anyway.
 */
static void blk_queue_notify(struct virtio_device *dev, uint16_t q)
{
    struct blk *b = dev->priv;
    struct virtqueue *vq = &dev->queues[q];
    uint32_t served = 0;
    while (served < vq->size) {
        int rc = vq_pop(vq, dev->mem, &b->chain);
        if (rc == 0)
            break;
        if (rc < 0 || vq_push(vq, dev->mem, b->chain.head, serve_chain(b, &b->chain)) < 0) {
            virtio_device_set_needs_reset(dev);
            break;
        }
        served++;
    }
    if (served && vq_should_interrupt(vq, dev->mem))
        virtio_device_notify_used(dev);
}

static void blk_read_config(struct virtio_device *dev, uint32_t off, void *data, uint32_t len)
{
    const struct blk *b = dev->priv;
    memcpy(data, b->config + off, len); /* the transport checked off + len <= config_size */
}

static void blk_destroy(struct virtio_device *dev)
{
    struct blk *b = dev->priv;
    close(b->fd);
    free(b);
}

/* The two kinds differ only in what they offer: RO, or FLUSH (the guest
 * then flushes its write cache through T_FLUSH, which is what makes an
 * fsync in the guest reach the host's disk). */
#define BLK_COMMON_FEATURES ((1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE))

static const struct virtio_device_ops blk_ops = {
    .name = "blk",
    .device_id = VIRTIO_ID_BLOCK,
    .num_queues = 1,
    .queue_max_size = VIRTIO_BLK_QUEUE_SIZE,
    .features = (1ull << VIRTIO_BLK_F_RO) | BLK_COMMON_FEATURES,
    .config_size = VIRTIO_BLK_CONFIG_SIZE,
    .read_config = blk_read_config,
    .queue_notify = blk_queue_notify,
    .destroy = blk_destroy,
};

static const struct virtio_device_ops blk_writable_ops = {
    .name = "blk-rw",
    .device_id = VIRTIO_ID_BLOCK,
    .num_queues = 1,
    .queue_max_size = VIRTIO_BLK_QUEUE_SIZE,
    .features = (1ull << VIRTIO_BLK_F_FLUSH) | BLK_COMMON_FEATURES,
    .config_size = VIRTIO_BLK_CONFIG_SIZE,
    .read_config = blk_read_config,
    .queue_notify = blk_queue_notify,
    .destroy = blk_destroy,
};

/* --- creation ----------------------------------------------------------------------------- */

/* The image's size in bytes: a regular file or block device open read-only
 * (or read-write when writable). -1 with errno otherwise. */
static int64_t image_size(int fd, bool writable)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    if ((flags & O_ACCMODE) != (writable ? O_RDWR : O_RDONLY) || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        errno = EINVAL;
        return -1;
    }
    if (S_ISREG(st.st_mode))
        return st.st_size;
    off_t end = lseek(fd, 0, SEEK_END); /* a block device's st_size is 0 */
    return end < 0 ? -1 : (int64_t)end;
}

static void fill_config(struct blk *b)
{
    memset(b->config, 0, sizeof b->config);
    put_le64(b->config + 0, b->capacity);
    put_le32(b->config + 12, VIRTIO_BLK_SEG_MAX);
    put_le32(b->config + 20, VIRTIO_BLK_SECTOR_SIZE);
}

static struct virtio_device *create(int fd, const char *serial, bool writable)
{
    int64_t size = image_size(fd, writable);
    struct blk *b = NULL;
    if (size < 0)
        goto fail;
    if (serial && strnlen(serial, VIRTIO_BLK_ID_BYTES + 1) > VIRTIO_BLK_ID_BYTES) {
        errno = EINVAL;
        goto fail;
    }
    b = calloc(1, sizeof *b);
    if (!b)
        goto fail;
    b->dev.ops = writable ? &blk_writable_ops : &blk_ops;
    b->dev.priv = b;
    b->fd = fd;
    b->writable = writable;
    b->capacity = (uint64_t)size / VIRTIO_BLK_SECTOR_SIZE;
    if (serial)
        memcpy(b->id, serial, strlen(serial));
    fill_config(b);
    return &b->dev;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return NULL;
}

struct virtio_device *virtio_blk_create(int fd, const char *serial)
{
    return create(fd, serial, false);
}

struct virtio_device *virtio_blk_create_writable(int fd, const char *serial)
{
    return create(fd, serial, true);
}

uint64_t virtio_blk_capacity(const struct virtio_device *dev)
{
    if (!dev || (dev->ops != &blk_ops && dev->ops != &blk_writable_ops))
        return 0;
    return ((const struct blk *)dev->priv)->capacity;
}
