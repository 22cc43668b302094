/*
 * libFuzzer target: a hostile guest driver against virtio-net, with the back
 * end pushing frames at it meanwhile.
 *
 * The device sits behind the real virtio-mmio transport over a 1 MiB fake
 * guest memory, driven through the unit tests' fake driver
 * (tests/helpers/virtio_driver.h). Each input is a script of commands:
 *
 *   byte  operands                           command (opcode % 10)
 *   0     feat(1) qlog(1)                    driver bring-up: status 0, then
 *                                            ACK..DRIVER_OK accepting VERSION_1
 *                                            and, by feat bits 0-1, MAC and
 *                                            INDIRECT_DESC; RX queue size
 *                                            1 << (qlog % 9), TX 1 << (qlog/16 % 9)
 *   1     sel(1) idx(2) addr(4) len(4)       a raw descriptor in the RX, TX or
 *         flags(2) next(2)                   indirect table (sel % 3): unchecked
 *   2     sel(1) head(2)                     publish a raw head on queue sel & 1, kick
 *   3     see transmit_frame()               a frame sent like a driver would,
 *                                            with hostile fields; checked
 *   4     see receive_frame()                a receive chain posted like a driver
 *                                            would, then a frame for it; checked
 *   5     off(2) val(4)                      MMIO write, 4 bytes, off % 0x200
 *   6     off(2) lenlog(1)                   MMIO read, 1/2/4/8 bytes
 *   7     gpa(4) val(4)                      store into guest memory (clipped)
 *   8     q(2)                               kick queue q (any value)
 *   9     len(2)                             a frame of len % 2048 bytes from the
 *                                            back end, whatever is posted
 *
 * A short read of operands ends the script.
 *
 * Oracle: no crash, sanitizer report or hang; the back end only ever gets
 * frames of 14..1514 bytes; a transmitted frame the device returned arrived
 * whole and unchanged exactly when it was well formed; a frame the device
 * says it received sits in the chain behind a correct header, with the used
 * length 12 + frame, and a receive chain it returned without the frame has
 * used length 0.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/mmio.h"
#include "devices/virtio/net.h"
#include "helpers/virtio_driver.h"
#include "machine/guest_memory.h"
#include "script.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE     (1u << 20)
#define RX_DESC      0x0000u
#define RX_AVAIL     0x1000u
#define RX_USED      0x2000u
#define TX_DESC      0x3000u
#define TX_AVAIL     0x4000u
#define TX_USED      0x5000u
#define INDIRECT_GPA 0x6000u
#define RINGS_END    0x7000u
#define TX_BUFS      0x10000u
#define RX_BUFS      0x20000u
#define SEG_STRIDE   0x800u
#define MAX_SEGS     8
#define HDR          VIRTIO_NET_HDR_SIZE

static uint8_t *ram;
static struct guest_memory mem;

/* The back end: what it was last given. */
struct sent {
    uint32_t frames;
    size_t len;
    uint8_t data[VIRTIO_NET_MAX_FRAME];
};

struct fuzz_state {
    struct virtio_mmio *t;
    struct drv_queue rx, tx;
    uint16_t rx_next, tx_next;
    struct sent sent;
    /* Raw descriptors, raw heads, register writes or memory stores since the
     * last bring-up: the rings may be anything, so the per-chain oracle is off. */
    bool tainted;
};

static void record(void *ctx, const uint8_t *frame, size_t len)
{
    struct sent *s = ctx;
    if (len < VIRTIO_NET_MIN_FRAME || len > VIRTIO_NET_MAX_FRAME)
        __builtin_trap();
    memcpy(s->data, frame, len);
    s->len = len;
    s->frames++;
}

