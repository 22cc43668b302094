/*
 * The 16550A model through its bus ops: registers, DLAB, LSR/IIR, interrupt
 * levels (a fake irq_line that records each call), loopback and the probe
 * Linux runs, output to a pipe, the tail ring, panic detection across writes,
 * never blocking on a full pipe, and several writer threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "devices/serial_8250.h"

enum { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

struct fake_irq {
    struct irq_line line;
    int calls;
    bool level;
};

static void record_level(struct irq_line *line, bool high)
{
    struct fake_irq *f = line->ctx;
    f->calls++;
    f->level = high;
}

struct fixture {
    struct fake_irq irq;
    int pipe_r, pipe_w;
    struct serial *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    int p[2];
    assert_int_equal(pipe(p), 0);
    f->pipe_r = p[0];
    f->pipe_w = p[1];
    fcntl(f->pipe_r, F_SETFL, O_NONBLOCK);
    f->irq.line = (struct irq_line){ .set_level = record_level, .fd = -1, .ctx = &f->irq };
    f->s = serial_create(f->pipe_w, &f->irq.line);
    assert_non_null(f->s);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    serial_destroy(f->s);
    close(f->pipe_r);
    close(f->pipe_w);
    free(f);
    return 0;
}

static uint8_t in(struct fixture *f, uint64_t reg)
{
    uint8_t v = 0;
    serial_bus_ops.read(f->s, reg, &v, 1);
    return v;
}

static void out(struct fixture *f, uint64_t reg, uint8_t v) { serial_bus_ops.write(f->s, reg, &v, 1); }

static void out_str(struct fixture *f, const char *str)
{
    for (; *str; str++)
        out(f, THR, (uint8_t)*str);
}

static size_t drain_pipe(struct fixture *f, char *buf, size_t len)
{
    ssize_t n = read(f->pipe_r, buf, len);
    return n < 0 ? 0 : (size_t)n;
}

/* --- registers ---------------------------------------------------------- */

static void test_power_on_state(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(in(f, LSR), 0x60);          /* THRE | TEMT, no data */
    assert_int_equal(in(f, IIR), 0x01);          /* nothing pending, FIFOs off */
    assert_int_equal(in(f, IER), 0);
    assert_int_equal(in(f, MSR) & 0xf0, 0xb0);   /* DCD | DSR | CTS: a connected line */
    assert_int_equal(f->irq.calls, 0);
}

static void test_scratch_and_ier_mask(void **state)
{
    struct fixture *f = *state;
    out(f, SCR, 0x5a);
    assert_int_equal(in(f, SCR), 0x5a);
    out(f, IER, 0xff);
    assert_int_equal(in(f, IER), 0x0f); /* a 16550A keeps bits 0-3 only */
    out(f, IER, 0);
    assert_int_equal(in(f, IER), 0);
}

static void test_dlab_switches_divisor_latch(void **state)
{
    struct fixture *f = *state;
    out(f, IER, 0x05);
    out(f, LCR, 0x80 | 0x03);
    out(f, DLL, 0x0c);
    out(f, DLM, 0x01);
    assert_int_equal(in(f, DLL), 0x0c);
    assert_int_equal(in(f, DLM), 0x01);
    out(f, LCR, 0x03);
    assert_int_equal(in(f, LCR), 0x03);
    assert_int_equal(in(f, IER), 0x05);  /* IER unchanged by DLM writes */
    out(f, LCR, 0x83);
    assert_int_equal(in(f, DLL), 0x0c);  /* latched value kept */
    char buf[8];
    assert_int_equal(drain_pipe(f, buf, sizeof buf), 0); /* DLL writes are not output */
}

static void test_fifo_enable_shows_in_iir(void **state)
{
    struct fixture *f = *state;
    out(f, FCR, 0x01);
    assert_int_equal(in(f, IIR), 0xc1);
    /* With the 64-byte-FIFO bit (a 16750 probe) bit 5 still stays clear. */
    out(f, FCR, 0x21);
    assert_int_equal(in(f, IIR) & 0x20, 0);
    out(f, FCR, 0x00);
    assert_int_equal(in(f, IIR), 0x01);
}

