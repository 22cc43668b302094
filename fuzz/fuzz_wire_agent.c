/*
 * libFuzzer target: the agent's side of the exec wire protocol. The input is
 * a byte stream from a (hostile) host: every frame the reader accepts is
 * decoded the way the agent does, and a decoded REQUEST must re-encode to the
 * very same bytes (the encoding is canonical).
 *
 *   build/fuzz/fuzz_wire_agent -max_total_time=20 fuzz/corpus/fuzz_wire_agent
 */
#include "protocol/guest_abi.h"
#include "protocol/wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const wire_frame *f)
{
    wire_request req;
    wire_error e;
    if (!wire_get_request(f, &req, &e))
        return;
    wire_buf b = { 0 };
    if (wire_put_request(&b, &req, &e)) {
        if (b.len != WIRE_HEADER_SIZE + f->length ||
            memcmp(b.data + WIRE_HEADER_SIZE, f->payload, f->length))
            abort(); /* decode -> encode must reproduce the payload */
    }
    wire_buf_free(&b);
    wire_request_free(&req);
}

static void decode(const wire_frame *f)
{
    wire_error e;
    switch (f->type) {
    case WIRE_HELLO:
        wire_check_hello(f, "host", &e);
        break;
    case WIRE_REQUEST:
        check_request(f);
        break;
    case WIRE_SIGNAL: {
        int signo;
        if (wire_get_signal(f, &signo, &e) && (signo < 1 || signo > 64))
            abort();
        break;
    }
    case WIRE_RESIZE: {
        uint16_t c, r;
        wire_get_resize(f, &c, &r, &e);
        break;
    }
    case WIRE_WRITE_FILE:
    case WIRE_READ_FILE: {
        wire_file_head h;
        if (wire_get_file_head(f, &h, &e) && (h.path[0] != '/' || h.mode > 07777))
            abort();
        break;
    }
    case WIRE_SYNC: {
        wire_sync sync;
        wire_sync_decode(f->payload, f->length, &sync, &e);
        break;
    }
    case WIRE_NETCONF: {
        bool on;
        if (wire_netconf_decode(f->payload, f->length, &on, &e) && f->payload[0] != (uint8_t)on)
            abort();
        break;
    }
    case WIRE_CONNECT: {
        uint16_t port;
        if (wire_connect_decode(f->payload, f->length, &port, &e) && port == 0)
            abort();
        break;
    }
    case WIRE_VOLUME: {
        wire_volume v;
        if (wire_get_volume(f, &v, &e) && (v.slot >= SM_MAX_VOLUMES || v.path[0] != '/'))
            abort();
        break;
    }
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire_reader r;
    wire_reader_init(&r, WIRE_AT_AGENT);
    /* Feed in uneven pieces, as a socket would deliver them. */
    size_t off = 0, piece = 1;
    while (off < size) {
        size_t n = size - off < piece ? size - off : piece;
        if (!wire_reader_feed(&r, data + off, n, NULL))
            break;
        off += n;
        piece = piece * 3 + 1;
        wire_frame f;
        wire_error e;
        int got;
        while ((got = wire_reader_next(&r, &f, &e)) > 0)
            decode(&f);
        if (got < 0)
            break;
    }
    wire_reader_destroy(&r);
    return 0;
}