static void bring_up(struct fuzz_state *s, uint8_t feat, uint8_t qlog)
{
    uint64_t accept = 1ull << VIRTIO_F_VERSION_1;
    if (feat & 1)
        accept |= 1ull << VIRTIO_NET_F_MAC;
    if (feat & 2)
        accept |= 1ull << VIRTIO_F_RING_INDIRECT_DESC;
    memset(ram, 0, RINGS_END);
    drv_queue_init(&s->rx, ram, (uint16_t)(1u << (qlog % 9)), RX_DESC, RX_AVAIL, RX_USED);
    drv_queue_init(&s->tx, ram, (uint16_t)(1u << (qlog / 16 % 9)), TX_DESC, TX_AVAIL, TX_USED);
    s->rx_next = s->tx_next = 0;
    s->tainted = false;
    drv_write(s->t, REG_STATUS, 0);
    drv_negotiate(s->t, accept);
    drv_setup_queue(s->t, 0, s->rx.size, RX_DESC, RX_AVAIL, RX_USED);
    drv_setup_queue(s->t, 1, s->tx.size, TX_DESC, TX_AVAIL, TX_USED);
    drv_driver_ok(s->t);
}

struct seg {
    uint32_t gpa, len;
    bool writable;
};

/* Lays segs out as one chain (direct, or through the indirect table) and publishes it; returns its head. */
static uint16_t post_chain(struct drv_queue *q, uint16_t *next, const struct seg *segs, int n, bool indirect)
{
    uint16_t head = (uint16_t)(*next % q->size);
    for (int i = 0; i < n; i++) {
        uint16_t flags = (uint16_t)((segs[i].writable ? DRV_DESC_WRITE : 0) | (i + 1 < n ? DRV_DESC_NEXT : 0));
        if (indirect)
            drv_put_desc(ram + INDIRECT_GPA, (uint16_t)i, segs[i].gpa, segs[i].len, flags, (uint16_t)(i + 1));
        else
            drv_queue_put_desc(q, (uint16_t)((head + i) % q->size), segs[i].gpa, segs[i].len, flags,
                               (uint16_t)((head + i + 1) % q->size));
    }
    if (indirect)
        drv_queue_put_desc(q, head, INDIRECT_GPA, 16u * (uint32_t)n, DRV_DESC_INDIRECT, 0);
    *next = (uint16_t)(head + (indirect ? 1 : n));
    /* Only what the device returns for this chain counts: forget earlier (raw) completions. */
    q->used_seen = drv_used_idx(q);
    drv_publish(q, head);
    return head;
}

/* Whether a chain of n buffers posted on q now is the next the device takes and
 * reads as laid out: nothing else waits, and a direct chain fits the table
 * (a longer one overwrites its own descriptors). */
static bool next_in_line(const struct fuzz_state *s, const struct drv_queue *q, int n, bool indirect)
{
    return !s->tainted && q->avail_idx == drv_used_idx(q) && (indirect || n <= q->size);
}

/* The used length for our chain, if the device returned exactly it. */
static bool answered(struct drv_queue *q, uint16_t head, uint32_t *len)
{
    uint32_t id;
    if ((uint16_t)(drv_used_idx(q) - q->used_seen) != 1 || !drv_next_used(q, &id, len))
        return false;
    return id == head;
}

/* Cuts total bytes into n pieces whose lengths come from the input (the last takes the rest). */
static bool cut(struct fuzz_script *c, uint32_t total, uint32_t *lens, int n)
{
    uint32_t left = total;
    for (int i = 0; i + 1 < n; i++) {
        uint16_t v;
        if (!script_take(c, &v, 2))
            return false;
        lens[i] = v % (left + 1);
        left -= lens[i];
    }
    lens[n - 1] = left;
    return true;
}

/*
 * Command 3 operands: nseg(1) shape(1) len(2), then nseg - 1 cut lengths
 * (le16 each). Header + frame (len % 1600 bytes) are cut into 1 + nseg % 8
 * buffers. shape: bit 0 = header flags 1 (NEEDS_CSUM), bit 1 = gso_type 1,
 * bit 2 = a writable last buffer, bit 3 = indirect table.
 */
