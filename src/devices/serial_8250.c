/*
 * A 16550A UART as Linux's 8250 driver sees it. Registers (offset from the
 * base; DLAB = LCR bit 7):
 *
 *   off  DLAB  read                       write
 *   0    0     RBR  receive buffer        THR  transmit holding
 *   0    1     DLL  divisor latch low     DLL
 *   1    0     IER  interrupt enable      IER  (bits 0-3 only)
 *   1    1     DLM  divisor latch high    DLM
 *   2    -     IIR  interrupt id          FCR  FIFO control
 *   3    -     LCR  line control          LCR
 *   4    -     MCR  modem control         MCR  (bits 0-4)
 *   5    -     LSR  line status           (ignored)
 *   6    -     MSR  modem status          (ignored)
 *   7    -     SCR  scratch               SCR
 *
 * Transmission is instant: THR is empty again right after a write, so LSR
 * always shows THRE|TEMT, and with ETBEI set a THR-empty interrupt is
 * pending again after every byte (the line drops and rises, as on a real
 * chip, so an edge-triggered pin sees each one).
 *
 * Interrupt priority (IIR bits 3..1), highest first: line status (overrun)
 * 0x06, received data 0x04, THR empty 0x02, modem status 0x00; bit 0 set =
 * nothing pending; bits 7..6 = 11 while the FIFOs are enabled. IIR bit 5 is
 * always 0 and IER keeps only bits 0-3, which is what tells Linux's
 * autoconfig it is a 16550A and not a 16750 or an XScale UART.
 *
 * Loopback (MCR bit 4): THR bytes go to the receive FIFO instead of out_fd,
 * and MSR reflects MCR (RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD), which is
 * the probe Linux runs (MCR=0x1a must read back MSR&0xf0 = 0x90).
 */
#include "devices/serial_8250.h"
#include "base/text.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

enum {
    REG_DATA = 0, REG_IER = 1, REG_IIR_FCR = 2, REG_LCR = 3,
    REG_MCR = 4, REG_LSR = 5, REG_MSR = 6, REG_SCR = 7,
};

#define IER_RDI   0x01  /* received data available */
#define IER_THRI  0x02  /* THR empty */
#define IER_RLSI  0x04  /* receiver line status */
#define IER_MSI   0x08  /* modem status */
#define IER_MASK  0x0f

#define IIR_NO_INT    0x01
#define IIR_MSI       0x00
#define IIR_THRI      0x02
#define IIR_RDI       0x04
#define IIR_RLSI      0x06
#define IIR_FIFO_ON   0xc0

#define FCR_ENABLE    0x01
#define FCR_CLEAR_RX  0x02

#define LCR_DLAB      0x80

#define MCR_DTR   0x01
#define MCR_RTS   0x02
#define MCR_OUT1  0x04
#define MCR_OUT2  0x08
#define MCR_LOOP  0x10
#define MCR_MASK  0x1f

#define LSR_DR    0x01
#define LSR_OE    0x02
#define LSR_THRE  0x20
#define LSR_TEMT  0x40

#define MSR_DCTS  0x01
#define MSR_DDSR  0x02
#define MSR_TERI  0x04
#define MSR_DDCD  0x08
#define MSR_CTS   0x10
#define MSR_DSR   0x20
#define MSR_RI    0x40
#define MSR_DCD   0x80
#define MSR_DELTA 0x0f

/* Without loopback the far end is "connected": carrier, data set ready, clear to send. */
#define MSR_CONNECTED (MSR_DCD | MSR_DSR | MSR_CTS)

/* How long a write to a pipe or terminal may wait before the byte is dropped. */
#define OUTPUT_WAIT_MS 100

static const char panic_line[] = "Kernel panic - not syncing";

struct serial {
    pthread_mutex_t lock;
    int out_fd;
    bool out_may_block;   /* a blocking pipe/tty/socket: poll (bounded) before writing */
    bool out_stalled;     /* the last wait timed out: do not wait again until a write succeeds */
    bool out_is_tty;      /* neutralise control characters */
    uint64_t out_cap;     /* regular file: the most written to it; 0: no cap */
    uint64_t out_written;
    struct irq_line *irq;
    bool irq_high;

    uint8_t ier, lcr, mcr, scr, dll, dlm, msr_deltas;
    bool fifo_enabled;
    bool thr_pending;     /* THR-empty interrupt pending (cleared by an IIR read naming it) */
    bool overrun;

    uint8_t rx[SERIAL_RX_FIFO];
    size_t rx_head, rx_count;

