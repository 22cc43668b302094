/* File transfer, power off and sync through an exec socket (one connection
 * each). None takes a builder: each waits the process-wide agent timeout
 * (SM_EXEC_AGENT_TIMEOUT_MS) for an agent that stopped answering. */
#include "lib/exec_internal.h"
#include "base/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define FILE_CHUNK (256u << 10)
/* read_file's buffer grows with the bytes that arrive, from this much: a
 * FILE_INFO that merely claims a large size costs no memory. */
#define READ_FIRST_ALLOC (1u << 20)

/* Sends the file's bytes as FILE_DATA frames, then FILE_END. */
static sm_code send_file_body(int fd, const uint8_t *p, size_t len, uint32_t idle_ms, sm_error *err)
{
    wire_buf buf = { 0 };
    wire_error we;
    sm_code rc = SM_OK;
    for (size_t left = len; !rc && left;) {
        size_t n = left < FILE_CHUNK ? left : FILE_CHUNK;
        buf.len = 0;
        if (!wire_put_data(&buf, WIRE_FILE_DATA, p, n, &we))
            rc = error_set(err, SM_E_NOMEM, "write_file: %s", we.message);
        else
            rc = agent_send_all(fd, buf.data, buf.len, true, idle_ms, err);
        p += n;
        left -= n;
    }
    buf.len = 0;
    if (!rc && wire_put_empty(&buf, WIRE_FILE_END, &we))
        rc = agent_send_all(fd, buf.data, buf.len, true, idle_ms, err);
    wire_buf_free(&buf);
    return rc;
}

sm_code sm_exec_write_file(const char *exec_socket_path, const char *guest_path,
                           const void *bytes, size_t len, uint32_t mode, sm_error *err)
{
    if (!guest_path || (!bytes && len))
        return error_set(err, SM_E_INVALID, "write_file: guest path or bytes are NULL");
    wire_buf buf = { 0 };
    wire_error we;
    wire_file_head h = { .mode = mode, .size = len, .path = guest_path };
    if (!wire_put_hello(&buf, &we) || !wire_put_file_head(&buf, WIRE_WRITE_FILE, &h, &we)) {
        wire_buf_free(&buf);
        return error_set(err, SM_E_INVALID, "write_file %s: %s", guest_path, we.message);
    }
    int fd;
    sm_code rc = agent_dial(exec_socket_path, &fd, err);
    if (rc) {
        wire_buf_free(&buf);
        return rc;
    }
    uint32_t wait_ms = exec_agent_timeout_ms(NULL);
    rc = agent_send_all(fd, buf.data, buf.len, true, wait_ms, err);
    wire_buf_free(&buf);
    if (!rc)
        rc = send_file_body(fd, bytes, len, wait_ms, err);
    if (rc == SM_E_TIMEOUT) { /* it stopped reading: no answer is coming either */
        close(fd);
        if (err)
            error_prefix(err, "write_file %s (socket %s)", guest_path, exec_socket_path);
        exec_timeout_hint(err, false);
        return rc;
    }
    /* Even if sending failed, the agent may have said why. */
    sm_error reply;
    char what[64];
    snprintf(what, sizeof what, "write_file %.48s", guest_path);
    sm_code answer = agent_expect_ok(fd, exec_socket_path, what, -1, wait_ms, &reply);
    close(fd);
    if (answer && (!rc || answer != SM_E_SETUP)) {
        if (err)
            *err = reply;
        rc = answer;
    }
    if (rc == SM_E_TIMEOUT)
        exec_timeout_hint(err, false);
    return rc;
}

/* Room for `more` bytes after `got` in a buffer of *cap (plus a NUL), never
 * beyond `size` + 1. */
static bool file_room(uint8_t **data, size_t *cap, size_t got, size_t more, size_t size)
{
    if (*cap - got > more)
        return true;
    size_t ncap = *cap ? *cap : (size < READ_FIRST_ALLOC ? size : READ_FIRST_ALLOC) + 1;
    while (ncap - got <= more)
        ncap = ncap > (size + 1) / 2 ? size + 1 : ncap * 2;
    uint8_t *nb = realloc(*data, ncap);
    if (!nb)
        return false;
    *data = nb;
    *cap = ncap;
    return true;
}