static void transmit_frame(struct fuzz_state *s, struct fuzz_script *c)
{
    uint8_t nseg, shape;
    uint16_t len;
    if (!script_take(c, &nseg, 1) || !script_take(c, &shape, 1) || !script_take(c, &len, 2))
        return;
    int n = 1 + nseg % MAX_SEGS;
    uint32_t frame_len = len % 1600u, total = HDR + frame_len, lens[MAX_SEGS];
    if (!cut(c, total, lens, n))
        return;
    uint8_t bytes[HDR + 1600] = { 0 };
    bytes[0] = shape & 1;
    bytes[1] = (shape >> 1) & 1;
    for (uint32_t i = HDR; i < total; i++)
        bytes[i] = (uint8_t)(i * 13 + len);
    struct seg segs[MAX_SEGS];
    uint32_t at = 0;
    for (int i = 0; i < n; i++) {
        segs[i] = (struct seg){ TX_BUFS + SEG_STRIDE * (uint32_t)i, lens[i], false };
        memcpy(ram + segs[i].gpa, bytes + at, lens[i]);
        at += lens[i];
    }
    segs[n - 1].writable = shape & 4;
    uint32_t before = s->sent.frames;
    bool alone = next_in_line(s, &s->tx, n, shape & 8);
    uint16_t head = post_chain(&s->tx, &s->tx_next, segs, n, shape & 8);
    drv_kick(s->t, 1);

    uint32_t used;
    bool sent = s->sent.frames != before;
    if (!alone)
        return;
    if (!answered(&s->tx, head, &used)) {
        if (sent)
            __builtin_trap(); /* a frame went out, yet the chain did not come back */
        return;
    }
    bool well_formed = !(shape & 7) && frame_len >= VIRTIO_NET_MIN_FRAME && frame_len <= VIRTIO_NET_MAX_FRAME;
    if (used != 0 || sent != well_formed || s->sent.frames - before > 1)
        __builtin_trap();
    if (sent && (s->sent.len != frame_len || memcmp(s->sent.data, bytes + HDR, frame_len) != 0))
        __builtin_trap();
}

/* Whether chain bytes [0, HDR + len) hold the receive header and the frame. */
static bool chain_holds(const struct seg *segs, int n, const uint8_t *frame, uint32_t len)
{
    uint8_t want[HDR + 2048] = { 0 };
    want[10] = 1; /* num_buffers */
    memcpy(want + HDR, frame, len);
    uint32_t at = 0;
    for (int i = 0; i < n && at < HDR + len; i++) {
        uint32_t k = segs[i].len < HDR + len - at ? segs[i].len : HDR + len - at;
        if (memcmp(ram + segs[i].gpa, want + at, k) != 0)
            return false;
        at += k;
    }
    return at == HDR + len;
}

/*
 * Command 4 operands: nseg(1) shape(1) len(2), then 1 + nseg % 8 buffer
 * lengths (le16 each, % 0x800). shape: bit 0 = the first buffer readable,
 * bit 1 = indirect table, bit 2 = post nothing (the frame finds whatever is
 * there). The frame is len % 2048 bytes.
 */
static void receive_frame(struct fuzz_state *s, struct fuzz_script *c)
{
    uint8_t nseg, shape;
    uint16_t len;
    if (!script_take(c, &nseg, 1) || !script_take(c, &shape, 1) || !script_take(c, &len, 2))
        return;
    int n = 1 + nseg % MAX_SEGS;
    struct seg segs[MAX_SEGS];
    uint64_t room = 0;
    for (int i = 0; i < n; i++) {
        uint16_t l;
        if (!script_take(c, &l, 2))
            return;
        segs[i] = (struct seg){ RX_BUFS + SEG_STRIDE * (uint32_t)i, l % SEG_STRIDE, !(i == 0 && (shape & 1)) };
        memset(ram + segs[i].gpa, 0xee, segs[i].len);
        room += segs[i].len;
    }
    uint32_t frame_len = len % 2048u;
    uint8_t frame[2048];
    for (uint32_t i = 0; i < frame_len; i++)
        frame[i] = (uint8_t)(i * 7 + len);
    if (shape & 4) {
        virtio_net_receive(virtio_mmio_device(s->t), frame, frame_len);
        return;
    }
    bool alone = next_in_line(s, &s->rx, n, shape & 2);
    uint16_t head = post_chain(&s->rx, &s->rx_next, segs, n, shape & 2);
    bool delivered = virtio_net_receive(virtio_mmio_device(s->t), frame, frame_len);

    uint32_t used;
    if (!alone)
        return;
    if (!answered(&s->rx, head, &used)) {
        if (delivered)
            __builtin_trap();
        return;
    }
    if (!delivered) {
        if (used != 0)
            __builtin_trap();
        return;
    }
    if ((shape & 1) || frame_len < VIRTIO_NET_MIN_FRAME || frame_len > VIRTIO_NET_MAX_FRAME ||
        room < HDR + frame_len || used != HDR + frame_len || !chain_holds(segs, n, frame, frame_len))
        __builtin_trap();
}

