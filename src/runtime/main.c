/*
 * supermachine-runtime: an OCI runtime with runc's command line, whose
 * containers are supermachine microVMs (issue 14). Engines (podman/conmon,
 * containerd's shim, CRI-O) call it as they call runc:
 *
 *   supermachine-runtime [--root DIR] [--log FILE] [--log-format text|json]
 *                        [--systemd-cgroup] [--debug] COMMAND ...
 *
 * Flags are read as runc reads them: long names with one dash or two
 * (-root, --root), values after '=' or as the next argument. Flags that
 * engines pass and that change nothing here are accepted (unknown ones
 * with a warning in the log); flags that would change what the container
 * gets and that this runtime cannot honour fail, saying which. Every
 * failure exits 1 (exec's own failure 255, as runc's), its message in the
 * log (log.h).
 */
#include "runtime/backend.h"
#include "runtime/config.h"
#include "runtime/container.h"
#include "runtime/log.h"

#include "base/error.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PROG "supermachine-runtime"
#define SPEC_VERSION "1.3.0" /* the runtime spec this runtime was written against */

static const struct rt_backend *backend = &rt_backend_vm;
static char root_dir[PATH_MAX];

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rt_log(RT_LOG_ERROR, "%s", msg);
    return 1;
}

static int fail_err(const sm_error *err)
{
    return fail("%s", err->message);
}

/* runc's checkArgs messages. */
static bool args_exactly(const char *cmd, int have, int want)
{
    if (have == want)
        return true;
    fail("%s: \"%s\" requires exactly %d argument(s)", PROG, cmd, want);
    return false;
}

static bool args_at_least(const char *cmd, int have, int want)
{
    if (have >= want)
        return true;
    fail("%s: \"%s\" requires a minimum of %d argument(s)", PROG, cmd, want);
    return false;
}

/* ---- flags ------------------------------------------------------------------ */

/* Reads a command's flags with getopt_long_only (so -flag and --flag both
 * work); on returns the index of the first operand, or -1 after logging an
 * error. An unknown flag is logged as ignored: its value, if it takes one,
 * must follow an '='. in_order: stop at the first operand (exec's COMMAND,
 * kill's SIGNAL may look like flags). */
typedef bool (*flag_fn)(int opt, const char *arg, void *ctx);

static int parse_flags(const char *cmd, int argc, char **argv, const struct option *opts,
                       const char *shorts, bool in_order, flag_fn fn, void *ctx)
{
    char optstring[64];
    snprintf(optstring, sizeof optstring, "%s:%s", in_order ? "+" : "", shorts);
    optind = 0; /* 0: glibc starts afresh (main's own parse ran before, on other words) */
    opterr = 0;
    for (;;) {
        int prev = optind;
        int c = getopt_long_only(argc, argv, optstring, opts, NULL);
        if (c == -1)
            break;
        if (c == '?') {
            const char *bad = argv[optind - 1 >= prev ? optind - 1 : prev];
            rt_log(RT_LOG_WARN, "%s: ignoring the unknown flag %s", cmd, bad);
            continue;
        }
        if (c == ':') {
            fail("%s: flag %s needs a value", cmd, argv[optind - 1]);
            return -1;
        }
        if (!fn(c, optarg, ctx))
            return -1;
    }
    return optind;
}

/* Flags engines pass that change nothing for a VM: accepted, logged at debug. */
enum { F_IGNORED = 1000, F_BUNDLE, F_PID_FILE, F_CONSOLE, F_PRESERVE_FDS, F_PIDFD, F_FORMAT,
       F_PROCESS, F_DETACH, F_CWD, F_ENV, F_TTY, F_USER, F_GIDS, F_CAP, F_FORCE, F_ALL,
       F_IGNORED_VALUE };

static bool ignored(int opt, const char *arg, const char *cmd)
{
    if (opt == F_IGNORED || opt == F_IGNORED_VALUE) {
        rt_log(RT_LOG_DEBUG, "%s: accepted and ignored a flag%s%s", cmd, arg ? " with " : "",
               arg ? arg : "");
        return true;
    }
    return false;
}

/* --preserve-fds N hands N more descriptors to the container's process:
 * they cannot cross into a VM. 0 is harmless. */
