#include "cli/exec_run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/file.h"
#include "base/signal_pipe.h"
#include "cli/options.h"
#include "supermachine.h"

/* ---- the flags --------------------------------------------------------------- */

bool exec_opts_init(struct exec_opts *o, int argc)
{
    memset(o, 0, sizeof *o);
    size_t cap = argc > 0 ? (size_t)argc : 1;
    o->env = calloc(cap, sizeof *o->env);
    o->stages = calloc(cap, sizeof *o->stages);
    return o->env && o->stages;
}

void exec_opts_free(struct exec_opts *o)
{
    free(o->env);
    free(o->stages);
    o->env = o->stages = NULL;
}

/* KEY=VALUE with a non-empty KEY (the value may hold '=' and be empty). */
static bool valid_env(const char *kv)
{
    const char *eq = strchr(kv, '=');
    return eq && eq != kv;
}

/* GUEST_PATH=HOST_FILE[:MODE], both paths non-empty; the file is read when
 * the command runs. */
static bool valid_stage(const char *spec)
{
    const char *eq = strchr(spec, '=');
    return eq && eq != spec && eq[1];
}

bool exec_flag_apply(const char *prog, struct exec_opts *o, int c, const char *arg)
{
    switch (c) {
    case 'e':
        if (!valid_env(arg)) {
            fprintf(stderr, "%s: -e wants KEY=VALUE, got '%s'\n", prog, arg);
            return false;
        }
        o->env[o->n_env++] = arg;
        return true;
    case 'w': o->workdir = arg; return true;
    case 't': o->tty = true; return true;
    case 'i': o->interactive = true; return true;
    case EXEC_FLAG_TIMEOUT: return parse_seconds_option("--timeout", arg, &o->timeout_s);
    case EXEC_FLAG_STAGE:
        if (!valid_stage(arg)) {
            fprintf(stderr, "%s: --stage wants GUEST_PATH=HOST_FILE[:MODE], got '%s'\n", prog, arg);
            return false;
        }
        o->stages[o->n_stages++] = arg;
        return true;
    default: return false;
    }
}

/* ---- the request ------------------------------------------------------------- */

/* The whole of a host file, and its permission bits. */
static bool read_host_file(const char *prog, const char *path, uint8_t **data, size_t *len,
                           mode_t *mode)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "%s: --stage: cannot open %s: %s\n", prog, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size : 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (ssize_t r = 1; buf && r > 0;) {
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - n);
        if (r > 0)
            n += (size_t)r;
        else if (r < 0 && errno != EINTR) {
            free(buf);
            buf = NULL;
        }
    }
    close(fd);
    if (!buf) {
        fprintf(stderr, "%s: --stage: cannot read %s\n", prog, path);
        return false;
    }
    *data = buf;
    *len = n;
    *mode = st.st_mode & 07777;
    return true;
}

/* GUEST_PATH=HOST_FILE[:MODE] (checked by valid_stage): reads HOST_FILE
 * into the request. MODE defaults to the host file's. */
