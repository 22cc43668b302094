/*
 * Hostile peers, both ways.
 *
 * Against the agent (through $SM_EXEC_SOCKET): garbage, a wrong version,
 * oversized and malformed frames get an ERROR frame and a closed connection;
 * a peer that stops mid-frame or floods stdin blocks nobody else.
 *
 * Against the host library (fake agents served from this process): garbage,
 * oversized frames and a wrong version give SM_E_PROTOCOL; a connection that
 * closes before anything is SM_E_SETUP and is retried by output_resilient,
 * one that drops mid-stream is SM_E_DROPPED and never retried, and a drop
 * never reads as a clean end: not through spawn's reads, not through wait's
 * status, not through the CLI; and a CLI whose command never answers a
 * SIGTERM gives up after its grace.
 *
 * Limits (supermachine.h, "Limits"): output that floods past the cap ends in
 * SM_E_LIMIT with the command killed and exactly the cap kept; an agent
 * that stops answering (never says HELLO, stops reading what we send, sends
 * no exit report past the command's timeout, pauses mid-file, never
 * answers POWEROFF or SYNC) ends each call in SM_E_TIMEOUT. The deadlines
 * are cut to 200 ms here (2 s where a fake must say HELLO in time); a fake
 * stays silent for at most SILENCE_MAX_MS, so that without the deadlines a
 * test fails on the error code instead of hanging.
 */
#include "exec_helpers.h"
#include "lib/exec_internal.h" /* exec_set_default_agent_timeout_ms */
#include "protocol/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

/* ---- raw connections to the agent --------------------------------------------- */