static bool preserve_fds(const char *cmd, const char *arg)
{
    if (!strcmp(arg, "0"))
        return true;
    fail("%s: --preserve-fds %s is not supported: the container is a VM, host descriptors cannot be "
         "passed into it",
         cmd, arg);
    return false;
}

/* ---- create ------------------------------------------------------------------- */

struct create_flags {
    struct rt_create_opts o;
};

static bool create_flag(int opt, const char *arg, void *ctx)
{
    struct create_flags *f = ctx;
    switch (opt) {
    case 'b': case F_BUNDLE: f->o.bundle = arg; return true;
    case F_PID_FILE: f->o.pid_file = arg; return true;
    case F_CONSOLE: f->o.console_socket = arg; return true;
    case F_PRESERVE_FDS: return preserve_fds("create", arg);
    case F_PIDFD:
        fail("create: --pidfd-socket is not supported: a container's process runs in a VM and has "
             "no host pidfd");
        return false;
    default: return ignored(opt, arg, "create");
    }
}

static int cmd_create(int argc, char **argv)
{
    static const struct option opts[] = {
        { "bundle", required_argument, NULL, F_BUNDLE },
        { "pid-file", required_argument, NULL, F_PID_FILE },
        { "console-socket", required_argument, NULL, F_CONSOLE },
        { "preserve-fds", required_argument, NULL, F_PRESERVE_FDS },
        { "pidfd-socket", required_argument, NULL, F_PIDFD },
        { "no-pivot", no_argument, NULL, F_IGNORED },
        { "no-new-keyring", no_argument, NULL, F_IGNORED },
        { 0, 0, 0, 0 },
    };
    struct create_flags f = { .o = { .bundle = NULL } };
    int i = parse_flags("create", argc, argv, opts, "b:", false, create_flag, &f);
    if (i < 0 || !args_exactly("create", argc - i, 1))
        return 1;
    sm_error err = { 0 };
    if (rt_create(root_dir, argv[i], &f.o, backend, &err))
        return fail_err(&err);
    return 0;
}

/* ---- start, state, delete ---------------------------------------------------- */

static bool no_flag(int opt, const char *arg, void *ctx)
{
    return ignored(opt, arg, ctx);
}

static int cmd_start(int argc, char **argv)
{
    static const struct option opts[] = { { 0, 0, 0, 0 } };
    int i = parse_flags("start", argc, argv, opts, "", false, no_flag, "start");
    if (i < 0 || !args_exactly("start", argc - i, 1))
        return 1;
    sm_error err = { 0 };
    return rt_start(root_dir, argv[i], backend, &err) ? fail_err(&err) : 0;
}

static int cmd_state(int argc, char **argv)
{
    static const struct option opts[] = { { 0, 0, 0, 0 } };
    int i = parse_flags("state", argc, argv, opts, "", false, no_flag, "state");
    if (i < 0 || !args_exactly("state", argc - i, 1))
        return 1;
    sm_error err = { 0 };
    struct rt_state st;
    if (rt_state_load(root_dir, argv[i], backend, &st, &err))
        return fail_err(&err);
    char *json = rt_state_json(&st);
    rt_state_free(&st);
    if (!json)
        return fail("state: out of memory");
    printf("%s\n", json);
    free(json);
    return 0;
}

static bool delete_flag(int opt, const char *arg, void *ctx)
{
    if (opt == 'f' || opt == F_FORCE) {
        *(bool *)ctx = true;
        return true;
    }
    return ignored(opt, arg, "delete");
}

static int cmd_delete(int argc, char **argv)
{
    static const struct option opts[] = { { "force", no_argument, NULL, F_FORCE }, { 0, 0, 0, 0 } };
    bool force = false;
    int i = parse_flags("delete", argc, argv, opts, "f", false, delete_flag, &force);
    if (i < 0 || !args_exactly("delete", argc - i, 1))
        return 1;
    sm_error err = { 0 };
    return rt_delete(root_dir, argv[i], force, backend, &err) ? fail_err(&err) : 0;
}

