/*
 * The exec wire protocol between the host library and the guest agent.
 *
 * One stream connection (AF_UNIX or AF_VSOCK) carries one operation. Both ends
 * send HELLO first and check the other's HELLO before anything else; the host
 * may send its first operation frame right behind its HELLO (no round trip).
 * All integers are little-endian. The full frame table is at the top of
 * wire.c; the shapes and limits are here so both ends and the tests agree.
 *
 * Frame = header (8 bytes) + payload (length bytes):
 *
 *   offset size field
 *   0      4    payload length (bounded per type, see SM_WIRE_MAX_*)
 *   4      1    type (sm_wire_type)
 *   5      1    flags, must be 0
 *   6      2    reserved, must be 0
 *
 * A string on the wire is: u32 n (1..limit, counting the trailing NUL), then n
 * bytes whose last byte is NUL and no other byte is NUL. Decoded strings are
 * pointers into the payload, usable as C strings with no copy.
 */
#ifndef SM_PROTOCOL_WIRE_H
#define SM_PROTOCOL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SM_WIRE_MAGIC   0x58454d53u /* "SMEX" as little-endian bytes */
#define SM_WIRE_VERSION 1u

#define SM_WIRE_HEADER_SIZE 8u

/* Limits. Every length read from a peer is checked against one of these. */
#define SM_WIRE_MAX_REQUEST   (64u << 20) /* REQUEST payload, staged files included */
#define SM_WIRE_MAX_DATA      (1u << 20)  /* STDIN/STDOUT/STDERR/FILE_DATA payload */
#define SM_WIRE_MAX_ARGS      4096u       /* entries in one argv or in env */
#define SM_WIRE_MAX_ARG       (128u << 10) /* bytes in one argv/env string, NUL included */
#define SM_WIRE_MAX_PATH      4096u       /* bytes in a path, NUL included */
#define SM_WIRE_MAX_FILES     256u        /* staged files per request */
#define SM_WIRE_MAX_CHAIN     64u         /* chained argvs after the first */
#define SM_WIRE_MAX_MESSAGE   1024u       /* ERROR message, NUL included */
#define SM_WIRE_MAX_FILE_SIZE (1ull << 32) /* WRITE_FILE / READ_FILE total size */

typedef enum sm_wire_type {
    /* both directions */
    SM_WIRE_HELLO       = 0x01,
    /* host -> agent */
    SM_WIRE_REQUEST     = 0x02,
    SM_WIRE_STDIN       = 0x03,
    SM_WIRE_STDIN_CLOSE = 0x04,
    SM_WIRE_SIGNAL      = 0x05,
    SM_WIRE_RESIZE      = 0x06,
    SM_WIRE_POWEROFF    = 0x07,
    SM_WIRE_WRITE_FILE  = 0x08,
    SM_WIRE_READ_FILE   = 0x09,
    SM_WIRE_SYNC        = 0x0c,
    /* both directions (file transfer) */
    SM_WIRE_FILE_DATA   = 0x0a,
    SM_WIRE_FILE_END    = 0x0b,
    /* agent -> host */
    SM_WIRE_STDOUT      = 0x10,
    SM_WIRE_STDERR      = 0x11,
    SM_WIRE_EXIT        = 0x12,
    SM_WIRE_ERROR       = 0x13,
    SM_WIRE_OK          = 0x14,
    SM_WIRE_FILE_INFO   = 0x15,
} sm_wire_type;

/* SYNC: after a snapshot restore, the host's wall clock and fresh entropy,
 * so that clones of one snapshot neither share random state nor a stale
 * clock. Honoured only by the agent that is a guest's PID 1. */
#define SM_WIRE_SYNC_ENTROPY 64u
typedef struct sm_wire_sync {
    uint64_t realtime_ns;                   /* CLOCK_REALTIME of the host */
    uint8_t entropy[SM_WIRE_SYNC_ENTROPY];  /* from the host's getrandom() */
} sm_wire_sync;
#define SM_WIRE_SYNC_SIZE (8u + SM_WIRE_SYNC_ENTROPY)

/* Which end a reader sits at: it accepts only frames sent towards it. */
typedef enum sm_wire_side {
    SM_WIRE_AT_AGENT = 1, /* reads frames sent by the host */
    SM_WIRE_AT_HOST  = 2, /* reads frames sent by the agent */
} sm_wire_side;

