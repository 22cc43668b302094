/*
 * libFuzzer target: what sm_exec_output and sm_exec_read_file make of a
 * hostile agent's answer. The input is a script that builds the stream an
 * agent sends: HELLO, then STDOUT, STDERR, EXIT, ERROR, FILE_INFO,
 * FILE_DATA, FILE_END and OK frames, raw headers and junk, with payloads up
 * to the protocol's maximum (WIRE_MAX_DATA: a few input bytes make a 1 MiB
 * frame). The stream goes through the library's frame reader (fed, no
 * socket) into the very code the two calls collect with (exec_collect,
 * exec_receive_file), and a model of the stream checks the result:
 *
 *   output     never more than the cap, stdout and stderr together; what is
 *              kept is a prefix of what was sent, NUL-terminated; the cap
 *              exceeded -> SM_E_LIMIT with exactly the cap kept; a valid
 *              EXIT within the cap -> SM_OK with everything
 *   read_file  SM_OK only with FILE_INFO's size (<= max_len) made of exactly
 *              the bytes sent, NUL-terminated; a size over max_len ->
 *              SM_E_LIMIT; nothing handed out on a failure; and no
 *              allocation for a size that merely is announced
 *
 *   build/fuzz/fuzz_exec_collect -max_total_time=20 fuzz/corpus/fuzz_exec_collect
 */
#include "lib/exec_internal.h"
#include "protocol/wire.h"
#include "script.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STREAM_MAX (8u << 20) /* per input: a few maximal frames, and fast */

/* Script header flags. */
#define F_READ_FILE 0x01 /* drive exec_receive_file, not exec_collect */
#define F_NO_HELLO  0x02 /* the script sends its own first frame */

/* Frame opcodes. */
enum { OP_STDOUT, OP_STDERR, OP_EXIT, OP_ERROR, OP_FILE_INFO, OP_FILE_DATA, OP_FILE_END, OP_OK,
       OP_RAW_HEADER, OP_JUNK, OP_COUNT };

/* What the collector must do with the stream, decided frame by frame. */
enum expect { E_MORE, E_OK, E_LIMIT, E_FAIL };

typedef struct model {
    bool exact;          /* every frame is one the model understands */
    bool read_file;
    size_t limit;        /* max_output, or read_file's max_len */
    enum expect end;
    /* output */
    wire_buf out, err;   /* what the agent sent on each stream, in order */
    /* read_file */
    bool have_info;
    uint64_t size;
    wire_buf file;
} model;

static wire_buf stream;
/* Payloads are windows of one varied pattern, made once: generating 1 MiB
 * per frame would spend the fuzzer's time on the fixture. */
static uint8_t pattern[2 * WIRE_MAX_DATA];

/* ---- the model ---------------------------------------------------------------- */

static void model_output(model *m, uint8_t type, const uint8_t *p, uint32_t len)
{
    if (type == WIRE_STDOUT || type == WIRE_STDERR) {
        size_t room = m->limit - (m->out.len + m->err.len);
        if (len > room) { /* the frame is cut at the cap, and that is the end */
            m->end = E_LIMIT;
            len = (uint32_t)room;
        }
        wire_buf_put(type == WIRE_STDOUT ? &m->out : &m->err, p, len);
        return;
    }
    if (type == WIRE_EXIT) {
        wire_frame f = { .type = type, .length = len, .payload = p };
        wire_exit x;
        m->end = wire_get_exit(&f, &x, NULL) ? E_OK : E_FAIL;
        return;
    }
    m->end = E_FAIL; /* ERROR, or a frame output does not take */
}

static void model_read_file(model *m, uint8_t type, const uint8_t *p, uint32_t len)
{
    if (!m->have_info) {
        wire_frame f = { .type = type, .length = len, .payload = p };
        wire_file_head h;
        if (type != WIRE_FILE_INFO || !wire_get_file_head(&f, &h, NULL)) {
            m->end = E_FAIL;
            return;
        }
        m->have_info = true;
        m->size = h.size;
        if (h.size > m->limit)
            m->end = E_LIMIT;
        return;
    }
    if (type == WIRE_FILE_DATA && len <= m->size - m->file.len)
        wire_buf_put(&m->file, p, len);
    else if (type == WIRE_FILE_END)
        m->end = m->file.len == m->size ? E_OK : E_FAIL;
    else
        m->end = E_FAIL;
}

/* One whole frame went into the stream. */
static void model_frame(model *m, uint8_t type, const uint8_t *p, uint32_t len)
{
    if (!m->exact || m->end != E_MORE)
        return;
    if (m->read_file)
        model_read_file(m, type, p, len);
    else
        model_output(m, type, p, len);
}

/* ---- building the stream ------------------------------------------------------- */

static bool room_for(size_t len)
{
    return stream.len + WIRE_HEADER_SIZE + len <= STREAM_MAX;
}