/* ---- kill ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    int signo;
} signals[] = {
    { "HUP", SIGHUP },   { "INT", SIGINT },     { "QUIT", SIGQUIT },   { "ILL", SIGILL },
    { "TRAP", SIGTRAP }, { "ABRT", SIGABRT },   { "IOT", SIGIOT },     { "BUS", SIGBUS },
    { "FPE", SIGFPE },   { "KILL", SIGKILL },   { "USR1", SIGUSR1 },   { "SEGV", SIGSEGV },
    { "USR2", SIGUSR2 }, { "PIPE", SIGPIPE },   { "ALRM", SIGALRM },   { "TERM", SIGTERM },
    { "STKFLT", SIGSTKFLT }, { "CHLD", SIGCHLD }, { "CONT", SIGCONT }, { "STOP", SIGSTOP },
    { "TSTP", SIGTSTP }, { "TTIN", SIGTTIN },   { "TTOU", SIGTTOU },   { "URG", SIGURG },
    { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ },   { "VTALRM", SIGVTALRM }, { "PROF", SIGPROF },
    { "WINCH", SIGWINCH }, { "IO", SIGIO },     { "POLL", SIGPOLL },   { "PWR", SIGPWR },
    { "SYS", SIGSYS },
};

/* runc's reading: a number, or a name with or without SIG, any case. -1: none. */
static int parse_signal(const char *s)
{
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (*s && !*end && !errno)
        return n >= 0 && n <= SIGRTMAX ? (int)n : -1;
    const char *name = strncasecmp(s, "SIG", 3) ? s : s + 3;
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        if (!strcasecmp(name, signals[i].name))
            return signals[i].signo;
    return -1;
}

static bool kill_flag(int opt, const char *arg, void *ctx)
{
    if (opt == 'a' || opt == F_ALL) {
        *(bool *)ctx = true;
        return true;
    }
    return ignored(opt, arg, "kill");
}

static int cmd_kill(int argc, char **argv)
{
    static const struct option opts[] = { { "all", no_argument, NULL, F_ALL }, { 0, 0, 0, 0 } };
    bool all = false;
    int i = parse_flags("kill", argc, argv, opts, "a", true, kill_flag, &all);
    if (i < 0 || !args_at_least("kill", argc - i, 1))
        return 1;
    if (argc - i > 2)
        return fail("%s: \"kill\" requires a maximum of 2 argument(s)", PROG);
    const char *sig = argc - i == 2 ? argv[i + 1] : "SIGTERM";
    int signo = parse_signal(sig);
    if (signo < 0)
        return fail("unknown signal \"%s\"", sig);
    sm_error err = { 0 };
    return rt_kill(root_dir, argv[i], signo, all, backend, &err) ? fail_err(&err) : 0;
}

/* ---- exec ------------------------------------------------------------------------- */

struct exec_flags {
    struct rt_exec_opts o;
    const char *process;
    bool tty;
    const char *cwd;
    const char *user;
    const char *env[64];
    size_t nenv;
};

static bool exec_flag(int opt, const char *arg, void *ctx)
{
    struct exec_flags *f = ctx;
    switch (opt) {
    case 'p': case F_PROCESS: f->process = arg; return true;
    case 'd': case F_DETACH: f->o.detach = true; return true;
    case F_PID_FILE: f->o.pid_file = arg; return true;
    case F_CONSOLE: f->o.console_socket = arg; return true;
    case 't': case F_TTY: f->tty = true; return true;
    case F_CWD: f->cwd = arg; return true;
    case 'u': case F_USER: f->user = arg; return true;
    case 'e': case F_ENV:
        if (f->nenv == sizeof f->env / sizeof f->env[0]) {
            fail("exec: more than %zu --env flags", sizeof f->env / sizeof f->env[0]);
            return false;
        }
        f->env[f->nenv++] = arg;
        return true;
    case F_PRESERVE_FDS: return preserve_fds("exec", arg);
    case F_PIDFD:
        fail("exec: --pidfd-socket is not supported: a container's process runs in a VM and has "
             "no host pidfd");
        return false;
    case 'g': case F_GIDS: case 'c': case F_CAP:
        return ignored(F_IGNORED_VALUE, arg, "exec");
    default: return ignored(opt, arg, "exec");
    }
}