static int raw_connect(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", exec_socket());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void raw_send(int fd, const void *data, size_t len)
{
    assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void raw_hello(int fd, uint16_t version)
{
    uint8_t f[16];
    wire_header_encode(f, WIRE_HELLO, 8);
    uint32_t magic = WIRE_MAGIC;
    memcpy(f + 8, &magic, 4);
    f[12] = (uint8_t)version;
    f[13] = (uint8_t)(version >> 8);
    f[14] = f[15] = 0;
    raw_send(fd, f, sizeof f);
}

/* Reads until EOF (at most 5 s) and returns the ERROR frame's message, or
 * fails the test if the agent did not answer HELLO then ERROR. */
static void expect_agent_error(int fd, uint32_t kind, const char *needle)
{
    wire_reader r;
    wire_reader_init(&r, WIRE_AT_HOST);
    uint64_t give_up = clock_now_ms() + 5000;
    bool hello = false, error = false;
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_true(clock_now_ms() < give_up);
        if (poll(&p, 1, 200) <= 0)
            continue;
        uint8_t buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        assert_true(wire_reader_feed(&r, buf, (size_t)n, NULL));
        wire_frame f;
        wire_error e;
        int got;
        while ((got = wire_reader_next(&r, &f, &e)) > 0) {
            if (f.type == WIRE_HELLO) {
                hello = true;
            } else if (f.type == WIRE_ERROR) {
                wire_errmsg m;
                assert_true(wire_get_error(&f, &m, &e));
                assert_int_equal(m.kind, kind);
                if (!strstr(m.message, needle))
                    fail_msg("agent error '%s' does not mention '%s'", m.message, needle);
                error = true;
            } else {
                fail_msg("unexpected %s frame", wire_type_name(f.type));
            }
        }
        assert_true(got == 0);
    }
    wire_reader_destroy(&r);
    assert_true(hello);
    assert_true(error);
    close(fd);
}

/* A command that is alive and answers on stdin: proof others keep working. */
static sm_exec_child *start_witness(void)
{
    sm_exec_builder *b = builder_v("sh", "-c", "read x; echo got-$x", NULL);
    sm_exec_child *c;
    sm_error err;
    assert_int_equal(sm_exec_spawn(b, &c, &err), SM_OK);
    sm_exec_builder_free(b);
    return c;
}

static void check_witness(sm_exec_child *c)
{
    sm_error err;
    assert_int_equal(sm_exec_child_stdin_write(c, "ping\n", 5, &err), SM_OK);
    char buf[64] = { 0 };
    size_t got, total = 0;
    do {
        assert_int_equal(sm_exec_child_stdout_read(c, buf + total, sizeof buf - 1 - total, &got,
                                                   &err), SM_OK);
        total += got;
    } while (got);
    assert_string_equal(buf, "got-ping\n");
    sm_exec_status st;
    assert_int_equal(sm_exec_child_wait(c, &st, &err), SM_OK);
    assert_int_equal(st.code, 0);
    sm_exec_child_free(c);
}

/* A new command runs. An agent stuck on another connection would never get
 * here (the suite's time limit then fails the test), so no clock is read. */
static void check_agent_serves(void)
{
    char *s = sh_stdout("echo alive");
    assert_string_equal(s, "alive\n");
    free(s);
}

/* The agent has not closed fd: no end of stream is waiting on it. */
static void assert_still_open(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
        fail_msg("the agent closed a stalled connection before it served the next command");
}

static void test_agent_garbage(void **state)
{
    (void)state;
    sm_exec_child *w = start_witness();
    int fd = raw_connect();
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(0xf0 ^ (i * 37));
    raw_send(fd, junk, sizeof junk);
    expect_agent_error(fd, WIRE_ERR_PROTOCOL, "frame");
    check_witness(w);
}

static void test_agent_wrong_version(void **state)
{
    (void)state;
    int fd = raw_connect();
    raw_hello(fd, 99);
    expect_agent_error(fd, WIRE_ERR_VERSION, "version 99");
}

static void test_agent_wrong_direction(void **state)
{
    (void)state;
    int fd = raw_connect();
    raw_hello(fd, WIRE_VERSION);
    uint8_t h[WIRE_HEADER_SIZE];
    wire_header_encode(h, WIRE_EXIT, 32);
    raw_send(fd, h, sizeof h);
    expect_agent_error(fd, WIRE_ERR_PROTOCOL, "wrong way");
}

static void test_agent_oversized_frames(void **state)
{
    (void)state;
    const struct { uint8_t type; uint32_t len; } cases[] = {
        { WIRE_REQUEST, WIRE_MAX_REQUEST + 1 },
        { WIRE_STDIN, 0x80000000u },
        { WIRE_READ_FILE, 1u << 20 },
        { WIRE_SIGNAL, 5 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = raw_connect();
        raw_hello(fd, WIRE_VERSION);
        uint8_t h[WIRE_HEADER_SIZE];
        wire_header_encode(h, cases[i].type, cases[i].len);
        raw_send(fd, h, sizeof h);
        expect_agent_error(fd, WIRE_ERR_PROTOCOL, wire_type_name(cases[i].type));
    }
}

static void test_agent_malformed_request(void **state)
{
    (void)state;
    int fd = raw_connect();
    raw_hello(fd, WIRE_VERSION);
    uint8_t f[WIRE_HEADER_SIZE + 20] = { 0 }; /* flags..reserved, then argc = 0 */
    wire_header_encode(f, WIRE_REQUEST, 20);
    raw_send(fd, f, sizeof f);
    expect_agent_error(fd, WIRE_ERR_PROTOCOL, "argv");
}

/* A peer that stops in the middle of a frame holds up nobody. */
static void test_agent_mid_frame_stall(void **state)
{
    (void)state;
    int stalled[20];
    for (int i = 0; i < 20; i++) {
        stalled[i] = raw_connect();
        raw_hello(stalled[i], WIRE_VERSION);
        uint8_t h[WIRE_HEADER_SIZE];
        wire_header_encode(h, WIRE_REQUEST, 1000);
        raw_send(stalled[i], h, (size_t)(i % WIRE_HEADER_SIZE) + 1);
    }
    check_agent_serves();
    /* Served while every stalled connection was still open: the agent did
     * not wait for them to time out (it closes them after 30 s idle). */
    for (int i = 0; i < 20; i++)
        assert_still_open(stalled[i]);
    /* Half of them end mid-frame, the rest with a truncated payload. */
    for (int i = 0; i < 20; i++) {
        if (i % 2) {
            uint8_t part[50] = { 0 };
            raw_send(stalled[i], part, sizeof part);
        }
        close(stalled[i]);
    }
    check_agent_serves();
}

/* Flooding stdin of a command that never reads it: backpressure on that
 * connection only; dropping it then kills the command. */
static void test_agent_stdin_flood(void **state)
{
    (void)state;
    int fd = raw_connect();
    wire_buf b = { 0 };
    const char *argv[] = { "sleep", "3070", NULL };
    wire_request req = { .argv = { 2, argv }, .cwd = "" };
    assert_true(wire_put_hello(&b, NULL));
    assert_true(wire_put_request(&b, &req, NULL));
    raw_send(fd, b.data, b.len);
    static uint8_t chunk[WIRE_MAX_DATA];
    b.len = 0;
    assert_true(wire_put_data(&b, WIRE_STDIN, chunk, sizeof chunk, NULL));
    size_t sent_total = 0;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    /* Generous waits: under a sanitizer on a loaded machine the agent may
     * pause in its reading for a while without having stopped. */
    uint64_t give_up = clock_now_ms() + 10000;
    for (size_t off = 0; clock_now_ms() < give_up;) {
        ssize_t n = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL);
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            if (poll(&p, 1, 1000) == 0)
                break; /* no room for 1 s: the agent stopped reading us */
            continue;
        }
        sent_total += (size_t)n;
        off = (off + (size_t)n) % b.len;
    }
    assert_true(clock_now_ms() < give_up);
    assert_true(sent_total >= (4u << 20));
    check_agent_serves();
    wire_buf_free(&b);
    close(fd);
    int left = -1;
    for (int i = 0; i < 30 && left; i++) {
        usleep(100000);
        left = count_processes("sleep 307[0]");
    }
    assert_int_equal(left, 0);
}

/* Too many connections: the next one is told so; the others still work. */
static void test_agent_connection_limit(void **state)
{
    (void)state;
    enum { HOLD = 520 };
    int *held = malloc(HOLD * sizeof *held);
    for (int i = 0; i < HOLD; i++) {
        held[i] = raw_connect();
        raw_hello(held[i], WIRE_VERSION);
    }
    usleep(200000);
    sm_exec_builder *b = builder_v("true", NULL);
    sm_exec_outcome out;
    sm_error err = { 0 };
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_LIMIT);
    assert_non_null(strstr(err.message, "at most"));
    sm_exec_outcome_free(&out);
    for (int i = 0; i < HOLD; i++)
        close(held[i]);
    free(held);
    usleep(200000);
    assert_int_equal(sm_exec_output(b, &out, &err), SM_OK);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
}

/* ---- fake agents for the host library ------------------------------------------- */

