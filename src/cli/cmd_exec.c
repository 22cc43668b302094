/*
 * supermachine exec ID [-e K=V]... [-w DIR] [-t] [-i]
 *                   [--timeout SECONDS] [--stage GUEST_PATH=HOST_FILE[:MODE]]...
 *                   -- ARGV...
 * supermachine exec --socket PATH [options] -- ARGV...
 *
 * ID is a VM that `supermachine start` started (its exec socket is found
 * through the runtime folder); --socket names any agent's exec socket.
 *
 * Streams the command's stdout/stderr as they come, passes stdin with -i,
 * puts the terminal in raw mode with -t (forwarding window size changes), and
 * forwards SIGINT/SIGTERM/SIGHUP to the command's process group; if the
 * command has not ended SIGNAL_GRACE_MS after that, it gives up on it (exit
 * 128+N). Exit status: the command's code, 128+N if killed by signal N, 124
 * if the timeout fired, 125 if it could not be run at all or its connection
 * broke, 2 for a usage error.
 */
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "base/file.h"
#include "base/clock.h"
#include "cli/options.h"
#include "supermachine.h"

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
#include <time.h>
#include <unistd.h>

#define EXIT_TIMEOUT 124
#define EXIT_CANNOT  125
#define EXIT_USAGE   2

static void exec_usage(FILE *out)
{
    fprintf(out,
        "usage: supermachine exec ID [-e K=V]... [-w DIR] [-t] [-i]\n"
        "                         [--timeout SECONDS] [--stage GUEST_PATH=HOST_FILE[:MODE]]...\n"
        "                         -- ARGV...\n"
        "       supermachine exec --socket PATH [options] -- ARGV...\n"
        "  runs ARGV in the VM ID (see supermachine start, supermachine ps), or through\n"
        "  the agent behind the exec socket PATH\n"
        "  -e K=V          set an environment variable (on top of the agent's own)\n"
        "  -w DIR          working directory in the guest\n"
        "  -t              allocate a pseudo-terminal (raw mode here, resizes forwarded)\n"
        "  -i              pass this program's stdin to the command\n"
        "  --timeout S     SIGKILL the command's process group after S seconds (exit 124)\n"
        "  --stage G=H[:M] copy host file H to guest path G (octal mode M) before running\n"
        "exit status: the command's, 128+N if killed by signal N, 124 on timeout,\n"
        "125 if it could not be run, 2 for a usage error\n");
}

static int signal_pipe[2] = { -1, -1 };

static void on_signal(int signo)
{
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    if (write(signal_pipe[1], &b, 1) < 0) { /* full: the signal is already pending */ }
    errno = saved;
}

static bool read_host_file(const char *path, uint8_t **data, size_t *len, mode_t *mode)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "supermachine exec: --stage: cannot open %s: %s\n", path, strerror(errno));
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
        fprintf(stderr, "supermachine exec: --stage: cannot read %s\n", path);
        return false;
    }
    *data = buf;
    *len = n;
    *mode = st.st_mode & 07777;
    return true;
}

/* GUEST_PATH=HOST_FILE[:MODE] */
static bool add_stage(sm_exec_builder *b, const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1]) {
        fprintf(stderr, "supermachine exec: --stage wants GUEST_PATH=HOST_FILE[:MODE], got '%s'\n",
                spec);
        return false;
    }
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
    bool ok = guest && host && read_host_file(host, &data, &len, &host_mode);
    if (ok) {
        sm_code rc = sm_exec_builder_stage_file_mode(b, guest, data, len,
                                                     mode >= 0 ? (uint32_t)mode : host_mode);
        if (rc) {
            fprintf(stderr, "supermachine exec: --stage %s: %s\n", spec, sm_strerror(rc));
            ok = false;
        }
    }
    free(data);
    free(guest);
    free(host);
    return ok;
}

struct exec_opts {
    const char *socket;
    const char *vm_id;
    sm_vm *vm;          /* opened for vm_id; freed by the caller */
    bool tty, interactive;
    double timeout_s;
    int argc;
    char **argv;
};

/* The exec socket of the VM o->vm_id, which must be running. */
static int open_vm(struct exec_opts *o)
{
    sm_error err;
    sm_code rc = sm_vm_open(cli_store(), o->vm_id, &o->vm, &err);
    if (rc) {
        fprintf(stderr, "supermachine exec: %s\n", err.message);
        return rc == SM_E_INVALID ? EXIT_USAGE : EXIT_CANNOT;
    }
    if (!sm_vm_running(o->vm)) {
        fprintf(stderr, "supermachine exec: VM %s is dead (its VMM is gone); "
                "`supermachine stop %s` cleans it up\n", o->vm_id, o->vm_id);
        return EXIT_CANNOT;
    }
    o->socket = sm_vm_exec_socket_path(o->vm);
    return 0;
}