/* --- output ------------------------------------------------------------------- */

static void test_output_goes_to_fd(void **state)
{
    struct fixture *f = *state;
    out_str(f, "hello\n");
    char buf[16] = { 0 };
    assert_int_equal(drain_pipe(f, buf, sizeof buf), 6);
    assert_string_equal(buf, "hello\n");
    assert_int_equal(in(f, LSR) & 0x60, 0x60); /* transmitter empty again at once */
    assert_int_equal(serial_dropped_bytes(f->s), 0);
}

/* A console file stops at its cap with one line saying so; the tail and the
 * drop count still see everything. */
static void test_file_output_is_capped(void **state)
{
    (void)state;
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    struct fake_irq irq = { .line = { .set_level = record_level, .fd = -1 } };
    irq.line.ctx = &irq;
    struct fixture f = { .s = serial_create(fileno(tmp), &irq.line) };
    assert_non_null(f.s);
    serial_set_file_cap(f.s, 16);
    out_str(&f, "0123456789abcdef-this-part-is-over-the-cap\n");
    char got[256] = { 0 };
    assert_int_equal(fseek(tmp, 0, SEEK_SET), 0);
    size_t n = fread(got, 1, sizeof got - 1, tmp);
    assert_true(n > 16);
    assert_memory_equal(got, "0123456789abcdef", 16);
    assert_non_null(strstr(got + 16, "size limit"));
    assert_null(strstr(got, "over-the-cap"));
    assert_int_equal(serial_dropped_bytes(f.s), strlen("-this-part-is-over-the-cap\n"));
    char tail[128];
    serial_tail(f.s, tail, sizeof tail, 0);
    assert_non_null(strstr(tail, "over-the-cap"));
    serial_destroy(f.s);
    fclose(tmp);
}

/* On a terminal, the guest's control characters arrive as '?': an ESC must
 * not start a sequence in the user's terminal. */
static void test_terminal_gets_no_control_characters(void **state)
{
    (void)state;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0)
        skip();
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    assert_true(slave >= 0);
    struct termios t;
    assert_int_equal(tcgetattr(slave, &t), 0);
    cfmakeraw(&t);
    assert_int_equal(tcsetattr(slave, TCSANOW, &t), 0);
    struct fake_irq irq = { .line = { .set_level = record_level, .fd = -1 } };
    irq.line.ctx = &irq;
    struct fixture f = { .s = serial_create(slave, &irq.line) };
    assert_non_null(f.s);
    out_str(&f, "a\x1b]0;owned\x07" "b\x1b[2Jc\t\xc3\xa9\n");
    /* Read all of it: the pty may hand it over in pieces, the newline last. */
    const char *want = "a?]0;owned?b?[2Jc\t\xc3\xa9\n";
    char got[64] = { 0 };
    size_t n = 0;
    for (int i = 0; i < 100 && n < strlen(want); i++) {
        ssize_t r = read(master, got + n, sizeof got - 1 - n);
        if (r > 0)
            n += (size_t)r;
    }
    assert_string_equal(got, want);
    serial_destroy(f.s);
    close(slave);
    close(master);
}

static void test_discarded_output_still_in_tail(void **state)
{
    (void)state;
    struct serial *s = serial_create(-1, NULL);
    const char *msg = "quiet\n";
    for (const char *p = msg; *p; p++)
        serial_bus_ops.write(s, THR, (const uint8_t *)p, 1);
    char buf[32];
    assert_int_equal(serial_tail(s, buf, sizeof buf, 0), 6);
    assert_string_equal(buf, "quiet\n");
    serial_destroy(s);
}

