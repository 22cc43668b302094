/*
 * The PS/2 controller: reset requests end the VM (and nothing else does),
 * status and command replies are what Linux's probe expects, keyboard bytes
 * are acknowledged with IRQ 1, and nothing the guest writes can wedge it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/i8042.h"

#define DATA 0
#define CMD  4   /* offsets from I8042_BASE */

#define ST_OBF 0x01
#define ST_SYS 0x04
#define ST_CMD 0x08
#define ST_AUX 0x20

struct fixture {
    struct i8042 *k;
    int resets;
    int pulses;
    struct irq_line irq;
};

static void on_reset(void *ctx) { ((struct fixture *)ctx)->resets++; }
static void count_pulse(struct irq_line *line) { ((struct fixture *)line->ctx)->pulses++; }

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->k = i8042_create(on_reset, f);
    assert_non_null(f->k);
    f->irq = (struct irq_line){ .pulse = count_pulse, .fd = -1, .ctx = f };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    i8042_destroy(f->k);
    free(f);
    return 0;
}

static uint8_t in(struct fixture *f, uint64_t port)
{
    uint8_t v = 0;
    i8042_bus_ops.read(f->k, port, &v, 1);
    return v;
}

static void out(struct fixture *f, uint64_t port, uint8_t v) { i8042_bus_ops.write(f->k, port, &v, 1); }

/* A controller command with its one-byte reply, the way Linux's i8042_command does it. */
static uint8_t command_with_reply(struct fixture *f, uint8_t cmd)
{
    out(f, CMD, cmd);
    assert_true(in(f, CMD) & ST_OBF);
    return in(f, DATA);
}

static void test_reset_command_fires_callback(void **state)
{
    struct fixture *f = *state;
    out(f, CMD, 0xfe);
    assert_int_equal(f->resets, 1);
    assert_int_equal(i8042_reset_count(f->k), 1);
    out(f, CMD, 0xf0);   /* pulse all four lines, reset among them */
    assert_int_equal(f->resets, 2);
}

static void test_other_pulses_and_commands_do_not_reset(void **state)
{
    struct fixture *f = *state;
    out(f, CMD, 0xff);   /* pulse nothing */
    out(f, CMD, 0xfd);   /* bit 0 set: not the reset line */
    out(f, CMD, 0xaa);
    out(f, DATA, 0xfe);  /* 0xfe to the keyboard is "resend", not a reset */
    assert_int_equal(f->resets, 0);
}

static void test_output_port_write_can_reset(void **state)
{
    struct fixture *f = *state;
    out(f, CMD, 0xd1);
    out(f, DATA, 0x03);  /* reset line inactive */
    assert_int_equal(f->resets, 0);
    assert_int_equal(command_with_reply(f, 0xd0), 0x03);
    out(f, CMD, 0xd1);
    out(f, DATA, 0x02);  /* bit 0 clear: reset */
    assert_int_equal(f->resets, 1);
}

static void test_reset_without_callback_is_counted(void **state)
{
    (void)state;
    struct i8042 *k = i8042_create(NULL, NULL);
    const uint8_t cmd = 0xfe;
    i8042_bus_ops.write(k, CMD, &cmd, 1);
    assert_int_equal(i8042_reset_count(k), 1);
    i8042_destroy(k);
}

static void test_status_reads(void **state)
{
    struct fixture *f = *state;
    uint8_t st = in(f, CMD);
    assert_int_equal(st & ST_OBF, 0);      /* nothing to read: Linux's flush ends at once */
    assert_true(st & ST_SYS);
    assert_int_equal(st & 0x02, 0);        /* never busy */
    out(f, CMD, 0xad);
    assert_true(in(f, CMD) & ST_CMD);      /* last write was a command */
    out(f, DATA, 0xf4);
    assert_int_equal(in(f, CMD) & ST_CMD, 0);
    assert_int_equal(in(f, 1), 0xff);      /* 0x61..0x63 are not ours */
}

static void test_ctr_read_and_write(void **state)
{
    struct fixture *f = *state;
    uint8_t ctr = command_with_reply(f, 0x20);
    assert_true(ctr & 0x04);               /* SYS flag */
    assert_int_equal(in(f, CMD) & ST_OBF, 0);
    out(f, CMD, 0x60);
    out(f, DATA, 0x47);
    assert_int_equal(command_with_reply(f, 0x20), 0x47);
    assert_int_equal(in(f, CMD) & ST_SYS, ST_SYS);
    out(f, CMD, 0x60);
    out(f, DATA, 0x00);                    /* SYS cleared: the status bit follows */
    assert_int_equal(in(f, CMD) & ST_SYS, 0);
    out(f, CMD, 0xae);                     /* enable keyboard clears CTR bit 4 */
    out(f, CMD, 0xa8);                     /* enable aux clears bit 5 */
    assert_int_equal(command_with_reply(f, 0x20) & 0x30, 0);
    out(f, CMD, 0xad);
    out(f, CMD, 0xa7);
    assert_int_equal(command_with_reply(f, 0x20) & 0x30, 0x30);
}