/* The process of exec: --process FILE, or the command line's. */
static int exec_process(const struct exec_flags *f, int argc, char **argv, struct rt_config *p)
{
    sm_error err = { 0 };
    if (f->process) {
        FILE *in = fopen(f->process, "re");
        if (!in)
            return fail("exec: cannot open the process file %s: %s", f->process, strerror(errno));
        char *buf = malloc(RT_CONFIG_MAX_BYTES + 1);
        size_t n = buf ? fread(buf, 1, RT_CONFIG_MAX_BYTES + 1, in) : 0;
        fclose(in);
        if (!buf)
            return fail("exec: out of memory");
        sm_code rc = rt_process_parse(buf, n, p, &err);
        free(buf);
        return rc ? fail_err(&err) : 0;
    }
    if (argc < 1)
        return fail("exec args cannot be empty");
    memset(p, 0, sizeof *p);
    p->has_process = true;
    p->terminal = f->tty;
    p->nargs = (size_t)argc;
    p->args = calloc((size_t)argc + 1, sizeof *p->args);
    p->cwd = strdup(f->cwd ? f->cwd : "/");
    p->nenv = f->nenv;
    p->env = calloc(f->nenv + 1, sizeof *p->env);
    bool ok = p->args && p->cwd && p->env;
    for (int i = 0; ok && i < argc; i++)
        ok = (p->args[i] = strdup(argv[i])) != NULL;
    for (size_t i = 0; ok && i < f->nenv; i++)
        ok = (p->env[i] = strdup(f->env[i])) != NULL;
    if (!ok) {
        rt_config_free(p);
        return fail("exec: out of memory");
    }
    if (f->user) {
        char *end;
        unsigned long uid = strtoul(f->user, &end, 10), gid = 0;
        if (*end == ':')
            gid = strtoul(end + 1, &end, 10);
        if (*end || uid > UINT32_MAX || gid > UINT32_MAX) {
            rt_config_free(p);
            return fail("exec: --user %s: not UID[:GID]", f->user);
        }
        p->uid = (uint32_t)uid;
        p->gid = (uint32_t)gid;
    }
    return 0;
}

static int cmd_exec(int argc, char **argv)
{
    static const struct option opts[] = {
        { "process", required_argument, NULL, F_PROCESS },
        { "detach", no_argument, NULL, F_DETACH },
        { "pid-file", required_argument, NULL, F_PID_FILE },
        { "console-socket", required_argument, NULL, F_CONSOLE },
        { "tty", no_argument, NULL, F_TTY },
        { "cwd", required_argument, NULL, F_CWD },
        { "env", required_argument, NULL, F_ENV },
        { "user", required_argument, NULL, F_USER },
        { "additional-gids", required_argument, NULL, F_GIDS },
        { "cap", required_argument, NULL, F_CAP },
        { "preserve-fds", required_argument, NULL, F_PRESERVE_FDS },
        { "pidfd-socket", required_argument, NULL, F_PIDFD },
        { "process-label", required_argument, NULL, F_IGNORED_VALUE },
        { "apparmor", required_argument, NULL, F_IGNORED_VALUE },
        { "cgroup", required_argument, NULL, F_IGNORED_VALUE },
        { "no-new-privs", no_argument, NULL, F_IGNORED },
        { "ignore-paused", no_argument, NULL, F_IGNORED },
        { 0, 0, 0, 0 },
    };
    struct exec_flags f = { .nenv = 0 };
    int i = parse_flags("exec", argc, argv, opts, "p:de:tu:g:c:", true, exec_flag, &f);
    if (i < 0 || !args_at_least("exec", argc - i, 1))
        return 1;
    const char *id = argv[i];
    struct rt_config proc;
    if (exec_process(&f, argc - i - 1, argv + i + 1, &proc))
        return 255;
    const char *tty_error = NULL;
    if (proc.terminal && !f.o.console_socket && f.o.detach)
        tty_error = "cannot allocate tty if runc will detach without setting console socket";
    else if (f.o.console_socket && (!proc.terminal || !f.o.detach))
        tty_error = "cannot use console socket if runc will not detach or allocate tty";
    if (tty_error) {
        rt_config_free(&proc);
        fail("%s", tty_error);
        return 255;
    }
    sm_error err = { 0 };
    int status = -1;
    sm_code rc = rt_exec(root_dir, id, &proc, &f.o, backend, &status, &err);
    rt_config_free(&proc);
    if (rc) {
        fail("exec failed: %s", err.message);
        return 255;
    }
    return f.o.detach ? 0 : status;
}

