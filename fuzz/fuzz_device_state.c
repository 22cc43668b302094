/*
 * libFuzzer target: hostile saved device states (snapshot restore).
 *
 * Each run creates a fresh serial port, i8042 and virtio-rng over virtio-mmio
 * (one fake guest memory, 64 KiB at GPA 0), restores a state into each, then
 * drives the devices with a short script. The input (shorter inputs are
 * padded with zeros):
 *
 *   off  size   meaning
 *   0    1      flags: bit 0/1/2 = the serial/i8042/mmio bytes below ARE the
 *               state; clear = they are XORed onto a valid state saved from
 *               a busy device (so all-zero bytes restore cleanly and single
 *               flipped bits probe each check)
 *   1    80     struct serial_state bytes
 *   81   24     struct i8042_state bytes
 *   105  696    struct virtio_mmio_state bytes
 *   801  7*N    operations (N <= 64): kind (1), arg (le16), val (le32)
 *
 *   kind % 8   operation
 *   0          serial write, register arg % 8, byte val
 *   1          serial read, register arg % 8
 *   2          i8042 write, port arg % 5, byte val
 *   3          i8042 read, port arg % 5
 *   4          virtio-mmio write, 4 bytes, offset arg % 0x200 (aligned down)
 *   5          virtio-mmio read, 4 bytes, offset arg % 0x200 (aligned down)
 *   6          virtio_mmio_queue_notify(arg)
 *   7          store le32 val into guest memory at arg (clipped)
 *
 * After the script the same states are restored again, over devices the
 * script has used, and the first operation runs once more.
 *
 * Oracle: no crash, hang or sanitizer report; a serial or i8042 state that
 * restores saves back byte for byte; so does a virtio-mmio state that does
 * not resume a live device (a live one serves its queues on restore, which
 * legitimately moves its indices).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/i8042.h"
#include "devices/serial_8250.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/rng.h"
#include "machine/guest_memory.h"

#define RAM_SIZE 65536
#define OFF_SERIAL 1
#define OFF_I8042 (OFF_SERIAL + sizeof(struct serial_state))
#define OFF_MMIO (OFF_I8042 + sizeof(struct i8042_state))
#define OFF_OPS (OFF_MMIO + sizeof(struct virtio_mmio_state))
#define OP_SIZE 7
#define MAX_OPS 64
#define INPUT_MAX (OFF_OPS + OP_SIZE * MAX_OPS)

/* Where the template driver puts its rings (a valid mmio state points here). */
#define DESC_GPA  0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA  0x3000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t ram[RAM_SIZE] __attribute__((aligned(4096)));
static struct guest_memory mem;

static void ignore_level(struct irq_line *line, bool high) { (void)line; (void)high; }
static void ignore_pulse(struct irq_line *line) { (void)line; }
static struct irq_line irq = { .set_level = ignore_level, .pulse = ignore_pulse, .fd = -1 };

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* --- valid states to mutate ------------------------------------------------------ */

static struct serial_state serial_template;
static struct i8042_state i8042_template;
static struct virtio_mmio_state mmio_template;

static void serial_out(struct serial *s, uint64_t reg, uint8_t v) { serial_bus_ops.write(s, reg, &v, 1); }
static void kbd_out(struct i8042 *k, uint64_t port, uint8_t v) { i8042_bus_ops.write(k, port, &v, 1); }
static void mmio_out(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
    virtio_mmio_bus_ops.write(t, off, (const uint8_t *)&v, 4);
}

static void make_templates(void)
{
    struct serial *s = serial_create(-1, &irq);
    serial_out(s, 1, 0x0f);          /* all interrupts on */
    serial_out(s, 4, 0x1b);          /* loopback */
    for (int i = 0; i < 70; i++)
        serial_out(s, 0, (uint8_t)i); /* a full FIFO that overran */
    serial_save(s, &serial_template);
    serial_destroy(s);

    struct i8042 *k = i8042_create(NULL, NULL);
    kbd_out(k, 0, 0xf2);             /* three reply bytes queued */
    kbd_out(k, 0, 0xf0);             /* waiting for a parameter */
    kbd_out(k, 4, 0xd2);             /* next data echoed */
    i8042_save(k, &i8042_template);
    i8042_destroy(k);

    struct virtio_mmio *t = virtio_mmio_create(virtio_rng_create(), &mem, &irq);
    mmio_out(t, 0x070, 3);
    mmio_out(t, 0x024, 1);
    mmio_out(t, 0x020, 1);           /* VERSION_1 */
    mmio_out(t, 0x070, 11);
    mmio_out(t, 0x038, 16);
    mmio_out(t, 0x080, DESC_GPA);
    mmio_out(t, 0x090, AVAIL_GPA);
    mmio_out(t, 0x0a0, USED_GPA);
    mmio_out(t, 0x044, 1);
    mmio_out(t, 0x070, 15);          /* DRIVER_OK */
    virtio_mmio_save(t, &mmio_template);
    virtio_mmio_destroy(t);
}

