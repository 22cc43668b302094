/*
 * The guest agent: one single-threaded epoll loop serving exec, file and
 * power-off requests (the wire protocol in protocol/wire.h) on any number of
 * listening sockets at once. As PID 1 it also sets up the guest (pid1.c).
 *
 *   loop.c     the event loop, listeners, connections and their frames
 *   session.c  one exec request: staged files, spawn, stdio, chain, timeout
 *   files.c    atomic file writes (staging, WRITE_FILE) and READ_FILE
 *   pid1.c     mounts, console, the VMM signal port, power off
 *   exec_as.c  a command as another user or with limits (--exec-as)
 *
 * Ownership: the loop owns connections and sessions. A connection points to
 * its session while the command runs; a session outlives a dropped connection
 * until its processes are gone. Objects are freed only between event batches
 * (they are marked dead first), so a batch never touches freed memory.
 */
#ifndef SM_AGENT_AGENT_H
#define SM_AGENT_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/clock.h"
#include "base/file.h"
#include "protocol/wire.h"

typedef struct agent agent;
typedef struct conn conn;
typedef struct session session;

typedef enum watch_kind { W_LISTEN, W_CONN, W_SIGNALS, W_OUT, W_ERR, W_IN } watch_kind;

/* What an epoll event points at. */
typedef struct watch {
    watch_kind kind;
    int fd;
    uint32_t events; /* currently registered interest (0 = not registered) */
    void *owner;
} watch;

#define AGENT_MAX_LISTENERS 8
#define AGENT_MAX_RELAYS 128 /* CONNECT streams at once; beyond, ERROR */

struct agent {
    int epfd;
    watch signals; /* signalfd: SIGCHLD, SIGTERM, SIGINT, SIGHUP */
    watch listeners[AGENT_MAX_LISTENERS];
    int nlisteners;
    conn *conns;
    session *sessions;
    bool pid1;
    bool in_vm;    /* PID 1 of a guest (not of a PID namespace: --no-vm) */
    bool stopping;
    bool poweroff;              /* PID 1: power off once the OK has reached the host */
    uint64_t poweroff_deadline; /* ... or at this clock_now_us() at the latest */
    unsigned drop_logs;         /* dropped replies logged so far (loop.c) */
    pid_t relays[AGENT_MAX_RELAYS]; /* CONNECT relays alive (0 = free slot) */
};

/* ---- loop.c ---------------------------------------------------------- */

/* Sets up epoll and signal handling. False (message logged) on failure. */
bool agent_init(agent *ag, bool pid1);
/* Adds a listener for "unix:PATH" or "vsock:PORT". */
bool agent_listen(agent *ag, const char *spec);
/* Serves until stopped (SIGTERM when not PID 1). */
void agent_run(agent *ag);
/* Kills every running command's process group and frees everything. */
void agent_shutdown(agent *ag);

void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* epoll interest changes; events == 0 removes the fd from epoll. */
void agent_watch_set(agent *ag, watch *w, uint32_t events);

/* The connection side of a session (loop.c). */
/* Appends to the connection's output queue; false if it is gone. */
bool conn_send_data(conn *c, uint8_t type, const void *data, size_t len);
/* Reads up to `max` bytes from fd straight into a STDOUT/STDERR frame.
 * Returns read(2)'s result (or -1 with errno). */
