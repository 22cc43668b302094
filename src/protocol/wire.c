/*
 * The exec wire protocol: frame table, encoders and bounded decoders. Shared
 * by the host library (src/lib/exec*.c) and the guest agent (src/agent).
 *
 * Version 1. Header: u32 length | u8 type | u8 flags (0) | u16 reserved (0).
 *
 *  type name         dir  payload                                      max payload
 *  0x01 HELLO        both u32 magic "SMEX" | u16 version | u16 0         8 (exact)
 *  0x02 REQUEST      h->a see wire_request in wire.h                 64 MiB
 *  0x03 STDIN        h->a bytes for the command's stdin                 1 MiB
 *  0x04 STDIN_CLOSE  h->a (empty): close the command's stdin            0
 *  0x05 SIGNAL       h->a u32 signo (1..64): kill(-pgid, signo)          4 (exact)
 *  0x06 RESIZE       h->a u16 cols | u16 rows (tty only)                4 (exact)
 *  0x07 POWEROFF     h->a (empty); honoured only by PID 1; reply OK      0
 *  0x08 WRITE_FILE   h->a u32 mode | u64 size | path string             12+4+4096
 *  0x09 READ_FILE    h->a path string                                   4+4096
 *  0x0a FILE_DATA    both bytes of the file being transferred           1 MiB
 *  0x0b FILE_END     both (empty): end of the file's bytes              0
 *  0x0c SYNC         h->a u64 realtime ns | 64 bytes entropy; PID 1     72 (exact)
 *                         of a guest sets its clock, reseeds; reply OK
 *  0x0d NETCONF      h->a u8 1 (on) or 0 (off): PID 1 of a guest        1 (exact)
 *                         brings eth0 up, configured, or down; reply OK
 *  0x0e CONNECT      h->a u16 port (1..65535) | u16 0: the agent          4 (exact)
 *                         connects to the guest's 127.0.0.1:port; reply
 *                         OK, then raw bytes both ways (no more frames)
 *  0x0f VOLUME       h->a u32 slot | u32 flags (1: read-only) | path     8+4+4096
 *                         string: PID 1 of a guest mounts volume slot's
 *                         disk there (protocol/guest_abi.h); reply OK
 *  0x10 STDOUT       a->h bytes the command wrote to stdout (or pty)    1 MiB
 *  0x11 STDERR       a->h bytes the command wrote to stderr             1 MiB
 *  0x12 EXIT         a->h see wire_exit; the last frame of an exec   32 (exact)
 *  0x13 ERROR        a->h u32 kind | message string; then the agent     8+1024
 *                         closes the connection
 *  0x14 OK           a->h (empty): WRITE_FILE stored, POWEROFF accepted 0
 *  0x15 FILE_INFO    a->h u32 mode | u64 size (reply to READ_FILE)      12 (exact)
 *
 * Conversation: each side sends HELLO first; then the host sends exactly one
 * of REQUEST (followed by any of STDIN, STDIN_CLOSE, SIGNAL, RESIZE, answered
 * by STDOUT/STDERR then EXIT, or ERROR), WRITE_FILE (+FILE_DATA..., FILE_END,
 * answered by OK or ERROR), READ_FILE (answered by FILE_INFO, FILE_DATA...,
 * FILE_END, or ERROR), POWEROFF, SYNC or NETCONF (each answered by OK or
 * ERROR), VOLUME (answered by OK or ERROR), or CONNECT (answered by OK, after which the stream is the guest
 * port's, or by ERROR). A header with an unknown type, wrong direction, non-zero flags/reserved or a length over the
 * type's limit ends the connection; so does a payload that does not decode
 * exactly (no trailing bytes).
 */
#include "protocol/wire.h"
#include "protocol/guest_abi.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AT_AGENT 1
#define AT_HOST  2
#define BOTH     (AT_AGENT | AT_HOST)

struct frame_rule {
    const char *name;
    int towards;      /* which readers accept it */
    uint32_t max;     /* payload limit */
    int32_t exact;    /* exact payload size, or -1 */
};

