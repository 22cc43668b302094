/*
 * One exec request in the agent: stage its files, run its argv (then each
 * chained argv while the previous exited 0) in a process group of its own,
 * stream its output, forward stdin, signals and resizes, enforce the timeout,
 * and send the EXIT report once the last command is reaped and its output
 * drained.
 *
 * Lifetime of the command's stdio: the agent keeps the child ends of the
 * pipes (or the pty slave) open until the whole chain has finished, so the
 * streams stay continuous across chained commands; it closes them when the
 * last one exits, reads what the pipes hold right then (drain_now: the
 * command's own output, which must not wait for the loop to come round),
 * and then waits for end-of-file, at most DRAIN_GRACE_US (a background
 * process still holding the pipe does not hold up the report).
 * The grace counts only time spent reading: while the output is paused
 * because the connection is slow (BACKLOG_HIGH), what is left in the pipe is
 * the command's output, not a background writer's, and closing the pipe
 * then would drop it (a slow host lost up to a pipe's worth, exit code 0).
 *
 * Process groups: every command runs with setpgid(0,0) (or setsid with a
 * tty), so the group id is its pid. Signals, the timeout's SIGKILL and a
 * dropped connection's SIGHUP/SIGKILL go to kill(-pgid): children of
 * children are included.
 */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

extern char **environ;

#define OUTPUT_CHUNK     (512u << 10)
#define BACKLOG_HIGH     (4u << 20)
#define STDIN_HIGH       (4u << 20)  /* stop reading the connection above */
#define DRAIN_GRACE_US   200000u
#define HUP_TO_KILL_US   200000u
#define PIPE_SIZE        (1 << 20)

struct session {
    agent *ag;
    session *next;
    conn *c;               /* NULL once the connection dropped or we reported */
    uint8_t *payload;      /* the REQUEST bytes; req points into them */
    wire_request req;
    char **envp;           /* the agent's environment with the request's on top, or
                            * the request's alone (WIRE_REQ_CLEAR_ENV) */
    bool tty;
    char pty_name[64];
    watch w_out, w_err, w_in; /* our ends: output readers, stdin writer */
    int child_out, child_err, child_in; /* child ends, kept for the chain */
    wire_buf stdin_q;
    size_t stdin_sent;
    bool stdin_close_wanted;
    bool output_paused;
    bool conn_paused;
    pid_t pid;             /* the running command, 0 between/after */
    pid_t pgids[WIRE_MAX_CHAIN + 1];
    unsigned npgids;
    unsigned step;         /* 0 = argv, i = chain[i - 1] */
    uint64_t start_us, end_us, deadline_us, grace_us, kill_at_us;
    int status;
    long peak_rss_kib;
    bool timed_out, finished, detached, reported, dead;
};

session **session_next(session *s)
{
    return &s->next;
}