typedef enum fake_mode {
    FAKE_GARBAGE,        /* bytes that are no frame */
    FAKE_OVERSIZED,      /* HELLO, then a STDOUT header over the limit */
    FAKE_OLD_VERSION,    /* HELLO with version 2 */
    FAKE_CLOSE_THEN_OK,  /* close at once `fail_first` times, then serve */
    FAKE_PARTIAL_DROP,   /* HELLO, some STDOUT, then close */
    FAKE_BIG_DROP,       /* HELLO, BIG_DROP_BYTES of STDOUT and some STDERR, then close */
    FAKE_SILENT,         /* HELLO, then nothing until the client leaves */
    FAKE_FLOOD,          /* HELLO, then 1 MiB STDOUT and STDERR frames in turn, up to FLOOD_BYTES */
    FAKE_EXACT,          /* HELLO, `amount` bytes (half STDOUT, half STDERR), EXIT 0 */
    FAKE_MUTE,           /* no HELLO: reads, never writes (at most SILENCE_MAX_MS) */
    FAKE_HUSH,           /* HELLO, then reads and never answers (at most SILENCE_MAX_MS) */
    FAKE_DEAF,           /* HELLO, then reads nothing (at most SILENCE_MAX_MS) */
    FAKE_READ_STALL,     /* HELLO, FILE_INFO of 4 MiB, 1 MiB of FILE_DATA, then silence */
} fake_mode;

#define FLOOD_BYTES (80u << 20)      /* beyond the default cap of 64 MiB */
#define FLOOD_CHUNK WIRE_MAX_DATA
#define SILENCE_MAX_MS 10000
#define SHORT_WAIT_MS 200            /* the agent timeout these tests set */
/* Where the fake must say HELLO in time (the agent timeout is also HELLO's
 * limit): long enough for a thread of a loaded host to get to it. */
#define HELLO_WAIT_MS 2000

#define BIG_DROP_BYTES (3u << 20) /* more than the child's pipes hold */
#define BIG_DROP_CHUNK (60u << 10)

typedef struct fake_agent {
    char path[108];
    int listen_fd;
    fake_mode mode;
    int fail_first;
    int connections;
    size_t amount;      /* FAKE_EXACT */
    bool saw_kill;      /* FAKE_FLOOD: the client sent SIGNAL 9 before it left */
    pthread_t thread;
} fake_agent;

static void put_frame(int fd, uint8_t type, const void *payload, uint32_t len)
{
    uint8_t h[WIRE_HEADER_SIZE];
    wire_header_encode(h, type, len);
    if (send(fd, h, sizeof h, MSG_NOSIGNAL) < 0 || (len && send(fd, payload, len, MSG_NOSIGNAL) < 0))
        return; /* the client may be gone: fine for a fake */
}

static void fake_hello(int fd, uint16_t version)
{
    uint8_t p[8] = { 0 };
    uint32_t magic = WIRE_MAGIC;
    memcpy(p, &magic, 4);
    p[4] = (uint8_t)version;
    put_frame(fd, WIRE_HELLO, p, 8);
}

/* Waits without a word until the client leaves, reading what it sends (or,
 * with read_it false, leaving it unread), for at most SILENCE_MAX_MS. */
static void fake_stay_silent(int fd, bool read_it)
{
    uint64_t give_up = clock_now_ms() + SILENCE_MAX_MS;
    static char sink[1 << 16];
    while (clock_now_ms() < give_up) {
        struct pollfd p = { .fd = fd, .events = read_it ? POLLIN : POLLRDHUP };
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (!read_it)
            return; /* the client hung up (or the socket failed) */
        if (recv(fd, sink, sizeof sink, 0) <= 0)
            return;
    }
}

/* Reads what the client sent until it left; true if a SIGNAL 9 was among it. */
static bool fake_saw_kill(int fd)
{
    wire_reader r;
    wire_reader_init(&r, WIRE_AT_AGENT);
    bool kill_seen = false;
    uint8_t buf[1 << 16];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
        if (!wire_reader_feed(&r, buf, (size_t)n, NULL))
            break;
        wire_frame fr;
        while (wire_reader_next(&r, &fr, NULL) > 0) {
            int signo;
            if (fr.type == WIRE_SIGNAL && wire_get_signal(&fr, &signo, NULL) && signo == SIGKILL)
                kill_seen = true;
        }
    }
    wire_reader_destroy(&r);
    return kill_seen;
}

static void fake_exit_ok(int fd)
{
    wire_buf b = { 0 };
    wire_exit x = { .code = 0, .steps_run = 1, .duration_us = 1 };
    wire_put_exit(&b, &x, NULL);
    if (send(fd, b.data, b.len, MSG_NOSIGNAL) < 0) { /* client gone */ }
    wire_buf_free(&b);
}

/* 1 MiB frames of 'o' (STDOUT) and 'e' (STDERR) in turn until the client
 * stops taking them; then whether it killed the command. */
static void fake_flood(fake_agent *f, int fd)
{
    static uint8_t out[FLOOD_CHUNK], err[FLOOD_CHUNK];
    memset(out, 'o', sizeof out);
    memset(err, 'e', sizeof err);
    fake_hello(fd, WIRE_VERSION);
    for (size_t sent = 0, i = 0; sent < FLOOD_BYTES; sent += FLOOD_CHUNK, i++) {
        uint8_t h[WIRE_HEADER_SIZE];
        wire_header_encode(h, i % 2 ? WIRE_STDERR : WIRE_STDOUT, FLOOD_CHUNK);
        if (send(fd, h, sizeof h, MSG_NOSIGNAL) < 0 ||
            send(fd, i % 2 ? err : out, FLOOD_CHUNK, MSG_NOSIGNAL) < 0)
            break;
    }
    shutdown(fd, SHUT_WR); /* a client that took it all sees the end, not silence */
    f->saw_kill = fake_saw_kill(fd);
}