    char tail[SERIAL_TAIL_BYTES];
    size_t tail_pos;      /* next write position */
    bool tail_wrapped;
    size_t panic_match;   /* bytes of panic_line matched so far */
    bool saw_panic;       /* atomic */
    uint64_t dropped;     /* atomic */
};

/* --- interrupts ------------------------------------------------------------- */

static uint8_t msr_lines(const struct serial *s)
{
    if (!(s->mcr & MCR_LOOP))
        return MSR_CONNECTED;
    uint8_t m = 0;
    if (s->mcr & MCR_RTS) m |= MSR_CTS;
    if (s->mcr & MCR_DTR) m |= MSR_DSR;
    if (s->mcr & MCR_OUT1) m |= MSR_RI;
    if (s->mcr & MCR_OUT2) m |= MSR_DCD;
    return m;
}

/* The highest-priority enabled interrupt, as IIR bits 3..0. */
static uint8_t pending_interrupt(const struct serial *s)
{
    if ((s->ier & IER_RLSI) && s->overrun)
        return IIR_RLSI;
    if ((s->ier & IER_RDI) && s->rx_count)
        return IIR_RDI;
    if ((s->ier & IER_THRI) && s->thr_pending)
        return IIR_THRI;
    if ((s->ier & IER_MSI) && s->msr_deltas)
        return IIR_MSI;
    return IIR_NO_INT;
}

static void update_irq(struct serial *s)
{
    bool high = pending_interrupt(s) != IIR_NO_INT;
    if (high != s->irq_high) {
        s->irq_high = high;
        irq_set_level(s->irq, high);
    }
}

/* --- output --------------------------------------------------------------------- */

static void record_output(struct serial *s, uint8_t byte)
{
    s->tail[s->tail_pos++] = (char)byte;
    if (s->tail_pos == sizeof s->tail) {
        s->tail_pos = 0;
        s->tail_wrapped = true;
    }
    /* The first character occurs nowhere else in the pattern, so a mismatch restarts cleanly. */
    if ((char)byte == panic_line[s->panic_match])
        s->panic_match++;
    else
        s->panic_match = (char)byte == panic_line[0] ? 1 : 0;
    if (s->panic_match == sizeof panic_line - 1) {
        __atomic_store_n(&s->saw_panic, true, __ATOMIC_RELEASE);
        s->panic_match = 0;
    }
}

/*
 * One byte to out_fd without ever blocking for long; failures are counted,
 * not fatal. Once a wait has timed out the fd counts as stalled and later
 * bytes are dropped without waiting, until a write goes through again: a
 * stopped terminal costs the guest one OUTPUT_WAIT_MS, not one per byte.
 */
static const char cap_line[] = "\n[supermachine: the console file reached its size limit; later output is not kept]\n";

/* True when the byte may go out; past the file's cap, says so once. */
static bool within_cap(struct serial *s)
{
    if (!s->out_cap || s->out_written < s->out_cap)
        return true;
    if (s->out_written == s->out_cap) {
        (void)!write(s->out_fd, cap_line, sizeof cap_line - 1);
        s->out_written++;
    }
    return false;
}

static void emit(struct serial *s, uint8_t byte)
{
    if (s->out_fd < 0)
        return;
    if (!within_cap(s)) {
        __atomic_fetch_add(&s->dropped, 1, __ATOMIC_RELAXED);
        return;
    }
    s->out_written++;
    if (s->out_is_tty && !text_terminal_safe(byte))
        byte = TEXT_REPLACEMENT;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (s->out_may_block) {
            struct pollfd p = { .fd = s->out_fd, .events = POLLOUT };
            int r = poll(&p, 1, s->out_stalled ? 0 : OUTPUT_WAIT_MS);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0 || !(p.revents & POLLOUT)) {
                s->out_stalled = true;
                break;
            }
        }
        ssize_t n = write(s->out_fd, &byte, 1);
        if (n == 1) {
            s->out_stalled = false;
            return;
        }
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    __atomic_fetch_add(&s->dropped, 1, __ATOMIC_RELAXED);
}

static void rx_push(struct serial *s, uint8_t byte)
{
    if (s->rx_count == SERIAL_RX_FIFO) {
        s->overrun = true;
        return;
    }
    s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_FIFO] = byte;
    s->rx_count++;
}

static void write_thr(struct serial *s, uint8_t byte)
{
    s->thr_pending = false;
    update_irq(s); /* drop the line so the next THR-empty is a fresh edge */
    if (s->mcr & MCR_LOOP) {
        rx_push(s, byte);
    } else {
        record_output(s, byte);
        emit(s, byte);
    }
    s->thr_pending = true;
}