/* The state to restore: the input bytes, or the input XORed onto the template. */
static void build_state(void *out, const void *template, const uint8_t *in, size_t len, bool raw)
{
    uint8_t *o = out;
    const uint8_t *tp = template;
    for (size_t i = 0; i < len; i++)
        o[i] = raw ? in[i] : (uint8_t)(tp[i] ^ in[i]);
}

/* --- the run ------------------------------------------------------------------------- */

struct devices {
    struct serial *serial;
    struct i8042 *kbd;
    struct virtio_mmio *mmio;
};

static void run_op(const struct devices *d, const uint8_t *op)
{
    uint16_t arg = le16(op + 1);
    uint32_t val = le32(op + 3);
    uint8_t byte = (uint8_t)val;
    uint32_t word = 0;
    switch (op[0] % 8) {
    case 0: serial_bus_ops.write(d->serial, arg % SERIAL_PORT_COUNT, &byte, 1); break;
    case 1: serial_bus_ops.read(d->serial, arg % SERIAL_PORT_COUNT, &byte, 1); break;
    case 2: i8042_bus_ops.write(d->kbd, arg % I8042_PORT_COUNT, &byte, 1); break;
    case 3: i8042_bus_ops.read(d->kbd, arg % I8042_PORT_COUNT, &byte, 1); break;
    case 4: virtio_mmio_bus_ops.write(d->mmio, (arg % VIRTIO_MMIO_WINDOW) & ~3u, (const uint8_t *)&val, 4); break;
    case 5: virtio_mmio_bus_ops.read(d->mmio, (arg % VIRTIO_MMIO_WINDOW) & ~3u, (uint8_t *)&word, 4); break;
    case 6: virtio_mmio_queue_notify(d->mmio, arg); break;
    case 7:
        if ((size_t)arg + 4 <= RAM_SIZE)
            memcpy(ram + arg, &val, 4);
        break;
    }
}

static void restore_all(const struct devices *d, const uint8_t *in)
{
    struct serial_state ss, ss_back;
    struct i8042_state ks, ks_back;
    struct virtio_mmio_state ms, ms_back;
    build_state(&ss, &serial_template, in + OFF_SERIAL, sizeof ss, in[0] & 1);
    build_state(&ks, &i8042_template, in + OFF_I8042, sizeof ks, in[0] & 2);
    build_state(&ms, &mmio_template, in + OFF_MMIO, sizeof ms, in[0] & 4);

    sm_error err;
    if (serial_restore(d->serial, &ss, &err) == SM_OK) {
        serial_save(d->serial, &ss_back);
        if (memcmp(&ss, &ss_back, sizeof ss))
            __builtin_trap();
    }
    if (i8042_restore(d->kbd, &ks, &err) == SM_OK) {
        i8042_save(d->kbd, &ks_back);
        if (memcmp(&ks, &ks_back, sizeof ks))
            __builtin_trap();
    }
    if (virtio_mmio_restore(d->mmio, &ms, &err) == SM_OK) {
        bool resumed = (ms.status & 4) && !(ms.status & 64);
        virtio_mmio_save(d->mmio, &ms_back);
        if (!resumed && memcmp(&ms, &ms_back, sizeof ms))
            __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        gm_init_buffer(&mem, ram, RAM_SIZE);
        make_templates();
        ready = true;
    }
    static uint8_t in[INPUT_MAX];
    memset(in, 0, sizeof in);
    memcpy(in, data, size < sizeof in ? size : sizeof in);
    memset(ram, 0, sizeof ram);

    struct devices d = {
        .serial = serial_create(-1, &irq),
        .kbd = i8042_create(NULL, NULL),
        .mmio = virtio_mmio_create(virtio_rng_create(), &mem, &irq),
    };
    if (!d.serial || !d.kbd || !d.mmio)
        abort();
    restore_all(&d, in);
    size_t nops = size > OFF_OPS ? (size - OFF_OPS) / OP_SIZE : 0;
    if (nops > MAX_OPS)
        nops = MAX_OPS;
    for (size_t i = 0; i < nops; i++)
        run_op(&d, in + OFF_OPS + OP_SIZE * i);
    /* Once more over devices the script has used (and perhaps left live). */
    restore_all(&d, in);
    run_op(&d, in + OFF_OPS);
    serial_destroy(d.serial);
    i8042_destroy(d.kbd);
    virtio_mmio_destroy(d.mmio);
    return 0;
}
