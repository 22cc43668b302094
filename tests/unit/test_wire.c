/* Unit tests of the exec wire codec (src/protocol/wire.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "protocol/wire.h"

/* Feeds b into a reader on `side` and returns the first frame (payload
 * valid while r lives). */
static void one_frame(wire_reader *r, wire_side side, const wire_buf *b,
                      wire_frame *f)
{
    wire_error e;
    wire_reader_init(r, side);
    assert_true(wire_reader_feed(r, b->data, b->len, &e));
    assert_int_equal(wire_reader_next(r, f, &e), 1);
}

static void test_header_checks(void **state)
{
    (void)state;
    uint8_t h[WIRE_HEADER_SIZE];
    wire_header out;
    wire_error e;

    wire_header_encode(h, WIRE_STDIN, 10);
    assert_true(wire_header_decode(h, WIRE_AT_AGENT, &out, &e));
    assert_int_equal(out.length, 10);
    assert_int_equal(out.type, WIRE_STDIN);

    assert_false(wire_header_decode(h, WIRE_AT_HOST, &out, &e));
    assert_non_null(strstr(e.message, "wrong way"));

    wire_header_encode(h, 0x7f, 0);
    assert_false(wire_header_decode(h, WIRE_AT_AGENT, &out, &e));
    assert_non_null(strstr(e.message, "unknown frame type 0x7f"));

    wire_header_encode(h, WIRE_STDOUT, WIRE_MAX_DATA + 1);
    assert_false(wire_header_decode(h, WIRE_AT_HOST, &out, &e));
    assert_non_null(strstr(e.message, "exceeds"));

    wire_header_encode(h, WIRE_EXIT, 31);
    assert_false(wire_header_decode(h, WIRE_AT_HOST, &out, &e));

    wire_header_encode(h, WIRE_STDOUT, 1);
    h[6] = 1;
    assert_false(wire_header_decode(h, WIRE_AT_HOST, &out, &e));
    assert_non_null(strstr(e.message, "reserved"));

    assert_int_equal(wire_max_payload(WIRE_REQUEST, WIRE_AT_AGENT), WIRE_MAX_REQUEST);
    assert_int_equal(wire_max_payload(WIRE_REQUEST, WIRE_AT_HOST), -1);
}

/* Frames split at every byte boundary come out whole and in order. */
static void test_reader_byte_by_byte(void **state)
{
    (void)state;
    wire_buf b = { 0 };
    wire_error e;
    assert_true(wire_put_hello(&b, &e));
    assert_true(wire_put_data(&b, WIRE_STDOUT, "hello", 5, &e));
    assert_true(wire_put_empty(&b, WIRE_OK, &e));
    assert_true(wire_put_data(&b, WIRE_STDERR, "", 0, &e));
    wire_reader r;
    wire_reader_init(&r, WIRE_AT_HOST);
    uint8_t types[8];
    int n = 0;
    for (size_t i = 0; i < b.len; i++) {
        assert_true(wire_reader_feed(&r, b.data + i, 1, &e));
        wire_frame f;
        int got;
        while ((got = wire_reader_next(&r, &f, &e)) == 1) {
            types[n++] = f.type;
            if (f.type == WIRE_STDOUT) {
                assert_int_equal(f.length, 5);
                assert_memory_equal(f.payload, "hello", 5);
            }
        }
        assert_int_equal(got, 0);
    }
    assert_int_equal(n, 4);
    assert_int_equal(types[0], WIRE_HELLO);
    assert_int_equal(types[1], WIRE_STDOUT);
    assert_int_equal(types[2], WIRE_OK);
    assert_int_equal(types[3], WIRE_STDERR);
    assert_int_equal(wire_reader_pending(&r), 0);
    wire_reader_destroy(&r);
    wire_buf_free(&b);
}

static void test_hello(void **state)
{
    (void)state;
    wire_buf b = { 0 };
    wire_error e;
    assert_true(wire_put_hello(&b, &e));
    wire_reader r;
    wire_frame f;
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    assert_true(wire_check_hello(&f, "host", &e));
    wire_reader_destroy(&r);

    b.data[WIRE_HEADER_SIZE + 4] = 9; /* version 9 */
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    assert_false(wire_check_hello(&f, "host", &e));
    assert_non_null(strstr(e.message, "version 9"));
    wire_reader_destroy(&r);

    b.data[WIRE_HEADER_SIZE] ^= 0xff; /* magic */
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    assert_false(wire_check_hello(&f, "host", &e));
    assert_non_null(strstr(e.message, "magic"));
    wire_reader_destroy(&r);
    wire_buf_free(&b);
}

