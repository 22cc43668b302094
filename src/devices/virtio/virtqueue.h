/*
 * The split virtqueue (virtio 1.1 section 2.6), device side.
 *
 * The driver puts three areas in guest memory; every index and address in
 * them is hostile input:
 *
 *   Descriptor table (16-byte aligned), size entries of 16 bytes:
 *     off  size  field
 *     0    8     addr   guest-physical buffer address
 *     8    4     len    buffer length in bytes
 *     12   2     flags  NEXT=1, WRITE=2 (device writes), INDIRECT=4
 *     14   2     next   index of the next descriptor when NEXT
 *   Available ring, "driver area" (2-byte aligned), 6 + 2*size bytes:
 *     0    2     flags  NO_INTERRUPT=1 (driver asks for no used interrupt)
 *     2    2     idx    free-running count of heads the driver published
 *     4    2*n   ring   descriptor heads
 *     4+2n 2     used_event (only with EVENT_IDX, which we do not offer)
 *   Used ring, "device area" (4-byte aligned), 6 + 8*size bytes:
 *     0    2     flags  NO_NOTIFY=1 (we never set it)
 *     2    2     idx    free-running count of elements we returned
 *     4    8*n   ring   {le32 id (the head), le32 len (bytes written)}
 *     4+8n 2     avail_event (only with EVENT_IDX)
 *
 * The device keeps its own copies of everything that decides where it reads
 * or writes (size, area addresses, last_avail_idx, used_idx) and never reads
 * them back from guest memory. Not thread-safe: the transport's lock covers it.
 */
#ifndef SM_DEVICES_VIRTIO_VIRTQUEUE_H
#define SM_DEVICES_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "machine/guest_memory.h"

#define VIRTQ_DESC_F_NEXT      1
#define VIRTQ_DESC_F_WRITE     2
#define VIRTQ_DESC_F_INDIRECT  4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

#define VIRTQ_MAX_SIZE 32768   /* the spec's limit for a split queue */
/* Most buffers one chain may have (direct + indirect); a longer chain is an error. */
#define VQ_MAX_CHAIN_BUFS 256

struct virtqueue {
    /* Set by the driver through the transport. */
    uint16_t size;        /* QueueNum: a power of two, 1..max_size */
    uint16_t max_size;    /* QueueNumMax the device offers */
    bool ready;
    uint64_t desc_addr;
    uint64_t avail_addr;
    uint64_t used_addr;
    /* Negotiated features that change how chains are read. */
    bool indirect_ok;
    /* Device-side state. */
    uint16_t last_avail_idx;   /* next avail ring slot to consume */
    uint16_t used_idx;         /* our copy of used->idx */
    bool broken;               /* set once the driver broke the rules */
};

struct vq_buf {
    uint8_t *host;      /* host pointer; the whole [host, host+len) is guest RAM */
    uint32_t len;
    bool writable;      /* device-writable (VIRTQ_DESC_F_WRITE) */
};

struct vq_chain {
    uint16_t head;            /* give this back to vq_push */
    uint16_t nbufs;
    uint16_t nreadable;       /* bufs[0..nreadable) are readable, the rest writable */
    uint64_t readable_bytes;
    uint64_t writable_bytes;
    struct vq_buf bufs[VQ_MAX_CHAIN_BUFS];
};

/* Back to the state after a device reset (size = max_size, not ready). */
void vq_reset(struct virtqueue *vq, uint16_t max_size);

/*
 * Checks the driver's settings before the queue goes ready: size a power of
 * two within max_size, areas aligned and wholly inside guest RAM. Returns 0
 * or -1; on -1 the queue must stay not ready.
 */
int vq_validate(const struct virtqueue *vq, const struct guest_memory *mem);

/*
 * Takes the next available chain. Returns 1 with *out filled, 0 when the
 * ring is empty, -1 when the driver broke the ring (the queue is then marked
 * broken and every later call returns -1 until vq_reset).
 */
int vq_pop(struct virtqueue *vq, const struct guest_memory *mem, struct vq_chain *out);

/*
 * Returns a chain: writes {head, written} into the used ring, then publishes
 * the new used idx (release order: the element is visible first).
 * Returns 0, or -1 if the queue is not usable or head is out of range.
 */
int vq_push(struct virtqueue *vq, const struct guest_memory *mem, uint16_t head, uint32_t written);

/* After vq_push: whether the driver wants an interrupt (no NO_INTERRUPT flag). */
bool vq_should_interrupt(const struct virtqueue *vq, const struct guest_memory *mem);

/*
 * A chain's bytes. A message (a request header, a packet) may be split over
 * buffers at any byte; these treat the readable (or writable) buffers of a
 * chain as one byte string.
 */
/* Describes [off, off+len) of the readable (writable) bytes as at most max iovecs;
 * returns the count, and the bytes covered in *covered. */
int vq_chain_iov(const struct vq_chain *c, bool writable, uint64_t off, uint64_t len, struct iovec *iov, int max,
                 uint64_t *covered);
/* Copies up to len bytes from offset off of the chain's readable bytes; returns bytes copied. */
uint64_t vq_chain_read(const struct vq_chain *c, uint64_t off, void *dst, uint64_t len);
/* Copies up to len bytes to offset off of the chain's writable bytes; returns bytes copied. */
uint64_t vq_chain_write(const struct vq_chain *c, uint64_t off, const void *src, uint64_t len);

/* Bytes each area takes for a queue of `size` entries (without EVENT_IDX). */
uint64_t vq_desc_bytes(uint16_t size);
uint64_t vq_avail_bytes(uint16_t size);
uint64_t vq_used_bytes(uint16_t size);

#endif
