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
 *   0      4    payload length (bounded per type, see WIRE_MAX_*)
 *   4      1    type (wire_type)
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

#define WIRE_MAGIC   0x58454d53u /* "SMEX" as little-endian bytes */
#define WIRE_VERSION 1u

#define WIRE_HEADER_SIZE 8u

/* Limits. Every length read from a peer is checked against one of these. */
#define WIRE_MAX_REQUEST   (64u << 20) /* REQUEST payload, staged files included */
#define WIRE_MAX_DATA      (1u << 20)  /* STDIN/STDOUT/STDERR/FILE_DATA payload */
#define WIRE_MAX_ARGS      4096u       /* entries in one argv or in env */
#define WIRE_MAX_ARG       (128u << 10) /* bytes in one argv/env string, NUL included */
#define WIRE_MAX_PATH      4096u       /* bytes in a path, NUL included */
#define WIRE_MAX_FILES     256u        /* staged files per request */
#define WIRE_MAX_CHAIN     64u         /* chained argvs after the first */
#define WIRE_MAX_GROUPS    256u        /* supplementary groups of a request's user */
#define WIRE_MAX_RLIMITS   16u         /* resource limits of a request (one per resource) */
#define WIRE_RLIMIT_COUNT  16u         /* resources are 0..15, RLIMIT_CPU..RLIMIT_RTTIME */
#define WIRE_MAX_HOSTNAME  64u         /* bytes in a request's hostname, NUL excluded */
#define WIRE_MAX_MESSAGE   1024u       /* ERROR message, NUL included */
#define WIRE_MAX_FILE_SIZE (1ull << 32) /* WRITE_FILE / READ_FILE total size */

typedef enum wire_type {
    /* both directions */
    WIRE_HELLO       = 0x01,
    /* host -> agent */
    WIRE_REQUEST     = 0x02,
    WIRE_STDIN       = 0x03,
    WIRE_STDIN_CLOSE = 0x04,
    WIRE_SIGNAL      = 0x05,
    WIRE_RESIZE      = 0x06,
    WIRE_POWEROFF    = 0x07,
    WIRE_WRITE_FILE  = 0x08,
    WIRE_READ_FILE   = 0x09,
    WIRE_SYNC        = 0x0c,
    WIRE_NETCONF     = 0x0d,
    WIRE_CONNECT     = 0x0e,
    WIRE_VOLUME      = 0x0f,
    /* both directions (file transfer) */
    WIRE_FILE_DATA   = 0x0a,
    WIRE_FILE_END    = 0x0b,
    /* agent -> host */
    WIRE_STDOUT      = 0x10,
    WIRE_STDERR      = 0x11,
    WIRE_EXIT        = 0x12,
    WIRE_ERROR       = 0x13,
    WIRE_OK          = 0x14,
    WIRE_FILE_INFO   = 0x15,
} wire_type;

/* SYNC: after a snapshot restore, the host's wall clock and fresh entropy,
 * so that clones of one snapshot neither share random state nor a stale
 * clock. Honoured only by the agent that is a guest's PID 1. */
#define WIRE_SYNC_ENTROPY 64u
typedef struct wire_sync {
    uint64_t realtime_ns;                   /* CLOCK_REALTIME of the host */
    uint8_t entropy[WIRE_SYNC_ENTROPY];  /* from the host's getrandom() */
} wire_sync;
#define WIRE_SYNC_SIZE (8u + WIRE_SYNC_ENTROPY)

/* NETCONF: whether the guest's network is on, one byte (1 on, 0 off),
 * answered OK. The VMM sends it after every restore, since the snapshot's
 * interface state is the bake's and the restoring VM's choice may differ.
 * Honoured only by the agent that is a guest's PID 1. */
#define WIRE_NETCONF_SIZE 1u

/* CONNECT: u16 port (1..65535) | u16 0. The agent connects to that TCP port
 * on the guest's loopback; on success it answers OK, and from then on the
 * connection carries the raw bytes of that TCP stream both ways (no frames;
 * a half-close on either side is passed on). On failure, ERROR (kind
 * WIRE_ERR_CONNECT). How sm_vm_connect reaches a guest port without the
 * guest's network. */
#define WIRE_CONNECT_SIZE 4u