/* `amount` bytes, the first half on STDOUT and the rest on STDERR, then EXIT 0. */
static void fake_exact(fake_agent *f, int fd)
{
    static uint8_t chunk[FLOOD_CHUNK];
    fake_hello(fd, WIRE_VERSION);
    size_t half = f->amount / 2;
    for (size_t sent = 0; sent < f->amount;) {
        bool first = sent < half;
        size_t end = first ? half : f->amount;
        size_t n = end - sent < sizeof chunk ? end - sent : sizeof chunk;
        memset(chunk, first ? 'o' : 'e', n);
        put_frame(fd, first ? WIRE_STDOUT : WIRE_STDERR, chunk, (uint32_t)n);
        sent += n;
    }
    fake_exit_ok(fd);
    fake_stay_silent(fd, true);
}

static void fake_read_stall(int fd)
{
    static uint8_t chunk[1 << 20];
    wire_buf b = { 0 };
    wire_file_head info = { .mode = 0644, .size = 4u << 20 };
    fake_hello(fd, WIRE_VERSION);
    wire_put_file_head(&b, WIRE_FILE_INFO, &info, NULL);
    if (send(fd, b.data, b.len, MSG_NOSIGNAL) < 0) { /* client gone */ }
    wire_buf_free(&b);
    put_frame(fd, WIRE_FILE_DATA, chunk, sizeof chunk);
    fake_stay_silent(fd, true);
}

static void fake_serve_one(fake_agent *f, int fd)
{
    int n = __atomic_fetch_add(&f->connections, 1, __ATOMIC_ACQ_REL);
    switch (f->mode) {
    case FAKE_GARBAGE:
        put_frame(fd, 0xee, "zz", 2);
        break;
    case FAKE_OVERSIZED:
        fake_hello(fd, WIRE_VERSION);
        {
            uint8_t h[WIRE_HEADER_SIZE];
            wire_header_encode(h, WIRE_STDOUT, WIRE_MAX_DATA + 1);
            if (send(fd, h, sizeof h, MSG_NOSIGNAL) < 0)
                break;
        }
        break;
    case FAKE_OLD_VERSION:
        fake_hello(fd, 2);
        break;
    case FAKE_CLOSE_THEN_OK:
        if (n < f->fail_first)
            break;
        fake_hello(fd, WIRE_VERSION);
        put_frame(fd, WIRE_STDOUT, "ok\n", 3);
        {
            wire_buf b = { 0 };
            wire_exit x = { .code = 0, .steps_run = 1, .duration_us = 1 };
            wire_put_exit(&b, &x, NULL);
            if (send(fd, b.data, b.len, MSG_NOSIGNAL) < 0) { /* client gone */ }
            wire_buf_free(&b);
        }
        break;
    case FAKE_PARTIAL_DROP:
        fake_hello(fd, WIRE_VERSION);
        put_frame(fd, WIRE_STDOUT, "partial", 7);
        break;
    case FAKE_BIG_DROP: {
        static uint8_t chunk[BIG_DROP_CHUNK];
        fake_hello(fd, WIRE_VERSION);
        put_frame(fd, WIRE_STDERR, "err", 3);
        for (uint32_t sent = 0; sent < BIG_DROP_BYTES; sent += BIG_DROP_CHUNK) {
            uint32_t len = BIG_DROP_BYTES - sent < BIG_DROP_CHUNK ? BIG_DROP_BYTES - sent : BIG_DROP_CHUNK;
            memset(chunk, (int)(sent / BIG_DROP_CHUNK), len);
            put_frame(fd, WIRE_STDOUT, chunk, len);
        }
        break;
    }
    case FAKE_SILENT: {
        fake_hello(fd, WIRE_VERSION);
        char sink[4096];
        while (recv(fd, sink, sizeof sink, 0) > 0)
            ;
        break;
    }
    case FAKE_FLOOD:
        fake_flood(f, fd);
        break;
    case FAKE_EXACT:
        fake_exact(f, fd);
        break;
    case FAKE_MUTE:
        fake_stay_silent(fd, true);
        break;
    case FAKE_HUSH:
        fake_hello(fd, WIRE_VERSION);
        fake_stay_silent(fd, true);
        break;
    case FAKE_DEAF:
        fake_hello(fd, WIRE_VERSION);
        fake_stay_silent(fd, false);
        break;
    case FAKE_READ_STALL:
        fake_read_stall(fd);
        break;
    }
    close(fd);
}

static void *fake_main(void *arg)
{
    fake_agent *f = arg;
    for (;;) {
        int fd = accept(f->listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL; /* closed by fake_stop */
        fake_serve_one(f, fd);
    }
}

static fake_agent *fake_start(fake_mode mode, int fail_first)
{
    fake_agent *f = calloc(1, sizeof *f);
    f->mode = mode;
    f->fail_first = fail_first;
    snprintf(f->path, sizeof f->path, "/tmp/sm-fake-%d-%llu.sock", (int)getpid(),
             (unsigned long long)clock_now_ms());
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strcpy(sa.sun_path, f->path);
    unlink(f->path);
    f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->listen_fd, 16), 0);
    pthread_create(&f->thread, NULL, fake_main, f);
    return f;
}