/* ---- ps, features -------------------------------------------------------------------- */

static bool ps_flag(int opt, const char *arg, void *ctx)
{
    if (opt == 'f' || opt == F_FORMAT) {
        *(const char **)ctx = arg;
        return true;
    }
    return ignored(opt, arg, "ps");
}

/* A container's processes run in its VM; the host has one process that
 * stands for them all, which is what ps lists. */
static int cmd_ps(int argc, char **argv)
{
    static const struct option opts[] = { { "format", required_argument, NULL, F_FORMAT },
                                          { 0, 0, 0, 0 } };
    const char *format = "table";
    int i = parse_flags("ps", argc, argv, opts, "f:", true, ps_flag, &format);
    if (i < 0 || !args_at_least("ps", argc - i, 1))
        return 1;
    if (strcmp(format, "table") && strcmp(format, "json"))
        return fail("invalid format option");
    sm_error err = { 0 };
    struct rt_state st;
    if (rt_state_load(root_dir, argv[i], backend, &st, &err))
        return fail_err(&err);
    bool alive = st.status == RT_CREATED || st.status == RT_RUNNING;
    if (!strcmp(format, "json"))
        alive ? printf("[%d]\n", st.pid) : printf("[]\n");
    else if (alive)
        printf("PID\n%d\n", st.pid);
    else
        printf("PID\n");
    rt_state_free(&st);
    return 0;
}

/* Only what is true: no hooks, no mount options honoured yet, and none of
 * the kernel-isolation features, since the VM is the boundary. */
static int cmd_features(int argc, char **argv)
{
    static const struct option opts[] = { { 0, 0, 0, 0 } };
    int i = parse_flags("features", argc, argv, opts, "", false, no_flag, "features");
    if (i < 0 || !args_exactly("features", argc - i, 0))
        return 1;
    printf("{\n"
           "    \"ociVersionMin\": \"1.0.0\",\n"
           "    \"ociVersionMax\": \"%s\",\n"
           "    \"hooks\": [],\n"
           "    \"mountOptions\": [],\n"
           "    \"linux\": {\n"
           "        \"namespaces\": [],\n"
           "        \"capabilities\": [],\n"
           "        \"cgroup\": { \"v1\": false, \"v2\": false, \"systemd\": false, "
           "\"systemdUser\": false, \"rdma\": false },\n"
           "        \"seccomp\": { \"enabled\": false },\n"
           "        \"apparmor\": { \"enabled\": false },\n"
           "        \"selinux\": { \"enabled\": false },\n"
           "        \"intelRdt\": { \"enabled\": false }\n"
           "    },\n"
           "    \"annotations\": {\n"
           "        \"org.supermachine.runtime.version\": \"%d.%d.%d\",\n"
           "        \"org.supermachine.runtime.isolation\": \"vm\"\n"
           "    },\n"
           "    \"potentiallyUnsafeConfigAnnotations\": []\n"
           "}\n",
           SPEC_VERSION, SM_VERSION_MAJOR, SM_VERSION_MINOR, SM_VERSION_PATCH);
    return 0;
}

/* ---- main --------------------------------------------------------------------------- */

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    { "create", cmd_create, "create a container: its VM, restored from root.path's bake" },
    { "start", cmd_start, "run a created container's process" },
    { "state", cmd_state, "print a container's state as the runtime spec's JSON" },
    { "kill", cmd_kill, "send a signal (default SIGTERM) to a container" },
    { "delete", cmd_delete, "remove a container (--force: even a running one)" },
    { "exec", cmd_exec, "run another process in a container" },
    { "ps", cmd_ps, "list a container's host processes (--format table|json)" },
    { "features", cmd_features, "print the runtime spec's features JSON" },
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " PROG " [global options] COMMAND [options] [ID] ...\n\n"
            "An OCI runtime with runc's command line whose containers are supermachine microVMs.\n\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nglobal options:\n"
                 "  --root DIR           container state (default $XDG_RUNTIME_DIR/supermachine-runtime,\n"
                 "                       or /run/supermachine-runtime for root)\n"
                 "  --log FILE           append the log there (default: stderr)\n"
                 "  --log-format FORMAT  text (default) or json\n"
                 "  --debug              log debug lines too\n"
                 "  --systemd-cgroup     accepted (a VM's limits are its own)\n"
                 "  --version, --help\n");
}