static void test_self_tests(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(command_with_reply(f, 0xaa), 0x55);
    assert_int_equal(command_with_reply(f, 0xab), 0x00);
    /* Aux port: the loop test echoes without AUXDATA, the port test reports a stuck clock. */
    out(f, CMD, 0xd3);
    out(f, DATA, 0x5a);
    uint8_t st = in(f, CMD);
    assert_true(st & ST_OBF);
    assert_int_equal(st & ST_AUX, 0);
    assert_int_equal(in(f, DATA), 0x5a);
    assert_int_equal(command_with_reply(f, 0xa9), 0x01);
}

static void test_keyboard_identify_with_irq(void **state)
{
    struct fixture *f = *state;
    i8042_set_kbd_irq(f->k, &f->irq);
    out(f, DATA, 0xf2);
    assert_int_equal(f->pulses, 3);
    assert_int_equal(in(f, DATA), 0xfa);
    assert_int_equal(in(f, DATA), 0xab);
    assert_int_equal(in(f, DATA), 0x83);
    assert_int_equal(in(f, CMD) & ST_OBF, 0);
    assert_int_equal(in(f, DATA), 0x83); /* empty: the last byte again */
}

static void test_keyboard_reset_and_parameters(void **state)
{
    struct fixture *f = *state;
    out(f, DATA, 0xff);
    assert_int_equal(in(f, DATA), 0xfa);
    assert_int_equal(in(f, DATA), 0xaa);
    out(f, DATA, 0xed);                  /* set LEDs, then its parameter */
    assert_int_equal(in(f, DATA), 0xfa);
    out(f, DATA, 0x07);
    assert_int_equal(in(f, DATA), 0xfa);
    assert_int_equal(in(f, CMD) & ST_OBF, 0);
    out(f, DATA, 0xf0);                  /* get scan code set */
    out(f, DATA, 0x00);
    assert_int_equal(in(f, DATA), 0xfa);
    assert_int_equal(in(f, DATA), 0xfa);
    assert_int_equal(in(f, DATA), 0x02);
}

static void test_no_irq_when_keyboard_interrupt_disabled(void **state)
{
    struct fixture *f = *state;
    i8042_set_kbd_irq(f->k, &f->irq);
    out(f, CMD, 0x60);
    out(f, DATA, 0x04);                  /* KBDINT off */
    out(f, DATA, 0xf4);
    assert_int_equal(f->pulses, 0);
    assert_int_equal(in(f, DATA), 0xfa);
}

static void test_output_queue_is_bounded(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 100; i++)
        out(f, DATA, 0xf2);              /* 300 reply bytes, nobody reading */
    int n = 0;
    while ((in(f, CMD) & ST_OBF) && n < 1000) {
        in(f, DATA);
        n++;
    }
    assert_true(n > 0 && n <= 16);
}

static void test_wide_access_covers_both_ports(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[5] = { 0 };
    out(f, CMD, 0xaa);
    i8042_bus_ops.read(f->k, 0, buf, 5);  /* data (pops 0x55), three foreign ports, then status */
    assert_int_equal(buf[0], 0x55);
    assert_int_equal(buf[1], 0xff);
    assert_int_equal(buf[4] & ST_OBF, 0);
}


/* --- snapshots ------------------------------------------------------------------- */

/* Queue wrapped and full, a keyboard command waiting for its parameter, a controller command waiting for data. */
static void make_busy(struct fixture *f)
{
    out(f, CMD, 0x60);
    out(f, DATA, 0x47);        /* CTR: keyboard interrupt, SYS, translate, aux disabled off */
    out(f, DATA, 0xf2);        /* identify: fa ab 83 */
    in(f, DATA);
    in(f, DATA);               /* the head moved: the saved queue must be reordered */
    for (int i = 0; i < 7; i++)
        out(f, DATA, 0xf4);    /* enable: one ACK each */
    out(f, DATA, 0xf0);        /* get/set scan code set: waits for a parameter */
    out(f, CMD, 0xd2);         /* the next data byte is echoed */
}

static void expect_same_behaviour(struct fixture *a, struct fixture *b)
{
    assert_int_equal(in(a, CMD), in(b, CMD));
    out(a, DATA, 0x77);
    out(b, DATA, 0x77);        /* echoed (queue may be full: then dropped in both) */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(in(a, CMD), in(b, CMD));
        assert_int_equal(in(a, DATA), in(b, DATA));
    }
    out(a, DATA, 0x00);
    out(b, DATA, 0x00);        /* the parameter of 0xf0: ACK, then 0x02 */
    for (int i = 0; i < I8042_OUT_QUEUE + 2; i++) {
        assert_int_equal(in(a, CMD), in(b, CMD));
        assert_int_equal(in(a, DATA), in(b, DATA));
    }
    assert_int_equal(command_with_reply(a, 0x20), command_with_reply(b, 0x20));
    assert_int_equal(command_with_reply(a, 0xd0), command_with_reply(b, 0xd0));
}