/* Stops serving; f stays readable until the caller frees it. */
static void fake_stop_keep(fake_agent *f)
{
    shutdown(f->listen_fd, SHUT_RDWR);
    close(f->listen_fd);
    pthread_join(f->thread, NULL);
    unlink(f->path);
}

static int fake_stop(fake_agent *f)
{
    fake_stop_keep(f);
    int n = f->connections;
    free(f);
    return n;
}

static sm_code fake_output(fake_agent *f, unsigned retries, sm_exec_outcome *out, sm_error *err)
{
    sm_exec_builder *b = sm_exec_builder_new(f->path);
    const char *argv[] = { "true" };
    sm_exec_builder_argv(b, 1, argv);
    sm_code rc = retries ? sm_exec_output_resilient(b, retries, out, err)
                         : sm_exec_output(b, out, err);
    sm_exec_builder_free(b);
    return rc;
}

static void expect_host_error(fake_mode mode, sm_code code, const char *needle)
{
    fake_agent *f = fake_start(mode, 1);
    sm_exec_outcome out;
    sm_error err = { 0 };
    assert_int_equal(fake_output(f, 0, &out, &err), code);
    if (!strstr(err.message, needle))
        fail_msg("host error '%s' does not mention '%s'", err.message, needle);
    sm_exec_outcome_free(&out);
    fake_stop(f);
}

static void test_host_rejects_garbage(void **state)
{
    (void)state;
    expect_host_error(FAKE_GARBAGE, SM_E_PROTOCOL, "unknown frame type");
}

static void test_host_rejects_oversized(void **state)
{
    (void)state;
    expect_host_error(FAKE_OVERSIZED, SM_E_PROTOCOL, "exceeds");
}

static void test_host_rejects_old_version(void **state)
{
    (void)state;
    expect_host_error(FAKE_OLD_VERSION, SM_E_PROTOCOL, "version 2");
}

static void test_host_setup_vs_dropped(void **state)
{
    (void)state;
    expect_host_error(FAKE_CLOSE_THEN_OK, SM_E_SETUP, "before");
    expect_host_error(FAKE_PARTIAL_DROP, SM_E_DROPPED, "mid-stream");
}

static void test_resilient_retries_setup_failures(void **state)
{
    (void)state;
    fake_agent *f = fake_start(FAKE_CLOSE_THEN_OK, 2);
    sm_exec_outcome out;
    sm_error err;
    uint64_t t0 = clock_now_ms();
    assert_int_equal(fake_output(f, 3, &out, &err), SM_OK);
    assert_true(clock_now_ms() - t0 >= 150); /* 50 + 100 ms of linear backoff */
    assert_string_equal((char *)out.stdout_buf, "ok\n");
    sm_exec_outcome_free(&out);
    assert_int_equal(fake_stop(f), 3);

    f = fake_start(FAKE_CLOSE_THEN_OK, 5);
    assert_int_equal(fake_output(f, 1, &out, &err), SM_E_SETUP);
    assert_non_null(strstr(err.message, "2 attempts"));
    sm_exec_outcome_free(&out);
    assert_int_equal(fake_stop(f), 2);
}

static void test_resilient_never_reruns_a_started_command(void **state)
{
    (void)state;
    fake_agent *f = fake_start(FAKE_PARTIAL_DROP, 0);
    sm_exec_outcome out;
    sm_error err;
    assert_int_equal(fake_output(f, 5, &out, &err), SM_E_DROPPED);
    sm_exec_outcome_free(&out);
    assert_int_equal(fake_stop(f), 1);
}

/* Spawn against an agent that drops after 3 MiB: every byte that arrived
 * is read, then the reads fail with SM_E_DROPPED instead of ending cleanly,
 * and wait fails the same way with a status that is not success. */
static void test_spawn_drop_is_not_a_clean_end(void **state)
{
    (void)state;
    fake_agent *f = fake_start(FAKE_BIG_DROP, 0);
    sm_exec_builder *b = sm_exec_builder_new(f->path);
    const char *argv[] = { "head", "-c", "3145728", "/dev/zero" };
    sm_exec_builder_argv(b, 4, argv);
    sm_exec_child *c;
    sm_error err = { 0 };
    assert_int_equal(sm_exec_spawn(b, &c, &err), SM_OK);
    static uint8_t buf[100000];
    size_t total = 0, got;
    sm_code rc;
    bool in_order = true;
    while ((rc = sm_exec_child_stdout_read(c, buf, sizeof buf, &got, &err)) == SM_OK && got) {
        for (size_t i = 0; i < got; i++)
            in_order &= buf[i] == (uint8_t)((total + i) / BIG_DROP_CHUNK);
        total += got;
    }
    assert_true(in_order);
    assert_int_equal(total, BIG_DROP_BYTES);
    assert_int_equal(rc, SM_E_DROPPED);
    if (!strstr(err.message, "mid-stream"))
        fail_msg("stdout read error '%s' does not say mid-stream", err.message);
    assert_int_equal(sm_exec_child_stderr_read(c, buf, sizeof buf, &got, &err), SM_OK);
    assert_int_equal(got, 3);
    assert_int_equal(sm_exec_child_stderr_read(c, buf, sizeof buf, &got, &err), SM_E_DROPPED);
    sm_exec_status st = { .code = 0 };
    assert_int_equal(sm_exec_child_wait(c, &st, &err), SM_E_DROPPED);
    assert_int_equal(st.code, -1);
    assert_int_equal(st.signal, 0);
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    fake_stop(f);
}

