/*
 * Just enough of the PS/2 controller (ports 0x60 data, 0x64 status/command)
 * for Linux to probe it quickly and for a reset request to end the VM.
 *
 * The bus window is 5 ports, I8042_BASE..+I8042_PORT_COUNT (0x60..0x64):
 * offset 0 is the data port, offset 4 status/command. Offsets 1..3 are not
 * ours (0x61 is the PIT's speaker port, which KVM's in-kernel PIT serves
 * before the bus ever sees it) and read as 0xff, writes ignored.
 *
 * A reset request (command 0xFE, or any pulse command 0xF0..0xFF with bit
 * 0 clear, or writing the output port with bit 0 clear) calls on_reset(ctx)
 * from the vCPU thread that made it; the callback should ask the VMM to stop
 * and must not destroy the device.
 *
 * There is no keyboard behind it: keyboard commands are answered with ACK
 * (and the usual reply for reset / get-ID), which only reaches Linux quickly
 * if an IRQ 1 line is set with i8042_set_kbd_irq(); without one, boot with
 * i8042.dumbkbd so atkbd never sends commands.
 */
#ifndef SM_DEVICES_I8042_H
#define SM_DEVICES_I8042_H

#include <stdbool.h>
#include <stdint.h>

#include "supermachine.h"
#include "devices/bus.h"
#include "devices/device_state.h"
#include "devices/irq.h"

#define I8042_BASE        0x60
#define I8042_PORT_COUNT  5
#define I8042_DATA_PORT   0x60
#define I8042_CMD_PORT    0x64
#define I8042_KBD_IRQ     1
#define I8042_OUT_QUEUE   16     /* bytes the output buffer queues for the guest */

struct i8042;

/* on_reset may be NULL. Returns NULL when out of memory. */
struct i8042 *i8042_create(void (*on_reset)(void *ctx), void *ctx);
void i8042_destroy(struct i8042 *k);

/* Optional: the keyboard interrupt (IRQ 1), pulsed when a keyboard reply is ready. */
void i8042_set_kbd_irq(struct i8042 *k, struct irq_line *irq);

/* How many reset requests the guest made (tests, diagnostics). */
unsigned i8042_reset_count(const struct i8042 *k);

extern const struct bus_device_ops i8042_bus_ops;

/*
 * Saved state (snapshots): plain data, read back as hostile input. The
 * reset counter and callback are the host's and are not saved; no interrupt
 * is raised on restore (IRQ 1 is an edge, and the interrupt controller's
 * own saved state holds any edge not yet taken).
 *
 *   off  size  field               meaning / rule on restore
 *   0    1     ctr                 controller configuration byte (any value)
 *   1    1     outport             output port (any value)
 *   2    1     status              status a read returns: UNLOCKED, OBF iff out_count > 0,
 *                                  SYS = ctr bit 2, CMD = the last write went to 0x64; nothing else
 *   3    1     next_data           where the next 0x60 write goes: 0 keyboard, 1 CTR, 2 controller
 *                                  RAM, 3 output port, 4 echo, 5 aux device
 *   4    1     kbd_awaiting_param  keyboard command waiting for its parameter: 0, 0xed, 0xf0, 0xf3
 *   5    1     last_read           what an empty output buffer reads again
 *   6    1     out_count           bytes queued, <= I8042_OUT_QUEUE
 *   7    1     reserved            0
 *   8    16    out                 queued bytes, oldest first; bytes past out_count are 0
 */
struct i8042_state {
    uint8_t ctr, outport, status, next_data, kbd_awaiting_param, last_read, out_count;
    uint8_t reserved;
    uint8_t out[I8042_OUT_QUEUE];
};
_Static_assert(sizeof(struct i8042_state) == 24, "i8042_state is a fixed 24-byte layout");

/* Fills *out (every byte, padding included). */
void i8042_save(struct i8042 *k, struct i8042_state *out);
/* Checks every field (rules above); SM_E_INVALID naming the field, device unchanged, on a violation. */
sm_code i8042_restore(struct i8042 *k, const struct i8042_state *in, sm_error *err);

/* i8042_save and i8042_restore for the VMM's device table; dev = struct i8042 *. */
extern const struct device_state_ops i8042_state_ops;

#endif
