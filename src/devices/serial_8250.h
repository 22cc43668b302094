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

#include "supermachine.h"
#include "devices/bus.h"
#include "devices/device_state.h"
#include "devices/irq.h"

#define SERIAL_COM1_BASE   0x3f8
#define SERIAL_COM1_IRQ    4
#define SERIAL_PORT_COUNT  8      /* bus window: 8 one-byte registers */
#define SERIAL_RX_FIFO     64     /* bytes serial_push_input can queue */
#define SERIAL_TAIL_BYTES  8192   /* output kept for serial_tail() */
/* The most a guest writes into a console file (the VM folder's console.log,
 * on tmpfs: in memory); past it, one line says so and the rest is dropped
 * (the tail above still sees it). Terminals and pipes are not capped. */
#define SERIAL_FILE_CAP    (8u << 20)

struct serial;

/*
 * out_fd: where the guest's output goes (-1 discards it; the ring still
 * keeps it). The fd stays the caller's: serial_destroy does not close it.
 * A regular file gets at most SERIAL_FILE_CAP bytes; a terminal gets every
 * control character but newline, tab, CR and backspace as '?' (the guest's
 * bytes must not drive the user's terminal). irq may be NULL. Returns NULL
 * when out of memory.
 */
struct serial *serial_create(int out_fd, struct irq_line *irq);
void serial_destroy(struct serial *s);
/* Tests: a smaller cap for a regular out_fd than SERIAL_FILE_CAP. */
void serial_set_file_cap(struct serial *s, uint64_t bytes);

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

/*
 * Saved state (snapshots): plain data, written raw into the snapshot and
 * read back as hostile input. Registers hold what a guest read would
 * return, computed without the read's side effects; IIR, LSR and MSR are
 * derived from the rest and must agree with it on restore. Host-side
 * things (out_fd, the output tail, the panic flag, counters) are not saved.
 *
 *   off  size  field         meaning / rule on restore
 *   0    1     dll           divisor latch low
 *   1    1     dlm           divisor latch high
 *   2    1     ier           interrupt enable, bits 0-3 only
 *   3    1     iir           interrupt id a read returns; must match the state
 *   4    1     fcr           bit 0 = FIFOs enabled; no other bit (the rest are actions)
 *   5    1     lcr           line control (any value)
 *   6    1     mcr           modem control, bits 0-4 only
 *   7    1     lsr           THRE|TEMT, DR iff rx_count > 0, OE = overrun pending; nothing else
 *   8    1     msr           bits 7-4 = the lines MCR implies; bits 3-0 = deltas not yet read
 *   9    1     scr           scratch (any value)
 *   10   1     thr_pending   0/1: a THR-empty interrupt is pending (IER decides if IIR shows it)
 *   11   1     reserved      0
 *   12   4     rx_count      bytes waiting in rx, <= SERIAL_RX_FIFO
 *   16   64    rx            received bytes, oldest first; bytes past rx_count are 0
 */
struct serial_state {
    uint8_t dll, dlm, ier, iir, fcr, lcr, mcr, lsr, msr, scr;
    uint8_t thr_pending;
    uint8_t reserved;
    uint32_t rx_count;
    uint8_t rx[SERIAL_RX_FIFO];
};
_Static_assert(sizeof(struct serial_state) == 80, "serial_state is a fixed 80-byte layout");

/* Fills *out (every byte, padding included, so snapshots are reproducible). */
void serial_save(struct serial *s, struct serial_state *out);

/*
 * Checks every field against the rules above; on any violation returns
 * SM_E_INVALID with a message naming the field and leaves the device as it
 * was. Otherwise installs the state and drives the IRQ line to the level the
 * state implies (always, so a fresh line starts right).
 */
sm_code serial_restore(struct serial *s, const struct serial_state *in, sm_error *err);

/* serial_save and serial_restore for the VMM's device table; dev = struct serial *. */
extern const struct device_state_ops serial_state_ops;

#endif
