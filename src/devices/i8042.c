/*
 * A PS/2 controller (8042) with no devices behind it but a token keyboard.
 *
 * Ports:  0x60 read: output buffer    0x60 write: data (command parameter or
 *                                                 a byte for the keyboard)
 *         0x64 read: status           0x64 write: controller command
 *
 * Status bits: 0 OBF (output buffer full), 1 IBF (always 0: we act at once),
 * 2 SYS (copied from CTR bit 2), 3 CMD (last write went to 0x64),
 * 4 unlocked (always 1), 5 AUXDATA (never: there is no aux port).
 *
 * Controller commands (written to 0x64) and what we answer:
 *   0x20        read CTR -> CTR         0x21..0x3f  read RAM -> 0
 *   0x60        write CTR (next data)   0x61..0x7f  write RAM (next data, dropped)
 *   0xa7/0xa8   aux port off/on (CTR bit 5)
 *   0xa9        aux port test -> 0x01 (clock stuck: Linux concludes no aux port)
 *   0xaa        self test -> 0x55       0xab        keyboard port test -> 0x00
 *   0xad/0xae   keyboard off/on (CTR bit 4)
 *   0xc0        read input port -> 0x00
 *   0xd0        read output port        0xd1        write output port (next data;
 *                                                   bit 0 clear = CPU reset)
 *   0xd2/0xd3   echo the next data byte as if the keyboard sent it (0xd3 is the
 *               aux loop test; the byte comes back without AUXDATA, so Linux's
 *               loop test fails fast instead of timing out)
 *   0xd4        next data byte to the aux device: dropped (no aux device)
 *   0xf0..0xff  pulse output lines; bit 0 clear pulses CPU reset (0xfe)
 *
 * Keyboard (data written to 0x60 without a pending command): every byte is
 * acknowledged with 0xfa; 0xff (reset) adds 0xaa (self test passed), 0xf2
 * (identify) adds 0xab 0x83, 0xee (echo) answers 0xee alone, and 0xf0 0x00
 * (get scan code set) adds 0x02. Parameters of 0xed/0xf0/0xf3 are acknowledged.
 */
#include "devices/i8042.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#define STATUS_OBF      0x01
#define STATUS_SYS      0x04
#define STATUS_CMD      0x08
#define STATUS_UNLOCKED 0x10

#define CTR_KBDINT  0x01
#define CTR_SYS     0x04
#define CTR_KBDDIS  0x10
#define CTR_AUXDIS  0x20
#define CTR_XLATE   0x40
#define CTR_POWER_ON (CTR_KBDINT | CTR_SYS | CTR_AUXDIS | CTR_XLATE)

#define OUTPORT_RESET_INACTIVE 0x01   /* bit 0 = 0 holds the CPU in reset */
#define OUTPORT_A20            0x02

#define KBD_ACK    0xfa
#define KBD_BAT_OK 0xaa
#define OUT_QUEUE  I8042_OUT_QUEUE

/* The values are the saved state's next_data field (i8042.h): keep them. */
enum data_target { TO_KEYBOARD = 0, TO_CTR = 1, TO_RAM = 2, TO_OUTPORT = 3, TO_ECHO = 4, TO_AUX = 5 };
#define DATA_TARGET_LAST TO_AUX

struct i8042 {
    pthread_mutex_t lock;
    void (*on_reset)(void *ctx);
    void *ctx;
    struct irq_line *kbd_irq;
    unsigned resets;            /* atomic */

    uint8_t ctr;
    uint8_t outport;
    bool last_write_was_cmd;
    enum data_target next_data; /* where the next byte written to 0x60 goes */
    uint8_t kbd_cmd_awaiting_param;  /* 0: none */

    uint8_t out[OUT_QUEUE];
    unsigned out_head, out_count;
    uint8_t last_read;
};

static void out_push(struct i8042 *k, uint8_t byte)
{
    if (k->out_count == OUT_QUEUE)
        return; /* the guest stopped reading: drop, like a full controller would */
    k->out[(k->out_head + k->out_count) % OUT_QUEUE] = byte;
    k->out_count++;
}

/* A byte from the "keyboard": queued and, if the guest enabled it, IRQ 1. */
static void kbd_reply(struct i8042 *k, uint8_t byte)
{
    out_push(k, byte);
    if (k->ctr & CTR_KBDINT)
        irq_pulse(k->kbd_irq);
}

