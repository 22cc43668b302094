/*
 * Unit tests of what the host library makes of an agent's answer, and of
 * its waits on a silent agent:
 *
 *   exec_collect       (sm_exec_output) the output cap, stdout and stderr
 *                      together: inclusive, a frame cut at it, SM_E_LIMIT
 *   exec_receive_file  (sm_exec_read_file) sizes that must add up
 *   agent_conn         HELLO, idle and send-progress limits on a socketpair
 *
 * The answers are fed into the library's own frame reader (agent_reader
 * with no socket), so no agent runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/clock.h"
#include "lib/exec_internal.h"

static wire_buf stream;

static void start_stream(void)
{
    wire_buf_free(&stream);
    assert_true(wire_put_hello(&stream, NULL));
}

static void put_bytes(uint8_t type, size_t len, uint8_t c)
{
    uint8_t *p = malloc(len ? len : 1);
    memset(p, c, len);
    assert_true(wire_put_data(&stream, type, p, len, NULL));
    free(p);
}

static void put_exit(int code)
{
    wire_exit x = { .code = code, .steps_run = 1 };
    assert_true(wire_put_exit(&stream, &x, NULL));
}

static void put_info(uint64_t size)
{
    wire_file_head h = { .mode = 0644, .size = size };
    assert_true(wire_put_file_head(&stream, WIRE_FILE_INFO, &h, NULL));
}

/* A reader with no socket: the stream is all the agent ever says. */
static void fed_reader(agent_reader *r)
{
    agent_reader_init(r, -1, "unit");
    assert_true(wire_reader_feed(&r->rd, stream.data, stream.len, NULL));
}

static sm_code collect(size_t cap, sm_exec_outcome *out, sm_error *err)
{
    agent_reader r;
    fed_reader(&r);
    memset(out, 0, sizeof *out);
    sm_code rc = exec_collect(&r, cap, -1, 0, out, err);
    agent_reader_destroy(&r);
    return rc;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t c)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != c)
            return false;
    return true;
}

/* ---- the output cap ---------------------------------------------------------------- */

static void test_collect_within_the_cap(void **state)
{
    (void)state;
    start_stream();
    put_bytes(WIRE_STDOUT, 10, 'o');
    put_bytes(WIRE_STDERR, 5, 'e');
    put_exit(3);
    sm_exec_outcome out;
    sm_error err = { 0 };
    assert_int_equal(collect(15, &out, &err), SM_OK); /* exactly the cap fits */
    assert_int_equal(out.stdout_len, 10);
    assert_int_equal(out.stderr_len, 5);
    assert_string_equal((char *)out.stdout_buf, "oooooooooo");
    assert_string_equal((char *)out.stderr_buf, "eeeee");
    assert_int_equal(out.status.code, 3);
    sm_exec_outcome_free(&out);
}

/* One byte over: the frame that crosses the cap is cut there. */
static void test_collect_cuts_at_the_cap(void **state)
{
    (void)state;
    start_stream();
    put_bytes(WIRE_STDOUT, WIRE_MAX_DATA, 'o');
    put_bytes(WIRE_STDERR, WIRE_MAX_DATA, 'e');
    put_exit(0);
    sm_exec_outcome out;
    sm_error err = { 0 };
    const size_t cap = WIRE_MAX_DATA + 7;
    assert_int_equal(collect(cap, &out, &err), SM_E_LIMIT);
    assert_non_null(strstr(err.message, "output cap of 1048583 bytes"));
    assert_non_null(strstr(err.message, "sm_exec_builder_max_output"));
    assert_int_equal(out.stdout_len, WIRE_MAX_DATA);
    assert_int_equal(out.stderr_len, 7);
    assert_true(all_bytes(out.stdout_buf, out.stdout_len, 'o'));
    assert_true(all_bytes(out.stderr_buf, out.stderr_len, 'e'));
    assert_int_equal(out.stderr_buf[7], 0);
    sm_exec_outcome_free(&out);
}

