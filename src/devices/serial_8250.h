/*
 * A 16550A-compatible UART (COM1: ports 0x3f8..0x3ff, IRQ 4).
 *
 * Output goes to a host fd and into an 8 KiB ring the VMM can show after a
 * failure; the ring is also watched for the kernel's panic line. Input comes
 * from serial_push_input() into a 64-byte receive FIFO. The interrupt is a
 * level: high while an enabled interrupt is pending, low otherwise.
 *
 * Thread-safe: every entry point takes the device's mutex (vCPU threads write
 * the registers, the event loop pushes input, the VMM reads the tail).
 */
#ifndef SM_DEVICES_SERIAL_8250_H
#define SM_DEVICES_SERIAL_8250_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/bus.h"
#include "devices/irq.h"

#define SERIAL_COM1_BASE   0x3f8
#define SERIAL_COM1_IRQ    4
#define SERIAL_PORT_COUNT  8      /* bus window: 8 one-byte registers */
#define SERIAL_RX_FIFO     64     /* bytes serial_push_input can queue */
#define SERIAL_TAIL_BYTES  8192   /* output kept for serial_tail() */

struct serial;

/*
 * out_fd: where the guest's output goes (-1 discards it; the ring still
 * keeps it). The fd stays the caller's: serial_destroy does not close it.
 * irq may be NULL. Returns NULL when out of memory.
 */
struct serial *serial_create(int out_fd, struct irq_line *irq);
void serial_destroy(struct serial *s);

/* Bus ops for the 8-port window; opaque = struct serial *. */
extern const struct bus_device_ops serial_bus_ops;

/* Queues input for the guest; returns how many bytes fit (0 when full). */
int serial_push_input(struct serial *s, const uint8_t *buf, size_t len);

/*
 * Copies up to the last max_lines lines of output (max_lines <= 0: as much
 * as fits) into buf, NUL-terminated, keeping the newest bytes when buf is
 * too small. Returns the number of bytes copied, without the NUL.
 */
size_t serial_tail(struct serial *s, char *buf, size_t buflen, int max_lines);

/* True once the output contained "Kernel panic - not syncing". */
bool serial_saw_panic(const struct serial *s);

/* Output bytes dropped because out_fd would have blocked or failed. */
uint64_t serial_dropped_bytes(const struct serial *s);

#endif