static void test_full_nonblocking_pipe_drops_and_counts(void **state)
{
    struct fixture *f = *state;
    fcntl(f->pipe_w, F_SETFL, O_NONBLOCK);
    serial_destroy(f->s);
    f->s = serial_create(f->pipe_w, &f->irq.line);
    char junk[4096];
    memset(junk, 'x', sizeof junk);
    while (write(f->pipe_w, junk, sizeof junk) > 0) {
    }
    assert_int_equal(errno, EAGAIN);
    out_str(f, "abc");
    assert_int_equal(serial_dropped_bytes(f->s), 3);
    char buf[8];
    assert_int_equal(serial_tail(f->s, buf, sizeof buf, 0), 3); /* the ring still has them */
}

static double now_s(void) { return (double)clock_now_ns() / 1e9; }

static void test_full_blocking_pipe_does_not_hang(void **state)
{
    struct fixture *f = *state;
    fcntl(f->pipe_w, F_SETFL, O_NONBLOCK);
    char junk[4096];
    memset(junk, 'x', sizeof junk);
    while (write(f->pipe_w, junk, sizeof junk) > 0) {
    }
    fcntl(f->pipe_w, F_SETFL, 0); /* blocking again, as a terminal would be */
    serial_destroy(f->s);
    f->s = serial_create(f->pipe_w, &f->irq.line);
    double t0 = now_s();
    for (int i = 0; i < 100; i++)
        out(f, THR, 'a');
    double elapsed = now_s() - t0;
    assert_int_equal(serial_dropped_bytes(f->s), 100);
    /* One bounded wait, then the stalled fd is skipped: far less than 100 waits. */
    assert_true(elapsed < 1.0);
    /* Once the reader catches up, output flows again. */
    char buf[4096];
    while (drain_pipe(f, buf, sizeof buf) > 0) {
    }
    out(f, THR, 'b');
    assert_int_equal(serial_dropped_bytes(f->s), 100);
}

/* --- interrupts ------------------------------------------------------------------ */

static void test_thr_empty_interrupt(void **state)
{
    struct fixture *f = *state;
    out(f, IER, 0x02);                 /* enable THRI: THR is empty, so it is pending */
    assert_true(f->irq.level);
    assert_int_equal(in(f, IIR), 0x02);
    assert_false(f->irq.level);        /* reading IIR acknowledged it */
    assert_int_equal(in(f, IIR), 0x01);

    int before = f->irq.calls;
    out(f, THR, 'x');                  /* sent at once: pending again */
    assert_true(f->irq.level);
    assert_int_equal(in(f, IIR) & 0x0f, 0x02);
    assert_false(f->irq.level);
    assert_true(f->irq.calls > before);

    out(f, IER, 0x02);                 /* already enabled: no new interrupt */
    assert_false(f->irq.level);
    out(f, IER, 0);
    out(f, IER, 0x02);                 /* re-enabled: a new one (Linux's TXEN test) */
    assert_true(f->irq.level);
    out(f, IER, 0);
    assert_false(f->irq.level);
}

static void test_each_thr_write_is_a_fresh_edge(void **state)
{
    struct fixture *f = *state;
    out(f, IER, 0x02);
    int before = f->irq.calls;
    out(f, THR, 'a');
    out(f, THR, 'b');
    /* Each write drops the line and raises it again. */
    assert_int_equal(f->irq.calls - before, 4);
    assert_true(f->irq.level);
}

static void test_received_data_interrupt_and_lsr(void **state)
{
    struct fixture *f = *state;
    out(f, FCR, 0x07);
    out(f, IER, 0x01);
    assert_false(f->irq.level);
    const uint8_t input[] = "hi";
    assert_int_equal(serial_push_input(f->s, input, 2), 2);
    assert_true(f->irq.level);
    assert_int_equal(in(f, LSR) & 0x01, 0x01);
    assert_int_equal(in(f, IIR), 0xc4);
    assert_int_equal(in(f, RBR), 'h');
    assert_true(f->irq.level);
    assert_int_equal(in(f, RBR), 'i');
    assert_false(f->irq.level);
    assert_int_equal(in(f, LSR) & 0x01, 0);
    assert_int_equal(in(f, IIR), 0xc1);
}