/* ERROR frame kinds: what went wrong on the agent's side. */
typedef enum sm_wire_error_kind {
    SM_WIRE_ERR_PROTOCOL = 1, /* the host sent a malformed or unexpected frame */
    SM_WIRE_ERR_VERSION  = 2, /* HELLO version mismatch */
    SM_WIRE_ERR_STAGE    = 3, /* writing a staged file failed */
    SM_WIRE_ERR_SPAWN    = 4, /* pipes, pty or process creation failed */
    SM_WIRE_ERR_NOTFOUND = 5, /* READ_FILE: no such file */
    SM_WIRE_ERR_LIMIT    = 6, /* a size limit was exceeded */
    SM_WIRE_ERR_IO       = 7, /* a file operation failed */
    SM_WIRE_ERR_REFUSED  = 8, /* POWEROFF when the agent is not PID 1 */
} sm_wire_error_kind;

/* A decoding or encoding failure, with a message for a person. */
typedef struct sm_wire_error {
    char message[192];
} sm_wire_error;

typedef struct sm_wire_header {
    uint32_t length;
    uint8_t type;
} sm_wire_header;

/* A frame as delivered by the reader: payload points into the reader's buffer
 * and stays valid until the next call on that reader. */
typedef struct sm_wire_frame {
    uint8_t type;
    uint32_t length;
    const uint8_t *payload;
} sm_wire_frame;

/* ---- header ---------------------------------------------------------- */

/* The payload limit for a frame of `type` sent towards `side`, or -1 if such a
 * frame must not be sent that way. */
int64_t sm_wire_max_payload(uint8_t type, sm_wire_side side);
const char *sm_wire_type_name(uint8_t type);
/* Checks the 8 header bytes: known type, right direction, length in bounds. */
bool sm_wire_header_decode(const uint8_t bytes[SM_WIRE_HEADER_SIZE], sm_wire_side side,
                           sm_wire_header *out, sm_wire_error *e);
void sm_wire_header_encode(uint8_t bytes[SM_WIRE_HEADER_SIZE], uint8_t type, uint32_t length);

/* ---- incremental reader ------------------------------------------------ */

typedef struct sm_wire_reader {
    sm_wire_side side;
    uint8_t *buf;
    size_t cap, start, end;
} sm_wire_reader;

void sm_wire_reader_init(sm_wire_reader *r, sm_wire_side side);
void sm_wire_reader_destroy(sm_wire_reader *r);
/* Room to read into: makes at least `want` bytes free at the end (bounded by
 * what the frame being assembled can still need). NULL on out of memory. */
uint8_t *sm_wire_reader_space(sm_wire_reader *r, size_t want, size_t *avail);
void sm_wire_reader_commit(sm_wire_reader *r, size_t n);
/* Copies bytes in (the fuzz targets and tests feed this way). */
bool sm_wire_reader_feed(sm_wire_reader *r, const void *data, size_t len, sm_wire_error *e);
/* 1: *f holds the next frame; 0: need more bytes; -1: malformed (e says why). */
int sm_wire_reader_next(sm_wire_reader *r, sm_wire_frame *f, sm_wire_error *e);
/* Bytes buffered but not yet returned as frames (a partial frame at EOF). */
size_t sm_wire_reader_pending(const sm_wire_reader *r);

/* ---- growable output buffer -------------------------------------------- */

typedef struct sm_wire_buf {
    uint8_t *data;
    size_t len, cap;
    bool failed; /* an allocation failed; the content is incomplete */
} sm_wire_buf;

void sm_wire_buf_free(sm_wire_buf *b);
bool sm_wire_buf_reserve(sm_wire_buf *b, size_t extra);
void sm_wire_buf_put(sm_wire_buf *b, const void *data, size_t len);
void sm_wire_buf_u16(sm_wire_buf *b, uint16_t v);
void sm_wire_buf_u32(sm_wire_buf *b, uint32_t v);
void sm_wire_buf_u64(sm_wire_buf *b, uint64_t v);
void sm_wire_buf_str(sm_wire_buf *b, const char *s);
/* Starts a frame; returns its offset for sm_wire_frame_end. */
size_t sm_wire_frame_begin(sm_wire_buf *b, uint8_t type);
/* Patches the length; false (and e) if the payload exceeds the type's limit
 * (the frame is then removed from b). */
bool sm_wire_frame_end(sm_wire_buf *b, size_t at, sm_wire_error *e);
/* Drops the first n bytes (sent ones). */
void sm_wire_buf_consume(sm_wire_buf *b, size_t n);

/* ---- payloads ---------------------------------------------------------- */

typedef struct sm_wire_hello {
    uint32_t magic;
    uint16_t version;
} sm_wire_hello;

#define SM_WIRE_REQ_TTY 0x1u

typedef struct sm_wire_argv {
    uint32_t argc;
    const char **argv; /* argc entries then NULL */
} sm_wire_argv;

typedef struct sm_wire_file {
    const char *path;
    const uint8_t *data;
    uint32_t size;
    uint32_t mode;
} sm_wire_file;