static bool add_stage(const char *prog, sm_exec_builder *b, const char *spec)
{
    const char *eq = strchr(spec, '=');
    char *guest = strndup(spec, (size_t)(eq - spec));
    char *host = strdup(eq + 1);
    long mode = -1;
    char *colon = host ? strrchr(host, ':') : NULL;
    if (colon && colon[1] && strspn(colon + 1, "01234567") == strlen(colon + 1)) {
        mode = strtol(colon + 1, NULL, 8);
        *colon = 0;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    mode_t host_mode = 0644;
    bool ok = guest && host && read_host_file(prog, host, &data, &len, &host_mode);
    if (ok) {
        sm_code rc = sm_exec_builder_stage_file_mode(b, guest, data, len,
                                                     mode >= 0 ? (uint32_t)mode : host_mode);
        if (rc) {
            fprintf(stderr, "%s: --stage %s: %s\n", prog, spec, sm_strerror(rc));
            ok = false;
        }
    }
    free(data);
    free(guest);
    free(host);
    return ok;
}

static sm_code add_env(sm_exec_builder *b, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char *key = strndup(kv, (size_t)(eq - kv));
    sm_code rc = key ? sm_exec_builder_env(b, key, eq + 1) : SM_E_NOMEM;
    free(key);
    return rc;
}

static bool terminal_size(struct winsize *ws)
{
    return ioctl(STDOUT_FILENO, TIOCGWINSZ, ws) == 0 || ioctl(STDIN_FILENO, TIOCGWINSZ, ws) == 0;
}

/* The request for o; *status is the exit status when it returns NULL. */
static sm_exec_builder *build_request(const char *prog, const struct exec_opts *o, int *status)
{
    sm_exec_builder *b = sm_exec_builder_new(o->socket);
    *status = EXIT_CANNOT;
    if (!b)
        return NULL;
    *status = EXIT_USAGE;
    for (size_t i = 0; i < o->n_env; i++) {
        sm_code rc = add_env(b, o->env[i]);
        if (rc) {
            fprintf(stderr, "%s: -e %s: %s\n", prog, o->env[i], sm_strerror(rc));
            goto fail;
        }
    }
    if (o->workdir)
        sm_exec_builder_cwd(b, o->workdir);
    for (size_t i = 0; i < o->n_stages; i++)
        if (!add_stage(prog, b, o->stages[i]))
            goto fail;
    sm_exec_builder_argv(b, o->argc, (const char *const *)o->argv);
    sm_exec_builder_tty(b, o->tty);
    if (o->timeout_s > 0)
        sm_exec_builder_timeout_ms(b, (uint32_t)(o->timeout_s * 1000.0 + 0.5));
    struct winsize ws;
    if (o->tty && terminal_size(&ws))
        sm_exec_builder_winsize(b, ws.ws_col, ws.ws_row);
    return b;
fail:
    sm_exec_builder_free(b);
    return NULL;
}

/* ---- signals ----------------------------------------------------------------- */

static void setup_signals(bool tty)
{
    static const int caught[] = { SIGINT, SIGTERM, SIGHUP, SIGWINCH /* last: with a tty only */ };
    signal_pipe_catch(caught, tty ? 4 : 3);
}

static void send_winsize(sm_exec_child *child)
{
    struct winsize ws;
    if (terminal_size(&ws))
        sm_exec_child_resize(child, ws.ws_col, ws.ws_row, NULL);
}

/* After forwarding SIGINT/SIGTERM/SIGHUP, how long the command may take to
 * end before we give up on it (the VM or its agent may not answer). */
#define SIGNAL_GRACE_MS 5000

/* Forwards the signals that arrived; returns the first stop signal, or 0. */
static int forward_signals(sm_exec_child *child)
{
    int stop = 0;
    for (int signo; (signo = signal_pipe_next());) {
        if (signo == SIGWINCH) {
            send_winsize(child);
            continue;
        }
        sm_exec_child_signal(child, signo, NULL);
        if (!stop)
            stop = signo;
    }
    return stop;
}

/* ---- the run ----------------------------------------------------------------- */

/* Moves bytes between us and the child until its output ends. Returns 0, or
 * the stop signal after which the command did not end within the grace. */
static int pump(sm_exec_child *child, bool interactive)
{
    static uint8_t buf[256 << 10];
    bool out_open = true, err_open = true, in_open = interactive;
    int stop_signal = 0;
    int64_t give_up_at = 0;
    while (out_open || err_open) {
        struct pollfd p[4] = {
            { .fd = out_open ? sm_exec_child_stdout_fd(child) : -1, .events = POLLIN },
            { .fd = err_open ? sm_exec_child_stderr_fd(child) : -1, .events = POLLIN },
            { .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN },
            { .fd = signal_pipe_fd(), .events = POLLIN },
        };
        int timeout = give_up_at ? (int)(give_up_at - (int64_t)clock_now_ms()) : -1;
        if (give_up_at && timeout <= 0)
            return stop_signal;
        if (poll(p, 4, timeout) < 0) {
            if (errno == EINTR)
                continue;
            return 0;
        }
        for (int s = 0; s < 2; s++) {
            if (!p[s].revents)
                continue;
            size_t got = 0;
            sm_code rc = s == 0 ? sm_exec_child_stdout_read(child, buf, sizeof buf, &got, NULL)
                                : sm_exec_child_stderr_read(child, buf, sizeof buf, &got, NULL);
            if (rc || !got || !write_all(s == 0 ? STDOUT_FILENO : STDERR_FILENO, buf, got)) {
                if (s == 0)
                    out_open = false;
                else
                    err_open = false;
            }
        }
        if (p[2].revents) {
            ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
            if (n > 0 && sm_exec_child_stdin_write(child, buf, (size_t)n, NULL) == SM_OK)
                continue;
            if (n < 0 && errno == EINTR)
                continue;
            in_open = false;
            sm_exec_child_stdin_close(child, NULL);
        }
        if (p[3].revents) {
            int stop = forward_signals(child);
            if (stop && !give_up_at) {
                stop_signal = stop;
                give_up_at = (int64_t)clock_now_ms() + SIGNAL_GRACE_MS;
            }
        }
    }
    return 0;
}

/* Raw mode for -t -i on a terminal, so keys reach the command as typed;
 * true when *saved holds the mode to put back. */
static bool enter_raw_mode(const struct exec_opts *o, struct termios *saved)
{
    if (!o->tty || !o->interactive || !isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, saved))
        return false;
    struct termios t = *saved;
    cfmakeraw(&t);
    return tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
}

/* The exit status for what happened; said after the terminal is back in
 * its mode, so that the message reads as a line. */
static int exit_status(const char *prog, sm_code rc, const sm_error *err, int unanswered,
                       const sm_exec_status *st, double timeout_s)
{
    if (unanswered) {
        fprintf(stderr, "%s: the command did not end within %d s of signal %d (%s); gave up on it\n",
                prog, SIGNAL_GRACE_MS / 1000, unanswered, strsignal(unanswered));
        return 128 + unanswered;
    }
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err->message);
        return EXIT_CANNOT;
    }
    if (st->timed_out) {
        fprintf(stderr, "%s: timed out after %.3g s; the command's process group was killed\n", prog,
                timeout_s);
        return EXIT_TIMEOUT;
    }
    return sm_exec_status_shell_code(st);
}

int exec_run(const char *prog, const struct exec_opts *o)
{
    int status;
    sm_exec_builder *b = build_request(prog, o, &status);
    if (!b)
        return status;
    struct termios saved;
    bool raw = enter_raw_mode(o, &saved);
    setup_signals(o->tty);
    sm_error err;
    sm_exec_child *child = NULL;
    sm_exec_status st = { 0 };
    int unanswered = 0;
    sm_code rc = sm_exec_spawn(b, &child, &err);
    if (!rc) {
        if (!o->interactive)
            sm_exec_child_stdin_close(child, NULL);
        unanswered = pump(child, o->interactive);
        if (!unanswered)
            rc = sm_exec_child_wait(child, &st, &err);
    }
    /* Given up on: dropping the connection makes the agent kill the
     * command's group, if it can. */
    sm_exec_child_free(child);
    if (raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    sm_exec_builder_free(b);
    return exit_status(prog, rc, &err, unanswered, &st, o->timeout_s);
}