static void test_received_data_outranks_thr_empty(void **state)
{
    struct fixture *f = *state;
    out(f, IER, 0x03);
    const uint8_t c = 'z';
    serial_push_input(f->s, &c, 1);
    assert_int_equal(in(f, IIR) & 0x0f, 0x04);
    assert_int_equal(in(f, RBR), 'z');
    assert_int_equal(in(f, IIR) & 0x0f, 0x02);
    assert_int_equal(in(f, IIR) & 0x0f, 0x01);
    assert_false(f->irq.level);
}

static void test_input_fifo_is_bounded(void **state)
{
    struct fixture *f = *state;
    uint8_t lots[200];
    for (size_t i = 0; i < sizeof lots; i++)
        lots[i] = (uint8_t)i;
    assert_int_equal(serial_push_input(f->s, lots, sizeof lots), SERIAL_RX_FIFO);
    assert_int_equal(serial_push_input(f->s, lots, 1), 0);
    for (int i = 0; i < SERIAL_RX_FIFO; i++)
        assert_int_equal(in(f, RBR), i);
    assert_int_equal(in(f, LSR) & 0x01, 0);
    assert_int_equal(serial_push_input(f->s, lots, 5), 5);
}

/* --- loopback and Linux's probe -------------------------------------------------- */

static void test_linux_probe_sees_a_16550a(void **state)
{
    struct fixture *f = *state;
    /* Scratch test on IER. */
    out(f, IER, 0);
    assert_int_equal(in(f, IER) & 0x0f, 0);
    out(f, IER, 0x0f);
    assert_int_equal(in(f, IER) & 0x0f, 0x0f);
    out(f, IER, 0);
    /* Loopback test: MCR = LOOP | OUT2 | RTS must read back DCD | CTS. */
    out(f, MCR, 0x1a);
    assert_int_equal(in(f, MSR) & 0xf0, 0x90);
    out(f, MCR, 0x00);
    /* FIFO test: IIR bits 7..6 = 11 once FIFOs are on. */
    out(f, LCR, 0);
    out(f, FCR, 0x01);
    assert_int_equal(in(f, IIR) >> 6, 3);
    /* XScale test: IER bit 6 never sticks. */
    out(f, IER, 0x40);
    assert_int_equal(in(f, IER) & 0x40, 0);
}

static void test_loopback_routes_output_to_input(void **state)
{
    struct fixture *f = *state;
    out(f, MCR, 0x10);
    out(f, THR, 'q');
    assert_int_equal(in(f, LSR) & 0x01, 0x01);
    assert_int_equal(in(f, RBR), 'q');
    char buf[4];
    assert_int_equal(drain_pipe(f, buf, sizeof buf), 0); /* nothing reached the host */
    /* Overflowing the FIFO sets the overrun bit once. */
    for (int i = 0; i < SERIAL_RX_FIFO + 1; i++)
        out(f, THR, 'o');
    assert_int_equal(in(f, LSR) & 0x02, 0x02);
    assert_int_equal(in(f, LSR) & 0x02, 0);
}

static void test_modem_status_deltas(void **state)
{
    struct fixture *f = *state;
    out(f, MCR, 0x10);           /* loopback with all lines low: CTS/DSR/DCD fall */
    uint8_t msr = in(f, MSR);
    assert_int_equal(msr & 0xf0, 0);
    assert_int_equal(msr & 0x0b, 0x0b);
    assert_int_equal(in(f, MSR) & 0x0f, 0); /* deltas clear on read */
    out(f, IER, 0x08);
    out(f, MCR, 0x12);           /* RTS -> CTS rises: modem status interrupt */
    assert_true(f->irq.level);
    assert_int_equal(in(f, IIR) & 0x0f, 0x00);
    in(f, MSR);
    assert_false(f->irq.level);
}

/* --- tail and panic ---------------------------------------------------------------- */

