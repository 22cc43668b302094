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
#include "protocol/agent_conn.h"
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

/* Dials, sends HELLO + REQUEST (+ STDIN_CLOSE if close_stdin) in one go. */
sm_code exec_open_request(const sm_exec_builder *b, bool close_stdin, int *fd, sm_error *err);

void exec_status_from_wire(const wire_exit *x, sm_exec_status *st);

#endif