/* A reader that stops for a while: the agent pauses the command's output
 * (its backlog is full) and must not mistake the paused pipe, once the
 * command has exited, for a background writer's, closing it with output
 * still inside (seen: up to a pipe's worth lost, exit code 0). */
static void slow_reader_round(size_t want)
{
    char count[32];
    snprintf(count, sizeof count, "%zu", want);
    sm_exec_builder *b = builder_v("head", "-c", count, "/dev/zero", NULL);
    sm_exec_child *c;
    sm_error err = { 0 };
    assert_int_equal(sm_exec_spawn(b, &c, &err), SM_OK);
    usleep(800 * 1000); /* the agent's backlog fills; head exits meanwhile */
    static uint8_t buf[1 << 16];
    size_t total = 0, got;
    while (sm_exec_child_stdout_read(c, buf, sizeof buf, &got, &err) == SM_OK && got)
        total += got;
    sm_exec_status st;
    assert_int_equal(sm_exec_child_wait(c, &st, &err), SM_OK);
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    assert_int_equal(st.code, 0);
    if (total != want)
        fail_msg("%zu of %zu bytes arrived, exit code 0", total, want);
}

/* Several sizes: which one makes head exit while its output is paused
 * depends on the buffers along the way. */
static void test_slow_reader_gets_every_byte(void **state)
{
    (void)state;
    const size_t mib[] = { 5, 6, 7, 9, 13 };
    for (size_t i = 0; i < sizeof mib / sizeof mib[0]; i++)
        slow_reader_round(mib[i] << 20);
}

/* ---- limits: the output cap ------------------------------------------------------ */

static sm_exec_builder *fake_builder(const fake_agent *f)
{
    sm_exec_builder *b = sm_exec_builder_new(f->path);
    const char *argv[] = { "true" };
    sm_exec_builder_argv(b, 1, argv);
    return b;
}

static void assert_message(const sm_error *err, const char *needle)
{
    if (!strstr(err->message, needle))
        fail_msg("error '%s' does not mention '%s'", err->message, needle);
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t c)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != c)
            return false;
    return true;
}

/* A flood past the cap: SM_E_LIMIT naming the cap and how to raise it,
 * exactly the first cap bytes kept (the cap cuts a frame), a status that
 * is no success, and the command killed through the agent. */
static void test_output_cap_stops_a_flood(void **state)
{
    (void)state;
    fake_agent *f = fake_start(FAKE_FLOOD, 0);
    sm_exec_builder *b = fake_builder(f);
    const size_t cap = (3u << 20) + 5;
    assert_int_equal(sm_exec_builder_max_output(b, cap), SM_OK);
    sm_exec_outcome out;
    sm_error err = { 0 };
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_LIMIT);
    assert_message(&err, "3145733 bytes");
    assert_message(&err, "sm_exec_builder_max_output");
    /* stdout 1 MiB, stderr 1 MiB, stdout 1 MiB, then 5 bytes of stderr */
    assert_int_equal(out.stdout_len, 2u << 20);
    assert_int_equal(out.stderr_len, (1u << 20) + 5);
    assert_true(all_bytes(out.stdout_buf, out.stdout_len, 'o'));
    assert_true(all_bytes(out.stderr_buf, out.stderr_len, 'e'));
    assert_int_equal(out.stdout_buf[out.stdout_len], 0);
    assert_int_equal(out.status.code, -1);
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
    fake_stop_keep(f);
    assert_true(f->saw_kill);
    free(f);
}

/* The default cap: 64 MiB of stdout and stderr together. */
static void test_output_cap_default(void **state)
{
    (void)state;
    fake_agent *f = fake_start(FAKE_FLOOD, 0);
    sm_exec_builder *b = fake_builder(f);
    sm_exec_outcome out;
    sm_error err = { 0 };
    assert_int_equal(sm_exec_output(b, &out, &err), SM_E_LIMIT);
    assert_message(&err, "67108864 bytes");
    assert_int_equal(out.stdout_len + out.stderr_len, SM_EXEC_MAX_OUTPUT_DEFAULT);
    assert_int_equal(out.stdout_len, out.stderr_len); /* 32 frames of each */
    sm_exec_outcome_free(&out);
    sm_exec_builder_free(b);
    fake_stop(f);
}

/* Exactly the cap is a complete result; one byte less is over it. */
static void test_output_cap_is_inclusive(void **state)
{
    (void)state;
    const size_t amount = (2u << 20) + 3;
    for (int over = 0; over < 2; over++) {
        fake_agent *f = fake_start(FAKE_EXACT, 0);
        f->amount = amount;
        sm_exec_builder *b = fake_builder(f);
        sm_exec_builder_max_output(b, amount - (size_t)over);
        sm_exec_outcome out;
        sm_error err = { 0 };
        sm_code rc = sm_exec_output(b, &out, &err);
        if (over) {
            assert_int_equal(rc, SM_E_LIMIT);
            assert_int_equal(out.stdout_len + out.stderr_len, amount - 1);
        } else {
            if (rc)
                fail_msg("output of exactly the cap: %s", err.message);
            assert_int_equal(out.stdout_len, amount / 2);
            assert_int_equal(out.stderr_len, amount - amount / 2);
            assert_int_equal(out.status.code, 0);
        }
        sm_exec_outcome_free(&out);
        sm_exec_builder_free(b);
        fake_stop(f);
    }
}