static void test_tail_last_lines(void **state)
{
    struct fixture *f = *state;
    out_str(f, "one\ntwo\nthree\nfour\n");
    char buf[64];
    assert_int_equal(serial_tail(f->s, buf, sizeof buf, 2), strlen("three\nfour\n"));
    assert_string_equal(buf, "three\nfour\n");
    serial_tail(f->s, buf, sizeof buf, 1);
    assert_string_equal(buf, "four\n");
    serial_tail(f->s, buf, sizeof buf, 10);
    assert_string_equal(buf, "one\ntwo\nthree\nfour\n");
    out_str(f, "fiv");           /* an unfinished line counts as the last one */
    serial_tail(f->s, buf, sizeof buf, 2);
    assert_string_equal(buf, "four\nfiv");
    /* A small buffer keeps the newest bytes. */
    char small[5];
    assert_int_equal(serial_tail(f->s, small, sizeof small, 0), 4);
    assert_string_equal(small, "\nfiv");
}

static void test_tail_after_ring_wraps(void **state)
{
    struct fixture *f = *state;
    fcntl(f->pipe_w, F_SETFL, O_NONBLOCK); /* the pipe fills; we only look at the ring */
    serial_destroy(f->s);
    f->s = serial_create(-1, NULL);
    char line[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(line, sizeof line, "line %04d\n", i);
        out_str(f, line);
    }
    char *buf = malloc(SERIAL_TAIL_BYTES + 1);
    size_t n = serial_tail(f->s, buf, SERIAL_TAIL_BYTES + 1, 0);
    assert_int_equal(n, SERIAL_TAIL_BYTES);
    assert_int_equal(strcmp(buf + n - 10, "line 1999\n"), 0);
    serial_tail(f->s, buf, SERIAL_TAIL_BYTES + 1, 3);
    assert_string_equal(buf, "line 1997\nline 1998\nline 1999\n");
    free(buf);
}

static void test_panic_seen_across_split_writes(void **state)
{
    struct fixture *f = *state;
    out_str(f, "[    1.0] Kernel pan");
    assert_false(serial_saw_panic(f->s));
    out_str(f, "ic - not syncin");
    assert_false(serial_saw_panic(f->s));
    out_str(f, "g: VFS: Unable to mount root fs\n");
    assert_true(serial_saw_panic(f->s));
}

static void test_panic_needs_the_whole_phrase(void **state)
{
    struct fixture *f = *state;
    out_str(f, "Kernel panic - not synced\nKernel Panic - not syncing\n");
    assert_false(serial_saw_panic(f->s));
    out_str(f, "KKernel panic - not syncing"); /* a restart right after a false start */
    assert_true(serial_saw_panic(f->s));
}

/* --- threads --------------------------------------------------------------------------- */

#define WRITERS 4
#define PER_WRITER 1000

static void *writer(void *arg)
{
    struct serial *s = arg;
    const uint8_t c = 'w';
    for (int i = 0; i < PER_WRITER; i++)
        serial_bus_ops.write(s, THR, &c, 1);
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    (void)state;
    struct serial *s = serial_create(-1, NULL);
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        pthread_create(&th[i], NULL, writer, s);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    char *buf = malloc(SERIAL_TAIL_BYTES + 1);
    assert_int_equal(serial_tail(s, buf, SERIAL_TAIL_BYTES + 1, 0), WRITERS * PER_WRITER);
    free(buf);
    serial_destroy(s);
}


/* --- snapshots ------------------------------------------------------------------- */

/* A device in a busy state: divisor, loopback with deltas, a wrapped FIFO that overran, THRI pending. */
static void make_busy(struct fixture *f)
{
    out(f, LCR, 0x83);            /* DLAB */
    out(f, DLL, 0x0c);
    out(f, DLM, 0x01);
    out(f, LCR, 0x1b);
    out(f, FCR, 0x01);
    out(f, SCR, 0x5a);
    out(f, MCR, 0x1b);            /* loopback, RTS, DTR, OUT2 */
    uint8_t fill[SERIAL_RX_FIFO];
    memset(fill, 'a', sizeof fill);
    assert_int_equal(serial_push_input(f->s, fill, 40), 40);
    for (int i = 0; i < 30; i++)
        in(f, RBR);                /* the FIFO's head moves, so the saved bytes must be reordered */
    for (int i = 0; i < 60; i++)
        out(f, THR, (uint8_t)('0' + i)); /* through loopback: fills the FIFO and overruns */
    out(f, IER, 0x0f);
}