bool session_is_dead(const session *s)
{
    return s->dead;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void close_watch(session *s, watch *w)
{
    if (w->fd < 0)
        return;
    agent_watch_set(s->ag, w, 0);
    close_fd(&w->fd);
}

void session_kill_all(session *s, int signo)
{
    for (unsigned i = 0; i < s->npgids; i++)
        if (kill(-s->pgids[i], signo) < 0 && errno != ESRCH)
            agent_log("kill(-%d, %d): %s", s->pgids[i], signo, strerror(errno));
}

/* ---- environment and PATH ------------------------------------------------ */

static size_t key_len(const char *kv)
{
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* The agent's environment with extra on top, or extra alone (clear). */
static char **merge_env(const wire_argv *extra, bool clear)
{
    size_t n = 0;
    while (!clear && environ && environ[n])
        n++;
    char **envp = calloc(n + extra->argc + 1, sizeof *envp);
    if (!envp)
        return NULL;
    memcpy(envp, environ, n * sizeof *envp);
    for (uint32_t i = 0; i < extra->argc; i++) {
        const char *kv = extra->argv[i];
        size_t k = key_len(kv), j;
        for (j = 0; j < n; j++)
            if (key_len(envp[j]) == k && !strncmp(envp[j], kv, k))
                break;
        envp[j] = (char *)kv;
        if (j == n)
            n++;
    }
    return envp;
}

static const char *env_get(char **envp, const char *key)
{
    size_t k = strlen(key);
    for (size_t i = 0; envp[i]; i++)
        if (!strncmp(envp[i], key, k) && envp[i][k] == '=')
            return envp[i] + k + 1;
    return NULL;
}

/* Finds argv0 through PATH in the merged environment; 0 or an errno. */
static int resolve_program(const char *argv0, char **envp, char *out, size_t outlen)
{
    if (!argv0[0])
        return ENOENT;
    if (strchr(argv0, '/')) {
        if (strlen(argv0) >= outlen)
            return ENAMETOOLONG;
        strcpy(out, argv0);
        return 0;
    }
    const char *path = env_get(envp, "PATH");
    if (!path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    int found_err = ENOENT;
    for (const char *p = path;; p++) {
        const char *colon = strchr(p, ':');
        size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
        int len = snprintf(out, outlen, "%.*s%s%s", (int)dlen, p, dlen ? "/" : "", argv0);
        struct stat st;
        if (len > 0 && (size_t)len < outlen && stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(out, X_OK) == 0)
                return 0;
            found_err = EACCES;
        }
        if (!colon)
            break;
        p = colon;
    }
    return found_err;
}

/* ---- stdio ---------------------------------------------------------------- */

static bool make_pipe(int fds[2], bool big)
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return false;
    if (big)
        fcntl(fds[1], F_SETPIPE_SZ, PIPE_SIZE); /* best effort: fewer wakeups */
    return true;
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static bool setup_pipes(session *s, char *why, size_t whylen)
{
    int out[2], err[2], in[2];
    if (!make_pipe(out, true))
        goto fail;
    if (!make_pipe(err, false)) {
        close(out[0]); close(out[1]);
        goto fail;
    }
    if (!make_pipe(in, false)) {
        close(out[0]); close(out[1]); close(err[0]); close(err[1]);
        goto fail;
    }
    s->w_out.fd = out[0];
    s->child_out = out[1];
    s->w_err.fd = err[0];
    s->child_err = err[1];
    s->w_in.fd = in[1];
    s->child_in = in[0];
    set_nonblock(out[0]);
    set_nonblock(err[0]);
    set_nonblock(in[1]);
    return true;
fail:
    snprintf(why, whylen, "cannot create pipes: %s", strerror(errno));
    return false;
}

static bool setup_pty(session *s, char *why, size_t whylen)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) {
        snprintf(why, whylen, "cannot open a pty (is devpts mounted?): %s", strerror(errno));
        return false;
    }
    if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, s->pty_name, sizeof s->pty_name)) {
        snprintf(why, whylen, "cannot set up the pty: %s", strerror(errno));
        close(m);
        return false;
    }
    struct winsize ws = { .ws_col = s->req.cols ? s->req.cols : 80,
                          .ws_row = s->req.rows ? s->req.rows : 24 };
    ioctl(m, TIOCSWINSZ, &ws);
    /* Our own slave fd keeps the master from reporting EIO between chained
     * commands; the command opens the slave itself to make it its
     * controlling terminal. */
    int slave = open(s->pty_name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    int m2 = fcntl(m, F_DUPFD_CLOEXEC, 3);
    if (slave < 0 || m2 < 0) {
        snprintf(why, whylen, "cannot open the pty slave %s: %s", s->pty_name, strerror(errno));
        if (slave >= 0)
            close(slave);
        if (m2 >= 0)
            close(m2);
        close(m);
        return false;
    }
    set_nonblock(m);
    s->w_out.fd = m;
    s->w_in.fd = m2;
    s->child_out = slave;
    return true;
}

/* ---- spawning ------------------------------------------------------------ */