/* A cap of 0 takes empty frames and no byte. */
static void test_collect_cap_zero(void **state)
{
    (void)state;
    start_stream();
    put_bytes(WIRE_STDOUT, 0, 'o');
    put_exit(0);
    sm_exec_outcome out;
    sm_error err = { 0 };
    assert_int_equal(collect(0, &out, &err), SM_OK);
    sm_exec_outcome_free(&out);
    start_stream();
    put_bytes(WIRE_STDERR, 1, 'e');
    put_exit(0);
    assert_int_equal(collect(0, &out, &err), SM_E_LIMIT);
    assert_int_equal(out.stdout_len + out.stderr_len, 0);
    sm_exec_outcome_free(&out);
}

/* No exit report: the end of the stream is a drop, never a result. */
static void test_collect_needs_the_exit_report(void **state)
{
    (void)state;
    start_stream();
    put_bytes(WIRE_STDOUT, 3, 'o');
    sm_exec_outcome out;
    sm_error err = { 0 };
    assert_int_equal(collect(100, &out, &err), SM_E_DROPPED);
    assert_int_equal(out.stdout_len, 3);
    sm_exec_outcome_free(&out);
}

/* ---- read_file's accounting -------------------------------------------------------- */

static sm_code receive(size_t max_len, uint8_t **bytes, size_t *len, sm_error *err)
{
    agent_reader r;
    fed_reader(&r);
    *bytes = NULL;
    *len = 0;
    sm_code rc = exec_receive_file(&r, "/f", max_len, bytes, len, err);
    agent_reader_destroy(&r);
    return rc;
}

static void test_receive_file_whole(void **state)
{
    (void)state;
    const size_t size = 3 * WIRE_MAX_DATA + 1;
    start_stream();
    put_info(size);
    for (int i = 0; i < 3; i++)
        put_bytes(WIRE_FILE_DATA, WIRE_MAX_DATA, (uint8_t)('a' + i));
    put_bytes(WIRE_FILE_DATA, 1, 'z');
    put_bytes(WIRE_FILE_END, 0, 0);
    uint8_t *bytes;
    size_t len;
    sm_error err = { 0 };
    assert_int_equal(receive(size, &bytes, &len, &err), SM_OK);
    assert_int_equal(len, size);
    assert_true(all_bytes(bytes + 2 * WIRE_MAX_DATA, WIRE_MAX_DATA, 'c'));
    assert_int_equal(bytes[size - 1], 'z');
    assert_int_equal(bytes[size], 0);
    free(bytes);

    start_stream(); /* an empty file */
    put_info(0);
    put_bytes(WIRE_FILE_END, 0, 0);
    assert_int_equal(receive(0, &bytes, &len, &err), SM_OK);
    assert_int_equal(len, 0);
    assert_int_equal(bytes[0], 0);
    free(bytes);
}

static void expect_refused(size_t max_len, sm_code code, const char *needle)
{
    uint8_t *bytes;
    size_t len;
    sm_error err = { 0 };
    assert_int_equal(receive(max_len, &bytes, &len, &err), code);
    if (!strstr(err.message, needle))
        fail_msg("'%s' does not mention '%s'", err.message, needle);
    assert_null(bytes);
    assert_int_equal(len, 0);
}

static void test_receive_file_sizes_must_add_up(void **state)
{
    (void)state;
    start_stream(); /* over the caller's limit */
    put_info(101);
    expect_refused(100, SM_E_LIMIT, "101 bytes, more than the 100 allowed");

    start_stream(); /* more than announced */
    put_info(10);
    put_bytes(WIRE_FILE_DATA, 8, 'x');
    put_bytes(WIRE_FILE_DATA, 3, 'x');
    expect_refused(100, SM_E_PROTOCOL, "more than the 10 bytes announced");

    start_stream(); /* less than announced */
    put_info(10);
    put_bytes(WIRE_FILE_DATA, 9, 'x');
    put_bytes(WIRE_FILE_END, 0, 0);
    expect_refused(100, SM_E_PROTOCOL, "got 9 of 10 bytes");

    start_stream(); /* data before FILE_INFO */
    put_bytes(WIRE_FILE_DATA, 1, 'x');
    expect_refused(100, SM_E_PROTOCOL, "unexpected FILE_DATA");

    /* 4 GiB claimed, one byte sent: the buffer follows what arrives. */
    start_stream();
    put_info(WIRE_MAX_FILE_SIZE);
    put_bytes(WIRE_FILE_DATA, 1, 'x');
    put_bytes(WIRE_FILE_END, 0, 0);
    expect_refused(SIZE_MAX, SM_E_PROTOCOL, "got 1 of 4294967296 bytes");
}