static void expect_same_reads(struct fixture *a, struct fixture *b)
{
    static const uint8_t regs[] = { IIR, LSR, MSR, LCR, MCR, SCR, IER, IIR, LSR, MSR };
    for (size_t i = 0; i < sizeof regs; i++)
        assert_int_equal(in(a, regs[i]), in(b, regs[i]));
    out(a, LCR, 0x9b);
    out(b, LCR, 0x9b);
    assert_int_equal(in(a, DLL), in(b, DLL));
    assert_int_equal(in(a, DLM), in(b, DLM));
    out(a, LCR, 0x1b);
    out(b, LCR, 0x1b);
    for (int i = 0; i < SERIAL_RX_FIFO + 2; i++) {
        assert_int_equal(in(a, LSR), in(b, LSR));
        assert_int_equal(in(a, RBR), in(b, RBR));
    }
    assert_int_equal(in(a, IIR), in(b, IIR));
}

static void test_snapshot_round_trip(void **state)
{
    struct fixture *f = *state;
    make_busy(f);
    struct serial_state st, again;
    memset(&st, 0xaa, sizeof st);
    memset(&again, 0x55, sizeof again);
    serial_save(f->s, &st);
    serial_save(f->s, &again);
    assert_memory_equal(&st, &again, sizeof st); /* every byte written, saving changes nothing */
    assert_int_equal(st.rx_count, SERIAL_RX_FIFO);
    assert_int_equal(st.rx[0], 'a');             /* oldest first */
    assert_int_equal(st.rx[10], '0');
    assert_true(st.lsr & 0x02);                  /* the overrun is part of the state */

    struct fixture *g = NULL;
    setup((void **)&g);
    sm_error err = { 0 };
    assert_int_equal(serial_restore(g->s, &st, &err), SM_OK);
    assert_true(g->irq.calls >= 1);              /* the line was driven */
    assert_int_equal(g->irq.level, f->irq.level);
    assert_true(g->irq.level);
    serial_save(g->s, &again);
    assert_memory_equal(&st, &again, sizeof st);
    expect_same_reads(f, g);
    void *gs = g;
    teardown(&gs);
}

/* A quiet device restored from a quiet state drives the line low, even though it was low. */
static void test_snapshot_restore_drives_line_low(void **state)
{
    struct fixture *f = *state;
    struct serial_state st;
    serial_save(f->s, &st);
    int before = f->irq.calls;
    assert_int_equal(serial_restore(f->s, &st, NULL), SM_OK);
    assert_int_equal(f->irq.calls, before + 1);
    assert_false(f->irq.level);
}

struct serial_mutation {
    const char *what;
    const char *message_has;
    void (*apply)(struct serial_state *st);
};

static void rx_count_too_large(struct serial_state *st) { st->rx_count = SERIAL_RX_FIFO + 1; }
static void rx_count_huge(struct serial_state *st) { st->rx_count = 0xffffffffu; }
static void ier_high_bits(struct serial_state *st) { st->ier |= 0x10; }
static void mcr_high_bits(struct serial_state *st) { st->mcr |= 0x20; }
static void fcr_action_bits(struct serial_state *st) { st->fcr |= 0x02; }
static void thr_pending_not_bool(struct serial_state *st) { st->thr_pending = 2; }
static void reserved_set(struct serial_state *st) { st->reserved = 1; }
static void byte_past_count(struct serial_state *st) { st->rx_count = 3; st->lsr = 0x61; st->rx[5] = 'x'; }
static void lsr_without_dr(struct serial_state *st) { st->lsr &= (uint8_t)~0x01; }
static void lsr_extra_bit(struct serial_state *st) { st->lsr |= 0x80; }
static void msr_wrong_lines(struct serial_state *st) { st->msr ^= 0x80; }
static void iir_wrong(struct serial_state *st) { st->iir = 0xc1; }