static int spawn_one(session *s, const char *path, const char **argv, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    if (s->tty) {
        /* After setsid, opening the slave makes it the controlling tty. */
        posix_spawn_file_actions_addopen(&fa, 0, s->pty_name, O_RDWR, 0);
        posix_spawn_file_actions_adddup2(&fa, 0, 1);
        posix_spawn_file_actions_adddup2(&fa, 0, 2);
    } else {
        posix_spawn_file_actions_adddup2(&fa, s->child_in, 0);
        posix_spawn_file_actions_adddup2(&fa, s->child_out, 1);
        posix_spawn_file_actions_adddup2(&fa, s->child_err, 2);
    }
    if (s->req.cwd && s->req.cwd[0])
        posix_spawn_file_actions_addchdir_np(&fa, s->req.cwd);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    for (int sig = 1; sig < 32; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaddset(&dfl, sig);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (s->tty) {
        flags |= POSIX_SPAWN_SETSID;
    } else {
        flags |= POSIX_SPAWN_SETPGROUP;
        posix_spawnattr_setpgroup(&at, 0);
    }
    posix_spawnattr_setflags(&at, flags);
    /* Every agent fd is O_CLOEXEC, so the command inherits only 0, 1, 2. */
    int rc;
    exec_as who = {
        .as_user = s->req.flags & WIRE_REQ_USER,
        .uid = s->req.uid, .gid = s->req.gid,
        .ngroups = s->req.ngroups, .groups = s->req.groups,
        .nrlimits = s->req.nrlimits, .rlimits = s->req.rlimits,
    };
    if (!who.as_user && image_user_id(&who.uid, &who.gid)) {
        who.as_user = true;
        who.ngroups = 1;
        who.groups = &who.gid;
    }
    if (exec_as_wanted(&who)) {
        /* posix_spawn can change neither user nor limits: this agent does
         * it, re-executed. */
        char scratch[EXEC_AS_SCRATCH_MAX];
        const char **wrapped = exec_as_wrap(path, argv, &who, scratch, sizeof scratch);
        rc = wrapped ? posix_spawn(pid, "/proc/self/exe", &fa, &at, (char *const *)wrapped, s->envp) : ENOMEM;
        free(wrapped);
    } else {
        rc = posix_spawn(pid, path, &fa, &at, (char *const *)argv, s->envp);
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return rc;
}

static void finish(session *s);
static void on_step_exit(session *s, int status, long rss_kib);

static void spawn_step(session *s)
{
    const wire_argv *a = s->step == 0 ? &s->req.argv : &s->req.chain[s->step - 1];
    char path[4096];
    int err = resolve_program(a->argv[0], s->envp, path, sizeof path);
    pid_t pid = 0;
    if (!err)
        err = spawn_one(s, path, a->argv, &pid);
    if (err) {
        char msg[600];
        int n = snprintf(msg, sizeof msg, "supermachine-agent: cannot run '%.200s'%s%.200s%s: %s\n",
                         a->argv[0], s->req.cwd[0] ? " in '" : "", s->req.cwd,
                         s->req.cwd[0] ? "'" : "", strerror(err));
        conn_send_data(s->c, s->tty ? WIRE_STDOUT : WIRE_STDERR, msg,
                       n > 0 && (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
        /* The shell's convention: 127 not found, 126 found but not runnable. */
        on_step_exit(s, (err == ENOENT ? 127 : 126) << 8, 0); /* a wait status */
        return;
    }
    s->pid = pid;
    s->pgids[s->npgids++] = pid;
}

static void on_step_exit(session *s, int status, long rss_kib)
{
    s->pid = 0;
    s->status = status;
    if (rss_kib > s->peak_rss_kib)
        s->peak_rss_kib = rss_kib;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok && !s->timed_out && !s->detached && s->step < s->req.nchain) {
        s->step++;
        spawn_step(s);
        return;
    }
    finish(s);
}

/* ---- reporting ------------------------------------------------------------ */

static void report(session *s)
{
    if (!s->finished || s->reported)
        return;
    bool open = s->w_out.fd >= 0 || s->w_err.fd >= 0;
    if (open && (s->output_paused || clock_now_us() < s->grace_us))
        return; /* paused: session_resume_output restarts the grace */
    close_watch(s, &s->w_out);
    close_watch(s, &s->w_err);
    s->reported = true;
    if (s->c) {
        wire_exit x = {
            .code = WIFEXITED(s->status) ? WEXITSTATUS(s->status) : -1,
            .signal = WIFSIGNALED(s->status) ? WTERMSIG(s->status) : 0,
            .timed_out = s->timed_out,
            .steps_run = s->npgids,
            .duration_us = s->end_us - s->start_us,
            .peak_rss_kib = (uint64_t)(s->peak_rss_kib > 0 ? s->peak_rss_kib : 0),
        };
        conn *c = s->c;
        s->c = NULL;
        conn_send_exit(c, &x);
    }
    s->dead = true;
}

static void read_output(session *s, watch *w);

/* Reads what the pipes hold now (until they are empty, at end-of-file, or the
 * connection's backlog pauses the output). Called once the last command has
 * exited, and when output paused after that resumes: what the pipes hold
 * then is the command's own output, and must be read before the grace can
 * end. Left to the loop, the pipes' events may come round only after the
 * tick that ends the grace: the child can exit after epoll_wait returned and
 * still be reaped in that batch (wait4 takes every exited child), and a slow
 * batch (a guest's vCPU preempted on a loaded host) then outlasts the grace;
 * 32 concurrent execs lost their last line ("run 17\n" without "17\n", exit
 * code 17) that way. */
static void drain_now(session *s)
{
    if (!s->output_paused && s->w_out.fd >= 0)
        read_output(s, &s->w_out);
    if (!s->output_paused && !s->reported && s->w_err.fd >= 0)
        read_output(s, &s->w_err);
}

static void finish(session *s)
{
    s->finished = true;
    s->end_us = clock_now_us();
    s->deadline_us = 0;
    close_fd(&s->child_out);
    close_fd(&s->child_err);
    close_fd(&s->child_in);
    close_watch(s, &s->w_in);
    if (s->detached) {
        session_kill_all(s, SIGKILL); /* leftovers of a dropped connection */
        s->kill_at_us = 0;
    }
    s->grace_us = s->end_us + DRAIN_GRACE_US;
    drain_now(s);
    report(s);
}

/* ---- stdin ----------------------------------------------------------------- */

static void stdin_close_now(session *s)
{
    if (s->tty) {
        /* A pty has no half-close: send the EOF character, as a typing user. */
        struct termios t;
        char eof = 4;
        if (tcgetattr(s->w_in.fd, &t) == 0)
            eof = (char)t.c_cc[VEOF];
        if (write(s->w_in.fd, &eof, 1) < 0) { /* best effort */ }
        return;
    }
    close_watch(s, &s->w_in);
}

static void flush_stdin(session *s)
{
    while (s->w_in.fd >= 0 && s->stdin_sent < s->stdin_q.len) {
        ssize_t n = write(s->w_in.fd, s->stdin_q.data + s->stdin_sent,
                          s->stdin_q.len - s->stdin_sent);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                agent_watch_set(s->ag, &s->w_in, EPOLLOUT);
                return;
            }
            /* The command closed its stdin: what is left has no reader. */
            close_watch(s, &s->w_in);
            break;
        }
        s->stdin_sent += (size_t)n;
    }
    s->stdin_q.len = s->stdin_sent = 0;
    if (s->w_in.fd >= 0)
        agent_watch_set(s->ag, &s->w_in, 0);
    if (s->stdin_close_wanted && s->w_in.fd >= 0) {
        s->stdin_close_wanted = false;
        stdin_close_now(s);
    }
    if (s->conn_paused && s->c) {
        s->conn_paused = false;
        conn_pause_reading(s->c, false);
    }
}

/* ---- frames from the host -------------------------------------------------- */

void session_on_frame(session *s, const wire_frame *f)
{
    wire_error e;
    switch (f->type) {
    case WIRE_STDIN:
        if (s->w_in.fd < 0 || s->stdin_close_wanted)
            return; /* stdin already closed: nobody would read it */
        wire_buf_put(&s->stdin_q, f->payload, f->length);
        if (s->stdin_q.failed) {
            conn_fail(s->c, WIRE_ERR_LIMIT, "out of memory buffering stdin");
            return;
        }
        flush_stdin(s);
        if (s->stdin_q.len - s->stdin_sent > STDIN_HIGH && s->c) {
            s->conn_paused = true;
            conn_pause_reading(s->c, true);
        }
        return;
    case WIRE_STDIN_CLOSE:
        if (s->w_in.fd < 0)
            return;
        s->stdin_close_wanted = true;
        flush_stdin(s);
        return;
    case WIRE_SIGNAL: {
        int signo;
        if (!wire_get_signal(f, &signo, &e)) {
            conn_fail(s->c, WIRE_ERR_PROTOCOL, "%s", e.message);
            return;
        }
        if (s->pid && kill(-s->pgids[s->npgids - 1], signo) < 0)
            agent_log("forwarding signal %d: %s", signo, strerror(errno));
        return;
    }
    case WIRE_RESIZE: {
        uint16_t cols, rows;
        if (!wire_get_resize(f, &cols, &rows, &e)) {
            conn_fail(s->c, WIRE_ERR_PROTOCOL, "%s", e.message);
            return;
        }
        if (s->tty && s->w_out.fd >= 0) {
            struct winsize ws = { .ws_col = cols, .ws_row = rows };
            ioctl(s->w_out.fd, TIOCSWINSZ, &ws);
        }
        return;
    }
    default:
        conn_fail(s->c, WIRE_ERR_PROTOCOL, "unexpected %s frame while a command runs",
                  wire_type_name(f->type));
    }
}

/* ---- output ------------------------------------------------------------------ */

static void pause_output(session *s, bool pause)
{
    s->output_paused = pause;
    if (s->w_out.fd >= 0)
        agent_watch_set(s->ag, &s->w_out, pause ? 0 : EPOLLIN);
    if (s->w_err.fd >= 0)
        agent_watch_set(s->ag, &s->w_err, pause ? 0 : EPOLLIN);
}

void session_resume_output(session *s)
{
    if (!s->output_paused)
        return;
    pause_output(s, false);
    if (s->finished) {
        s->grace_us = clock_now_us() + DRAIN_GRACE_US; /* the grace counts from the reading */
        drain_now(s);
    }
}

static void read_output(session *s, watch *w)
{
    static uint8_t discard[64 << 10];
    uint8_t type = w == &s->w_out ? WIRE_STDOUT : WIRE_STDERR;
    for (int round = 0; round < 8 && w->fd >= 0; round++) {
        ssize_t n = s->c ? conn_send_from_fd(s->c, type, w->fd, OUTPUT_CHUNK)
                         : read(w->fd, discard, sizeof discard);
        if (n > 0) {
            if (s->c && conn_backlog(s->c) > BACKLOG_HIGH) {
                pause_output(s, true);
                return;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        /* End of file (a pty says EIO when its last slave closed). */
        if (n < 0 && errno != EIO)
            agent_log("reading the command's output: %s", strerror(errno));
        close_watch(s, w);
        report(s);
        return;
    }
}

void session_on_event(session *s, watch *w, uint32_t events)
{
    if (w == &s->w_in) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            flush_stdin(s);
        return;
    }
    read_output(s, w);
}

/* ---- lifecycle ----------------------------------------------------------------- */

bool session_reaped(agent *ag, pid_t pid, int status, long maxrss_kib)
{
    for (session *s = ag->sessions; s; s = s->next) {
        if (s->pid == pid && !s->dead) {
            on_step_exit(s, status, maxrss_kib);
            return true;
        }
    }
    return false;
}

void session_detach(session *s)
{
    s->c = NULL;
    s->detached = true;
    s->stdin_q.len = s->stdin_sent = 0;
    if (s->output_paused)
        pause_output(s, false); /* nobody resumes it now: read_output discards */
    if (!s->finished) {
        close_watch(s, &s->w_in);
        session_kill_all(s, SIGHUP);
        session_kill_all(s, SIGCONT);
        s->kill_at_us = clock_now_us() + HUP_TO_KILL_US;
    } else if (!s->reported) {
        s->reported = true;
        s->dead = true;
    }
}

void session_tick(session *s, uint64_t now)
{
    if (s->dead)
        return;
    if (s->deadline_us && now >= s->deadline_us && !s->finished) {
        s->timed_out = true;
        s->deadline_us = 0;
        session_kill_all(s, SIGKILL);
    }
    if (s->kill_at_us && now >= s->kill_at_us) {
        s->kill_at_us = 0;
        session_kill_all(s, SIGKILL);
    }
    if (s->finished && !s->reported && !s->output_paused && now >= s->grace_us)
        report(s);
}

uint64_t session_next_deadline(const session *s)
{
    uint64_t next = 0;
    const uint64_t candidates[3] = {
        s->finished ? 0 : s->deadline_us,
        s->kill_at_us,
        s->finished && !s->reported && !s->output_paused ? s->grace_us : 0, /* paused: no timer */
    };
    for (int i = 0; i < 3; i++)
        if (candidates[i] && (!next || candidates[i] < next))
            next = candidates[i];
    return next;
}

void session_free(session *s)
{
    close_watch(s, &s->w_out);
    close_watch(s, &s->w_err);
    close_watch(s, &s->w_in);
    close_fd(&s->child_out);
    close_fd(&s->child_err);
    close_fd(&s->child_in);
    wire_buf_free(&s->stdin_q);
    wire_request_free(&s->req);
    free(s->envp);
    free(s->payload);
    free(s);
}

static bool stage_files(session *s, char *why, size_t whylen)
{
    for (uint32_t i = 0; i < s->req.nfiles; i++) {
        const wire_file *f = &s->req.files[i];
        if (!files_write_atomic(f->path, f->data, f->size, f->mode, why, whylen))
            return false;
    }
    return true;
}

void session_start(agent *ag, conn *c, uint8_t *payload, uint32_t length)
{
    session *s = calloc(1, sizeof *s);
    if (!s) {
        free(payload);
        conn_fail(c, WIRE_ERR_LIMIT, "out of memory starting a command");
        return;
    }
    s->ag = ag;
    s->payload = payload;
    s->w_out = (watch){ .kind = W_OUT, .fd = -1, .owner = s };
    s->w_err = (watch){ .kind = W_ERR, .fd = -1, .owner = s };
    s->w_in = (watch){ .kind = W_IN, .fd = -1, .owner = s };
    s->child_out = s->child_err = s->child_in = -1;
    wire_frame f = { .type = WIRE_REQUEST, .length = length, .payload = payload };
    wire_error e;
    char why[600];
    if (!wire_get_request(&f, &s->req, &e)) {
        conn_fail(c, WIRE_ERR_PROTOCOL, "%s", e.message);
        session_free(s);
        return;
    }
    s->tty = s->req.flags & WIRE_REQ_TTY;
    if (image_user_error() && !(s->req.flags & WIRE_REQ_USER)) {
        conn_fail(c, WIRE_ERR_SPAWN, "%s", image_user_error());
        session_free(s);
        return;
    }
    if (s->req.flags & WIRE_REQ_HOSTNAME) {
        /* A local agent or one of a PID namespace (--no-vm) shares the
         * host's UTS namespace: it must never rename the host. */
        if (!ag->pid1 || !ag->in_vm) {
            conn_fail(c, WIRE_ERR_REFUSED, "hostname: only the guest's init sets it (this agent "
                      "is not a guest's PID 1)");
            session_free(s);
            return;
        }
        if (!image_hostname_set(s->req.hostname, why, sizeof why)) {
            conn_fail(c, WIRE_ERR_SPAWN, "%s", why);
            session_free(s);
            return;
        }
    }
    if (!stage_files(s, why, sizeof why)) {
        conn_fail(c, WIRE_ERR_STAGE, "%s", why);
        session_free(s);
        return;
    }
    s->envp = merge_env(&s->req.env, s->req.flags & WIRE_REQ_CLEAR_ENV);
    if (!s->envp) {
        conn_fail(c, WIRE_ERR_SPAWN, "out of memory building the environment");
        session_free(s);
        return;
    }
    if (!(s->tty ? setup_pty(s, why, sizeof why) : setup_pipes(s, why, sizeof why))) {
        conn_fail(c, WIRE_ERR_SPAWN, "%s", why);
        session_free(s);
        return;
    }
    agent_watch_set(ag, &s->w_out, EPOLLIN);
    if (s->w_err.fd >= 0)
        agent_watch_set(ag, &s->w_err, EPOLLIN);
    s->c = c;
    conn_attach(c, s);
    s->next = ag->sessions;
    ag->sessions = s;
    s->start_us = clock_now_us();
    if (s->req.timeout_ms)
        s->deadline_us = s->start_us + (uint64_t)s->req.timeout_ms * 1000u;
    spawn_step(s);
}