/* --- registers ----------------------------------------------------------------------- */

static uint8_t read_rbr(struct serial *s)
{
    if (!s->rx_count)
        return 0;
    uint8_t b = s->rx[s->rx_head];
    s->rx_head = (s->rx_head + 1) % SERIAL_RX_FIFO;
    s->rx_count--;
    return b;
}

/* IIR as a read returns it, without acknowledging anything. */
static uint8_t iir_value(const struct serial *s)
{
    return pending_interrupt(s) | (s->fifo_enabled ? IIR_FIFO_ON : 0);
}

static uint8_t read_iir(struct serial *s)
{
    uint8_t iir = iir_value(s);
    /* Reading IIR acknowledges a THR-empty interrupt it reports. */
    if ((iir & 0x0f) == IIR_THRI)
        s->thr_pending = false;
    return iir;
}

/* LSR as a read returns it, without the read's side effect. */
static uint8_t lsr_value(const struct serial *s)
{
    uint8_t lsr = LSR_THRE | LSR_TEMT;
    if (s->rx_count)
        lsr |= LSR_DR;
    if (s->overrun)
        lsr |= LSR_OE;
    return lsr;
}

static uint8_t read_lsr(struct serial *s)
{
    uint8_t lsr = lsr_value(s);
    s->overrun = false; /* error bits clear on read */
    return lsr;
}

/* MSR as a read returns it, without clearing the deltas. */
static uint8_t msr_value(const struct serial *s) { return msr_lines(s) | s->msr_deltas; }

static uint8_t read_msr(struct serial *s)
{
    uint8_t msr = msr_value(s);
    s->msr_deltas = 0;
    return msr;
}

static uint8_t serial_read_reg(struct serial *s, uint64_t reg)
{
    bool dlab = s->lcr & LCR_DLAB;
    switch (reg) {
    case REG_DATA: return dlab ? s->dll : read_rbr(s);
    case REG_IER: return dlab ? s->dlm : s->ier;
    case REG_IIR_FCR: return read_iir(s);
    case REG_LCR: return s->lcr;
    case REG_MCR: return s->mcr;
    case REG_LSR: return read_lsr(s);
    case REG_MSR: return read_msr(s);
    case REG_SCR: return s->scr;
    default: return 0xff;
    }
}

static void write_ier(struct serial *s, uint8_t v)
{
    uint8_t old = s->ier;
    s->ier = v & IER_MASK;
    /* Enabling THRI while THR is empty (always, here) raises it at once. */
    if (!(old & IER_THRI) && (s->ier & IER_THRI))
        s->thr_pending = true;
}

static void write_fcr(struct serial *s, uint8_t v)
{
    s->fifo_enabled = v & FCR_ENABLE;
    if (v & FCR_CLEAR_RX) {
        s->rx_head = s->rx_count = 0;
        s->overrun = false;
    }
}

/* Records which modem lines changed, for the MSR delta bits. */
static void write_mcr(struct serial *s, uint8_t v)
{
    uint8_t before = msr_lines(s);
    s->mcr = v & MCR_MASK;
    uint8_t after = msr_lines(s);
    uint8_t changed = before ^ after;
    if (changed & MSR_CTS) s->msr_deltas |= MSR_DCTS;
    if (changed & MSR_DSR) s->msr_deltas |= MSR_DDSR;
    if (changed & MSR_DCD) s->msr_deltas |= MSR_DDCD;
    if ((before & MSR_RI) && !(after & MSR_RI)) s->msr_deltas |= MSR_TERI; /* trailing edge only */
}

static void serial_write_reg(struct serial *s, uint64_t reg, uint8_t v)
{
    bool dlab = s->lcr & LCR_DLAB;
    switch (reg) {
    case REG_DATA: if (dlab) s->dll = v; else write_thr(s, v); break;
    case REG_IER: if (dlab) s->dlm = v; else write_ier(s, v); break;
    case REG_IIR_FCR: write_fcr(s, v); break;
    case REG_LCR: s->lcr = v; break;
    case REG_MCR: write_mcr(s, v); break;
    case REG_SCR: s->scr = v; break;
    default: break; /* LSR and MSR are read-only */
    }
}

/* Registers are one byte wide; a wider access touches consecutive ones. */
static void serial_bus_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct serial *s = opaque;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < len; i++)
        data[i] = offset + i < SERIAL_PORT_COUNT ? serial_read_reg(s, offset + i) : 0xff;
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

