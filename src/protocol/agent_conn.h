/* A blocking connection to the agent through a Unix socket (agent_conn.c). */
#ifndef SM_PROTOCOL_AGENT_CONN_H
#define SM_PROTOCOL_AGENT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/wire.h"
#include "supermachine.h"

/* Reading frames from one connection. */
typedef struct agent_reader {
    int fd;            /* -1: no socket, only the bytes fed into rd (fuzz targets) */
    wire_reader rd;
    const char *path;  /* for messages */
    bool got_hello;
    bool got_output;   /* any frame past HELLO: the command started */
    /* How long the agent may stay silent, besides the caller's deadline (each
     * 0 = no limit; set them after agent_reader_init). The agent sends HELLO
     * as it accepts, so hello_ms catches a guest that stopped answering before
     * a command even started; idle_ms suits answers that stream without a
     * pause (a file being read), never a command's output. */
    uint32_t hello_ms;      /* HELLO within this long of init (after our request) */
    uint32_t idle_ms;       /* some byte within this long of the previous one */
    uint64_t opened_us;     /* agent_reader_init */
    uint64_t last_rx_us;    /* the last byte received (init before any) */
    /* What the caller's deadline_us waits for, in its timeout message, e.g.
     * "no exit report 30000 ms past the command's 1000 ms timeout". */
    const char *deadline_what;
} agent_reader;

/* Connects to the socket; SM_E_SETUP (retryable) when nobody answers. */
sm_code agent_dial(const char *path, int *fd, sm_error *err);
/* Sends every byte (blocking); SM_E_DROPPED (started) or SM_E_SETUP on a
 * broken pipe. With idle_ms, SM_E_TIMEOUT when the agent takes none of our
 * bytes for that long (it stopped reading); 0 waits as long as it takes. */
sm_code agent_send_all(int fd, const void *data, size_t len, bool started, uint32_t idle_ms,
                       sm_error *err);

void agent_reader_init(agent_reader *r, int fd, const char *path);
void agent_reader_destroy(agent_reader *r);
/* Next frame after HELLO (checked here). wake_fd (or -1) readable ->
 * SM_E_CANCELLED; deadline_us (monotonic, 0 = none) or one of the reader's
 * own limits passed -> SM_E_TIMEOUT, "the agent ... stopped answering".
 * An ERROR frame becomes the matching code and the agent's message. */
sm_code agent_read_frame(agent_reader *r, wire_frame *f, int wake_fd, uint64_t deadline_us,
                         sm_error *err);
/* Fails with "unexpected frame" for f in the current operation. */
sm_code agent_unexpected(const agent_reader *r, const wire_frame *f, sm_error *err);

/* Reads the one-frame answer (OK) of a WRITE_FILE, POWEROFF or SYNC; gives up
 * when wake_fd (if >= 0) becomes readable, or with SM_E_TIMEOUT when no
 * answer came within timeout_ms (0 = no limit). `what` prefixes a failure. */
sm_code agent_expect_ok(int fd, const char *path, const char *what, int wake_fd,
                        uint32_t timeout_ms, sm_error *err);

/* One request on a new connection, answered by OK: `data` holds HELLO and
 * the operation (POWEROFF, SYNC, NETCONF). timeout_ms (0 = none) bounds the
 * agent taking the request, then its answer; wake_fd as agent_expect_ok. */
sm_code agent_call(const char *path, const void *data, size_t len, const char *what, int wake_fd,
                   uint32_t timeout_ms, sm_error *err);

/* Gives the agent the host's wall clock and fresh entropy (SYNC), as a
 * restored guest needs before it is ready; gives up when wake_fd fires.
 * No deadline of its own: the VMM bounds it by the boot timeout (wake_fd). */
sm_code agent_sync(const char *socket_path, int wake_fd, sm_error *err);
/* The same, also giving up (SM_E_TIMEOUT) when the agent does not take the
 * request or answer within timeout_ms (0 = no limit): sm_exec_sync. */
sm_code agent_sync_within(const char *socket_path, int wake_fd, uint32_t timeout_ms, sm_error *err);

/* Tells the agent whether the guest's network is on (NETCONF), as a
 * restored guest needs: its interface is as the snapshot left it. */
sm_code agent_netconf(const char *socket_path, bool on, int wake_fd, sm_error *err);

/* Asks the agent (a guest's PID 1) to power off (POWEROFF): SM_OK once it
 * has taken the request; no answer within timeout_ms (0 = none) is
 * SM_E_TIMEOUT. */
sm_code agent_poweroff(const char *exec_socket_path, uint32_t timeout_ms, sm_error *err);

/* Asks a guest's agent to mount volume v (VOLUME): SM_OK once it is
 * mounted; the agent's reason as SM_E_GUEST; no answer within timeout_ms
 * (0 = no limit) is SM_E_TIMEOUT. */
sm_code agent_mount_volume(const char *exec_socket_path, const wire_volume *v, uint32_t timeout_ms,
                           sm_error *err);

/* Opens a stream to TCP port `port` on the guest's loopback through the
 * agent (CONNECT): on SM_OK, *fd is a connected stream socket carrying that
 * connection's bytes. The agent's ERROR (nothing listens there) comes back
 * as SM_E_GUEST with its message; no answer within timeout_ms is
 * SM_E_TIMEOUT. */
sm_code agent_connect_port(const char *exec_socket_path, uint16_t port, uint32_t timeout_ms, int *fd,
                           sm_error *err);

#endif