/* ---- waits on a silent agent ------------------------------------------------------- */

#define SHORT_MS 50

static void hello_to(int fd)
{
    wire_buf b = { 0 };
    assert_true(wire_put_hello(&b, NULL));
    assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
    wire_buf_free(&b);
}

static void expect_timeout(agent_reader *r, const char *needle)
{
    wire_frame f;
    sm_error err = { 0 };
    assert_int_equal(agent_read_frame(r, &f, -1, 0, &err), SM_E_TIMEOUT);
    assert_non_null(strstr(err.message, "stopped answering"));
    if (!strstr(err.message, needle))
        fail_msg("'%s' does not mention '%s'", err.message, needle);
}

static void test_reader_hello_limit(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    agent_reader r;
    agent_reader_init(&r, sv[0], "pair");
    r.hello_ms = SHORT_MS;
    expect_timeout(&r, "no HELLO within 50 ms");
    agent_reader_destroy(&r);
    close(sv[0]);
    close(sv[1]);
}

static void test_reader_idle_limit(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    hello_to(sv[1]);
    agent_reader r;
    agent_reader_init(&r, sv[0], "pair");
    r.idle_ms = SHORT_MS;
    expect_timeout(&r, "nothing from it for 50 ms");
    assert_true(r.got_hello);
    agent_reader_destroy(&r);
    close(sv[0]);
    close(sv[1]);
}

/* The caller's deadline says what it waited for. */
static void test_reader_caller_deadline(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    hello_to(sv[1]);
    agent_reader r;
    agent_reader_init(&r, sv[0], "pair");
    r.deadline_what = "no exit report in the test";
    wire_frame f;
    sm_error err = { 0 };
    assert_int_equal(agent_read_frame(&r, &f, -1, clock_now_us() + SHORT_MS * 1000u, &err),
                     SM_E_TIMEOUT);
    assert_non_null(strstr(err.message, "stopped answering: no exit report in the test"));
    agent_reader_destroy(&r);
    close(sv[0]);
    close(sv[1]);
}

/* A peer that reads nothing: the send gives up (with no limit it blocks). */
static void test_send_progress_limit(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    size_t len = 8u << 20;
    uint8_t *big = calloc(1, len);
    sm_error err = { 0 };
    assert_int_equal(agent_send_all(sv[0], big, len, false, SHORT_MS, &err), SM_E_TIMEOUT);
    assert_non_null(strstr(err.message, "took none of our bytes for 50 ms"));
    /* Once the peer reads again, so do we. */
    ssize_t n;
    while ((n = recv(sv[1], big, len, MSG_DONTWAIT)) > 0)
        ;
    assert_int_equal(agent_send_all(sv[0], big, 1000, false, SHORT_MS, &err), SM_OK);
    free(big);
    close(sv[0]);
    close(sv[1]);
}

static int teardown(void **state)
{
    (void)state;
    wire_buf_free(&stream);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collect_within_the_cap),
        cmocka_unit_test(test_collect_cuts_at_the_cap),
        cmocka_unit_test(test_collect_cap_zero),
        cmocka_unit_test(test_collect_needs_the_exit_report),
        cmocka_unit_test(test_receive_file_whole),
        cmocka_unit_test(test_receive_file_sizes_must_add_up),
        cmocka_unit_test(test_reader_hello_limit),
        cmocka_unit_test(test_reader_idle_limit),
        cmocka_unit_test(test_reader_caller_deadline),
        cmocka_unit_test(test_send_progress_limit),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
