/*
 * CONNECT through the agent (what sm_vm_connect uses): a stream to a TCP
 * port on the agent's loopback. The echo server is busybox nc run through
 * the agent itself, so the suite works against a local agent and inside a
 * VM alike.
 */
#include "exec_helpers.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include "protocol/agent_conn.h"

#define CONNECT_TIMEOUT_MS 15000

/* A port for this run's server: different per test process, so a local
 * run beside another does not collide. */
static uint16_t test_port(int which)
{
    return (uint16_t)(20000 + (getpid() % 2000) * 8 + which);
}

/* Starts `nc -l -p PORT -e cat` (one connection, echoed) through the agent. */
static sm_exec_child *start_echo_server(uint16_t port)
{
    char script[256];
    snprintf(script, sizeof script,
             "if command -v nc >/dev/null; then exec nc -l -p %u -e cat; else exec busybox nc -l -p %u -e cat; fi",
             (unsigned)port, (unsigned)port);
    sm_exec_builder *b = builder_v("sh", "-c", script, NULL);
    sm_exec_child *child;
    sm_error err;
    if (sm_exec_spawn(b, &child, &err) != SM_OK)
        fail_msg("spawning the echo server: %s", err.message);
    sm_exec_builder_free(b);
    return child;
}

/* Connects once the server listens: until then the agent answers
 * "refused", which here means only "not yet" (the server was just spawned). */
static int connect_when_listening(uint16_t port)
{
    sm_error err = { 0 };
    uint64_t give_up = clock_now_us() + 10u * 1000000u;
    for (;;) {
        int fd;
        sm_code rc = agent_connect_port(exec_socket(), port, CONNECT_TIMEOUT_MS, &fd, &err);
        if (rc == SM_OK)
            return fd;
        if (rc != SM_E_GUEST || clock_now_us() > give_up)
            fail_msg("connect to port %u: %s (%s)", (unsigned)port, err.message, sm_strerror(rc));
        usleep(20000);
    }
}

static void wait_server(sm_exec_child *child)
{
    sm_exec_status st;
    sm_error err;
    assert_int_equal(sm_exec_child_wait(child, &st, &err), SM_OK);
    sm_exec_child_free(child);
}

/* Sends all of out while reading the echo into in (both at once: a server
 * that echoes blocks when nobody reads), half-closes, reads to the end. */
static size_t exchange(int fd, const uint8_t *out, size_t out_len, uint8_t *in, size_t in_cap)
{
    size_t sent = 0, got = 0;
    bool closed_write = false;
    for (;;) {
        if (sent == out_len && !closed_write) {
            assert_int_equal(shutdown(fd, SHUT_WR), 0);
            closed_write = true;
        }
        struct pollfd p = { .fd = fd, .events = (short)(POLLIN | (sent < out_len ? POLLOUT : 0)) };
        if (poll(&p, 1, 30000) <= 0)
            fail_msg("the relay stalled: %zu of %zu bytes sent, %zu echoed", sent, out_len, got);
        if (p.revents & POLLOUT) {
            ssize_t n = send(fd, out + sent, out_len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN)
                fail_msg("send: %s", strerror(errno));
            sent += n > 0 ? (size_t)n : 0;
        }
        if (p.revents & (POLLIN | POLLHUP)) {
            ssize_t n = recv(fd, in + got, in_cap - got, MSG_DONTWAIT);
            if (n == 0)
                return got;
            if (n < 0 && errno != EAGAIN)
                fail_msg("recv: %s", strerror(errno));
            got += n > 0 ? (size_t)n : 0;
            assert_true(got < in_cap);
        }
    }
}

static void test_connect_echoes_and_passes_half_close(void **state)
{
    (void)state;
    uint16_t port = test_port(0);
    sm_exec_child *server = start_echo_server(port);
    int fd = connect_when_listening(port);
    uint8_t in[64];
    size_t got = exchange(fd, (const uint8_t *)"ping\n", 5, in, sizeof in);
    assert_int_equal(got, 5);
    assert_memory_equal(in, "ping\n", 5);
    close(fd);
    wait_server(server);
}

/* 8 MiB through, with the echo flowing back at the same time. */
static void test_connect_carries_a_large_stream_both_ways(void **state)
{
    (void)state;
    const size_t size = 8u << 20;
    uint8_t *out = malloc(size), *in = malloc(size + 1);
    assert_non_null(out);
    assert_non_null(in);
    for (size_t i = 0; i < size; i++)
        out[i] = (uint8_t)(i * 131 + (i >> 12));
    uint16_t port = test_port(1);
    sm_exec_child *server = start_echo_server(port);
    int fd = connect_when_listening(port);
    size_t got = exchange(fd, out, size, in, size + 1);
    assert_int_equal(got, size);
    assert_memory_equal(in, out, size);
    close(fd);
    wait_server(server);
    free(out);
    free(in);
}

/* Nothing listening: refused at once, with the guest's reason. */
static void test_connect_to_a_closed_port_is_refused(void **state)
{
    (void)state;
    int fd;
    sm_error err = { 0 };
    sm_code rc = agent_connect_port(exec_socket(), test_port(2), CONNECT_TIMEOUT_MS, &fd, &err);
    assert_int_equal(rc, SM_E_GUEST);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(err.message, "refused"));
}

static void test_connect_port_zero_is_invalid(void **state)
{
    (void)state;
    int fd;
    sm_error err = { 0 };
    assert_int_equal(agent_connect_port(exec_socket(), 0, CONNECT_TIMEOUT_MS, &fd, &err), SM_E_INVALID);
}

int main(void)
{
    if (!exec_require_socket())
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_echoes_and_passes_half_close),
        cmocka_unit_test(test_connect_carries_a_large_stream_both_ways),
        cmocka_unit_test(test_connect_to_a_closed_port_is_refused),
        cmocka_unit_test(test_connect_port_zero_is_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
