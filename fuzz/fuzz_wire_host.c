/*
 * libFuzzer target: the host library's side of the exec wire protocol. The
 * input is what a (hostile) agent sends; it goes through a real socket into
 * the library's own frame reader (HELLO check, ERROR mapping, EOF as setup
 * failure or drop) and the EXIT / FILE_INFO / ERROR decoders.
 *
 *   build/fuzz/fuzz_wire_host -max_total_time=20 fuzz/corpus/fuzz_wire_host
 */
#include "lib/exec_internal.h"
#include "protocol/wire.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT (64u << 10) /* fits a socket buffer: no writer thread needed */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    int sz = 256 << 10;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    if (size && write(sv[1], data, size) != (ssize_t)size)
        abort();
    close(sv[1]);
    agent_reader r;
    agent_reader_init(&r, sv[0], "fuzz");
    for (;;) {
        wire_frame f;
        sm_error err;
        sm_code rc = agent_read_frame(&r, &f, -1, 0, &err);
        if (rc) {
            if (!err.message[0] || (rc == SM_E_SETUP && r.got_output))
                abort(); /* every failure has a message; SETUP only before output */
            break;
        }
        wire_error e;
        if (f.type == WIRE_EXIT) {
            wire_exit x;
            sm_exec_status st;
            if (wire_get_exit(&f, &x, &e)) {
                exec_status_from_wire(&x, &st);
                int code = sm_exec_status_shell_code(&st);
                if (code < 0 || code > 255 + 64 + 128)
                    abort();
            }
        } else if (f.type == WIRE_FILE_INFO) {
            wire_file_head h;
            if (wire_get_file_head(&f, &h, &e) && h.size > WIRE_MAX_FILE_SIZE)
                abort();
        }
    }
    agent_reader_destroy(&r);
    close(sv[0]);
    return 0;
}