/* ---- limits: an agent that stops answering -------------------------------------------- */

static int short_waits(void **state)
{
    (void)state;
    exec_set_default_agent_timeout_ms(SHORT_WAIT_MS);
    return 0;
}

static int default_waits(void **state)
{
    (void)state;
    exec_set_default_agent_timeout_ms(0);
    return 0;
}

static void expect_stopped(sm_code rc, const sm_error *err, const char *needle)
{
    if (rc != SM_E_TIMEOUT)
        fail_msg("expected SM_E_TIMEOUT, got %s: %s", sm_strerror(rc), err->message);
    assert_message(err, "stopped answering");
    assert_message(err, needle);
}

static sm_code output_against(fake_mode mode, uint32_t command_timeout_ms, const char *staged_mib,
                              sm_exec_outcome *out, sm_error *err)
{
    fake_agent *f = fake_start(mode, 0);
    sm_exec_builder *b = fake_builder(f);
    sm_exec_builder_agent_timeout_ms(b, mode == FAKE_HUSH ? HELLO_WAIT_MS : SHORT_WAIT_MS);
    sm_exec_builder_timeout_ms(b, command_timeout_ms);
    uint8_t *big = NULL;
    if (staged_mib) {
        size_t len = (size_t)atoi(staged_mib) << 20;
        big = calloc(1, len);
        sm_exec_builder_stage_file(b, "/tmp/big", big, len);
    }
    sm_code rc = sm_exec_output(b, out, err);
    free(big);
    sm_exec_builder_free(b);
    fake_stop(f);
    return rc;
}

/* No HELLO: the agent (its guest) stopped before the command started. */
static void test_output_agent_never_says_hello(void **state)
{
    (void)state;
    sm_exec_outcome out;
    sm_error err = { 0 };
    expect_stopped(output_against(FAKE_MUTE, 0, NULL, &out, &err), &err, "no HELLO within 200 ms");
    assert_message(&err, "sm_exec_builder_agent_timeout_ms");
    assert_int_equal(out.status.code, -1);
    sm_exec_outcome_free(&out);
}

/* The agent does not take an 8 MiB request (a staged file). */
static void test_output_agent_stops_reading_the_request(void **state)
{
    (void)state;
    sm_exec_outcome out;
    sm_error err = { 0 };
    expect_stopped(output_against(FAKE_DEAF, 0, "8", &out, &err), &err, "none of our bytes for 200 ms");
    sm_exec_outcome_free(&out);
}

/* With a command timeout, the exit report is due the agent timeout after it. */
static void test_output_no_exit_report_past_the_timeout(void **state)
{
    (void)state;
    sm_exec_outcome out;
    sm_error err = { 0 };
    expect_stopped(output_against(FAKE_HUSH, 100, NULL, &out, &err), &err,
                   "no exit report 2000 ms past the command's 100 ms timeout");
    assert_int_equal(out.status.code, -1);
    sm_exec_outcome_free(&out);
}

/* The same through spawn: the reads and wait fail alike. */
static void test_wait_no_exit_report_past_the_timeout(void **state)
{
    (void)state;
    fake_agent *f = fake_start(FAKE_HUSH, 0);
    sm_exec_builder *b = fake_builder(f);
    sm_exec_builder_agent_timeout_ms(b, HELLO_WAIT_MS);
    sm_exec_builder_timeout_ms(b, 100);
    sm_exec_child *c;
    sm_error err = { 0 };
    assert_int_equal(sm_exec_spawn(b, &c, &err), SM_OK);
    uint8_t buf[64];
    size_t got;
    expect_stopped(sm_exec_child_stdout_read(c, buf, sizeof buf, &got, &err), &err, "no exit report");
    sm_exec_status st = { .code = 0 };
    expect_stopped(sm_exec_child_wait(c, &st, &err), &err, "no exit report");
    assert_int_equal(st.code, -1);
    sm_exec_child_free(c);
    sm_exec_builder_free(b);
    fake_stop(f);
}

static void test_write_file_agent_stops(void **state)
{
    (void)state;
    size_t len = 8u << 20;
    uint8_t *data = calloc(1, len);
    sm_error err = { 0 };
    /* It stops reading the file's bytes... */
    fake_agent *f = fake_start(FAKE_DEAF, 0);
    expect_stopped(sm_exec_write_file(f->path, "/tmp/x", data, len, 0644, &err), &err,
                   "none of our bytes for 200 ms");
    assert_message(&err, "/tmp/x");
    fake_stop(f);
    /* ... or takes them all and never answers. */
    f = fake_start(FAKE_HUSH, 0);
    expect_stopped(sm_exec_write_file(f->path, "/tmp/x", data, 1000, 0644, &err), &err,
                   "no answer within 200 ms");
    fake_stop(f);
    free(data);
}

static void test_read_file_agent_stops(void **state)
{
    (void)state;
    uint8_t *bytes = (uint8_t *)"untouched";
    size_t len = 7;
    sm_error err = { 0 };
    /* It pauses in the middle of the file... */
    fake_agent *f = fake_start(FAKE_READ_STALL, 0);
    expect_stopped(sm_exec_read_file(f->path, "/x", 8u << 20, &bytes, &len, &err), &err,
                   "nothing from it for 200 ms");
    assert_null(bytes);
    assert_int_equal(len, 0);
    fake_stop(f);
    /* ... or never answers the request. */
    f = fake_start(FAKE_HUSH, 0);
    expect_stopped(sm_exec_read_file(f->path, "/x", 100, &bytes, &len, &err), &err,
                   "nothing from it for 200 ms");
    fake_stop(f);
}