/* VOLUME: u32 slot (below SM_MAX_VOLUMES, protocol/guest_abi.h) | u32 flags
 * (WIRE_VOLUME_READ_ONLY, no other bit) | path string (absolute). PID 1 of
 * a guest binds the slot's virtio-blk, waits for its disk and mounts the
 * ext4 on it at the path (made if missing); it answers OK, or ERROR
 * (WIRE_ERR_IO) saying why. How sm_vm_start mounts a VM's volumes: a
 * restored guest found its volume slots empty when it booted. */
#define WIRE_VOLUME_READ_ONLY 1u
typedef struct wire_volume {
    uint32_t slot;
    bool read_only;
    const char *path; /* points into the payload */
} wire_volume;

/* Which end a reader sits at: it accepts only frames sent towards it. */
typedef enum wire_side {
    WIRE_AT_AGENT = 1, /* reads frames sent by the host */
    WIRE_AT_HOST  = 2, /* reads frames sent by the agent */
} wire_side;

/* ERROR frame kinds: what went wrong on the agent's side. */
typedef enum wire_error_kind {
    WIRE_ERR_PROTOCOL = 1, /* the host sent a malformed or unexpected frame */
    WIRE_ERR_VERSION  = 2, /* HELLO version mismatch */
    WIRE_ERR_STAGE    = 3, /* writing a staged file failed */
    WIRE_ERR_SPAWN    = 4, /* pipes, pty or process creation failed */
    WIRE_ERR_NOTFOUND = 5, /* READ_FILE: no such file */
    WIRE_ERR_LIMIT    = 6, /* a size limit was exceeded */
    WIRE_ERR_IO       = 7, /* a file operation failed */
    WIRE_ERR_REFUSED  = 8, /* POWEROFF when the agent is not PID 1 */
    WIRE_ERR_CONNECT  = 9, /* CONNECT: the guest port refused, or no relay left */
} wire_error_kind;

/* A decoding or encoding failure, with a message for a person. */
typedef struct wire_error {
    char message[192];
} wire_error;

typedef struct wire_header {
    uint32_t length;
    uint8_t type;
} wire_header;

/* A frame as delivered by the reader: payload points into the reader's buffer
 * and stays valid until the next call on that reader. */
typedef struct wire_frame {
    uint8_t type;
    uint32_t length;
    const uint8_t *payload;
} wire_frame;

/* ---- header ---------------------------------------------------------- */

/* The payload limit for a frame of `type` sent towards `side`, or -1 if such a
 * frame must not be sent that way. */
int64_t wire_max_payload(uint8_t type, wire_side side);
const char *wire_type_name(uint8_t type);
/* Checks the 8 header bytes: known type, right direction, length in bounds. */
bool wire_header_decode(const uint8_t bytes[WIRE_HEADER_SIZE], wire_side side,
                           wire_header *out, wire_error *e);
void wire_header_encode(uint8_t bytes[WIRE_HEADER_SIZE], uint8_t type, uint32_t length);

/* ---- incremental reader ------------------------------------------------ */

typedef struct wire_reader {
    wire_side side;
    uint8_t *buf;
    size_t cap, start, end;
} wire_reader;

void wire_reader_init(wire_reader *r, wire_side side);
void wire_reader_destroy(wire_reader *r);
/* Room to read into: makes at least `want` bytes free at the end (bounded by
 * what the frame being assembled can still need). NULL on out of memory. */
uint8_t *wire_reader_space(wire_reader *r, size_t want, size_t *avail);
void wire_reader_commit(wire_reader *r, size_t n);
/* Copies bytes in (the fuzz targets and tests feed this way). */
bool wire_reader_feed(wire_reader *r, const void *data, size_t len, wire_error *e);
/* 1: *f holds the next frame; 0: need more bytes; -1: malformed (e says why). */
int wire_reader_next(wire_reader *r, wire_frame *f, wire_error *e);
/* Bytes buffered but not yet returned as frames (a partial frame at EOF). */
size_t wire_reader_pending(const wire_reader *r);

/* ---- growable output buffer -------------------------------------------- */

typedef struct wire_buf {
    uint8_t *data;
    size_t len, cap;
    bool failed; /* an allocation failed; the content is incomplete */
} wire_buf;