/* REQUEST payload:
 *   u32 flags (SM_WIRE_REQ_TTY) | u16 cols | u16 rows | u32 timeout_ms (0 none)
 *   u32 reserved (0)
 *   argv:  u32 argc (1..MAX_ARGS), argc strings
 *   env:   u32 envc (0..MAX_ARGS), envc "KEY=VALUE" strings (KEY non-empty)
 *   cwd:   string ("" = the agent's own)
 *   files: u32 n (0..MAX_FILES), each: u32 mode (<= 07777), path string
 *          (absolute), u32 size, size bytes
 *   chain: u32 n (0..MAX_CHAIN), each: u32 argc (1..MAX_ARGS), argc strings */
typedef struct sm_wire_request {
    uint32_t flags;
    uint16_t cols, rows;
    uint32_t timeout_ms;
    sm_wire_argv argv;
    sm_wire_argv env;
    const char *cwd;
    uint32_t nfiles;
    sm_wire_file *files;
    uint32_t nchain;
    sm_wire_argv *chain;
} sm_wire_request;

/* EXIT payload (32 bytes): i32 code (-1 if signalled) | i32 signal (0 if
 * exited) | u32 flags (bit 0 timed_out) | u32 steps_run | u64 duration_us |
 * u64 peak_rss_kib */
#define SM_WIRE_EXIT_TIMED_OUT 0x1u
typedef struct sm_wire_exit {
    int32_t code;
    int32_t signal;
    bool timed_out;
    uint32_t steps_run;
    uint64_t duration_us;
    uint64_t peak_rss_kib;
} sm_wire_exit;

typedef struct sm_wire_errmsg {
    uint32_t kind;
    const char *message;
} sm_wire_errmsg;

/* WRITE_FILE payload: u32 mode (<= 07777) | u64 size | path string.
 * Followed by FILE_DATA frames totalling exactly size bytes, then FILE_END.
 * FILE_INFO payload (reply to READ_FILE): u32 mode | u64 size, then FILE_DATA
 * frames totalling size bytes, then FILE_END. READ_FILE payload: path string. */
typedef struct sm_wire_file_head {
    uint32_t mode;
    uint64_t size;
    const char *path; /* NULL in FILE_INFO */
} sm_wire_file_head;

/* Encoders append one whole frame to b; false and e on a limit. */
bool sm_wire_put_hello(sm_wire_buf *b, sm_wire_error *e);
bool sm_wire_put_request(sm_wire_buf *b, const sm_wire_request *req, sm_wire_error *e);
bool sm_wire_put_data(sm_wire_buf *b, uint8_t type, const void *data, size_t len, sm_wire_error *e);
bool sm_wire_put_empty(sm_wire_buf *b, uint8_t type, sm_wire_error *e);
bool sm_wire_put_signal(sm_wire_buf *b, int signo, sm_wire_error *e);
bool sm_wire_put_resize(sm_wire_buf *b, uint16_t cols, uint16_t rows, sm_wire_error *e);
bool sm_wire_put_sync(sm_wire_buf *b, const sm_wire_sync *sync, sm_wire_error *e);
/* Decodes a SYNC payload (exactly SM_WIRE_SYNC_SIZE bytes). */
bool sm_wire_sync_decode(const uint8_t *payload, uint32_t len, sm_wire_sync *out, sm_wire_error *e);
bool sm_wire_put_exit(sm_wire_buf *b, const sm_wire_exit *x, sm_wire_error *e);
bool sm_wire_put_error(sm_wire_buf *b, uint32_t kind, const char *message, sm_wire_error *e);
bool sm_wire_put_file_head(sm_wire_buf *b, uint8_t type, const sm_wire_file_head *h,
                           sm_wire_error *e);

/* Decoders check the whole payload (exact size, every bound). */
bool sm_wire_get_hello(const sm_wire_frame *f, sm_wire_hello *out, sm_wire_error *e);
/* Checks magic and version too, naming both versions on a mismatch. */
bool sm_wire_check_hello(const sm_wire_frame *f, const char *peer, sm_wire_error *e);
/* Fills *out with pointers into f->payload; free with sm_wire_request_free. */
bool sm_wire_get_request(const sm_wire_frame *f, sm_wire_request *out, sm_wire_error *e);
void sm_wire_request_free(sm_wire_request *req);
bool sm_wire_get_signal(const sm_wire_frame *f, int *signo, sm_wire_error *e);
bool sm_wire_get_resize(const sm_wire_frame *f, uint16_t *cols, uint16_t *rows, sm_wire_error *e);
bool sm_wire_get_exit(const sm_wire_frame *f, sm_wire_exit *out, sm_wire_error *e);
bool sm_wire_get_error(const sm_wire_frame *f, sm_wire_errmsg *out, sm_wire_error *e);
bool sm_wire_get_file_head(const sm_wire_frame *f, sm_wire_file_head *out, sm_wire_error *e);

#endif