static void put_frame(model *m, uint8_t type, const uint8_t *p, uint32_t len)
{
    uint8_t h[WIRE_HEADER_SIZE];
    wire_header_encode(h, type, len);
    wire_buf_put(&stream, h, sizeof h);
    wire_buf_put(&stream, p, len);
    model_frame(m, type, p, len);
}

/* A payload length: small, the maximum, anything up to it, or just under it. */
static uint32_t data_length(uint32_t raw)
{
    switch (raw >> 30) {
    case 0: return raw % 64;
    case 1: return WIRE_MAX_DATA;
    case 2: return raw % (WIRE_MAX_DATA + 1);
    default: return WIRE_MAX_DATA - raw % 16;
    }
}

static bool op_data(struct fuzz_script *s, model *m, uint8_t type)
{
    uint32_t raw;
    uint8_t seed;
    if (!script_take(s, &raw, sizeof raw) || !script_take(s, &seed, 1))
        return false;
    uint32_t len = data_length(raw);
    if (!room_for(len))
        return false;
    put_frame(m, type, pattern + (size_t)seed * 4099u, len);
    return true;
}

static bool op_exit(struct fuzz_script *s, model *m)
{
    uint8_t sel, v;
    if (!script_take(s, &sel, 1))
        return false;
    if (sel & 1) { /* 32 bytes as they come: the decoder judges them */
        uint8_t raw[32];
        if (!script_take(s, raw, sizeof raw))
            return false;
        put_frame(m, WIRE_EXIT, raw, sizeof raw);
        return true;
    }
    if (!script_take(s, &v, 1))
        return false;
    wire_exit x = { .code = v, .timed_out = sel & 2, .steps_run = sel >> 4, .duration_us = v };
    if (sel & 4) {
        x.code = -1;
        x.signal = 1 + v % 64;
    }
    wire_buf b = { 0 };
    if (wire_put_exit(&b, &x, NULL))
        put_frame(m, WIRE_EXIT, b.data + WIRE_HEADER_SIZE, (uint32_t)(b.len - WIRE_HEADER_SIZE));
    wire_buf_free(&b);
    return true;
}

static bool op_error(struct fuzz_script *s, model *m)
{
    uint8_t kind, n;
    char msg[256];
    if (!script_take(s, &kind, 1) || !script_take(s, &n, 1) || !script_take(s, msg, n))
        return false;
    for (size_t i = 0; i < n; i++)
        msg[i] = msg[i] ? msg[i] : 'x';
    msg[n] = 0;
    wire_buf b = { 0 };
    if (wire_put_error(&b, kind, msg, NULL))
        put_frame(m, WIRE_ERROR, b.data + WIRE_HEADER_SIZE, (uint32_t)(b.len - WIRE_HEADER_SIZE));
    wire_buf_free(&b);
    return true;
}

/* A size up to the protocol's limit (4 GiB), so that a claim far larger
 * than what follows is tried too. */
static bool op_file_info(struct fuzz_script *s, model *m)
{
    uint32_t raw;
    uint8_t shift;
    uint16_t mode;
    if (!script_take(s, &raw, sizeof raw) || !script_take(s, &shift, 1) ||
        !script_take(s, &mode, sizeof mode))
        return false;
    uint64_t size = (uint64_t)raw >> (shift % 33);
    if (shift & 0x80)
        size = WIRE_MAX_FILE_SIZE - (raw & 0xff);
    wire_file_head h = { .mode = mode & 07777u, .size = size };
    wire_buf b = { 0 };
    if (wire_put_file_head(&b, WIRE_FILE_INFO, &h, NULL))
        put_frame(m, WIRE_FILE_INFO, b.data + WIRE_HEADER_SIZE, (uint32_t)(b.len - WIRE_HEADER_SIZE));
    wire_buf_free(&b);
    return true;
}

/* Bytes the model does not follow: a header of any type and length, or junk. */
static bool op_raw(struct fuzz_script *s, model *m, bool header)
{
    uint8_t n = WIRE_HEADER_SIZE, bytes[256];
    if (!header && !script_take(s, &n, 1))
        return false;
    if (!script_take(s, bytes, n))
        return false;
    wire_buf_put(&stream, bytes, n);
    m->exact = false;
    return true;
}

static bool op_one(struct fuzz_script *s, model *m)
{
    uint8_t op;
    if (!script_take(s, &op, 1))
        return false;
    switch (op % OP_COUNT) {
    case OP_STDOUT: return op_data(s, m, WIRE_STDOUT);
    case OP_STDERR: return op_data(s, m, WIRE_STDERR);
    case OP_FILE_DATA: return op_data(s, m, WIRE_FILE_DATA);
    case OP_EXIT: return op_exit(s, m);
    case OP_ERROR: return op_error(s, m);
    case OP_FILE_INFO: return op_file_info(s, m);
    case OP_FILE_END: put_frame(m, WIRE_FILE_END, NULL, 0); return true;
    case OP_OK: put_frame(m, WIRE_OK, NULL, 0); return true;
    case OP_RAW_HEADER: return op_raw(s, m, true);
    default: return op_raw(s, m, false);
    }
}