#define STR_MAX(n) (4u + (n))
static const struct frame_rule rules[256] = {
    [WIRE_HELLO]       = { "HELLO", BOTH, 8, 8 },
    [WIRE_REQUEST]     = { "REQUEST", AT_AGENT, WIRE_MAX_REQUEST, -1 },
    [WIRE_STDIN]       = { "STDIN", AT_AGENT, WIRE_MAX_DATA, -1 },
    [WIRE_STDIN_CLOSE] = { "STDIN_CLOSE", AT_AGENT, 0, 0 },
    [WIRE_SIGNAL]      = { "SIGNAL", AT_AGENT, 4, 4 },
    [WIRE_RESIZE]      = { "RESIZE", AT_AGENT, 4, 4 },
    [WIRE_POWEROFF]    = { "POWEROFF", AT_AGENT, 0, 0 },
    [WIRE_WRITE_FILE]  = { "WRITE_FILE", AT_AGENT, 12 + STR_MAX(WIRE_MAX_PATH), -1 },
    [WIRE_READ_FILE]   = { "READ_FILE", AT_AGENT, STR_MAX(WIRE_MAX_PATH), -1 },
    [WIRE_SYNC]        = { "SYNC", AT_AGENT, WIRE_SYNC_SIZE, WIRE_SYNC_SIZE },
    [WIRE_NETCONF]     = { "NETCONF", AT_AGENT, WIRE_NETCONF_SIZE, WIRE_NETCONF_SIZE },
    [WIRE_CONNECT]     = { "CONNECT", AT_AGENT, WIRE_CONNECT_SIZE, WIRE_CONNECT_SIZE },
    [WIRE_VOLUME]      = { "VOLUME", AT_AGENT, 8 + STR_MAX(WIRE_MAX_PATH), -1 },
    [WIRE_FILE_DATA]   = { "FILE_DATA", BOTH, WIRE_MAX_DATA, -1 },
    [WIRE_FILE_END]    = { "FILE_END", BOTH, 0, 0 },
    [WIRE_STDOUT]      = { "STDOUT", AT_HOST, WIRE_MAX_DATA, -1 },
    [WIRE_STDERR]      = { "STDERR", AT_HOST, WIRE_MAX_DATA, -1 },
    [WIRE_EXIT]        = { "EXIT", AT_HOST, 32, 32 },
    [WIRE_ERROR]       = { "ERROR", AT_HOST, 4 + STR_MAX(WIRE_MAX_MESSAGE), -1 },
    [WIRE_OK]          = { "OK", AT_HOST, 0, 0 },
    [WIRE_FILE_INFO]   = { "FILE_INFO", AT_HOST, 12, 12 },
};