void wire_buf_free(wire_buf *b);
bool wire_buf_reserve(wire_buf *b, size_t extra);
void wire_buf_put(wire_buf *b, const void *data, size_t len);
void wire_buf_u16(wire_buf *b, uint16_t v);
void wire_buf_u32(wire_buf *b, uint32_t v);
void wire_buf_u64(wire_buf *b, uint64_t v);
void wire_buf_str(wire_buf *b, const char *s);
/* Starts a frame; returns its offset for wire_frame_end. */
size_t wire_frame_begin(wire_buf *b, uint8_t type);
/* Patches the length; false (and e) if the payload exceeds the type's limit
 * (the frame is then removed from b). */
bool wire_frame_end(wire_buf *b, size_t at, wire_error *e);
/* Drops the first n bytes (sent ones). */
void wire_buf_consume(wire_buf *b, size_t n);

/* ---- payloads ---------------------------------------------------------- */

typedef struct wire_hello {
    uint32_t magic;
    uint16_t version;
} wire_hello;

#define WIRE_REQ_TTY       0x1u /* a pty: stdin/stdout through it, stderr merged */
#define WIRE_REQ_USER      0x2u /* the user section follows chain */
#define WIRE_REQ_CLEAR_ENV 0x4u /* the command's environment is env alone */
#define WIRE_REQ_RLIMITS   0x8u /* the rlimits section follows the user section */
#define WIRE_REQ_HOSTNAME  0x10u /* the hostname section follows the rlimits section */
#define WIRE_REQ_FLAGS     (WIRE_REQ_TTY | WIRE_REQ_USER | WIRE_REQ_CLEAR_ENV | WIRE_REQ_RLIMITS | \
                            WIRE_REQ_HOSTNAME)

typedef struct wire_argv {
    uint32_t argc;
    const char **argv; /* argc entries then NULL */
} wire_argv;

typedef struct wire_file {
    const char *path;
    const uint8_t *data;
    uint32_t size;
    uint32_t mode;
} wire_file;

/* REQUEST payload:
 *   u32 flags (WIRE_REQ_*, no other bit) | u16 cols | u16 rows
 *   u32 timeout_ms (0 none) | u32 reserved (0)
 *   argv:  u32 argc (1..MAX_ARGS), argc strings
 *   env:   u32 envc (0..MAX_ARGS), envc "KEY=VALUE" strings (KEY non-empty);
 *          on top of the agent's environment, or alone with CLEAR_ENV
 *   cwd:   string ("" = the agent's own)
 *   files: u32 n (0..MAX_FILES), each: u32 mode (<= 07777), path string
 *          (absolute), u32 size, size bytes
 *   chain: u32 n (0..MAX_CHAIN), each: u32 argc (1..MAX_ARGS), argc strings
 *   user:  only with WIRE_REQ_USER: u32 uid | u32 gid | u32 ngroups
 *          (0..MAX_GROUPS), ngroups u32 gids: every command of the chain
 *          runs as uid:gid with exactly these supplementary groups
 *   rlimits: only with WIRE_REQ_RLIMITS: u32 n (1..MAX_RLIMITS), each:
 *          u32 resource (< RLIMIT_COUNT, no resource twice) | u64 soft |
 *          u64 hard (soft <= hard; UINT64_MAX is RLIM_INFINITY): every
 *          command of the chain runs with these setrlimit(2) limits
 *   hostname: only with WIRE_REQ_HOSTNAME: string, 1..MAX_HOSTNAME bytes
 *          of [A-Za-z0-9.-] (wire_hostname_ok): the guest's hostname, set
 *          before the first command starts */
typedef struct wire_rlimit {
    uint32_t resource;
    uint64_t soft, hard;
} wire_rlimit;

/* Whether s is a hostname a REQUEST may carry: 1..WIRE_MAX_HOSTNAME bytes,
 * each a letter, a digit, '.' or '-'. */
bool wire_hostname_ok(const char *s);

typedef struct wire_request {
    uint32_t flags;
    uint16_t cols, rows;
    uint32_t timeout_ms;
    wire_argv argv;
    wire_argv env;
    const char *cwd;
    uint32_t nfiles;
    wire_file *files;
    uint32_t nchain;
    wire_argv *chain;
    uint32_t uid, gid;  /* with WIRE_REQ_USER */
    uint32_t ngroups;
    uint32_t *groups;   /* decoded: a copy (the payload's may be unaligned) */
    uint32_t nrlimits;  /* with WIRE_REQ_RLIMITS */
    wire_rlimit *rlimits; /* decoded: a copy */
    const char *hostname; /* with WIRE_REQ_HOSTNAME */
} wire_request;