/* FILE_INFO: the size, checked against the caller's limit. */
static sm_code receive_info(agent_reader *r, const char *guest_path, size_t max_len, size_t *size,
                            sm_error *err)
{
    wire_frame f;
    wire_error we;
    sm_code rc = agent_read_frame(r, &f, -1, 0, err);
    if (rc)
        return rc;
    if (f.type != WIRE_FILE_INFO)
        return agent_unexpected(r, &f, err);
    wire_file_head info;
    if (!wire_get_file_head(&f, &info, &we))
        return error_set(err, SM_E_PROTOCOL, "read_file: %s", we.message);
    if (info.size > max_len || info.size >= SIZE_MAX)
        return error_set(err, SM_E_LIMIT, "read_file: %s is %llu bytes, more than the %zu "
                         "allowed", guest_path, (unsigned long long)info.size, max_len);
    *size = (size_t)info.size;
    return SM_OK;
}

sm_code exec_receive_file(agent_reader *r, const char *guest_path, size_t max_len,
                          uint8_t **bytes, size_t *len, sm_error *err)
{
    size_t size = 0, got = 0, cap = 0;
    uint8_t *data = NULL;
    sm_code rc = receive_info(r, guest_path, max_len, &size, err);
    while (!rc) {
        wire_frame f;
        rc = agent_read_frame(r, &f, -1, 0, err);
        if (rc)
            break;
        if (f.type == WIRE_FILE_END) {
            if (got != size)
                rc = error_set(err, SM_E_PROTOCOL, "read_file: got %zu of %zu bytes", got, size);
            break;
        }
        if (f.type != WIRE_FILE_DATA)
            rc = agent_unexpected(r, &f, err);
        else if (f.length > size - got)
            rc = error_set(err, SM_E_PROTOCOL, "read_file: the agent sent more than the %zu "
                           "bytes announced", size);
        else if (!file_room(&data, &cap, got, f.length, size))
            rc = error_set(err, SM_E_NOMEM, "read_file: out of memory for %zu bytes", size);
        else if (f.length) {
            memcpy(data + got, f.payload, f.length);
            got += f.length;
        }
    }
    if (!rc && !file_room(&data, &cap, got, 0, size))
        rc = error_set(err, SM_E_NOMEM, "read_file: out of memory");
    if (rc) {
        free(data);
        return rc;
    }
    data[size] = 0;
    *bytes = data;
    *len = size;
    return SM_OK;
}

sm_code sm_exec_read_file(const char *exec_socket_path, const char *guest_path, size_t max_len,
                          uint8_t **bytes, size_t *len, sm_error *err)
{
    if (!guest_path || !bytes || !len)
        return error_set(err, SM_E_INVALID, "read_file: NULL argument");
    *bytes = NULL;
    *len = 0;
    wire_buf buf = { 0 };
    wire_error we;
    wire_file_head h = { .path = guest_path };
    if (!wire_put_hello(&buf, &we) || !wire_put_file_head(&buf, WIRE_READ_FILE, &h, &we)) {
        wire_buf_free(&buf);
        return error_set(err, SM_E_INVALID, "read_file %s: %s", guest_path, we.message);
    }
    int fd = -1;
    uint32_t wait_ms = exec_agent_timeout_ms(NULL);
    sm_code rc = agent_dial(exec_socket_path, &fd, err);
    if (!rc) {
        /* A broken pipe: the reply says what failed. A stall is final. */
        rc = agent_send_all(fd, buf.data, buf.len, false, wait_ms, err);
        if (rc != SM_E_TIMEOUT)
            rc = SM_OK;
    }
    wire_buf_free(&buf);
    if (!rc) {
        agent_reader r;
        agent_reader_init(&r, fd, exec_socket_path);
        r.idle_ms = wait_ms; /* the file streams: a pause this long is a stop */
        rc = exec_receive_file(&r, guest_path, max_len, bytes, len, err);
        agent_reader_destroy(&r);
    }
    if (fd >= 0)
        close(fd);
    if (rc && err) {
        error_prefix(err, "reading %s", guest_path);
        exec_timeout_hint(err, false);
    }
    return rc;
}

sm_code sm_exec_poweroff(const char *exec_socket_path, sm_error *err)
{
    sm_code rc = agent_poweroff(exec_socket_path, exec_agent_timeout_ms(NULL), err);
    if (rc == SM_E_TIMEOUT)
        exec_timeout_hint(err, false);
    return rc;
}

sm_code sm_exec_sync(const char *exec_socket_path, sm_error *err)
{
    sm_code rc = agent_sync_within(exec_socket_path, -1, exec_agent_timeout_ms(NULL), err);
    if (rc == SM_E_TIMEOUT)
        exec_timeout_hint(err, false);
    return rc;
}