static void serial_bus_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct serial *s = opaque;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < len; i++)
        if (offset + i < SERIAL_PORT_COUNT)
            serial_write_reg(s, offset + i, data[i]);
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

const struct bus_device_ops serial_bus_ops = {
    .read = serial_bus_read,
    .write = serial_bus_write,
};

/* --- host side ------------------------------------------------------------------------- */

struct serial *serial_create(int out_fd, struct irq_line *irq)
{
    struct serial *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    /* Regular files never block; a non-blocking fd fails with EAGAIN instead (dropped). */
    struct stat st;
    int fl = out_fd >= 0 ? fcntl(out_fd, F_GETFL) : -1;
    bool regular = out_fd >= 0 && fstat(out_fd, &st) == 0 && S_ISREG(st.st_mode);
    s->out_fd = out_fd;
    s->out_may_block = out_fd >= 0 && !regular && fl >= 0 && !(fl & O_NONBLOCK);
    s->out_is_tty = out_fd >= 0 && isatty(out_fd);
    s->out_cap = regular ? SERIAL_FILE_CAP : 0;
    s->irq = irq;
    /* Power-on: 115200 baud (divisor 1), 8N1 is the driver's business; lines idle. */
    s->dll = 1;
    return s;
}

void serial_destroy(struct serial *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int serial_push_input(struct serial *s, const uint8_t *buf, size_t len)
{
    pthread_mutex_lock(&s->lock);
    size_t room = SERIAL_RX_FIFO - s->rx_count;
    size_t n = len < room ? len : room;
    for (size_t i = 0; i < n; i++)
        rx_push(s, buf[i]);
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return (int)n;
}

/* The ring, oldest byte first, into out (SERIAL_TAIL_BYTES); returns the length. */
static size_t linearize_tail(const struct serial *s, char *out)
{
    if (!s->tail_wrapped) {
        memcpy(out, s->tail, s->tail_pos);
        return s->tail_pos;
    }
    size_t older = sizeof s->tail - s->tail_pos;
    memcpy(out, s->tail + s->tail_pos, older);
    memcpy(out + older, s->tail, s->tail_pos);
    return sizeof s->tail;
}

/* Where the last max_lines lines of text[0..len) start; a final '\n' does not open a new line. */
static size_t last_lines_start(const char *text, size_t len, int max_lines)
{
    if (max_lines <= 0)
        return 0;
    size_t end = len && text[len - 1] == '\n' ? len - 1 : len;
    int lines = 0;
    for (size_t i = end; i > 0; i--) {
        if (text[i - 1] == '\n' && ++lines == max_lines)
            return i;
    }
    return 0;
}

void serial_set_file_cap(struct serial *s, uint64_t bytes)
{
    pthread_mutex_lock(&s->lock);
    if (s->out_cap)
        s->out_cap = bytes;
    pthread_mutex_unlock(&s->lock);
}

size_t serial_tail(struct serial *s, char *buf, size_t buflen, int max_lines)
{
    if (!buf || buflen == 0)
        return 0;
    char *text = malloc(SERIAL_TAIL_BYTES);
    if (!text) {
        buf[0] = '\0';
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    size_t len = linearize_tail(s, text);
    pthread_mutex_unlock(&s->lock);

    size_t start = last_lines_start(text, len, max_lines);
    size_t n = len - start;
    if (n > buflen - 1) {
        start += n - (buflen - 1); /* keep the newest bytes */
        n = buflen - 1;
    }
    memcpy(buf, text + start, n);
    buf[n] = '\0';
    free(text);
    return n;
}

/* These two are atomics so they can be read without the lock (and through a const pointer). */
bool serial_saw_panic(const struct serial *s) { return __atomic_load_n(&s->saw_panic, __ATOMIC_ACQUIRE); }

uint64_t serial_dropped_bytes(const struct serial *s) { return __atomic_load_n(&s->dropped, __ATOMIC_RELAXED); }

/* --- snapshots (layout and rules in serial_8250.h) ------------------------------------ */

void serial_save(struct serial *s, struct serial_state *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    out->dll = s->dll;
    out->dlm = s->dlm;
    out->ier = s->ier;
    out->iir = iir_value(s);
    out->fcr = s->fifo_enabled ? FCR_ENABLE : 0;
    out->lcr = s->lcr;
    out->mcr = s->mcr;
    out->lsr = lsr_value(s);
    out->msr = msr_value(s);
    out->scr = s->scr;
    out->thr_pending = s->thr_pending;
    out->rx_count = (uint32_t)s->rx_count;
    for (size_t i = 0; i < s->rx_count; i++)
        out->rx[i] = s->rx[(s->rx_head + i) % SERIAL_RX_FIFO];
    pthread_mutex_unlock(&s->lock);
}

/* The fields that are plain bits, one rule each. */
static sm_code check_plain_fields(const struct serial_state *in, sm_error *err)
{
    if (in->ier & ~IER_MASK)
        return error_set(err, SM_E_INVALID, "serial state: IER 0x%02x has bits beyond 0-3", in->ier);
    if (in->mcr & ~MCR_MASK)
        return error_set(err, SM_E_INVALID, "serial state: MCR 0x%02x has bits beyond 0-4", in->mcr);
    if (in->fcr & ~FCR_ENABLE)
        return error_set(err, SM_E_INVALID, "serial state: FCR 0x%02x has bits other than FIFO enable", in->fcr);
    if (in->thr_pending > 1)
        return error_set(err, SM_E_INVALID, "serial state: thr_pending is %u, not 0 or 1", in->thr_pending);
    if (in->reserved)
        return error_set(err, SM_E_INVALID, "serial state: reserved byte is 0x%02x, not 0", in->reserved);
    if (in->rx_count > SERIAL_RX_FIFO)
        return error_set(err, SM_E_INVALID, "serial state: rx count %u exceeds the %d-byte FIFO", in->rx_count,
                       SERIAL_RX_FIFO);
    for (size_t i = in->rx_count; i < SERIAL_RX_FIFO; i++)
        if (in->rx[i])
            return error_set(err, SM_E_INVALID, "serial state: rx byte %zu lies past rx count %u and is not 0", i,
                           in->rx_count);
    return SM_OK;
}

/* The registers derived from the rest must read back what the state implies. */
static sm_code check_derived_registers(const struct serial_state *in, const struct serial *candidate,
                                       sm_error *err)
{
    uint8_t lsr = lsr_value(candidate);
    if (in->lsr != lsr)
        return error_set(err, SM_E_INVALID, "serial state: LSR 0x%02x disagrees with the FIFO (expected 0x%02x)",
                       in->lsr, lsr);
    if ((in->msr & ~MSR_DELTA) != msr_lines(candidate))
        return error_set(err, SM_E_INVALID, "serial state: MSR 0x%02x disagrees with MCR 0x%02x", in->msr, in->mcr);
    uint8_t iir = iir_value(candidate);
    if (in->iir != iir)
        return error_set(err, SM_E_INVALID, "serial state: IIR 0x%02x disagrees with the state (expected 0x%02x)",
                       in->iir, iir);
    return SM_OK;
}

/* The register part of a state into s (the FIFO is installed separately). */
static void install_registers(struct serial *s, const struct serial_state *in)
{
    s->dll = in->dll;
    s->dlm = in->dlm;
    s->ier = in->ier;
    s->fifo_enabled = in->fcr & FCR_ENABLE;
    s->lcr = in->lcr;
    s->mcr = in->mcr;
    s->overrun = in->lsr & LSR_OE;
    s->msr_deltas = in->msr & MSR_DELTA;
    s->scr = in->scr;
    s->thr_pending = in->thr_pending;
}

sm_code serial_restore(struct serial *s, const struct serial_state *in, sm_error *err)
{
    sm_code rc = check_plain_fields(in, err);
    if (rc != SM_OK)
        return rc;
    /* Derived registers are checked on a scratch copy of the guest-visible state. */
    struct serial candidate = { 0 };
    install_registers(&candidate, in);
    candidate.rx_count = in->rx_count;
    rc = check_derived_registers(in, &candidate, err);
    if (rc != SM_OK)
        return rc;

    pthread_mutex_lock(&s->lock);
    install_registers(s, in);
    memcpy(s->rx, in->rx, sizeof s->rx);
    s->rx_head = 0;
    s->rx_count = in->rx_count;
    /* The line in a restored VM starts wherever it starts: drive it, even if unchanged. */
    s->irq_high = pending_interrupt(s) != IIR_NO_INT;
    irq_set_level(s->irq, s->irq_high);
    pthread_mutex_unlock(&s->lock);
    return SM_OK;
}

static void save_state(void *dev, void *state) { serial_save(dev, state); }
static sm_code restore_state(void *dev, const void *state, sm_error *err) { return serial_restore(dev, state, err); }

const struct device_state_ops serial_state_ops = {
    .name = "serial",
    .state_size = sizeof(struct serial_state),
    .save = save_state,
    .restore = restore_state,
};