/* Returns true when the command asks for a CPU reset. */
static bool controller_command(struct i8042 *k, uint8_t cmd)
{
    k->next_data = TO_KEYBOARD;
    if (cmd == 0x20) { out_push(k, k->ctr); return false; }
    if (cmd > 0x20 && cmd < 0x40) { out_push(k, 0); return false; }
    if (cmd == 0x60) { k->next_data = TO_CTR; return false; }
    if (cmd > 0x60 && cmd < 0x80) { k->next_data = TO_RAM; return false; }
    if (cmd >= 0xf0)
        return !(cmd & 1);
    switch (cmd) {
    case 0xa7: k->ctr |= CTR_AUXDIS; break;
    case 0xa8: k->ctr &= ~CTR_AUXDIS; break;
    case 0xa9: out_push(k, 0x01); break;
    case 0xaa: out_push(k, 0x55); break;
    case 0xab: out_push(k, 0x00); break;
    case 0xad: k->ctr |= CTR_KBDDIS; break;
    case 0xae: k->ctr &= ~CTR_KBDDIS; break;
    case 0xc0: out_push(k, 0x00); break;
    case 0xd0: out_push(k, k->outport); break;
    case 0xd1: k->next_data = TO_OUTPORT; break;
    case 0xd2:
    case 0xd3: k->next_data = TO_ECHO; break;
    case 0xd4: k->next_data = TO_AUX; break;
    default: break;
    }
    return false;
}

static void keyboard_byte(struct i8042 *k, uint8_t byte)
{
    uint8_t awaiting = k->kbd_cmd_awaiting_param;
    k->kbd_cmd_awaiting_param = 0;
    if (awaiting) {
        kbd_reply(k, KBD_ACK);
        if (awaiting == 0xf0 && byte == 0)
            kbd_reply(k, 0x02); /* scan code set 2 */
        return;
    }
    switch (byte) {
    case 0xee: kbd_reply(k, 0xee); break;
    case 0xff: kbd_reply(k, KBD_ACK); kbd_reply(k, KBD_BAT_OK); break;
    case 0xf2: kbd_reply(k, KBD_ACK); kbd_reply(k, 0xab); kbd_reply(k, 0x83); break;
    case 0xed:
    case 0xf0:
    case 0xf3: k->kbd_cmd_awaiting_param = byte; kbd_reply(k, KBD_ACK); break;
    default: kbd_reply(k, KBD_ACK); break;
    }
}

/* Returns true when the byte asks for a CPU reset. */
static bool data_write(struct i8042 *k, uint8_t byte)
{
    enum data_target target = k->next_data;
    k->next_data = TO_KEYBOARD;
    switch (target) {
    case TO_CTR: k->ctr = byte; return false;
    case TO_RAM: return false;
    case TO_OUTPORT:
        k->outport = byte;
        return !(byte & OUTPORT_RESET_INACTIVE);
    case TO_ECHO: kbd_reply(k, byte); return false;
    case TO_AUX: return false;
    case TO_KEYBOARD: keyboard_byte(k, byte); return false;
    }
    return false;
}

static uint8_t read_status(const struct i8042 *k)
{
    uint8_t st = STATUS_UNLOCKED;
    if (k->out_count)
        st |= STATUS_OBF;
    if (k->ctr & CTR_SYS)
        st |= STATUS_SYS;
    if (k->last_write_was_cmd)
        st |= STATUS_CMD;
    return st;
}

static uint8_t read_data(struct i8042 *k)
{
    if (k->out_count) {
        k->last_read = k->out[k->out_head];
        k->out_head = (k->out_head + 1) % OUT_QUEUE;
        k->out_count--;
        /* More keyboard bytes behind this one: interrupt again for the next. */
        if (k->out_count && (k->ctr & CTR_KBDINT))
            irq_pulse(k->kbd_irq);
    }
    return k->last_read; /* an empty buffer reads the last byte again, as on hardware */
}

static void i8042_bus_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct i8042 *k = opaque;
    pthread_mutex_lock(&k->lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t port = offset + i;
        data[i] = port == 0 ? read_data(k) : port == 4 ? read_status(k) : 0xff;
    }
    pthread_mutex_unlock(&k->lock);
}

static void i8042_bus_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct i8042 *k = opaque;
    bool reset = false;
    pthread_mutex_lock(&k->lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t port = offset + i;
        if (port == 0) {
            k->last_write_was_cmd = false;
            reset |= data_write(k, data[i]);
        } else if (port == 4) {
            k->last_write_was_cmd = true;
            reset |= controller_command(k, data[i]);
        }
    }
    pthread_mutex_unlock(&k->lock);
    /* Outside the lock: the callback may well read our state (i8042_reset_count). */
    if (reset) {
        __atomic_fetch_add(&k->resets, 1, __ATOMIC_SEQ_CST);
        if (k->on_reset)
            k->on_reset(k->ctx);
    }
}