static const char *argv1[] = { "sh", "-c", "echo hi", NULL };
static const char *env1[] = { "FOO=bar", "EMPTY=", NULL };
static const char *chain1[] = { "true", NULL };

static wire_request sample_request(wire_file *files, wire_argv *chain)
{
    files[0] = (wire_file){ "/tmp/a", (const uint8_t *)"abc", 3, 0755 };
    files[1] = (wire_file){ "/tmp/empty", NULL, 0, 0600 };
    chain[0] = (wire_argv){ 1, chain1 };
    return (wire_request){
        .flags = WIRE_REQ_TTY, .cols = 120, .rows = 40, .timeout_ms = 1500,
        .argv = { 3, argv1 }, .env = { 2, env1 }, .cwd = "/work",
        .nfiles = 2, .files = files, .nchain = 1, .chain = chain,
    };
}

static void test_request_roundtrip(void **state)
{
    (void)state;
    wire_file files[2];
    wire_argv chain[1];
    wire_request req = sample_request(files, chain);
    wire_buf b = { 0 };
    wire_error e;
    assert_true(wire_put_request(&b, &req, &e));
    wire_reader r;
    wire_frame f;
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    wire_request got;
    assert_true(wire_get_request(&f, &got, &e));
    assert_int_equal(got.flags, WIRE_REQ_TTY);
    assert_int_equal(got.cols, 120);
    assert_int_equal(got.rows, 40);
    assert_int_equal(got.timeout_ms, 1500);
    assert_int_equal(got.argv.argc, 3);
    assert_string_equal(got.argv.argv[2], "echo hi");
    assert_null(got.argv.argv[3]);
    assert_int_equal(got.env.argc, 2);
    assert_string_equal(got.env.argv[1], "EMPTY=");
    assert_string_equal(got.cwd, "/work");
    assert_int_equal(got.nfiles, 2);
    assert_string_equal(got.files[0].path, "/tmp/a");
    assert_int_equal(got.files[0].size, 3);
    assert_memory_equal(got.files[0].data, "abc", 3);
    assert_int_equal(got.files[0].mode, 0755);
    assert_int_equal(got.files[1].size, 0);
    assert_int_equal(got.nchain, 1);
    assert_string_equal(got.chain[0].argv[0], "true");
    wire_request_free(&got);
    wire_reader_destroy(&r);
    wire_buf_free(&b);
}

/* Every truncation of a valid request fails cleanly (no crash, no leak). */
static void test_request_truncations(void **state)
{
    (void)state;
    wire_file files[2];
    wire_argv chain[1];
    wire_request req = sample_request(files, chain);
    wire_buf b = { 0 };
    assert_true(wire_put_request(&b, &req, NULL));
    const uint8_t *payload = b.data + WIRE_HEADER_SIZE;
    size_t full = b.len - WIRE_HEADER_SIZE;
    for (size_t len = 0; len < full; len++) {
        wire_frame f = { WIRE_REQUEST, (uint32_t)len, payload };
        wire_request got;
        wire_error e;
        assert_false(wire_get_request(&f, &got, &e));
        assert_true(strlen(e.message) > 0);
    }
    /* And one byte too many. */
    uint8_t *longer = malloc(full + 1);
    memcpy(longer, payload, full);
    longer[full] = 0;
    wire_frame f = { WIRE_REQUEST, (uint32_t)full + 1, longer };
    wire_request got;
    wire_error e;
    assert_false(wire_get_request(&f, &got, &e));
    assert_non_null(strstr(e.message, "trailing"));
    free(longer);
    wire_buf_free(&b);
}

/* Payload surgery: each bad field is named in the error. */
static void expect_bad_request(const wire_request *req, size_t at, uint8_t value,
                               const char *needle)
{
    wire_buf b = { 0 };
    assert_true(wire_put_request(&b, req, NULL));
    b.data[WIRE_HEADER_SIZE + at] = value;
    wire_frame f = { WIRE_REQUEST, (uint32_t)(b.len - WIRE_HEADER_SIZE),
                        b.data + WIRE_HEADER_SIZE };
    wire_request got;
    wire_error e;
    assert_false(wire_get_request(&f, &got, &e));
    if (!strstr(e.message, needle))
        fail_msg("'%s' does not mention '%s'", e.message, needle);
    wire_buf_free(&b);
}

