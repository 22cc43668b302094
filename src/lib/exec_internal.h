/*
 * Host side of the exec protocol (internal). The public API is the Exec
 * section of supermachine.h; the wire format is protocol/wire.h.
 *
 *   exec_builder.c  the builder (plain data, copied strings)
 *   exec_conn.c     dialing, sending, reading frames, mapping agent errors
 *   exec_output.c   output, output_resilient, output_with_cancel, cancel
 *   exec_child.c    spawn: the child, its pump thread, signallers
 *   exec_files.c    write_file, read_file, poweroff
 */
#ifndef SM_LIB_EXEC_INTERNAL_H
#define SM_LIB_EXEC_INTERNAL_H

#include "supermachine.h"
#include "protocol/wire.h"

typedef struct exec_staged {
    char *path;
    uint8_t *data;
    size_t len;
    uint32_t mode;
} exec_staged;

typedef struct exec_argv {
    int argc;
    char **argv;
} exec_argv;

struct sm_exec_builder {
    char *socket_path;
    exec_argv argv;
    char **env; /* "KEY=VALUE" */
    size_t nenv;
    char *cwd;
    bool tty;
    uint16_t cols, rows;
    uint32_t timeout_ms;
    exec_staged *files;
    size_t nfiles;
    exec_argv *chain;
    size_t nchain;
    sm_error first_error; /* a setter's failure, reported by spawn/output */
    bool failed;
};

/* Reading frames from an agent connection. */
typedef struct exec_reader {
    int fd;
    wire_reader rd;
    const char *path;  /* for messages */
    bool got_hello;
    bool got_output;   /* any frame past HELLO: the command started */
} exec_reader;

/* Connects to the exec socket; SM_E_SETUP (retryable) when nobody answers. */
sm_code exec_dial(const char *path, int *fd, sm_error *err);
/* sm_exec_sync that gives up when wake_fd (if >= 0) becomes readable. */
sm_code exec_sync(const char *exec_socket_path, int wake_fd, sm_error *err);
/* Sends every byte (blocking); SM_E_DROPPED/SM_E_SETUP on a broken pipe. */
sm_code exec_send_all(int fd, const void *data, size_t len, bool started, sm_error *err);
/* Dials, sends HELLO + REQUEST (+ STDIN_CLOSE if close_stdin) in one go. */
sm_code exec_open_request(const sm_exec_builder *b, bool close_stdin, int *fd, sm_error *err);

void exec_reader_init(exec_reader *r, int fd, const char *path);
void exec_reader_destroy(exec_reader *r);
/* Next frame after HELLO (checked here). wake_fd (or -1) readable ->
 * SM_E_CANCELLED; deadline_us (monotonic, 0 = none) passed -> SM_E_TIMEOUT.
 * An ERROR frame becomes the matching code and the agent's message. */
sm_code exec_read_frame(exec_reader *r, wire_frame *f, int wake_fd, uint64_t deadline_us,
                        sm_error *err);
/* Fails with "unexpected frame" for f in the current operation. */
sm_code exec_unexpected(const exec_reader *r, const wire_frame *f, sm_error *err);
void exec_status_from_wire(const wire_exit *x, sm_exec_status *st);

#endif