enum { G_ROOT = 2000, G_LOG, G_LOG_FORMAT, G_DEBUG, G_SYSTEMD, G_ROOTLESS, G_CRIU, G_HELP,
       G_VERSION };

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "root", required_argument, NULL, G_ROOT },
        { "log", required_argument, NULL, G_LOG },
        { "log-format", required_argument, NULL, G_LOG_FORMAT },
        { "debug", no_argument, NULL, G_DEBUG },
        { "systemd-cgroup", no_argument, NULL, G_SYSTEMD },
        { "rootless", required_argument, NULL, G_ROOTLESS },
        { "criu", required_argument, NULL, G_CRIU },
        { "help", no_argument, NULL, G_HELP },
        { "version", no_argument, NULL, G_VERSION },
        { 0, 0, 0, 0 },
    };
    const char *root = NULL, *log_path = NULL, *log_format = "text";
    bool debug = false;
    char *unknown[16];
    size_t nunknown = 0;
    optind = 1;
    opterr = 0;
    for (;;) {
        int prev = optind;
        int c = getopt_long_only(argc, argv, "+:hv", opts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case G_ROOT: root = optarg; break;
        case G_LOG: log_path = optarg; break;
        case G_LOG_FORMAT: log_format = optarg; break;
        case G_DEBUG: debug = true; break;
        case G_SYSTEMD: case G_ROOTLESS: case G_CRIU: break;
        case 'h': case G_HELP: usage(stdout); return 0;
        case 'v': case G_VERSION:
            printf(PROG " version %d.%d.%d\nspec: %s\n", SM_VERSION_MAJOR, SM_VERSION_MINOR,
                   SM_VERSION_PATCH, SPEC_VERSION);
            return 0;
        case ':':
            fprintf(stderr, PROG ": flag %s needs a value\n", argv[optind - 1]);
            return 1;
        default:
            if (nunknown < sizeof unknown / sizeof unknown[0])
                unknown[nunknown++] = argv[optind - 1 >= prev ? optind - 1 : prev];
        }
    }
    bool json = !strcmp(log_format, "json");
    if (!json && strcmp(log_format, "text")) {
        fprintf(stderr, PROG ": invalid log-format: %s (text or json)\n", log_format);
        return 1;
    }
    if (!rt_log_open(log_path, json, debug)) {
        fprintf(stderr, PROG ": cannot open the log file %s: %s\n", log_path, strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < nunknown; i++)
        rt_log(RT_LOG_WARN, "ignoring the unknown global flag %s", unknown[i]);
    if (root) {
        if (root[0] != '/') {
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof cwd) ||
                (size_t)snprintf(root_dir, sizeof root_dir, "%s/%s", cwd, root) >= sizeof root_dir)
                return fail("--root %s: path too long", root);
        } else if ((size_t)snprintf(root_dir, sizeof root_dir, "%s", root) >= sizeof root_dir) {
            return fail("--root: path too long");
        }
    } else {
        rt_default_root(root_dir, sizeof root_dir);
    }
    if (optind >= argc) {
        usage(stderr);
        return 1;
    }
    const char *name = argv[optind];
    int status = -1;
    if (!strcmp(name, "help")) {
        usage(stdout);
        status = 0;
    }
    for (size_t i = 0; status < 0 && i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name))
            status = commands[i].run(argc - optind, argv + optind);
    if (status < 0) {
        static const char *const not_yet[] = { "run", "pause", "resume", "update", "checkpoint",
                                               "restore", "events", "list", "spec" };
        bool known = false;
        for (size_t i = 0; i < sizeof not_yet / sizeof not_yet[0]; i++)
            known |= !strcmp(name, not_yet[i]);
        status = known ? fail("%s: not supported by " PROG " (yet)", name)
                       : fail("%s: unknown command", name);
    }
    rt_log_close();
    return status;
}