static void test_request_bad_fields(void **state)
{
    (void)state;
    const char *argv[] = { "ab", NULL };
    const char *env[] = { "K=V", NULL };
    wire_request req = { .argv = { 1, argv }, .env = { 1, env }, .cwd = "" };
    /* layout: 16 fixed | argc(4) | len(4) "ab\0" | envc(4) | len(4) "K=V\0" | ... */
    expect_bad_request(&req, 0, 0x20, "flags");          /* unknown flag */
    expect_bad_request(&req, 3, 0x80, "flags");          /* unknown high flag */
    expect_bad_request(&req, 16, 0, "argv");            /* argc = 0 */
    expect_bad_request(&req, 19, 0x80, "argv");          /* argc huge */
    expect_bad_request(&req, 20, 0, "length 0");         /* string length 0 */
    expect_bad_request(&req, 24 + 2, 'x', "NUL");        /* missing terminator */
    expect_bad_request(&req, 24 + 1, 0, "NUL");          /* embedded NUL */
    expect_bad_request(&req, 35 + 1, 'x', "KEY=VALUE");  /* "KxV" has no '=' */

    const char *file_argv[] = { "x", NULL };
    wire_file file = { "/f", (const uint8_t *)"d", 1, 0644 };
    wire_request with_file = { .argv = { 1, file_argv }, .cwd = "", .nfiles = 1,
                                  .files = &file };
    /* 16 | argc 4 | 4+2 | envc 4 | cwd 4+1 | nfiles 4 | mode 4 | path 4+3 | size 4 | 1 */
    size_t mode_at = 16 + 4 + 6 + 4 + 5 + 4;
    expect_bad_request(&with_file, mode_at + 1, 0x10, "mode");  /* mode 010644 */
    expect_bad_request(&with_file, mode_at + 4 + 4, 'r', "absolute");
    expect_bad_request(&with_file, mode_at + 4 + 7, 9, "file bytes"); /* size 9 */
}

static const uint32_t groups1[] = { 65534, 27, 0x80000000u };

/* A request with a user and a cleared environment: 16 fixed | argc 4 |
 * "id" 4+3 | envc 4 | "A=1" 4+4 | cwd 4+1 | nfiles 4 | nchain 4 | user. */
#define USER_AT (16 + 4 + 7 + 4 + 8 + 5 + 4 + 4)
static wire_request user_request(const char **argv, const char **env)
{
    return (wire_request){
        .flags = WIRE_REQ_USER | WIRE_REQ_CLEAR_ENV, .argv = { 1, argv }, .env = { 1, env },
        .cwd = "", .uid = 65534, .gid = 65533, .ngroups = 3, .groups = (uint32_t *)groups1,
    };
}

static void test_request_user_roundtrip(void **state)
{
    (void)state;
    const char *argv[] = { "id", NULL };
    const char *env[] = { "A=1", NULL };
    wire_request req = user_request(argv, env);
    wire_buf b = { 0 };
    wire_error e;
    assert_true(wire_put_request(&b, &req, &e));
    assert_int_equal(b.len, WIRE_HEADER_SIZE + USER_AT + 12 + 3 * 4);
    wire_reader r;
    wire_frame f;
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    wire_request got;
    assert_true(wire_get_request(&f, &got, &e));
    assert_int_equal(got.flags, WIRE_REQ_USER | WIRE_REQ_CLEAR_ENV);
    assert_int_equal(got.uid, 65534);
    assert_int_equal(got.gid, 65533);
    assert_int_equal(got.ngroups, 3);
    assert_memory_equal(got.groups, groups1, sizeof groups1);
    assert_string_equal(got.env.argv[0], "A=1");
    wire_request_free(&got);
    wire_reader_destroy(&r);
    wire_buf_free(&b);

    /* No groups at all, and no user section without the flag. */
    req.ngroups = 0;
    req.groups = NULL;
    assert_true(wire_put_request(&b, &req, &e));
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    assert_true(wire_get_request(&f, &got, &e));
    assert_int_equal(got.ngroups, 0);
    assert_int_equal(got.uid, 65534);
    wire_request_free(&got);
    wire_reader_destroy(&r);
    wire_buf_free(&b);
    req.flags = WIRE_REQ_CLEAR_ENV;
    assert_true(wire_put_request(&b, &req, &e));
    assert_int_equal(b.len, WIRE_HEADER_SIZE + USER_AT);
    wire_buf_free(&b);

    /* The encoder holds the bound too. */
    uint32_t *many = calloc(WIRE_MAX_GROUPS + 1, sizeof *many);
    req = user_request(argv, env);
    req.ngroups = WIRE_MAX_GROUPS + 1;
    req.groups = many;
    assert_false(wire_put_request(&b, &req, &e));
    assert_non_null(strstr(e.message, "groups"));
    assert_int_equal(b.len, 0);
    req.ngroups = WIRE_MAX_GROUPS; /* the limit itself is fine */
    assert_true(wire_put_request(&b, &req, &e));
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    assert_true(wire_get_request(&f, &got, &e));
    assert_int_equal(got.ngroups, WIRE_MAX_GROUPS);
    wire_request_free(&got);
    wire_reader_destroy(&r);
    wire_buf_free(&b);
    free(many);
}

