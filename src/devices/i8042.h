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

#include "devices/bus.h"
#include "devices/irq.h"

#define I8042_BASE        0x60
#define I8042_PORT_COUNT  5
#define I8042_DATA_PORT   0x60
#define I8042_CMD_PORT    0x64
#define I8042_KBD_IRQ     1

struct i8042;

/* on_reset may be NULL. Returns NULL when out of memory. */
struct i8042 *i8042_create(void (*on_reset)(void *ctx), void *ctx);
void i8042_destroy(struct i8042 *k);

/* Optional: the keyboard interrupt (IRQ 1), pulsed when a keyboard reply is ready. */
void i8042_set_kbd_irq(struct i8042 *k, struct irq_line *irq);

/* How many reset requests the guest made (tests, diagnostics). */
unsigned i8042_reset_count(const struct i8042 *k);

extern const struct bus_device_ops i8042_bus_ops;

#endif