static void test_snapshot_refuses_hostile_state(void **state)
{
    struct fixture *f = *state;
    static const struct serial_mutation mutations[] = {
        { "rx count 65", "rx count", rx_count_too_large },
        { "rx count 2^32-1", "rx count", rx_count_huge },
        { "IER bit 4", "IER", ier_high_bits },
        { "MCR bit 5", "MCR", mcr_high_bits },
        { "FCR clear bit", "FCR", fcr_action_bits },
        { "thr_pending 2", "thr_pending", thr_pending_not_bool },
        { "reserved", "reserved", reserved_set },
        { "byte past count", "past rx count", byte_past_count },
        { "LSR without DR", "LSR", lsr_without_dr },
        { "LSR bit 7", "LSR", lsr_extra_bit },
        { "MSR lines", "MSR", msr_wrong_lines },
        { "IIR", "IIR", iir_wrong },
    };
    make_busy(f);
    struct serial_state good, before, after;
    serial_save(f->s, &good);
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
        struct serial_state bad = good;
        mutations[i].apply(&bad);
        serial_save(f->s, &before);
        int calls = f->irq.calls;
        sm_error err = { 0 };
        sm_code rc = serial_restore(f->s, &bad, &err);
        if (rc != SM_E_INVALID || !strstr(err.message, mutations[i].message_has))
            fail_msg("%s: rc %d, message \"%s\"", mutations[i].what, rc, err.message);
        serial_save(f->s, &after);
        assert_memory_equal(&before, &after, sizeof before); /* untouched */
        assert_int_equal(f->irq.calls, calls);
        assert_int_equal(serial_restore(f->s, &bad, NULL), SM_E_INVALID); /* err may be NULL */
    }
    assert_int_equal(serial_restore(f->s, &good, NULL), SM_OK);
}

/* The table entry the VMM uses: the same state, the same checks, through serial_state_ops. */
static void test_state_ops(void **state)
{
    struct fixture *f = *state;
    make_busy(f);
    const struct device_state_ops *ops = &serial_state_ops;
    assert_int_equal(ops->state_size, sizeof(struct serial_state));
    assert_null(ops->restore_begin);
    assert_null(ops->restore_end);
    struct serial_state st, direct;
    ops->save(f->s, &st);
    serial_save(f->s, &direct);
    assert_memory_equal(&st, &direct, sizeof st);
    struct fixture *g = NULL;
    setup((void **)&g);
    assert_int_equal(ops->restore(g->s, &st, NULL), SM_OK);
    serial_save(g->s, &direct);
    assert_memory_equal(&st, &direct, sizeof st);
    st.rx_count = SERIAL_RX_FIFO + 1;
    sm_error err = { 0 };
    assert_int_equal(ops->restore(g->s, &st, &err), SM_E_INVALID);
    void *gs = g;
    teardown(&gs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_power_on_state),
        T(test_scratch_and_ier_mask),
        T(test_dlab_switches_divisor_latch),
        T(test_fifo_enable_shows_in_iir),
        T(test_output_goes_to_fd),
        cmocka_unit_test(test_file_output_is_capped),
        cmocka_unit_test(test_terminal_gets_no_control_characters),
        cmocka_unit_test(test_discarded_output_still_in_tail),
        T(test_full_nonblocking_pipe_drops_and_counts),
        T(test_full_blocking_pipe_does_not_hang),
        T(test_thr_empty_interrupt),
        T(test_each_thr_write_is_a_fresh_edge),
        T(test_received_data_interrupt_and_lsr),
        T(test_received_data_outranks_thr_empty),
        T(test_input_fifo_is_bounded),
        T(test_linux_probe_sees_a_16550a),
        T(test_loopback_routes_output_to_input),
        T(test_modem_status_deltas),
        T(test_tail_last_lines),
        T(test_tail_after_ring_wraps),
        T(test_panic_seen_across_split_writes),
        T(test_panic_needs_the_whole_phrase),
        cmocka_unit_test(test_concurrent_writers),
        T(test_snapshot_round_trip),
        T(test_snapshot_restore_drives_line_low),
        T(test_snapshot_refuses_hostile_state),
        T(test_state_ops),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
