/* File transfer and power off through an exec socket (one connection each). */
#include "lib/exec_internal.h"
#include "base/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define FILE_CHUNK (256u << 10)

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
    rc = agent_send_all(fd, buf.data, buf.len, true, err);
    const uint8_t *p = bytes;
    for (size_t left = len; !rc && left;) {
        size_t n = left < FILE_CHUNK ? left : FILE_CHUNK;
        buf.len = 0;
        if (!wire_put_data(&buf, WIRE_FILE_DATA, p, n, &we))
            rc = error_set(err, SM_E_NOMEM, "write_file: %s", we.message);
        else
            rc = agent_send_all(fd, buf.data, buf.len, true, err);
        p += n;
        left -= n;
    }
    buf.len = 0;
    if (!rc && wire_put_empty(&buf, WIRE_FILE_END, &we))
        rc = agent_send_all(fd, buf.data, buf.len, true, err);
    wire_buf_free(&buf);
    /* Even if sending failed, the agent may have said why. */
    sm_error reply;
    sm_code answer = agent_expect_ok(fd, exec_socket_path, "write_file", -1, &reply);
    close(fd);
    if (answer && (!rc || answer != SM_E_SETUP)) {
        if (err)
            *err = reply;
        return answer;
    }
    return rc;
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
    int fd;
    sm_code rc = agent_dial(exec_socket_path, &fd, err);
    if (!rc)
        (void)agent_send_all(fd, buf.data, buf.len, false, NULL); /* the reply says what failed */
    wire_buf_free(&buf);
    if (rc)
        return rc;
    agent_reader r;
    agent_reader_init(&r, fd, exec_socket_path);
    wire_frame f;
    uint8_t *data = NULL;
    uint64_t size = 0, got = 0;
    rc = agent_read_frame(&r, &f, -1, 0, err);
    if (!rc && f.type != WIRE_FILE_INFO)
        rc = agent_unexpected(&r, &f, err);
    if (!rc) {
        wire_file_head info;
        if (!wire_get_file_head(&f, &info, &we))
            rc = error_set(err, SM_E_PROTOCOL, "read_file: %s", we.message);
        else if (info.size > max_len)
            rc = error_set(err, SM_E_LIMIT, "read_file: %s is %llu bytes, more than the %zu "
                         "allowed", guest_path, (unsigned long long)info.size, max_len);
        else if (!(data = malloc(info.size + 1)))
            rc = error_set(err, SM_E_NOMEM, "read_file: out of memory for %llu bytes",
                         (unsigned long long)info.size);
        size = info.size;
    }
    while (!rc) {
        rc = agent_read_frame(&r, &f, -1, 0, err);
        if (rc)
            break;
        if (f.type == WIRE_FILE_END) {
            if (got != size)
                rc = error_set(err, SM_E_PROTOCOL, "read_file: got %llu of %llu bytes",
                             (unsigned long long)got, (unsigned long long)size);
            break;
        }
        if (f.type != WIRE_FILE_DATA) {
            rc = agent_unexpected(&r, &f, err);
        } else if (f.length > size - got) {
            rc = error_set(err, SM_E_PROTOCOL, "read_file: the agent sent more than the %llu "
                         "bytes announced", (unsigned long long)size);
        } else {
            memcpy(data + got, f.payload, f.length);
            got += f.length;
        }
    }
    agent_reader_destroy(&r);
    close(fd);
    if (rc) {
        free(data);
        if (err)
            error_prefix(err, "reading %s", guest_path);
        return rc;
    }
    data[size] = 0;
    *bytes = data;
    *len = (size_t)size;
    return SM_OK;
}

sm_code sm_exec_poweroff(const char *exec_socket_path, sm_error *err)
{
    wire_buf buf = { 0 };
    wire_put_hello(&buf, NULL);
    wire_put_empty(&buf, WIRE_POWEROFF, NULL);
    int fd;
    sm_code rc = buf.failed ? error_set(err, SM_E_NOMEM, "out of memory")
                            : agent_dial(exec_socket_path, &fd, err);
    if (!rc) {
        (void)agent_send_all(fd, buf.data, buf.len, false, NULL);
        rc = agent_expect_ok(fd, exec_socket_path, "poweroff", -1, err);
        close(fd);
    }
    wire_buf_free(&buf);
    return rc;
}

sm_code sm_exec_sync(const char *exec_socket_path, sm_error *err)
{
    return agent_sync(exec_socket_path, -1, err);
}