static bool fail(wire_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(wire_error *e, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        va_end(ap);
    }
    return false;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

/* ---- header ---------------------------------------------------------- */

const char *wire_type_name(uint8_t type)
{
    return rules[type].name ? rules[type].name : "unknown";
}

int64_t wire_max_payload(uint8_t type, wire_side side)
{
    const struct frame_rule *r = &rules[type];
    if (!r->name || !(r->towards & (int)side))
        return -1;
    return r->max;
}

bool wire_header_decode(const uint8_t bytes[WIRE_HEADER_SIZE], wire_side side,
                           wire_header *out, wire_error *e)
{
    uint32_t length = rd32(bytes);
    uint8_t type = bytes[4];
    const struct frame_rule *r = &rules[type];
    if (!r->name)
        return fail(e, "unknown frame type 0x%02x", type);
    if (!(r->towards & (int)side))
        return fail(e, "%s frame sent the wrong way (to the %s)", r->name,
                    side == WIRE_AT_AGENT ? "agent" : "host");
    if (bytes[5] || bytes[6] || bytes[7])
        return fail(e, "%s frame has non-zero flags/reserved bytes", r->name);
    if (length > r->max)
        return fail(e, "%s frame of %u bytes exceeds its limit of %u", r->name, length, r->max);
    if (r->exact >= 0 && length != (uint32_t)r->exact)
        return fail(e, "%s frame must be %d bytes, got %u", r->name, r->exact, length);
    out->length = length;
    out->type = type;
    return true;
}

void wire_header_encode(uint8_t bytes[WIRE_HEADER_SIZE], uint8_t type, uint32_t length)
{
    wr32(bytes, length);
    bytes[4] = type;
    bytes[5] = bytes[6] = bytes[7] = 0;
}

/* ---- reader ------------------------------------------------------------ */

void wire_reader_init(wire_reader *r, wire_side side)
{
    memset(r, 0, sizeof *r);
    r->side = side;
}

void wire_reader_destroy(wire_reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
}

size_t wire_reader_pending(const wire_reader *r)
{
    return r->end - r->start;
}

/* Bytes the frame at the front still needs beyond what is buffered. */
static size_t frame_shortfall(const wire_reader *r)
{
    size_t pending = r->end - r->start;
    if (pending < WIRE_HEADER_SIZE)
        return WIRE_HEADER_SIZE - pending;
    wire_header h;
    if (!wire_header_decode(r->buf + r->start, r->side, &h, NULL))
        return 0;
    size_t total = WIRE_HEADER_SIZE + (size_t)h.length;
    return total > pending ? total - pending : 0;
}

/* The buffer grows with the bytes that actually arrive (at most GROW_STEP
 * ahead of them), doubling but never past the frame being assembled: a
 * header that merely claims a large frame costs nothing. */
#define GROW_STEP (1u << 20)

uint8_t *wire_reader_space(wire_reader *r, size_t want, size_t *avail)
{
    if (r->start == r->end)
        r->start = r->end = 0;
    size_t shortfall = frame_shortfall(r);
    size_t need = want;
    if (shortfall > need)
        need = shortfall < GROW_STEP ? shortfall : (want > GROW_STEP ? want : GROW_STEP);
    if (r->cap - r->end < need && r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->cap - r->end < need) {
        size_t enough = r->end + (shortfall > need ? shortfall : need);
        size_t cap = r->cap * 2;
        if (cap > enough)
            cap = enough;
        if (cap < r->end + need)
            cap = r->end + need;
        uint8_t *nb = realloc(r->buf, cap);
        if (!nb)
            return NULL;
        r->buf = nb;
        r->cap = cap;
    }
    *avail = r->cap - r->end;
    return r->buf + r->end;
}

void wire_reader_commit(wire_reader *r, size_t n)
{
    r->end += n;
}

bool wire_reader_feed(wire_reader *r, const void *data, size_t len, wire_error *e)
{
    size_t avail;
    uint8_t *dst = wire_reader_space(r, len, &avail);
    if (!dst)
        return fail(e, "out of memory buffering %zu bytes", len);
    memcpy(dst, data, len);
    wire_reader_commit(r, len);
    return true;
}

int wire_reader_next(wire_reader *r, wire_frame *f, wire_error *e)
{
    size_t pending = r->end - r->start;
    if (pending < WIRE_HEADER_SIZE)
        return 0;
    wire_header h;
    if (!wire_header_decode(r->buf + r->start, r->side, &h, e))
        return -1;
    if (pending - WIRE_HEADER_SIZE < h.length)
        return 0;
    f->type = h.type;
    f->length = h.length;
    f->payload = r->buf + r->start + WIRE_HEADER_SIZE;
    r->start += WIRE_HEADER_SIZE + (size_t)h.length;
    return 1;
}

/* ---- output buffer ------------------------------------------------------ */

void wire_buf_free(wire_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

bool wire_buf_reserve(wire_buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (b->cap - b->len >= extra)
        return true;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->failed = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    uint8_t *nd = realloc(b->data, cap);
    if (!nd) {
        b->failed = true;
        return false;
    }
    b->data = nd;
    b->cap = cap;
    return true;
}

void wire_buf_put(wire_buf *b, const void *data, size_t len)
{
    if (!len || !wire_buf_reserve(b, len))
        return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void wire_buf_u16(wire_buf *b, uint16_t v)
{
    uint8_t p[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
    wire_buf_put(b, p, 2);
}

void wire_buf_u32(wire_buf *b, uint32_t v)
{
    uint8_t p[4];
    wr32(p, v);
    wire_buf_put(b, p, 4);
}

void wire_buf_u64(wire_buf *b, uint64_t v)
{
    wire_buf_u32(b, (uint32_t)v);
    wire_buf_u32(b, (uint32_t)(v >> 32));
}

void wire_buf_str(wire_buf *b, const char *s)
{
    size_t n = strlen(s) + 1;
    wire_buf_u32(b, (uint32_t)n);
    wire_buf_put(b, s, n);
}

size_t wire_frame_begin(wire_buf *b, uint8_t type)
{
    size_t at = b->len;
    uint8_t h[WIRE_HEADER_SIZE];
    wire_header_encode(h, type, 0);
    wire_buf_put(b, h, sizeof h);
    return at;
}

bool wire_frame_end(wire_buf *b, size_t at, wire_error *e)
{
    if (b->failed) {
        b->len = at < b->len ? at : b->len;
        return fail(e, "out of memory encoding a frame");
    }
    uint8_t type = b->data[at + 4];
    size_t length = b->len - at - WIRE_HEADER_SIZE;
    if (length > rules[type].max) {
        b->len = at;
        return fail(e, "%s frame of %zu bytes exceeds the protocol limit of %u bytes",
                    rules[type].name, length, rules[type].max);
    }
    wr32(b->data + at, (uint32_t)length);
    return true;
}

void wire_buf_consume(wire_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* ---- encoders ------------------------------------------------------------ */

bool wire_put_hello(wire_buf *b, wire_error *e)
{
    size_t at = wire_frame_begin(b, WIRE_HELLO);
    wire_buf_u32(b, WIRE_MAGIC);
    wire_buf_u16(b, WIRE_VERSION);
    wire_buf_u16(b, 0);
    return wire_frame_end(b, at, e);
}

static bool check_str(const char *what, const char *s, size_t limit, wire_error *e)
{
    if (!s)
        return fail(e, "%s is missing", what);
    size_t n = strlen(s) + 1;
    if (n > limit)
        return fail(e, "%s is %zu bytes long, the limit is %zu", what, n - 1, limit - 1);
    return true;
}

static bool put_argv(wire_buf *b, const char *what, const wire_argv *a, bool env,
                     wire_error *e)
{
    if (!env && a->argc == 0)
        return fail(e, "%s is empty: give at least the program name", what);
    if (a->argc > WIRE_MAX_ARGS)
        return fail(e, "%s has %u entries, the limit is %u", what, a->argc, WIRE_MAX_ARGS);
    wire_buf_u32(b, a->argc);
    for (uint32_t i = 0; i < a->argc; i++) {
        if (!check_str(what, a->argv[i], WIRE_MAX_ARG, e))
            return false;
        if (env && (a->argv[i][0] == '=' || !strchr(a->argv[i], '=')))
            return fail(e, "environment entry '%.40s' is not KEY=VALUE", a->argv[i]);
        wire_buf_str(b, a->argv[i]);
    }
    return true;
}

bool wire_hostname_ok(const char *s)
{
    size_t n = 0;
    for (; s && s[n]; n++) {
        char ch = s[n];
        if (n == WIRE_MAX_HOSTNAME || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                                        (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
            return false;
    }
    return n > 0;
}

/* Why a request's rlimits cannot go on the wire (NULL when they can): the
 * decoder's checks, so an encoded request always decodes. */
static const char *rlimits_error(const wire_rlimit *r, uint32_t n, char *why, size_t cap)
{
    if (n == 0 || n > WIRE_MAX_RLIMITS || !r) {
        snprintf(why, cap, "%u resource limits, give 1..%u", n, WIRE_MAX_RLIMITS);
        return why;
    }
    uint32_t seen = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (r[i].resource >= WIRE_RLIMIT_COUNT) {
            snprintf(why, cap, "resource limit %u: resource %u is beyond %u", i, r[i].resource,
                     WIRE_RLIMIT_COUNT - 1);
            return why;
        }
        if (r[i].soft > r[i].hard) {
            snprintf(why, cap, "resource %u: soft limit %llu is above the hard limit %llu",
                     r[i].resource, (unsigned long long)r[i].soft,
                     (unsigned long long)r[i].hard);
            return why;
        }
        if (seen & (1u << r[i].resource)) {
            snprintf(why, cap, "resource %u is limited twice", r[i].resource);
            return why;
        }
        seen |= 1u << r[i].resource;
    }
    return NULL;
}

bool wire_put_request(wire_buf *b, const wire_request *req, wire_error *e)
{
    size_t at = wire_frame_begin(b, WIRE_REQUEST);
    bool ok = false;
    wire_buf_u32(b, req->flags);
    wire_buf_u16(b, req->cols);
    wire_buf_u16(b, req->rows);
    wire_buf_u32(b, req->timeout_ms);
    wire_buf_u32(b, 0);
    if (!put_argv(b, "argv", &req->argv, false, e) || !put_argv(b, "env", &req->env, true, e))
        goto out;
    if (!check_str("cwd", req->cwd ? req->cwd : "", WIRE_MAX_PATH, e))
        goto out;
    wire_buf_str(b, req->cwd ? req->cwd : "");
    if (req->nfiles > WIRE_MAX_FILES) {
        fail(e, "%u staged files, the limit is %u", req->nfiles, WIRE_MAX_FILES);
        goto out;
    }
    wire_buf_u32(b, req->nfiles);
    for (uint32_t i = 0; i < req->nfiles; i++) {
        const wire_file *f = &req->files[i];
        if (!check_str("staged file path", f->path, WIRE_MAX_PATH, e))
            goto out;
        if (f->path[0] != '/') {
            fail(e, "staged file path '%.60s' must be absolute", f->path);
            goto out;
        }
        if (f->mode > 07777) {
            fail(e, "staged file '%.60s' has mode %o, beyond 07777", f->path, f->mode);
            goto out;
        }
        wire_buf_u32(b, f->mode);
        wire_buf_str(b, f->path);
        wire_buf_u32(b, f->size);
        wire_buf_put(b, f->data, f->size);
    }
    if (req->nchain > WIRE_MAX_CHAIN) {
        fail(e, "%u chained commands, the limit is %u", req->nchain, WIRE_MAX_CHAIN);
        goto out;
    }
    wire_buf_u32(b, req->nchain);
    for (uint32_t i = 0; i < req->nchain; i++)
        if (!put_argv(b, "chained argv", &req->chain[i], false, e))
            goto out;
    if (req->flags & WIRE_REQ_USER) {
        if (req->ngroups > WIRE_MAX_GROUPS || (req->ngroups && !req->groups)) {
            fail(e, "%u supplementary groups, the limit is %u", req->ngroups, WIRE_MAX_GROUPS);
            goto out;
        }
        wire_buf_u32(b, req->uid);
        wire_buf_u32(b, req->gid);
        wire_buf_u32(b, req->ngroups);
        for (uint32_t i = 0; i < req->ngroups; i++)
            wire_buf_u32(b, req->groups[i]);
    }
    if (req->flags & WIRE_REQ_RLIMITS) {
        char why[128];
        if (rlimits_error(req->rlimits, req->nrlimits, why, sizeof why)) {
            fail(e, "%s", why);
            goto out;
        }
        wire_buf_u32(b, req->nrlimits);
        for (uint32_t i = 0; i < req->nrlimits; i++) {
            wire_buf_u32(b, req->rlimits[i].resource);
            wire_buf_u64(b, req->rlimits[i].soft);
            wire_buf_u64(b, req->rlimits[i].hard);
        }
    }
    if (req->flags & WIRE_REQ_HOSTNAME) {
        if (!wire_hostname_ok(req->hostname)) {
            fail(e, "hostname '%.70s' is not 1..%u bytes of letters, digits, '.' and '-'",
                 req->hostname ? req->hostname : "(null)", WIRE_MAX_HOSTNAME);
            goto out;
        }
        wire_buf_str(b, req->hostname);
    }
    ok = true;
out:
    if (!ok) {
        if (!b->failed)
            b->len = at;
        return false;
    }
    return wire_frame_end(b, at, e);
}

bool wire_put_data(wire_buf *b, uint8_t type, const void *data, size_t len, wire_error *e)
{
    if (len > WIRE_MAX_DATA)
        return fail(e, "%s chunk of %zu bytes exceeds %u", wire_type_name(type), len,
                    WIRE_MAX_DATA);
    size_t at = wire_frame_begin(b, type);
    wire_buf_put(b, data, len);
    return wire_frame_end(b, at, e);
}

bool wire_put_empty(wire_buf *b, uint8_t type, wire_error *e)
{
    size_t at = wire_frame_begin(b, type);
    return wire_frame_end(b, at, e);
}

bool wire_put_signal(wire_buf *b, int signo, wire_error *e)
{
    if (signo < 1 || signo > 64)
        return fail(e, "signal %d is not a signal number (1..64)", signo);
    size_t at = wire_frame_begin(b, WIRE_SIGNAL);
    wire_buf_u32(b, (uint32_t)signo);
    return wire_frame_end(b, at, e);
}

bool wire_put_sync(wire_buf *b, const wire_sync *sync, wire_error *e)
{
    size_t at = wire_frame_begin(b, WIRE_SYNC);
    wire_buf_u64(b, sync->realtime_ns);
    wire_buf_put(b, sync->entropy, sizeof sync->entropy);
    return wire_frame_end(b, at, e);
}

bool wire_sync_decode(const uint8_t *payload, uint32_t len, wire_sync *out, wire_error *e)
{
    if (len != WIRE_SYNC_SIZE)
        return fail(e, "SYNC frame must be %u bytes, got %u", WIRE_SYNC_SIZE, len);
    out->realtime_ns = rd64(payload);
    memcpy(out->entropy, payload + 8, sizeof out->entropy);
    return true;
}

bool wire_put_netconf(wire_buf *b, bool enabled, wire_error *e)
{
    size_t at = wire_frame_begin(b, WIRE_NETCONF);
    uint8_t on = enabled;
    wire_buf_put(b, &on, 1);
    return wire_frame_end(b, at, e);
}

bool wire_put_connect(wire_buf *b, uint16_t port, wire_error *e)
{
    size_t at = wire_frame_begin(b, WIRE_CONNECT);
    wire_buf_u16(b, port);
    wire_buf_u16(b, 0);
    return wire_frame_end(b, at, e);
}

bool wire_put_volume(wire_buf *b, const wire_volume *v, wire_error *e)
{
    if (v->slot >= SM_MAX_VOLUMES)
        return fail(e, "volume slot %u is beyond the last (%u)", v->slot, SM_MAX_VOLUMES - 1);
    if (!check_str("volume path", v->path, WIRE_MAX_PATH, e))
        return false;
    if (v->path[0] != '/')
        return fail(e, "guest path '%.60s' must be absolute", v->path);
    size_t at = wire_frame_begin(b, WIRE_VOLUME);
    wire_buf_u32(b, v->slot);
    wire_buf_u32(b, v->read_only ? WIRE_VOLUME_READ_ONLY : 0);
    wire_buf_str(b, v->path);
    return wire_frame_end(b, at, e);
}

bool wire_connect_decode(const uint8_t *payload, uint32_t len, uint16_t *port, wire_error *e)
{
    if (len != WIRE_CONNECT_SIZE)
        return fail(e, "CONNECT frame must be %u bytes, got %u", WIRE_CONNECT_SIZE, len);
    uint16_t p = rd16(payload), zero = rd16(payload + 2);
    if (p == 0 || zero != 0)
        return fail(e, "CONNECT frame needs a port 1..65535 and a zero reserved field");
    *port = p;
    return true;
}

bool wire_netconf_decode(const uint8_t *payload, uint32_t len, bool *enabled, wire_error *e)
{
    if (len != WIRE_NETCONF_SIZE || payload[0] > 1)
        return fail(e, "NETCONF frame must be one byte, 0 or 1");
    *enabled = payload[0] == 1;
    return true;
}

bool wire_put_resize(wire_buf *b, uint16_t cols, uint16_t rows, wire_error *e)
{
    size_t at = wire_frame_begin(b, WIRE_RESIZE);
    wire_buf_u16(b, cols);
    wire_buf_u16(b, rows);
    return wire_frame_end(b, at, e);
}

bool wire_put_exit(wire_buf *b, const wire_exit *x, wire_error *e)
{
    size_t at = wire_frame_begin(b, WIRE_EXIT);
    wire_buf_u32(b, (uint32_t)x->code);
    wire_buf_u32(b, (uint32_t)x->signal);
    wire_buf_u32(b, x->timed_out ? WIRE_EXIT_TIMED_OUT : 0);
    wire_buf_u32(b, x->steps_run);
    wire_buf_u64(b, x->duration_us);
    wire_buf_u64(b, x->peak_rss_kib);
    return wire_frame_end(b, at, e);
}

bool wire_put_error(wire_buf *b, uint32_t kind, const char *message, wire_error *e)
{
    char clipped[WIRE_MAX_MESSAGE];
    snprintf(clipped, sizeof clipped, "%s", message);
    size_t at = wire_frame_begin(b, WIRE_ERROR);
    wire_buf_u32(b, kind);
    wire_buf_str(b, clipped);
    return wire_frame_end(b, at, e);
}

bool wire_put_file_head(wire_buf *b, uint8_t type, const wire_file_head *h,
                           wire_error *e)
{
    if (type != WIRE_WRITE_FILE && type != WIRE_FILE_INFO && type != WIRE_READ_FILE)
        return fail(e, "not a file head frame type: 0x%02x", type);
    if (type != WIRE_READ_FILE && h->mode > 07777)
        return fail(e, "file mode %o is beyond 07777", h->mode);
    if (type != WIRE_READ_FILE && h->size > WIRE_MAX_FILE_SIZE)
        return fail(e, "file of %llu bytes exceeds the transfer limit of %llu bytes",
                    (unsigned long long)h->size, (unsigned long long)WIRE_MAX_FILE_SIZE);
    if (type != WIRE_FILE_INFO) {
        if (!check_str("file path", h->path, WIRE_MAX_PATH, e))
            return false;
        if (h->path[0] != '/')
            return fail(e, "guest path '%.60s' must be absolute", h->path);
    }
    size_t at = wire_frame_begin(b, type);
    if (type != WIRE_READ_FILE) {
        wire_buf_u32(b, h->mode);
        wire_buf_u64(b, h->size);
    }
    if (type != WIRE_FILE_INFO)
        wire_buf_str(b, h->path);
    return wire_frame_end(b, at, e);
}

/* ---- decoders ------------------------------------------------------------ */

/* A bounded cursor over one payload; the first failure sticks. */
typedef struct cursor {
    const uint8_t *p;
    size_t left;
    const char *frame;
    wire_error *e;
    bool ok;
} cursor;

static cursor cursor_of(const wire_frame *f, wire_error *e)
{
    return (cursor){ f->payload, f->length, wire_type_name(f->type), e, true };
}

static bool take(cursor *c, size_t n, const char *what)
{
    if (!c->ok)
        return false;
    if (c->left < n) {
        c->ok = fail(c->e, "%s frame ends inside %s (needs %zu bytes, %zu left)", c->frame, what,
                     n, c->left);
        return false;
    }
    return true;
}

static uint16_t get16(cursor *c, const char *what)
{
    if (!take(c, 2, what))
        return 0;
    uint16_t v = rd16(c->p);
    c->p += 2; c->left -= 2;
    return v;
}

static uint32_t get32(cursor *c, const char *what)
{
    if (!take(c, 4, what))
        return 0;
    uint32_t v = rd32(c->p);
    c->p += 4; c->left -= 4;
    return v;
}

static uint64_t get64(cursor *c, const char *what)
{
    if (!take(c, 8, what))
        return 0;
    uint64_t v = rd64(c->p);
    c->p += 8; c->left -= 8;
    return v;
}

static const char *get_str(cursor *c, const char *what, uint32_t limit)
{
    uint32_t n = get32(c, what);
    if (!c->ok)
        return NULL;
    if (n == 0 || n > limit) {
        c->ok = fail(c->e, "%s frame: %s length %u is outside 1..%u", c->frame, what, n, limit);
        return NULL;
    }
    if (!take(c, n, what))
        return NULL;
    const char *s = (const char *)c->p;
    if (c->p[n - 1] != 0 || memchr(s, 0, n - 1)) {
        c->ok = fail(c->e, "%s frame: %s is not one NUL-terminated string", c->frame, what);
        return NULL;
    }
    c->p += n; c->left -= n;
    return s;
}

static bool finish(cursor *c)
{
    if (c->ok && c->left)
        c->ok = fail(c->e, "%s frame has %zu unexpected trailing bytes", c->frame, c->left);
    return c->ok;
}

bool wire_get_hello(const wire_frame *f, wire_hello *out, wire_error *e)
{
    if (f->type != WIRE_HELLO)
        return fail(e, "expected HELLO first, got %s", wire_type_name(f->type));
    cursor c = cursor_of(f, e);
    out->magic = get32(&c, "magic");
    out->version = get16(&c, "version");
    if (get16(&c, "reserved") != 0 && c.ok)
        c.ok = fail(e, "HELLO reserved field is not zero");
    return finish(&c);
}

bool wire_check_hello(const wire_frame *f, const char *peer, wire_error *e)
{
    wire_hello h;
    if (!wire_get_hello(f, &h, e))
        return false;
    if (h.magic != WIRE_MAGIC)
        return fail(e, "the %s is not a supermachine exec peer (bad HELLO magic 0x%08x)", peer,
                    h.magic);
    if (h.version != WIRE_VERSION)
        return fail(e, "the %s speaks exec protocol version %u, this side speaks %u: update "
                    "the older one", peer, h.version, WIRE_VERSION);
    return true;
}

static bool get_argv(cursor *c, const char *what, wire_argv *a, bool env)
{
    uint32_t n = get32(c, what);
    if (!c->ok)
        return false;
    if ((!env && n == 0) || n > WIRE_MAX_ARGS) {
        c->ok = fail(c->e, "%s frame: %s has %u entries, allowed %u..%u", c->frame, what, n,
                     env ? 0 : 1, WIRE_MAX_ARGS);
        return false;
    }
    if ((size_t)n * 5 > c->left) { /* each entry takes at least 5 bytes */
        c->ok = fail(c->e, "%s frame: %s claims %u entries in %zu bytes", c->frame, what, n,
                     c->left);
        return false;
    }
    a->argv = calloc((size_t)n + 1, sizeof *a->argv);
    if (!a->argv) {
        c->ok = fail(c->e, "out of memory decoding %s", what);
        return false;
    }
    a->argc = n;
    for (uint32_t i = 0; i < n; i++) {
        a->argv[i] = get_str(c, what, WIRE_MAX_ARG);
        if (!c->ok)
            return false;
        if (env && (a->argv[i][0] == '=' || !strchr(a->argv[i], '='))) {
            c->ok = fail(c->e, "environment entry '%.40s' is not KEY=VALUE", a->argv[i]);
            return false;
        }
    }
    return true;
}

static bool get_files(cursor *c, wire_request *out)
{
    uint32_t n = get32(c, "file count");
    if (!c->ok)
        return false;
    if (n > WIRE_MAX_FILES || (size_t)n * 13 > c->left) {
        c->ok = fail(c->e, "REQUEST frame: %u staged files (limit %u, %zu bytes left)", n,
                     WIRE_MAX_FILES, c->left);
        return false;
    }
    out->files = calloc(n ? n : 1, sizeof *out->files);
    if (!out->files) {
        c->ok = fail(c->e, "out of memory decoding staged files");
        return false;
    }
    out->nfiles = n;
    for (uint32_t i = 0; i < n && c->ok; i++) {
        wire_file *f = &out->files[i];
        f->mode = get32(c, "file mode");
        f->path = get_str(c, "file path", WIRE_MAX_PATH);
        f->size = get32(c, "file size");
        if (!c->ok)
            break;
        if (f->mode > 07777 || f->path[0] != '/') {
            c->ok = fail(c->e, "REQUEST frame: staged file '%.60s' needs an absolute path and "
                         "a mode <= 07777 (got %o)", f->path, f->mode);
            break;
        }
        if (take(c, f->size, "file bytes")) {
            f->data = c->p;
            c->p += f->size;
            c->left -= f->size;
        }
    }
    return c->ok;
}

static bool get_user(cursor *c, wire_request *out)
{
    out->uid = get32(c, "uid");
    out->gid = get32(c, "gid");
    uint32_t n = get32(c, "group count");
    if (!c->ok)
        return false;
    if (n > WIRE_MAX_GROUPS || (size_t)n * 4 > c->left) {
        c->ok = fail(c->e, "REQUEST frame: %u supplementary groups (limit %u, %zu bytes left)",
                     n, WIRE_MAX_GROUPS, c->left);
        return false;
    }
    out->groups = calloc(n ? n : 1, sizeof *out->groups);
    if (!out->groups) {
        c->ok = fail(c->e, "out of memory decoding supplementary groups");
        return false;
    }
    out->ngroups = n;
    for (uint32_t i = 0; i < n; i++)
        out->groups[i] = get32(c, "group");
    return c->ok;
}

static bool get_rlimits(cursor *c, wire_request *out)
{
    uint32_t n = get32(c, "rlimit count");
    if (!c->ok)
        return false;
    if (n == 0 || n > WIRE_MAX_RLIMITS || (size_t)n * 20 > c->left) {
        c->ok = fail(c->e, "REQUEST frame: %u resource limits (1..%u, %zu bytes left)", n,
                     WIRE_MAX_RLIMITS, c->left);
        return false;
    }
    out->rlimits = calloc(n, sizeof *out->rlimits);
    if (!out->rlimits) {
        c->ok = fail(c->e, "out of memory decoding resource limits");
        return false;
    }
    out->nrlimits = n;
    for (uint32_t i = 0; i < n; i++) {
        out->rlimits[i].resource = get32(c, "rlimit resource");
        out->rlimits[i].soft = get64(c, "rlimit soft");
        out->rlimits[i].hard = get64(c, "rlimit hard");
    }
    char why[128];
    if (c->ok && rlimits_error(out->rlimits, n, why, sizeof why))
        c->ok = fail(c->e, "REQUEST frame: %s", why);
    return c->ok;
}

static bool get_hostname(cursor *c, wire_request *out)
{
    out->hostname = get_str(c, "hostname", WIRE_MAX_HOSTNAME + 1);
    if (c->ok && !wire_hostname_ok(out->hostname))
        c->ok = fail(c->e, "REQUEST frame: hostname '%s' has a byte other than a letter, a "
                     "digit, '.' or '-'", out->hostname);
    return c->ok;
}

bool wire_get_request(const wire_frame *f, wire_request *out, wire_error *e)
{
    memset(out, 0, sizeof *out);
    if (f->type != WIRE_REQUEST)
        return fail(e, "expected REQUEST, got %s", wire_type_name(f->type));
    cursor c = cursor_of(f, e);
    out->flags = get32(&c, "flags");
    out->cols = get16(&c, "cols");
    out->rows = get16(&c, "rows");
    out->timeout_ms = get32(&c, "timeout");
    uint32_t reserved = get32(&c, "reserved");
    if (c.ok && ((out->flags & ~WIRE_REQ_FLAGS) || reserved))
        c.ok = fail(e, "REQUEST frame has unknown flags 0x%x or reserved bits", out->flags);
    if (c.ok && get_argv(&c, "argv", &out->argv, false) && get_argv(&c, "env", &out->env, true))
        out->cwd = get_str(&c, "cwd", WIRE_MAX_PATH);
    if (c.ok && get_files(&c, out)) {
        uint32_t n = get32(&c, "chain count");
        if (c.ok && (n > WIRE_MAX_CHAIN || (size_t)n * 9 > c.left))
            c.ok = fail(e, "REQUEST frame: %u chained commands (limit %u, %zu bytes left)", n,
                        WIRE_MAX_CHAIN, c.left);
        if (c.ok) {
            out->chain = calloc(n ? n : 1, sizeof *out->chain);
            if (!out->chain)
                c.ok = fail(e, "out of memory decoding chained commands");
            else
                out->nchain = n;
        }
        for (uint32_t i = 0; c.ok && i < out->nchain; i++)
            get_argv(&c, "chained argv", &out->chain[i], false);
    }
    if (c.ok && (out->flags & WIRE_REQ_USER))
        get_user(&c, out);
    if (c.ok && (out->flags & WIRE_REQ_RLIMITS))
        get_rlimits(&c, out);
    if (c.ok && (out->flags & WIRE_REQ_HOSTNAME))
        get_hostname(&c, out);
    if (!finish(&c)) {
        wire_request_free(out);
        return false;
    }
    return true;
}

void wire_request_free(wire_request *req)
{
    free(req->argv.argv);
    free(req->env.argv);
    free(req->files);
    if (req->chain)
        for (uint32_t i = 0; i < req->nchain; i++)
            free(req->chain[i].argv);
    free(req->chain);
    free(req->groups);
    free(req->rlimits);
    memset(req, 0, sizeof *req);
}

bool wire_get_signal(const wire_frame *f, int *signo, wire_error *e)
{
    cursor c = cursor_of(f, e);
    uint32_t v = get32(&c, "signal");
    if (c.ok && (v < 1 || v > 64))
        c.ok = fail(e, "SIGNAL frame: %u is not a signal number (1..64)", v);
    *signo = (int)v;
    return finish(&c);
}

bool wire_get_resize(const wire_frame *f, uint16_t *cols, uint16_t *rows, wire_error *e)
{
    cursor c = cursor_of(f, e);
    *cols = get16(&c, "cols");
    *rows = get16(&c, "rows");
    return finish(&c);
}

bool wire_get_exit(const wire_frame *f, wire_exit *out, wire_error *e)
{
    cursor c = cursor_of(f, e);
    out->code = (int32_t)get32(&c, "code");
    out->signal = (int32_t)get32(&c, "signal");
    uint32_t flags = get32(&c, "flags");
    out->steps_run = get32(&c, "steps");
    out->duration_us = get64(&c, "duration");
    out->peak_rss_kib = get64(&c, "peak RSS");
    out->timed_out = flags & WIRE_EXIT_TIMED_OUT;
    if (c.ok && (flags & ~WIRE_EXIT_TIMED_OUT))
        c.ok = fail(e, "EXIT frame has unknown flags 0x%x", flags);
    if (c.ok && (out->signal < 0 || out->signal > 64 || (out->signal == 0 && (out->code < 0 ||
                 out->code > 255)) || (out->signal != 0 && out->code != -1)))
        c.ok = fail(e, "EXIT frame: inconsistent code %d / signal %d", out->code, out->signal);
    return finish(&c);
}

bool wire_get_error(const wire_frame *f, wire_errmsg *out, wire_error *e)
{
    cursor c = cursor_of(f, e);
    out->kind = get32(&c, "kind");
    out->message = get_str(&c, "message", WIRE_MAX_MESSAGE);
    return finish(&c);
}

bool wire_get_file_head(const wire_frame *f, wire_file_head *out, wire_error *e)
{
    cursor c = cursor_of(f, e);
    memset(out, 0, sizeof *out);
    if (f->type != WIRE_READ_FILE) {
        out->mode = get32(&c, "mode");
        out->size = get64(&c, "size");
        if (c.ok && (out->mode > 07777 || out->size > WIRE_MAX_FILE_SIZE))
            c.ok = fail(e, "%s frame: mode %o or size %llu out of range", c.frame, out->mode,
                        (unsigned long long)out->size);
    }
    if (f->type != WIRE_FILE_INFO && c.ok) {
        out->path = get_str(&c, "path", WIRE_MAX_PATH);
        if (c.ok && out->path[0] != '/')
            c.ok = fail(e, "%s frame: path '%.60s' is not absolute", c.frame, out->path);
    }
    return finish(&c);
}

bool wire_get_volume(const wire_frame *f, wire_volume *out, wire_error *e)
{
    cursor c = cursor_of(f, e);
    memset(out, 0, sizeof *out);
    out->slot = get32(&c, "slot");
    uint32_t flags = get32(&c, "flags");
    if (c.ok && (out->slot >= SM_MAX_VOLUMES || (flags & ~WIRE_VOLUME_READ_ONLY)))
        c.ok = fail(e, "VOLUME frame: slot %u or flags 0x%x out of range", out->slot, flags);
    out->read_only = flags & WIRE_VOLUME_READ_ONLY;
    if (c.ok) {
        out->path = get_str(&c, "path", WIRE_MAX_PATH);
        if (c.ok && out->path[0] != '/')
            c.ok = fail(e, "VOLUME frame: path '%.60s' is not absolute", out->path);
    }
    return finish(&c);
}