/* Fills b from the command line; returns 0 or the exit status to use. */
static int parse(int argc, char **argv, struct exec_opts *o, sm_exec_builder **out)
{
    memset(o, 0, sizeof *o);
    sm_exec_builder *b = NULL;
    int first = 1;
    if (argc > 1 && argv[1][0] != '-') {
        o->vm_id = argv[1];
        first = 2;
    }
    /* The socket comes first in the builder; collect it in a first pass. */
    for (int i = first; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc)
            o->socket = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            exec_usage(stdout);
            return -1;
        }
    }
    if (!o->socket == !o->vm_id) {
        fprintf(stderr, "supermachine exec: give a VM id or --socket PATH (one of them)\n\n");
        exec_usage(stderr);
        return EXIT_USAGE;
    }
    if (o->vm_id) {
        int rc = open_vm(o);
        if (rc)
            return rc;
    }
    b = sm_exec_builder_new(o->socket);
    if (!b)
        return EXIT_CANNOT;
    *out = b;
    int i = first;
    for (; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            exec_usage(stdout);
            return -1;
        } else if (!strcmp(a, "--socket") && has_value) {
            i++;
        } else if (!strcmp(a, "-e") && has_value) {
            const char *kv = argv[++i];
            const char *eq = strchr(kv, '=');
            char *key = eq ? strndup(kv, (size_t)(eq - kv)) : NULL;
            sm_code rc = key ? sm_exec_builder_env(b, key, eq + 1) : SM_E_INVALID;
            free(key);
            if (rc) {
                fprintf(stderr, "supermachine exec: -e wants KEY=VALUE, got '%s'\n", kv);
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "-w") && has_value) {
            sm_exec_builder_cwd(b, argv[++i]);
        } else if (!strcmp(a, "-t")) {
            o->tty = true;
        } else if (!strcmp(a, "-i")) {
            o->interactive = true;
        } else if (!strcmp(a, "-it") || !strcmp(a, "-ti")) {
            o->tty = o->interactive = true;
        } else if (!strcmp(a, "--timeout") && has_value) {
            if (!parse_seconds_option("--timeout", argv[++i], &o->timeout_s))
                return EXIT_USAGE;
        } else if (!strcmp(a, "--stage") && has_value) {
            if (!add_stage(b, argv[++i]))
                return EXIT_USAGE;
        } else {
            fprintf(stderr, "supermachine exec: unknown or incomplete option '%s'\n\n", a);
            exec_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "supermachine exec: give the command after --\n\n");
        exec_usage(stderr);
        return EXIT_USAGE;
    }
    o->argc = argc - i;
    o->argv = argv + i;
    sm_exec_builder_argv(b, o->argc, (const char *const *)o->argv);
    sm_exec_builder_tty(b, o->tty);
    if (o->timeout_s > 0)
        sm_exec_builder_timeout_ms(b, (uint32_t)(o->timeout_s * 1000.0 + 0.5));
    return 0;
}

static void send_winsize(sm_exec_child *child)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 || ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
        sm_exec_child_resize(child, ws.ws_col, ws.ws_row, NULL);
}

/* After forwarding SIGINT/SIGTERM/SIGHUP, how long the command may take to
 * end before we give up on it (the VM or its agent may not answer). */
#define SIGNAL_GRACE_MS 5000

/* Forwards the signals that arrived; returns the first stop signal, or 0. */
static int forward_signals(sm_exec_child *child)
{
    unsigned char signo;
    int stop = 0;
    while (read(signal_pipe[0], &signo, 1) == 1) {
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

/* Moves bytes between us and the child until its output ends. Returns 0, or
 * the stop signal after which the command did not end within the grace. */
static int pump(sm_exec_child *child, const struct exec_opts *o)
{
    static uint8_t buf[256 << 10];
    bool out_open = true, err_open = true, in_open = o->interactive;
    int stop_signal = 0;
    int64_t give_up_at = 0;
    while (out_open || err_open) {
        struct pollfd p[4] = {
            { .fd = out_open ? sm_exec_child_stdout_fd(child) : -1, .events = POLLIN },
            { .fd = err_open ? sm_exec_child_stderr_fd(child) : -1, .events = POLLIN },
            { .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN },
            { .fd = signal_pipe[0], .events = POLLIN },
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

static void setup_signals(bool tty)
{
    if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return;
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (tty)
        sigaction(SIGWINCH, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int cmd_exec(int argc, char **argv)
{
    struct exec_opts o;
    sm_exec_builder *b = NULL;
    int status = parse(argc, argv, &o, &b);
    sm_vm_free(o.vm);   /* a handle only: the VM runs on; b has the socket path */
    o.vm = NULL;
    if (status) {
        sm_exec_builder_free(b);
        return status < 0 ? 0 : status;
    }
    struct termios saved;
    bool raw = false;
    if (o.tty) {
        struct winsize ws;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 || ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
            sm_exec_builder_winsize(b, ws.ws_col, ws.ws_row);
        if (o.interactive && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
            struct termios t = saved;
            cfmakeraw(&t);
            raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
        }
    }
    setup_signals(o.tty);
    sm_error err;
    sm_exec_child *child;
    if (sm_exec_spawn(b, &child, &err)) {
        if (raw)
            tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        fprintf(stderr, "supermachine exec: %s\n", err.message);
        sm_exec_builder_free(b);
        return EXIT_CANNOT;
    }
    if (!o.interactive)
        sm_exec_child_stdin_close(child, NULL);
    int unanswered = pump(child, &o);
    if (unanswered) {
        /* Dropping the connection makes the agent kill the group, if it can. */
        sm_exec_child_free(child);
        if (raw)
            tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        sm_exec_builder_free(b);
        fprintf(stderr, "supermachine exec: the command did not end within %d s of signal %d (%s); "
                "gave up on it\n", SIGNAL_GRACE_MS / 1000, unanswered, strsignal(unanswered));
        return 128 + unanswered;
    }
    sm_exec_status st;
    sm_code rc = sm_exec_child_wait(child, &st, &err);
    sm_exec_child_free(child);
    if (raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    sm_exec_builder_free(b);
    if (rc) {
        fprintf(stderr, "supermachine exec: %s\n", err.message);
        return EXIT_CANNOT;
    }
    if (st.timed_out) {
        fprintf(stderr, "supermachine exec: timed out after %.3g s; the command's process group "
                "was killed\n", o.timeout_s);
        return EXIT_TIMEOUT;
    }
    return sm_exec_status_shell_code(&st);
}