static void test_request_user_rejections(void **state)
{
    (void)state;
    const char *argv[] = { "id", NULL };
    const char *env[] = { "A=1", NULL };
    wire_request req = user_request(argv, env);
    /* ngroups 257, with the bytes for them present: the bound, not the size. */
    uint32_t *many = calloc(WIRE_MAX_GROUPS + 1, sizeof *many);
    req.ngroups = WIRE_MAX_GROUPS;
    req.groups = many;
    wire_buf b = { 0 };
    assert_true(wire_put_request(&b, &req, NULL));
    wire_buf_u32(&b, 7); /* the 257th group */
    b.data[WIRE_HEADER_SIZE + USER_AT + 8] = 0x01; /* ngroups 256 -> 257 */
    b.data[WIRE_HEADER_SIZE + USER_AT + 9] = 0x01;
    wire_frame f = { WIRE_REQUEST, (uint32_t)(b.len - WIRE_HEADER_SIZE),
                     b.data + WIRE_HEADER_SIZE };
    wire_request got;
    wire_error e;
    assert_false(wire_get_request(&f, &got, &e));
    assert_non_null(strstr(e.message, "257 supplementary groups"));
    wire_buf_free(&b);
    free(many);

    /* A count claiming more groups than the bytes left. */
    req = user_request(argv, env);
    expect_bad_request(&req, USER_AT + 8, 4, "supplementary groups");

    /* Every truncation inside the user section, and the flag without it. */
    assert_true(wire_put_request(&b, &req, NULL));
    size_t full = b.len - WIRE_HEADER_SIZE;
    for (size_t len = USER_AT; len < full; len++) {
        f = (wire_frame){ WIRE_REQUEST, (uint32_t)len, b.data + WIRE_HEADER_SIZE };
        assert_false(wire_get_request(&f, &got, &e));
        if (!strstr(e.message, "ends inside") && !strstr(e.message, "bytes left"))
            fail_msg("length %zu: '%s'", len, e.message);
    }
    /* A trailing byte after the user section. */
    wire_buf_put(&b, "", 1);
    f = (wire_frame){ WIRE_REQUEST, (uint32_t)(full + 1), b.data + WIRE_HEADER_SIZE };
    assert_false(wire_get_request(&f, &got, &e));
    assert_non_null(strstr(e.message, "trailing"));
    /* And the user section without its flag is trailing bytes too. */
    b.data[WIRE_HEADER_SIZE] = WIRE_REQ_CLEAR_ENV;
    f.length = (uint32_t)full;
    assert_false(wire_get_request(&f, &got, &e));
    assert_non_null(strstr(e.message, "trailing"));
    wire_buf_free(&b);

    /* An unknown flag next to the known ones. */
    req = user_request(argv, env);
    expect_bad_request(&req, 0, WIRE_REQ_USER | WIRE_REQ_CLEAR_ENV | 0x20, "unknown flags");
}

static const wire_rlimit limits1[] = {
    { 7, 77, 100 },                   /* RLIMIT_NOFILE */
    { 15, UINT64_MAX, UINT64_MAX },   /* RLIMIT_RTTIME, unlimited */
};

/* The user request with two rlimits and a hostname after its user section:
 * u32 n | n x (u32 resource | u64 soft | u64 hard) | u32 len | name. */
#define RLIMITS_AT (USER_AT + 12 + 3 * 4)
#define HOSTNAME_AT (RLIMITS_AT + 4 + 2 * 20)
static wire_request limits_request(const char **argv, const char **env)
{
    wire_request req = user_request(argv, env);
    req.flags |= WIRE_REQ_RLIMITS | WIRE_REQ_HOSTNAME;
    req.nrlimits = 2;
    req.rlimits = (wire_rlimit *)limits1;
    req.hostname = "box-1.example";
    return req;
}

