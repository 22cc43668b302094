/* A container's process run through the agent: see process.h. */
#include "runtime/process.h"

#include "base/error.h"
#include "base/file.h"
#include "base/signal_pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

/* The signals an engine sends a container (`kill ID SIG`, or to the pid it
 * was given) that we pass on to the process in the guest. SIGKILL and
 * SIGSTOP cannot be caught: SIGKILL ends us, and with us the VM (its
 * lifeline), which is what it means for the container too. */
static const int forwarded_signals[] = {
    SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM, SIGCONT, SIGTSTP, SIGTTIN, SIGTTOU,
};

#define RELAY_BUFFER (256u << 10)

/* ---- the request -------------------------------------------------------------- */

static sm_code add_env(sm_exec_builder *b, const char *kv, sm_error *err)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return error_set(err, SM_E_INVALID, "process.env: '%.64s' is not KEY=VALUE", kv);
    char *key = strndup(kv, (size_t)(eq - kv));
    if (!key)
        return error_set(err, SM_E_NOMEM, "out of memory");
    sm_code rc = sm_exec_builder_env(b, key, eq + 1);
    free(key);
    return rc ? error_set(err, rc, "process.env: cannot pass '%.64s'", kv) : SM_OK;
}

static sm_code add_rlimit(sm_exec_builder *b, const struct rt_rlimit *r, sm_error *err)
{
    sm_code rc = sm_exec_builder_rlimit(b, r->resource, r->soft, r->hard);
    return rc ? error_set(err, rc, "process.rlimits: cannot pass %s", r->type) : SM_OK;
}

sm_exec_builder *rt_process_builder(const sm_vm *vm, const struct rt_config *p, sm_error *err)
{
    sm_exec_builder *b = sm_vm_exec_builder(vm);
    if (!b) {
        error_set(err, SM_E_NOMEM, "out of memory");
        return NULL;
    }
    sm_code rc = sm_exec_builder_argv(b, (int)p->nargs, (const char *const *)p->args);
    if (!rc)
        rc = sm_exec_builder_clear_env(b, true);
    for (size_t i = 0; !rc && i < p->nenv; i++)
        rc = add_env(b, p->env[i], err);
    if (!rc && p->cwd)
        rc = sm_exec_builder_cwd(b, p->cwd);
    if (!rc)
        rc = sm_exec_builder_user(b, p->uid, p->gid, p->ngids, p->additional_gids);
    for (size_t i = 0; !rc && i < p->nrlimits; i++)
        rc = add_rlimit(b, &p->rlimits[i], err);
    if (!rc && p->hostname && p->hostname[0] && (rc = sm_exec_builder_hostname(b, p->hostname)))
        error_set(err, rc, "hostname: '%s' cannot be the guest's (1 to 64 of A-Z a-z 0-9 . -)",
                  p->hostname);
    if (!rc && p->terminal)
        rc = sm_exec_builder_tty(b, true);
    if (!rc && p->terminal && p->console_width && p->console_height)
        rc = sm_exec_builder_winsize(b, p->console_width, p->console_height);
    if (rc) {
        if (!err || !err->code)
            error_set(err, rc, "cannot build the request for process.args[0] '%.64s'", p->args[0]);
        sm_exec_builder_free(b);
        return NULL;
    }
    return b;
}

/* ---- the terminal ------------------------------------------------------------- */

/* Sends fd over the unix socket at path, as runc does: one message whose
 * data is the terminal's name and whose only right is the master. */
static sm_code send_master(const char *path, int fd, const char *name, sm_error *err)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof a.sun_path)
        return error_set(err, SM_E_INVALID, "--console-socket %s: path too long", path);
    strcpy(a.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        if (s >= 0)
            close(s);
        return error_set_errno(err, SM_E_IO, e, "cannot connect to the console socket %s", path);
    }
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = { .iov_base = (void *)name, .iov_len = strlen(name) };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                        .msg_controllen = sizeof control.space };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t n = sendmsg(s, &m, MSG_NOSIGNAL);
    int e = errno;
    close(s);
    return n < 0 ? error_set_errno(err, SM_E_IO, e, "cannot send the terminal to %s", path) : SM_OK;
}

sm_code rt_console_open(const char *socket_path, int *slave, sm_error *err)
{
    *slave = -1;
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        int e = errno;
        if (master >= 0)
            close(master);
        return error_set_errno(err, SM_E_IO, e, "cannot make a terminal");
    }
    const char *name = ptsname(master);
    int s = name ? open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
    struct termios t;
    sm_code rc = SM_OK;
    if (s < 0)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot open the terminal %s", name ? name : "?");
    if (!rc && tcgetattr(s, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(s, TCSANOW, &t);
    }
    if (!rc && ioctl(s, TIOCSCTTY, 0) != 0)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot make %s our terminal", name);
    if (!rc)
        rc = send_master(socket_path, master, name, err);
    close(master);
    if (rc && s >= 0)
        close(s);
    if (!rc)
        *slave = s;
    return rc;
}

/* ---- signals ------------------------------------------------------------------- */