const struct bus_device_ops i8042_bus_ops = {
    .read = i8042_bus_read,
    .write = i8042_bus_write,
};

struct i8042 *i8042_create(void (*on_reset)(void *ctx), void *ctx)
{
    struct i8042 *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    if (pthread_mutex_init(&k->lock, NULL) != 0) {
        free(k);
        return NULL;
    }
    k->on_reset = on_reset;
    k->ctx = ctx;
    k->ctr = CTR_POWER_ON;
    k->outport = OUTPORT_RESET_INACTIVE | OUTPORT_A20;
    return k;
}

void i8042_destroy(struct i8042 *k)
{
    if (!k)
        return;
    pthread_mutex_destroy(&k->lock);
    free(k);
}

void i8042_set_kbd_irq(struct i8042 *k, struct irq_line *irq)
{
    pthread_mutex_lock(&k->lock);
    k->kbd_irq = irq;
    pthread_mutex_unlock(&k->lock);
}

unsigned i8042_reset_count(const struct i8042 *k) { return __atomic_load_n(&k->resets, __ATOMIC_SEQ_CST); }

/* --- snapshots (layout and rules in i8042.h) -------------------------------------------- */

void i8042_save(struct i8042 *k, struct i8042_state *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&k->lock);
    out->ctr = k->ctr;
    out->outport = k->outport;
    out->status = read_status(k);
    out->next_data = (uint8_t)k->next_data;
    out->kbd_awaiting_param = k->kbd_cmd_awaiting_param;
    out->last_read = k->last_read;
    out->out_count = (uint8_t)k->out_count;
    for (unsigned i = 0; i < k->out_count; i++)
        out->out[i] = k->out[(k->out_head + i) % OUT_QUEUE];
    pthread_mutex_unlock(&k->lock);
}

static bool is_param_command(uint8_t cmd) { return cmd == 0 || cmd == 0xed || cmd == 0xf0 || cmd == 0xf3; }

static sm_code check_state(const struct i8042_state *in, sm_error *err)
{
    if (in->out_count > OUT_QUEUE)
        return error_set(err, SM_E_INVALID, "i8042 state: output count %u exceeds the %d-byte queue", in->out_count,
                       OUT_QUEUE);
    for (unsigned i = in->out_count; i < OUT_QUEUE; i++)
        if (in->out[i])
            return error_set(err, SM_E_INVALID, "i8042 state: output byte %u lies past the count %u and is not 0", i,
                           in->out_count);
    if (in->next_data > DATA_TARGET_LAST)
        return error_set(err, SM_E_INVALID, "i8042 state: next_data %u is not a known target (0..%d)", in->next_data,
                       DATA_TARGET_LAST);
    if (!is_param_command(in->kbd_awaiting_param))
        return error_set(err, SM_E_INVALID, "i8042 state: keyboard command 0x%02x takes no parameter",
                       in->kbd_awaiting_param);
    if (in->reserved)
        return error_set(err, SM_E_INVALID, "i8042 state: reserved byte is 0x%02x, not 0", in->reserved);
    /* Status is derived: only the CMD bit is state of its own. */
    uint8_t expected = STATUS_UNLOCKED | (in->out_count ? STATUS_OBF : 0) | (in->ctr & CTR_SYS ? STATUS_SYS : 0) |
                       (in->status & STATUS_CMD);
    if (in->status != expected)
        return error_set(err, SM_E_INVALID, "i8042 state: status 0x%02x disagrees with the state (expected 0x%02x)",
                       in->status, expected);
    return SM_OK;
}

sm_code i8042_restore(struct i8042 *k, const struct i8042_state *in, sm_error *err)
{
    sm_code rc = check_state(in, err);
    if (rc != SM_OK)
        return rc;
    pthread_mutex_lock(&k->lock);
    k->ctr = in->ctr;
    k->outport = in->outport;
    k->last_write_was_cmd = in->status & STATUS_CMD;
    k->next_data = (enum data_target)in->next_data;
    k->kbd_cmd_awaiting_param = in->kbd_awaiting_param;
    k->last_read = in->last_read;
    memcpy(k->out, in->out, sizeof k->out);
    k->out_head = 0;
    k->out_count = in->out_count;
    pthread_mutex_unlock(&k->lock);
    return SM_OK;
}

static void save_state(void *dev, void *state) { i8042_save(dev, state); }
static sm_code restore_state(void *dev, const void *state, sm_error *err) { return i8042_restore(dev, state, err); }

const struct device_state_ops i8042_state_ops = {
    .name = "i8042",
    .state_size = sizeof(struct i8042_state),
    .save = save_state,
    .restore = restore_state,
};
