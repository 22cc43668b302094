/*
 * Host side of the exec protocol (internal). The public API is the Exec
 * section of supermachine.h; the wire format is protocol/wire.h.
 *
 *   exec_builder.c  the builder (plain data, copied strings)
 *   exec_conn.c     dialing, sending, reading frames, mapping agent errors
 *   exec_output.c   output, output_resilient, output_with_cancel, cancel
 *   exec_child.c    spawn: the child, its pump thread, signallers
 *   exec_files.c    write_file, read_file, poweroff, sync
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
    bool clear_env;
    bool has_user;             /* sm_exec_builder_user was called */
    uint32_t uid, gid;
    uint32_t *groups;          /* ngroups entries, NULL when 0 */
    size_t ngroups;
    wire_rlimit rlimits[WIRE_MAX_RLIMITS]; /* no resource twice */
    size_t nrlimits;
    char hostname[WIRE_MAX_HOSTNAME + 1]; /* "" when not set */
    bool tty;
    uint16_t cols, rows;
    uint32_t timeout_ms;
    size_t max_output;        /* sm_exec_output's cap (set by _new) */
    uint32_t agent_timeout_ms; /* 0: exec_agent_timeout_ms()'s default */
    exec_staged *files;
    size_t nfiles;
    exec_argv *chain;
    size_t nchain;
    sm_error first_error; /* a setter's failure, reported by spawn/output */
    bool failed;
};

/* Dials, sends HELLO + REQUEST (+ STDIN_CLOSE if close_stdin) in one go;
 * SM_E_TIMEOUT if the agent stops taking the request (the agent timeout). */
sm_code exec_open_request(const sm_exec_builder *b, bool close_stdin, int *fd, sm_error *err);

/* A reader for a command's answer on fd: HELLO is due within the agent
 * timeout; with a command timeout, deadline_what is filled (why must hold
 * EXEC_WHY_MAX) and *deadline_us is when the exit report is due, else 0. */
#define EXEC_WHY_MAX 160
void exec_reader_init(agent_reader *r, int fd, const sm_exec_builder *b, char *why,
                      uint64_t *deadline_us);

/* The agent timeout for b, or for the calls without a builder (b NULL). */
uint32_t exec_agent_timeout_ms(const sm_exec_builder *b);
/* Tests only: the process-wide agent timeout (0 restores
 * SM_EXEC_AGENT_TIMEOUT_MS), so that a test of a silent agent waits 200 ms
 * and not 30 s. */
void exec_set_default_agent_timeout_ms(uint32_t ms);
/* Appends how to raise the agent timeout to a SM_E_TIMEOUT's message. */
void exec_timeout_hint(sm_error *err, bool has_builder);

void exec_status_from_wire(const wire_exit *x, sm_exec_status *st);

/* Collects a command's answer from r until EXIT (exec_output.c): STDOUT and
 * STDERR into out's buffers, at most max_output bytes together (more:
 * SM_E_LIMIT, with exactly the first max_output bytes kept), EXIT into its
 * status. Buffers stay NUL-terminated; out must start zeroed. */
sm_code exec_collect(agent_reader *r, size_t max_output, int wake_fd, uint64_t deadline_us,
                     sm_exec_outcome *out, sm_error *err);

/* Receives READ_FILE's answer from r (exec_files.c): FILE_INFO (size at
 * most max_len, else SM_E_LIMIT), FILE_DATA adding up to exactly that size,
 * FILE_END. On SM_OK *bytes (NUL-terminated, malloc'd) and *len. */
sm_code exec_receive_file(agent_reader *r, const char *guest_path, size_t max_len,
                          uint8_t **bytes, size_t *len, sm_error *err);

#endif