/* EXIT payload (32 bytes): i32 code (-1 if signalled) | i32 signal (0 if
 * exited) | u32 flags (bit 0 timed_out) | u32 steps_run | u64 duration_us |
 * u64 peak_rss_kib */
#define WIRE_EXIT_TIMED_OUT 0x1u
typedef struct wire_exit {
    int32_t code;
    int32_t signal;
    bool timed_out;
    uint32_t steps_run;
    uint64_t duration_us;
    uint64_t peak_rss_kib;
} wire_exit;

typedef struct wire_errmsg {
    uint32_t kind;
    const char *message;
} wire_errmsg;

/* WRITE_FILE payload: u32 mode (<= 07777) | u64 size | path string.
 * Followed by FILE_DATA frames totalling exactly size bytes, then FILE_END.
 * FILE_INFO payload (reply to READ_FILE): u32 mode | u64 size, then FILE_DATA
 * frames totalling size bytes, then FILE_END. READ_FILE payload: path string. */
typedef struct wire_file_head {
    uint32_t mode;
    uint64_t size;
    const char *path; /* NULL in FILE_INFO */
} wire_file_head;

/* Encoders append one whole frame to b; false and e on a limit. */
bool wire_put_hello(wire_buf *b, wire_error *e);
bool wire_put_request(wire_buf *b, const wire_request *req, wire_error *e);
bool wire_put_data(wire_buf *b, uint8_t type, const void *data, size_t len, wire_error *e);
bool wire_put_empty(wire_buf *b, uint8_t type, wire_error *e);
bool wire_put_signal(wire_buf *b, int signo, wire_error *e);
bool wire_put_resize(wire_buf *b, uint16_t cols, uint16_t rows, wire_error *e);
bool wire_put_sync(wire_buf *b, const wire_sync *sync, wire_error *e);
bool wire_put_netconf(wire_buf *b, bool enabled, wire_error *e);
bool wire_put_connect(wire_buf *b, uint16_t port, wire_error *e);
bool wire_put_volume(wire_buf *b, const wire_volume *v, wire_error *e);
/* Decodes a VOLUME payload: slot in range, known flags, an absolute path. */
bool wire_get_volume(const wire_frame *f, wire_volume *out, wire_error *e);
/* Decodes a CONNECT payload: a port 1..65535 and a zero u16. */
bool wire_connect_decode(const uint8_t *payload, uint32_t len, uint16_t *port, wire_error *e);
/* Decodes a NETCONF payload: exactly one byte, 0 or 1. */
bool wire_netconf_decode(const uint8_t *payload, uint32_t len, bool *enabled, wire_error *e);
/* Decodes a SYNC payload (exactly WIRE_SYNC_SIZE bytes). */
bool wire_sync_decode(const uint8_t *payload, uint32_t len, wire_sync *out, wire_error *e);
bool wire_put_exit(wire_buf *b, const wire_exit *x, wire_error *e);
bool wire_put_error(wire_buf *b, uint32_t kind, const char *message, wire_error *e);
bool wire_put_file_head(wire_buf *b, uint8_t type, const wire_file_head *h,
                           wire_error *e);

/* Decoders check the whole payload (exact size, every bound). */
bool wire_get_hello(const wire_frame *f, wire_hello *out, wire_error *e);
/* Checks magic and version too, naming both versions on a mismatch. */
bool wire_check_hello(const wire_frame *f, const char *peer, wire_error *e);
/* Fills *out with pointers into f->payload; free with wire_request_free. */
bool wire_get_request(const wire_frame *f, wire_request *out, wire_error *e);
void wire_request_free(wire_request *req);
bool wire_get_signal(const wire_frame *f, int *signo, wire_error *e);
bool wire_get_resize(const wire_frame *f, uint16_t *cols, uint16_t *rows, wire_error *e);
bool wire_get_exit(const wire_frame *f, wire_exit *out, wire_error *e);
bool wire_get_error(const wire_frame *f, wire_errmsg *out, wire_error *e);
bool wire_get_file_head(const wire_frame *f, wire_file_head *out, wire_error *e);

#endif