static void test_request_limits_roundtrip(void **state)
{
    (void)state;
    const char *argv[] = { "id", NULL };
    const char *env[] = { "A=1", NULL };
    wire_request req = limits_request(argv, env);
    wire_buf b = { 0 };
    wire_error e;
    assert_true(wire_put_request(&b, &req, &e));
    assert_int_equal(b.len, WIRE_HEADER_SIZE + HOSTNAME_AT + 4 + 14);
    wire_reader r;
    wire_frame f;
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    wire_request got;
    assert_true(wire_get_request(&f, &got, &e));
    assert_int_equal(got.nrlimits, 2);
    assert_int_equal(got.rlimits[0].resource, 7);
    assert_true(got.rlimits[0].soft == 77 && got.rlimits[0].hard == 100);
    assert_int_equal(got.rlimits[1].resource, 15);
    assert_true(got.rlimits[1].soft == UINT64_MAX && got.rlimits[1].hard == UINT64_MAX);
    assert_string_equal(got.hostname, "box-1.example");
    assert_int_equal(got.uid, 65534);
    wire_request_free(&got);
    wire_reader_destroy(&r);
    wire_buf_free(&b);

    /* Each section alone, without a user; the longest hostname; 16 limits. */
    wire_rlimit all[WIRE_MAX_RLIMITS];
    for (uint32_t i = 0; i < WIRE_MAX_RLIMITS; i++)
        all[i] = (wire_rlimit){ i, i, 2 * i };
    char longest[WIRE_MAX_HOSTNAME + 1];
    memset(longest, 'a', WIRE_MAX_HOSTNAME);
    longest[WIRE_MAX_HOSTNAME] = 0;
    for (int round = 0; round < 2; round++) {
        req = limits_request(argv, env);
        req.flags = round ? WIRE_REQ_HOSTNAME : WIRE_REQ_RLIMITS;
        req.nrlimits = WIRE_MAX_RLIMITS;
        req.rlimits = all;
        req.hostname = longest;
        assert_true(wire_put_request(&b, &req, &e));
        one_frame(&r, WIRE_AT_AGENT, &b, &f);
        assert_true(wire_get_request(&f, &got, &e));
        assert_int_equal(got.nrlimits, round ? 0 : WIRE_MAX_RLIMITS);
        if (round)
            assert_string_equal(got.hostname, longest);
        else
            assert_true(!got.hostname && got.rlimits[15].hard == 30);
        wire_request_free(&got);
        wire_reader_destroy(&r);
        wire_buf_free(&b);
    }

    /* The encoder holds every rule the decoder does. */
    struct { wire_rlimit r[2]; uint32_t n; const char *name, *needle; } bad[] = {
        { { { 7, 1, 2 } }, 0, "h", "0 resource limits" },
        { { { 16, 1, 2 } }, 1, "h", "resource 16" },
        { { { 7, 3, 2 } }, 1, "h", "above the hard" },
        { { { 7, 1, 2 }, { 7, 1, 3 } }, 2, "h", "twice" },
        { { { 7, 1, 2 } }, 1, "", "hostname" },
        { { { 7, 1, 2 } }, 1, "a_b", "hostname" },
        { { { 7, 1, 2 } }, 1, "a b", "hostname" },
        { { { 7, 1, 2 } }, 1, NULL, "hostname" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        req = limits_request(argv, env);
        req.rlimits = bad[i].r;
        req.nrlimits = bad[i].n;
        req.hostname = bad[i].name;
        assert_false(wire_put_request(&b, &req, &e));
        if (!strstr(e.message, bad[i].needle))
            fail_msg("case %zu: '%s' does not mention '%s'", i, e.message, bad[i].needle);
        assert_int_equal(b.len, 0);
    }
    char too_long[WIRE_MAX_HOSTNAME + 2];
    memset(too_long, 'a', WIRE_MAX_HOSTNAME + 1);
    too_long[WIRE_MAX_HOSTNAME + 1] = 0;
    req = limits_request(argv, env);
    req.hostname = too_long;
    assert_false(wire_put_request(&b, &req, &e));
    assert_false(wire_hostname_ok(too_long));
    assert_true(wire_hostname_ok(longest));
    assert_true(wire_hostname_ok("A.b-9"));
    wire_buf_free(&b);
}

static void test_request_limits_rejections(void **state)
{
    (void)state;
    const char *argv[] = { "id", NULL };
    const char *env[] = { "A=1", NULL };
    wire_request req = limits_request(argv, env);
    /* The count: 0, 17 (bytes present for neither), and more than the bytes left. */
    expect_bad_request(&req, RLIMITS_AT, 0, "0 resource limits");
    expect_bad_request(&req, RLIMITS_AT, 17, "17 resource limits");
    expect_bad_request(&req, RLIMITS_AT, 3, "3 resource limits");
    /* A resource beyond 15, the same resource twice, soft above hard. */
    expect_bad_request(&req, RLIMITS_AT + 4, 16, "resource 16");
    expect_bad_request(&req, RLIMITS_AT + 4 + 20, 7, "limited twice");
    expect_bad_request(&req, RLIMITS_AT + 4 + 4, 101, "above the hard");
    /* The hostname: length 0, 66 (65 bytes and the NUL), a bad byte, no NUL. */
    expect_bad_request(&req, HOSTNAME_AT, 0, "hostname length 0");
    expect_bad_request(&req, HOSTNAME_AT, WIRE_MAX_HOSTNAME + 2, "hostname length 66");
    expect_bad_request(&req, HOSTNAME_AT + 4 + 3, '_', "hostname 'box_1");
    expect_bad_request(&req, HOSTNAME_AT + 4 + 3, 0, "NUL-terminated");
    expect_bad_request(&req, HOSTNAME_AT + 4 + 13, 'x', "NUL-terminated");

    /* Every truncation inside the two sections. */
    wire_buf b = { 0 };
    wire_request got;
    wire_error e;
    assert_true(wire_put_request(&b, &req, NULL));
    size_t full = b.len - WIRE_HEADER_SIZE;
    wire_frame f;
    for (size_t len = RLIMITS_AT; len < full; len++) {
        f = (wire_frame){ WIRE_REQUEST, (uint32_t)len, b.data + WIRE_HEADER_SIZE };
        assert_false(wire_get_request(&f, &got, &e));
        if (!strstr(e.message, "ends inside") && !strstr(e.message, "bytes left"))
            fail_msg("length %zu: '%s'", len, e.message);
    }
    /* A trailing byte; the sections without their flags are trailing bytes. */
    wire_buf_put(&b, "", 1);
    f = (wire_frame){ WIRE_REQUEST, (uint32_t)(full + 1), b.data + WIRE_HEADER_SIZE };
    assert_false(wire_get_request(&f, &got, &e));
    assert_non_null(strstr(e.message, "trailing"));
    f.length = (uint32_t)full;
    b.data[WIRE_HEADER_SIZE] = WIRE_REQ_USER | WIRE_REQ_CLEAR_ENV | WIRE_REQ_RLIMITS;
    assert_false(wire_get_request(&f, &got, &e));
    assert_non_null(strstr(e.message, "trailing"));
    /* Without RLIMITS the hostname's length is read as an rlimit count. */
    b.data[WIRE_HEADER_SIZE] = WIRE_REQ_USER | WIRE_REQ_CLEAR_ENV | WIRE_REQ_HOSTNAME;
    assert_false(wire_get_request(&f, &got, &e));
    wire_buf_free(&b);
}

static void test_request_encoder_limits(void **state)
{
    (void)state;
    wire_buf b = { 0 };
    wire_error e;
    const char *empty[] = { NULL };
    wire_request req = { .argv = { 0, empty }, .cwd = "" };
    assert_false(wire_put_request(&b, &req, &e));
    assert_non_null(strstr(e.message, "empty"));
    assert_int_equal(b.len, 0);

    const char **many = calloc(WIRE_MAX_ARGS + 2, sizeof *many);
    for (size_t i = 0; i < WIRE_MAX_ARGS + 1; i++)
        many[i] = "a";
    req.argv = (wire_argv){ WIRE_MAX_ARGS + 1, many };
    assert_false(wire_put_request(&b, &req, &e));
    assert_non_null(strstr(e.message, "limit"));
    free(many);

    const char *argv[] = { "x", NULL };
    size_t big = WIRE_MAX_REQUEST;
    uint8_t *data = calloc(1, big);
    wire_file file = { "/big", data, (uint32_t)big, 0644 };
    req = (wire_request){ .argv = { 1, argv }, .cwd = "", .nfiles = 1, .files = &file };
    assert_false(wire_put_request(&b, &req, &e));
    assert_non_null(strstr(e.message, "exceeds"));
    assert_int_equal(b.len, 0);

    wire_file rel = { "tmp/x", NULL, 0, 0644 };
    req = (wire_request){ .argv = { 1, argv }, .cwd = "", .nfiles = 1, .files = &rel };
    assert_false(wire_put_request(&b, &req, &e));
    assert_non_null(strstr(e.message, "absolute"));

    assert_false(wire_put_signal(&b, 0, &e));
    assert_false(wire_put_signal(&b, 65, &e));
    assert_false(wire_put_data(&b, WIRE_STDIN, data, WIRE_MAX_DATA + 1, &e));
    free(data);
    wire_buf_free(&b);
}

static void test_small_frames_roundtrip(void **state)
{
    (void)state;
    wire_buf b = { 0 };
    wire_error e;
    wire_reader r;
    wire_frame f;

    wire_exit x = { .code = -1, .signal = 9, .timed_out = true, .steps_run = 2,
                       .duration_us = 500123, .peak_rss_kib = 4096 };
    assert_true(wire_put_exit(&b, &x, &e));
    one_frame(&r, WIRE_AT_HOST, &b, &f);
    wire_exit gx;
    assert_true(wire_get_exit(&f, &gx, &e));
    assert_int_equal(gx.code, -1);
    assert_int_equal(gx.signal, 9);
    assert_true(gx.timed_out);
    assert_int_equal(gx.steps_run, 2);
    assert_int_equal(gx.duration_us, 500123);
    assert_int_equal(gx.peak_rss_kib, 4096);
    wire_reader_destroy(&r);

    /* A code together with a signal is inconsistent. */
    b.len = 0;
    x.code = 3;
    assert_true(wire_put_exit(&b, &x, &e));
    one_frame(&r, WIRE_AT_HOST, &b, &f);
    assert_false(wire_get_exit(&f, &gx, &e));
    wire_reader_destroy(&r);

    b.len = 0;
    assert_true(wire_put_error(&b, WIRE_ERR_STAGE, "cannot write /x", &e));
    one_frame(&r, WIRE_AT_HOST, &b, &f);
    wire_errmsg m;
    assert_true(wire_get_error(&f, &m, &e));
    assert_int_equal(m.kind, WIRE_ERR_STAGE);
    assert_string_equal(m.message, "cannot write /x");
    wire_reader_destroy(&r);

    b.len = 0;
    assert_true(wire_put_signal(&b, 15, &e));
    assert_true(wire_put_resize(&b, 300, 70, &e));
    wire_file_head wh = { .mode = 0640, .size = 1ull << 31, .path = "/data/x" };
    assert_true(wire_put_file_head(&b, WIRE_WRITE_FILE, &wh, &e));
    wire_reader_init(&r, WIRE_AT_AGENT);
    assert_true(wire_reader_feed(&r, b.data, b.len, &e));
    int signo;
    assert_int_equal(wire_reader_next(&r, &f, &e), 1);
    assert_true(wire_get_signal(&f, &signo, &e));
    assert_int_equal(signo, 15);
    uint16_t cols, rows;
    assert_int_equal(wire_reader_next(&r, &f, &e), 1);
    assert_true(wire_get_resize(&f, &cols, &rows, &e));
    assert_int_equal(cols, 300);
    assert_int_equal(rows, 70);
    wire_file_head gh;
    assert_int_equal(wire_reader_next(&r, &f, &e), 1);
    assert_true(wire_get_file_head(&f, &gh, &e));
    assert_int_equal(gh.mode, 0640);
    assert_int_equal(gh.size, 1ull << 31);
    assert_string_equal(gh.path, "/data/x");
    wire_reader_destroy(&r);

    wh.size = WIRE_MAX_FILE_SIZE + 1;
    assert_false(wire_put_file_head(&b, WIRE_WRITE_FILE, &wh, &e));

    /* NETCONF: one byte, 0 or 1; anything else is refused. */
    b.len = 0;
    assert_true(wire_put_netconf(&b, true, &e));
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    bool on = false;
    assert_true(wire_netconf_decode(f.payload, f.length, &on, &e));
    assert_true(on);
    wire_reader_destroy(&r);
    const uint8_t two = 2, zero = 0;
    assert_false(wire_netconf_decode(&two, 1, &on, &e));
    assert_true(wire_netconf_decode(&zero, 1, &on, &e));
    assert_false(on);
    assert_false(wire_netconf_decode(&zero, 0, &on, &e));

    /* CONNECT: a port 1..65535 and a zero reserved field, nothing else. */
    b.len = 0;
    assert_true(wire_put_connect(&b, 8080, &e));
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    uint16_t port = 0;
    assert_true(wire_connect_decode(f.payload, f.length, &port, &e));
    assert_int_equal(port, 8080);
    wire_reader_destroy(&r);
    const uint8_t port0[4] = { 0, 0, 0, 0 }, reserved[4] = { 80, 0, 1, 0 }, good[4] = { 0xff, 0xff, 0, 0 };
    assert_false(wire_connect_decode(port0, 4, &port, &e));
    assert_false(wire_connect_decode(reserved, 4, &port, &e));
    assert_false(wire_connect_decode(good, 3, &port, &e));
    assert_true(wire_connect_decode(good, 4, &port, &e));
    assert_int_equal(port, 65535);
    wire_buf_free(&b);
}

/* A stream with a bad frame in the middle stops there, with a message. */
/* VOLUME: slot, flags and path round trip; every bound is checked on both
 * sides (a host library bug must not reach the agent, nor a forged frame
 * pass the agent's decoder). */
static void test_volume_frame(void **state)
{
    (void)state;
    wire_buf b = { 0 };
    wire_error e;
    wire_reader r;
    wire_frame f;
    wire_volume v = { .slot = 3, .read_only = true, .path = "/data/set" }, got;
    assert_true(wire_put_volume(&b, &v, &e));
    one_frame(&r, WIRE_AT_AGENT, &b, &f);
    assert_int_equal(f.type, WIRE_VOLUME);
    assert_true(wire_get_volume(&f, &got, &e));
    assert_int_equal(got.slot, 3);
    assert_true(got.read_only);
    assert_string_equal(got.path, "/data/set");
    wire_reader_destroy(&r);
    wire_buf_free(&b);

    const wire_volume bad[] = { { 4, false, "/x" }, { 0, false, "x" }, { 0, false, "" } };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wire_buf bb = { 0 };
        assert_false(wire_put_volume(&bb, &bad[i], &e));
        wire_buf_free(&bb);
    }
    /* Forged payloads: slot out of range, an unknown flag, a relative path,
     * a string without its NUL, trailing bytes. */
    const struct { uint8_t bytes[24]; uint32_t len; } forged[] = {
        { { 4, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, '/', 'x', 0 }, 15 },
        { { 0, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, '/', 'x', 0 }, 15 },
        { { 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 'x', 0 }, 14 },
        { { 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, '/', 'x' }, 14 },
        { { 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, '/', 'x', 0, 9 }, 16 },
    };
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        wire_frame ff = { .type = WIRE_VOLUME, .length = forged[i].len, .payload = forged[i].bytes };
        assert_false(wire_get_volume(&ff, &got, &e));
    }
    /* and a host never receives one */
    uint8_t h[WIRE_HEADER_SIZE];
    wire_header out;
    wire_header_encode(h, WIRE_VOLUME, 15);
    assert_false(wire_header_decode(h, WIRE_AT_HOST, &out, &e));
}