/* A raw descriptor in the table sel picks (operands of command 1). */
static bool raw_descriptor(struct fuzz_script *c)
{
    uint8_t sel;
    uint16_t idx, flags, next;
    uint32_t addr, len;
    if (!script_take(c, &sel, 1) || !script_take(c, &idx, 2) || !script_take(c, &addr, 4) || !script_take(c, &len, 4) ||
        !script_take(c, &flags, 2) || !script_take(c, &next, 2))
        return false;
    idx %= 256;
    if (sel % 3 == 2)
        drv_put_desc(ram + INDIRECT_GPA, idx, addr, len, flags, next);
    else
        drv_put_desc(ram + (sel % 3 ? TX_DESC : RX_DESC), idx, addr, len, flags, next);
    return true;
}

/* Runs one command; false when its operands ran out. */
static bool run_command(struct fuzz_state *s, struct fuzz_script *c, uint8_t op)
{
    uint8_t cmd = op % 10;
    if (cmd == 1 || cmd == 2 || cmd == 5 || cmd == 7)
        s->tainted = true;
    switch (cmd) {
    case 0: {
        uint8_t feat, qlog;
        if (!script_take(c, &feat, 1) || !script_take(c, &qlog, 1))
            return false;
        bring_up(s, feat, qlog);
        return true;
    }
    case 1: return raw_descriptor(c);
    case 2: {
        uint8_t sel;
        uint16_t head;
        if (!script_take(c, &sel, 1) || !script_take(c, &head, 2))
            return false;
        drv_publish(sel & 1 ? &s->tx : &s->rx, head);
        drv_kick(s->t, sel & 1);
        return true;
    }
    case 3: transmit_frame(s, c); return true;
    case 4: receive_frame(s, c); return true;
    case 5: {
        uint16_t off;
        uint32_t val;
        if (!script_take(c, &off, 2) || !script_take(c, &val, 4))
            return false;
        drv_write(s->t, off % VIRTIO_MMIO_WINDOW, val);
        return true;
    }
    case 6: {
        uint16_t off;
        uint8_t lenlog, buf[8];
        if (!script_take(c, &off, 2) || !script_take(c, &lenlog, 1))
            return false;
        virtio_mmio_bus_ops.read(s->t, off % VIRTIO_MMIO_WINDOW, buf, 1u << (lenlog % 4));
        return true;
    }
    case 7: {
        uint32_t gpa, val;
        if (!script_take(c, &gpa, 4) || !script_take(c, &val, 4))
            return false;
        memcpy(ram + gpa % (RAM_SIZE - 3), &val, 4);
        return true;
    }
    case 8: {
        uint16_t q;
        if (!script_take(c, &q, 2))
            return false;
        drv_kick(s->t, q);
        return true;
    }
    default: {
        uint16_t len;
        if (!script_take(c, &len, 2))
            return false;
        static uint8_t frame[2048];
        virtio_net_receive(virtio_mmio_device(s->t), frame, len % sizeof frame);
        return true;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ram)
        ram = drv_ram_create(&mem, RAM_SIZE); /* once per process; cleared per input below */
    memset(ram, 0, RAM_SIZE);
    static struct fuzz_state s;
    memset(&s, 0, sizeof s);
    drv_queue_init(&s.rx, ram, 1, RX_DESC, RX_AVAIL, RX_USED);
    drv_queue_init(&s.tx, ram, 1, TX_DESC, TX_AVAIL, TX_USED);
    static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 1 };
    struct net_backend backend = { .send = record, .ctx = &s.sent };
    s.t = virtio_mmio_create(virtio_net_create(mac, &backend), &mem, NULL);
    if (!s.t)
        return 0;
    struct fuzz_script c = { data, size };
    uint8_t op;
    while (script_take(&c, &op, 1) && run_command(&s, &c, op)) {
    }
    virtio_mmio_destroy(s.t);
    return 0;
}