static void test_poweroff_and_sync_agent_stops(void **state)
{
    (void)state;
    const fake_mode modes[] = { FAKE_HUSH, FAKE_MUTE };
    for (size_t i = 0; i < 2; i++) {
        fake_agent *f = fake_start(modes[i], 0);
        sm_error err = { 0 };
        expect_stopped(sm_exec_poweroff(f->path, &err), &err, "no answer within 200 ms");
        assert_message(&err, "poweroff");
        expect_stopped(sm_exec_sync(f->path, &err), &err, "no answer within 200 ms");
        assert_message(&err, "sync");
        fake_stop(f);
    }
}

static const char *cli_path(void)
{
    const char *cli = getenv("SM_EXEC_CLI");
    return cli && *cli ? cli : NULL;
}

/* Runs the CLI against a fake agent; returns its exit status, stderr in err.
 * With signal_it, SIGTERM goes to the CLI once it has connected to the fake
 * (it installs its handlers before connecting; a fixed delay raced them on a
 * slow host, and the default action killed it). */
static int run_cli(const char *cli, fake_agent *f, bool signal_it, char *err, size_t cap, uint64_t *took_ms)
{
    const char *socket = f->path;
    int errp[2];
    assert_int_equal(pipe(errp), 0);
    uint64_t t0 = clock_now_ms();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(errp[1], 2);
        execl(cli, cli, "exec", "--socket", socket, "--", "head", "-c", "3145728", "/dev/zero", (char *)NULL);
        _exit(127);
    }
    close(errp[1]);
    if (signal_it) {
        for (int i = 0; i < 3000 && !__atomic_load_n(&f->connections, __ATOMIC_ACQUIRE); i++)
            usleep(10 * 1000);
        assert_int_not_equal(__atomic_load_n(&f->connections, __ATOMIC_ACQUIRE), 0);
        kill(pid, SIGTERM);
    }
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(errp[0], err + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    err[len] = 0;
    close(errp[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    *took_ms = clock_now_ms() - t0;
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_cli_drop_fails(void **state)
{
    (void)state;
    const char *cli = cli_path();
    if (!cli)
        skip();
    fake_agent *f = fake_start(FAKE_BIG_DROP, 0);
    char err[2048];
    uint64_t took;
    int code = run_cli(cli, f, false, err, sizeof err, &took);
    fake_stop(f);
    if (code != 125 || !strstr(err, "mid-stream"))
        fail_msg("CLI exec after a drop: exit %d, stderr '%s' (want 125 and 'mid-stream')", code, err);
}

static void test_cli_gives_up_after_sigterm(void **state)
{
    (void)state;
    const char *cli = cli_path();
    if (!cli)
        skip();
    fake_agent *f = fake_start(FAKE_SILENT, 0);
    char err[2048];
    uint64_t took;
    int code = run_cli(cli, f, true, err, sizeof err, &took);
    fake_stop(f);
    if (code != 143 || !strstr(err, "gave up"))
        fail_msg("CLI exec, SIGTERM, silent agent: exit %d, stderr '%s' (want 143 and 'gave up')", code, err);
    assert_true(took < 30000);
}

int main(void)
{
    if (!exec_require_socket())
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_garbage),
        cmocka_unit_test(test_agent_wrong_version),
        cmocka_unit_test(test_agent_wrong_direction),
        cmocka_unit_test(test_agent_oversized_frames),
        cmocka_unit_test(test_agent_malformed_request),
        cmocka_unit_test(test_agent_mid_frame_stall),
        cmocka_unit_test(test_agent_stdin_flood),
        cmocka_unit_test(test_agent_connection_limit),
        cmocka_unit_test(test_host_rejects_garbage),
        cmocka_unit_test(test_host_rejects_oversized),
        cmocka_unit_test(test_host_rejects_old_version),
        cmocka_unit_test(test_host_setup_vs_dropped),
        cmocka_unit_test(test_resilient_retries_setup_failures),
        cmocka_unit_test(test_resilient_never_reruns_a_started_command),
        cmocka_unit_test(test_spawn_drop_is_not_a_clean_end),
        cmocka_unit_test(test_slow_reader_gets_every_byte),
        cmocka_unit_test(test_cli_drop_fails),
        cmocka_unit_test(test_cli_gives_up_after_sigterm),
        cmocka_unit_test(test_output_cap_stops_a_flood),
        cmocka_unit_test(test_output_cap_default),
        cmocka_unit_test(test_output_cap_is_inclusive),
        cmocka_unit_test_setup_teardown(test_output_agent_never_says_hello, short_waits, default_waits),
        cmocka_unit_test_setup_teardown(test_output_agent_stops_reading_the_request, short_waits,
                                        default_waits),
        cmocka_unit_test_setup_teardown(test_output_no_exit_report_past_the_timeout, short_waits,
                                        default_waits),
        cmocka_unit_test_setup_teardown(test_wait_no_exit_report_past_the_timeout, short_waits,
                                        default_waits),
        cmocka_unit_test_setup_teardown(test_write_file_agent_stops, short_waits, default_waits),
        cmocka_unit_test_setup_teardown(test_read_file_agent_stops, short_waits, default_waits),
        cmocka_unit_test_setup_teardown(test_poweroff_and_sync_agent_stops, short_waits, default_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