/* The caller's limit: around the stream's size, none, anything, or tiny. */
static size_t pick_limit(uint8_t flags, uint32_t raw)
{
    switch ((flags >> 2) & 3) {
    case 0: return raw % (STREAM_MAX + 2);
    case 1: return SIZE_MAX;
    case 2: return raw;
    default: return raw % 64;
    }
}

/* ---- the checks ------------------------------------------------------------------- */

static void check_stream(const uint8_t *got, size_t len, const wire_buf *sent, bool exact)
{
    if (len && !got)
        abort();
    if (got && got[len] != 0)
        abort(); /* NUL-terminated, and ASan checks the byte is inside the buffer */
    if (exact && (len > sent->len || (len && memcmp(got, sent->data, len))))
        abort(); /* kept a byte that was not sent, or out of order */
}

/* The library's own limit, told from an agent's ERROR of kind LIMIT (whose
 * message, the fuzzer's, comes after "the agent refused: "). */
static bool is_own_limit(sm_code rc, const sm_error *err, const char *start)
{
    return rc == SM_E_LIMIT && !strncmp(err->message, start, strlen(start));
}

static bool is_cap_error(sm_code rc, const sm_error *err)
{
    return is_own_limit(rc, err, "the command printed more than the output cap");
}

static void check_output(const model *m, agent_reader *r)
{
    sm_exec_outcome out;
    memset(&out, 0, sizeof out);
    sm_error err = { 0 };
    sm_code rc = exec_collect(r, m->limit, -1, 0, &out, &err);
    size_t kept = out.stdout_len + out.stderr_len;
    if (kept > m->limit || (rc && !err.message[0]))
        abort();
    check_stream(out.stdout_buf, out.stdout_len, &m->out, m->exact);
    check_stream(out.stderr_buf, out.stderr_len, &m->err, m->exact);
    if (is_cap_error(rc, &err) && kept != m->limit)
        abort(); /* over the cap: exactly the cap is kept */
    if (rc == SM_OK && (unsigned)sm_exec_status_shell_code(&out.status) > 255u + 128u)
        abort();
    if (m->exact) {
        enum expect end = m->end == E_MORE ? E_FAIL : m->end; /* the stream ended early */
        if ((end == E_OK) != (rc == SM_OK) || (end == E_LIMIT) != is_cap_error(rc, &err))
            abort();
        if ((end == E_OK || end == E_LIMIT) &&
            (out.stdout_len != m->out.len || out.stderr_len != m->err.len))
            abort(); /* everything sent, or exactly what the cap let through */
    }
    sm_exec_outcome_free(&out);
}

static void check_read_file(const model *m, agent_reader *r)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    sm_error err = { 0 };
    sm_code rc = exec_receive_file(r, "/fuzz", m->limit, &bytes, &len, &err);
    if (rc) {
        if (bytes || len || !err.message[0])
            abort(); /* nothing handed out on a failure */
        if (m->exact && (m->end == E_OK ||
                         (m->end == E_LIMIT) != is_own_limit(rc, &err, "read_file: /fuzz is ")))
            abort();
        return;
    }
    if (!bytes || len > m->limit || bytes[len] != 0)
        abort();
    if (m->exact && (m->end != E_OK || len != m->size || len != m->file.len ||
                     (len && memcmp(bytes, m->file.data, len))))
        abort();
    free(bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_script s = { data, size };
    uint8_t flags;
    uint32_t raw_limit;
    if (!script_take(&s, &flags, 1) || !script_take(&s, &raw_limit, sizeof raw_limit))
        return 0;
    if (!pattern[1])
        for (size_t i = 0; i < sizeof pattern; i++)
            pattern[i] = (uint8_t)(i * 131u + (i >> 8) + 1);
    model m = { .exact = !(flags & F_NO_HELLO), .read_file = flags & F_READ_FILE,
                .limit = pick_limit(flags, raw_limit) };
    stream.len = 0;
    if (!(flags & F_NO_HELLO))
        wire_put_hello(&stream, NULL);
    while (op_one(&s, &m))
        ;
    if (stream.failed)
        abort();
    agent_reader r;
    agent_reader_init(&r, -1, "fuzz");
    if (!wire_reader_feed(&r.rd, stream.data, stream.len, NULL))
        abort();
    if (m.read_file)
        check_read_file(&m, &r);
    else
        check_output(&m, &r);
    agent_reader_destroy(&r);
    wire_buf_free(&m.out);
    wire_buf_free(&m.err);
    wire_buf_free(&m.file);
    return 0;
}