static sm_code catch_signals(bool terminal, sm_error *err)
{
    int signals[sizeof forwarded_signals / sizeof forwarded_signals[0] + 1];
    size_t n = 0;
    for (; n < sizeof forwarded_signals / sizeof forwarded_signals[0]; n++)
        signals[n] = forwarded_signals[n];
    if (terminal)
        signals[n++] = SIGWINCH;
    return signal_pipe_catch(signals, n) ? SM_OK
                                         : error_set_errno(err, SM_E_IO, errno, "cannot make a pipe");
}

static void send_winsize(sm_exec_child *child, int tty)
{
    struct winsize ws;
    if (ioctl(tty, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row)
        sm_exec_child_resize(child, ws.ws_col, ws.ws_row, NULL);
}

static void forward_signals(sm_exec_child *child, const struct rt_stdio *io)
{
    for (int signo; (signo = signal_pipe_next());) {
        if (signo == SIGWINCH)
            send_winsize(child, io->out);
        else
            sm_exec_child_signal(child, signo, NULL);
    }
}

/* ---- the relay ----------------------------------------------------------------- */

/* Moves one read's worth from the child's stdout (s 0) or stderr (s 1) to
 * its host fd; false when that stream is over. */
static bool relay_output(sm_exec_child *child, int s, int fd, uint8_t *buf)
{
    size_t got = 0;
    sm_code rc = s == 0 ? sm_exec_child_stdout_read(child, buf, RELAY_BUFFER, &got, NULL)
                        : sm_exec_child_stderr_read(child, buf, RELAY_BUFFER, &got, NULL);
    if (rc || !got)
        return false;
    /* The reader went away (the engine closed its end): the process runs
     * on, as it would on the host with a closed pipe, but nothing more is
     * copied. */
    write_all(fd, buf, got);
    return true;
}

/* false when the host's stdin is over (its end is then closed for the child). */
static bool relay_input(sm_exec_child *child, int fd, uint8_t *buf)
{
    ssize_t n = read(fd, buf, RELAY_BUFFER);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n > 0 && sm_exec_child_stdin_write(child, buf, (size_t)n, NULL) == SM_OK)
        return true;
    /* A terminal's slave reads EIO once the engine closed the master. */
    sm_exec_child_stdin_close(child, NULL);
    return false;
}

static sm_code relay(sm_exec_child *child, const struct rt_stdio *io, sm_error *err)
{
    uint8_t *buf = malloc(RELAY_BUFFER);
    if (!buf)
        return error_set(err, SM_E_NOMEM, "out of memory");
    bool out_open = true, err_open = !io->terminal, in_open = io->in >= 0;
    if (!in_open)
        sm_exec_child_stdin_close(child, NULL);
    while (out_open || err_open) {
        struct pollfd p[4] = {
            { .fd = out_open ? sm_exec_child_stdout_fd(child) : -1, .events = POLLIN },
            { .fd = err_open ? sm_exec_child_stderr_fd(child) : -1, .events = POLLIN },
            { .fd = in_open ? io->in : -1, .events = POLLIN },
            { .fd = signal_pipe_fd(), .events = POLLIN },
        };
        if (poll(p, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            free(buf);
            return error_set_errno(err, SM_E_IO, errno, "poll");
        }
        if (p[0].revents)
            out_open = relay_output(child, 0, io->out, buf);
        if (p[1].revents)
            err_open = relay_output(child, 1, io->err, buf);
        if (p[2].revents)
            in_open = relay_input(child, io->in, buf);
        if (p[3].revents)
            forward_signals(child, io);
    }
    free(buf);
    return SM_OK;
}

sm_code rt_process_run(const sm_exec_builder *b, const struct rt_stdio *io, sm_exec_status *status,
                       sm_error *err)
{
    memset(status, 0, sizeof *status);
    status->code = -1;
    sm_exec_child *child = NULL;
    sm_code rc = catch_signals(io->terminal, err);
    if (!rc)
        rc = sm_exec_spawn(b, &child, err);
    if (!rc && io->terminal)
        send_winsize(child, io->out);
    if (!rc)
        rc = relay(child, io, err);
    if (!rc)
        rc = sm_exec_child_wait(child, status, err);
    sm_exec_child_free(child);
    return rc;
}

/* Signals whose default action ends a process: raising one of the others
 * would stop us or do nothing, so those end as 128 + N, the shell's code. */
static bool ends_a_process(int signo)
{
    switch (signo) {
    case SIGSTOP: case SIGTSTP: case SIGTTIN: case SIGTTOU:
    case SIGCHLD: case SIGCONT: case SIGURG: case SIGWINCH:
        return false;
    default:
        return signo > 0 && signo < SIGRTMIN;
    }
}

_Noreturn void rt_exit_as(const sm_exec_status *status)
{
    int signo = status->signal;
    if (!ends_a_process(signo))
        _exit(signo > 0 ? 128 + signo : status->code & 0xff);
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
    signal(signo, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signo);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    raise(signo);
    _exit(128 + signo);
}