static void test_snapshot_round_trip(void **state)
{
    struct fixture *f = *state;
    make_busy(f);
    struct i8042_state st, again;
    memset(&st, 0xaa, sizeof st);
    memset(&again, 0x55, sizeof again);
    i8042_save(f->k, &st);
    i8042_save(f->k, &again);
    assert_memory_equal(&st, &again, sizeof st);
    assert_int_equal(st.out_count, 9);   /* 0x83, seven ACKs, the ACK of 0xf0 */
    assert_int_equal(st.out[0], 0x83);        /* oldest first */
    assert_int_equal(st.status & (ST_OBF | ST_CMD), ST_OBF | ST_CMD);
    assert_int_equal(st.kbd_awaiting_param, 0xf0);

    struct fixture *g = NULL;
    setup((void **)&g);
    i8042_set_kbd_irq(g->k, &g->irq);
    sm_error err = { 0 };
    assert_int_equal(i8042_restore(g->k, &st, &err), SM_OK);
    assert_int_equal(g->pulses, 0);           /* no edge invented on restore */
    i8042_save(g->k, &again);
    assert_memory_equal(&st, &again, sizeof st);
    expect_same_behaviour(f, g);
    assert_int_equal(g->resets, 0);
    void *gs = g;
    teardown(&gs);
}

struct i8042_mutation {
    const char *what;
    const char *message_has;
    void (*apply)(struct i8042_state *st);
};

static void count_too_large(struct i8042_state *st) { st->out_count = I8042_OUT_QUEUE + 1; }
static void count_huge(struct i8042_state *st) { st->out_count = 0xff; }
static void byte_past_count(struct i8042_state *st) { st->out[st->out_count] = 1; }
static void unknown_target(struct i8042_state *st) { st->next_data = 6; }
static void param_of_no_command(struct i8042_state *st) { st->kbd_awaiting_param = 0xf4; }
static void reserved_set(struct i8042_state *st) { st->reserved = 0x80; }
static void status_without_obf(struct i8042_state *st) { st->status &= (uint8_t)~ST_OBF; }
static void status_sys_mismatch(struct i8042_state *st) { st->status ^= ST_SYS; }
static void status_aux_bit(struct i8042_state *st) { st->status |= ST_AUX; }

static void test_snapshot_refuses_hostile_state(void **state)
{
    struct fixture *f = *state;
    static const struct i8042_mutation mutations[] = {
        { "count 17", "output count", count_too_large },
        { "count 255", "output count", count_huge },
        { "byte past count", "past the count", byte_past_count },
        { "next_data 6", "next_data", unknown_target },
        { "parameter of 0xf4", "parameter", param_of_no_command },
        { "reserved", "reserved", reserved_set },
        { "status without OBF", "status", status_without_obf },
        { "status SYS", "status", status_sys_mismatch },
        { "status AUX", "status", status_aux_bit },
    };
    out(f, DATA, 0xf2);
    out(f, DATA, 0xed);
    struct i8042_state good, before, after;
    i8042_save(f->k, &good);
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
        struct i8042_state bad = good;
        mutations[i].apply(&bad);
        i8042_save(f->k, &before);
        sm_error err = { 0 };
        sm_code rc = i8042_restore(f->k, &bad, &err);
        if (rc != SM_E_INVALID || !strstr(err.message, mutations[i].message_has))
            fail_msg("%s: rc %d, message \"%s\"", mutations[i].what, rc, err.message);
        i8042_save(f->k, &after);
        assert_memory_equal(&before, &after, sizeof before);
        assert_int_equal(i8042_restore(f->k, &bad, NULL), SM_E_INVALID);
    }
    assert_int_equal(i8042_restore(f->k, &good, NULL), SM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_reset_command_fires_callback),
        T(test_other_pulses_and_commands_do_not_reset),
        T(test_output_port_write_can_reset),
        cmocka_unit_test(test_reset_without_callback_is_counted),
        T(test_status_reads),
        T(test_ctr_read_and_write),
        T(test_self_tests),
        T(test_keyboard_identify_with_irq),
        T(test_keyboard_reset_and_parameters),
        T(test_no_irq_when_keyboard_interrupt_disabled),
        T(test_output_queue_is_bounded),
        T(test_wide_access_covers_both_ports),
        T(test_snapshot_round_trip),
        T(test_snapshot_refuses_hostile_state),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