static void test_reader_stops_at_bad_frame(void **state)
{
    (void)state;
    wire_buf b = { 0 };
    wire_error e;
    assert_true(wire_put_data(&b, WIRE_STDOUT, "a", 1, &e));
    uint8_t bad[WIRE_HEADER_SIZE];
    wire_header_encode(bad, WIRE_REQUEST, 0); /* host-bound reader: wrong way */
    wire_buf_put(&b, bad, sizeof bad);
    wire_reader r;
    wire_reader_init(&r, WIRE_AT_HOST);
    assert_true(wire_reader_feed(&r, b.data, b.len, &e));
    wire_frame f;
    assert_int_equal(wire_reader_next(&r, &f, &e), 1);
    assert_int_equal(wire_reader_next(&r, &f, &e), -1);
    assert_non_null(strstr(e.message, "REQUEST"));
    wire_reader_destroy(&r);
    wire_buf_free(&b);
}

/* A header that claims a big frame does not make the reader allocate it:
 * memory follows the bytes that arrive. The frame still assembles whole. */
static void test_reader_grows_with_data(void **state)
{
    (void)state;
    wire_reader r;
    wire_error e;
    wire_reader_init(&r, WIRE_AT_AGENT);
    uint8_t h[WIRE_HEADER_SIZE];
    uint32_t len = 48u << 20;
    wire_header_encode(h, WIRE_REQUEST, len);
    assert_true(wire_reader_feed(&r, h, sizeof h, &e));
    size_t avail;
    assert_non_null(wire_reader_space(&r, 64 << 10, &avail));
    assert_true(r.cap <= (2u << 20));
    static uint8_t chunk[64 << 10];
    size_t fed = 0;
    wire_frame f;
    while (fed < len) {
        size_t n = len - fed < sizeof chunk ? len - fed : sizeof chunk;
        assert_true(wire_reader_feed(&r, chunk, n, &e));
        fed += n;
        assert_true(r.cap <= 2 * (fed + WIRE_HEADER_SIZE) + (2u << 20));
        if (fed < len)
            assert_int_equal(wire_reader_next(&r, &f, &e), 0);
    }
    assert_int_equal(wire_reader_next(&r, &f, &e), 1);
    assert_int_equal(f.length, len);
    assert_true(r.cap <= (size_t)len + WIRE_HEADER_SIZE + (64u << 10));
    wire_reader_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_checks),
        cmocka_unit_test(test_reader_byte_by_byte),
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_request_roundtrip),
        cmocka_unit_test(test_request_truncations),
        cmocka_unit_test(test_request_bad_fields),
        cmocka_unit_test(test_request_user_roundtrip),
        cmocka_unit_test(test_request_user_rejections),
        cmocka_unit_test(test_request_limits_roundtrip),
        cmocka_unit_test(test_request_limits_rejections),
        cmocka_unit_test(test_request_encoder_limits),
        cmocka_unit_test(test_small_frames_roundtrip),
        cmocka_unit_test(test_volume_frame),
        cmocka_unit_test(test_reader_stops_at_bad_frame),
        cmocka_unit_test(test_reader_grows_with_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
