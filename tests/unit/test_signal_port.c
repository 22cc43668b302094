/*
 * The signal port: the guest counts as ready only at the read that follows a
 * READY write (protocol/guest_abi.h says why), the read answers the VMM's
 * command, and nothing else the guest does marks it ready.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "devices/signal_port.h"
#include "protocol/guest_abi.h"

static int readies;
static void count_ready(void *ctx)
{
    (void)ctx;
    readies++;
}

static struct signal_port port(uint32_t command)
{
    readies = 0;
    struct signal_port sp = { .on_ready = count_ready };
    atomic_store(&sp.command, command);
    return sp;
}

static void out32(struct signal_port *sp, uint64_t offset, uint32_t v)
{
    uint8_t b[4];
    memcpy(b, &v, 4);
    signal_port_bus_ops.write(sp, offset, b, 4);
}

static uint32_t in32(struct signal_port *sp, uint64_t offset)
{
    uint8_t b[4] = { 0xff, 0xff, 0xff, 0xff };
    uint32_t v;
    signal_port_bus_ops.read(sp, offset, b, 4);
    memcpy(&v, b, 4);
    return v;
}

static void ready_at_the_read_after_ready(void **state)
{
    (void)state;
    struct signal_port sp = port(SM_SIGNAL_CMD_SERVE);
    out32(&sp, 0, SM_SIGNAL_READY);
    assert_int_equal(readies, 0); /* the write alone is not ready: a snapshot could split the pair */
    assert_int_equal(in32(&sp, 0), SM_SIGNAL_CMD_SERVE);
    assert_int_equal(readies, 1);
    assert_int_equal(in32(&sp, 0), SM_SIGNAL_CMD_SERVE);
    assert_int_equal(readies, 1); /* once per READY */
}

static void read_answers_the_command(void **state)
{
    (void)state;
    struct signal_port sp = port(SM_SIGNAL_CMD_POWEROFF);
    out32(&sp, 0, SM_SIGNAL_READY);
    assert_int_equal(in32(&sp, 0), SM_SIGNAL_CMD_POWEROFF);
    assert_int_equal(readies, 1);
}

static void nothing_else_is_ready(void **state)
{
    (void)state;
    struct signal_port sp = port(SM_SIGNAL_CMD_SERVE);
    assert_int_equal(in32(&sp, 0), SM_SIGNAL_CMD_SERVE); /* a read alone */
    out32(&sp, 0, 0x12345678u);                          /* another value */
    in32(&sp, 0);
    out32(&sp, 2, SM_SIGNAL_READY); /* READY at the wrong offset */
    in32(&sp, 0);
    uint8_t b = 0x59;
    signal_port_bus_ops.write(&sp, 0, &b, 1); /* a 1-byte write */
    in32(&sp, 0);
    assert_int_equal(readies, 0);
    assert_int_equal(atomic_load(&sp.unknown_writes), 3);
    /* READY, then a read of the wrong width or offset, does not complete it. */
    out32(&sp, 0, SM_SIGNAL_READY);
    uint8_t one;
    signal_port_bus_ops.read(&sp, 0, &one, 1);
    assert_int_equal(in32(&sp, 2), 0);
    assert_int_equal(readies, 0);
    in32(&sp, 0);
    assert_int_equal(readies, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ready_at_the_read_after_ready),
        cmocka_unit_test(read_answers_the_command),
        cmocka_unit_test(nothing_else_is_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