ssize_t conn_send_from_fd(conn *c, uint8_t type, int fd, size_t max);
void conn_send_exit(conn *c, const wire_exit *x);
/* Sends ERROR and closes once flushed. */
void conn_fail(conn *c, uint32_t kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Bytes queued towards the host and not yet written. */
size_t conn_backlog(const conn *c);
/* The session is done with its connection (after EXIT or ERROR). */
void conn_session_ended(conn *c);
/* Links a new session to its connection. */
void conn_attach(conn *c, session *s);
/* Stops/resumes reading frames (stdin backpressure). */
void conn_pause_reading(conn *c, bool pause);

/* ---- session.c ------------------------------------------------------- */

/* Starts the REQUEST in payload (taken over, freed by the session) and sets
 * c->s through conn_attach. On failure, sends ERROR on c instead. */
void session_start(agent *ag, conn *c, uint8_t *payload, uint32_t length);
void session_on_frame(session *s, const wire_frame *f);
/* The host connection dropped: SIGHUP the group, SIGKILL shortly after. */
void session_detach(session *s);
void session_on_event(session *s, watch *w, uint32_t events);
/* wait4 found pid exit; returns false if no session owns it. */
bool session_reaped(agent *ag, pid_t pid, int status, long maxrss_kib);
/* Deadlines: timeout, drain grace, SIGKILL after a drop. */
void session_tick(session *s, uint64_t now);
uint64_t session_next_deadline(const session *s);
/* The connection's backlog fell: resume reading the command's output. */
void session_resume_output(session *s);
bool session_is_dead(const session *s);
/* The list link (the loop keeps sessions in a singly linked list). */
session **session_next(session *s);
void session_free(session *s);
void session_kill_all(session *s, int signo);

/* ---- files.c ---------------------------------------------------------- */

/* Writes bytes to path atomically (temp file + rename) with mode, creating
 * parent folders. False with a message in why on failure. */
bool files_write_atomic(const char *path, const void *data, size_t len, uint32_t mode,
                        char *why, size_t whylen);

/* A WRITE_FILE in progress. */
typedef struct file_upload {
    bool active;              /* between begin and finish/abort */
    struct atomic_file file;
    uint32_t mode;
    uint64_t size, got;
} file_upload;

bool files_upload_begin(file_upload *u, const wire_file_head *h, char *why, size_t whylen);
bool files_upload_data(file_upload *u, const uint8_t *data, size_t len, char *why, size_t whylen);
bool files_upload_finish(file_upload *u, char *why, size_t whylen);
void files_upload_abort(file_upload *u);

/* Opens path for READ_FILE: fills size and mode, returns the fd or -1 with
 * the wire error kind in *kind and a message in why. */
int files_open_for_read(const char *path, uint64_t *size, uint32_t *mode, uint32_t *kind,
                        char *why, size_t whylen);

/* ---- relay.c ---------------------------------------------------------- */

/* Serves a CONNECT in a child process: sends to_host (the frames queued for
 * the host, HELLO among them), connects to 127.0.0.1:port, answers OK or
 * ERROR, passes on to_guest (what the host sent behind its CONNECT) and
 * relays both ways. The child's pid, or -1 with errno; the caller then
 * closes its own copy of host_fd. */
pid_t relay_spawn(int host_fd, const void *to_host, size_t to_host_len, const void *to_guest,
                  size_t to_guest_len, uint16_t port);

/* ---- netconf.c ------------------------------------------------------- */

/* The guest has eth0 (its VM has a network device). */
bool netconf_present(void);
/* eth0 configured and up (address, route, resolver, host.internal), or
 * down; false with why. */
bool netconf_apply(bool on, char *why, size_t whylen);

/* ---- volume.c -------------------------------------------------------- */

/* Registers volume v's slot, waits for its disk and mounts it at v->path;
 * false with why. Only for a guest's PID 1. */
bool volume_mount(const wire_volume *v, char *why, size_t whylen);
/* Before power off: every mounted volume unmounted, or else remounted
 * read-only, so that its journal is clean and the next VM may mount it
 * read-only. Other processes are killed first (they would hold it busy). */
void volume_unmount_all(void);

/* ---- pid1.c ----------------------------------------------------------- */

/* Mounts, console (in_vm only), environment defaults. Never fails fatally. */
void pid1_setup(bool in_vm);
/* The first word of the kernel command line that starts with prefix: true,
 * and what follows the prefix into rest (may be NULL). */
bool cmdline_token(const char *prefix, char *rest, size_t cap);

/* ---- image_root.c: the OCI image's root filesystem and settings ---- */
/* Mounts the image named by supermachine.root= as / (overlay on tmpfs) and
 * applies its settings; false when the guest has no image root. */
bool image_root_setup(void);
/* Why the user the image names cannot be used (NULL when it can, or when
 * it names none). */
const char *image_user_error(void);
/* The image's user, when it names one that resolved. */
bool image_user_id(uint32_t *uid, uint32_t *gid);
/* Sets the guest's hostname (a request's, WIRE_REQ_HOSTNAME) and, when the
 * image root is up, its /etc/hostname and /etc/hosts. Only for a guest's
 * PID 1: elsewhere the UTS namespace is the host's. False with why. */
bool image_hostname_set(const char *name, char *why, size_t cap);

/* ---- exec_as.c: a command as another user or with limits (the agent
 * re-executed) ---- */
typedef struct exec_as {
    bool as_user;              /* uid, gid, groups are set */
    uint32_t uid, gid;
    uint32_t ngroups;          /* <= WIRE_MAX_GROUPS */
    const uint32_t *groups;
    uint32_t nrlimits;         /* <= WIRE_MAX_RLIMITS; 0: none */
    const wire_rlimit *rlimits;
} exec_as;
/* Room for exec_as_wrap's scratch: the ids (uid, gid and the groups, each
 * at most 10 digits and a separator) and the limits (a resource of 2
 * digits, two values of 20, three separators each), their NULs. */
#define EXEC_AS_SCRATCH_MAX ((WIRE_MAX_GROUPS + 2) * 11 + 1 + WIRE_MAX_RLIMITS * 45 + 1)
/* Whether who needs the --exec-as route (a user, or limits). */
bool exec_as_wanted(const exec_as *who);
/* argv that runs path+argv as who says, through `/proc/self/exe
 * --exec-as`; scratch (EXEC_AS_SCRATCH_MAX bytes) is space it points into.
 * Free the array (not its strings); NULL when out of memory or room. */
const char **exec_as_wrap(const char *path, const char *const *argv, const exec_as *who,
                          char *scratch, size_t cap);
/* main() of `supermachine-agent --exec-as USER LIMITS PATH ARGV...`. */
int exec_as_main(int argc, char **argv);
/* Tells the VMM we are ready (protocol/guest_abi.h) and gives up the port;
 * returns true if the VMM asked for power off. */
bool pid1_signal_ready(void);
/* After a snapshot restore: sets the wall clock and mixes the host's
 * entropy into the kernel's pool, then forces a reseed, so that clones do
 * not share random state. False with a reason when either fails. */
bool pid1_sync(uint64_t realtime_ns, const uint8_t *entropy, size_t len, char *why, size_t why_len);
/* Prints a line, syncs and reboots (reboot=k resets through the i8042, which
 * the VMM takes as power off; in a PID namespace, reboot ends the namespace). */
void pid1_poweroff(const char *why) __attribute__((noreturn));

#endif
