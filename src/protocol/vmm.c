#include "protocol/vmm.h"
#include "base/error.h"
#include "base/number.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- arguments ------------------------------------------------------------ */

/* One row per option: its name, whether it takes a value, and whether only
 * the VMM process (not `supermachine boot`) accepts it. The getopt table and
 * the formatter are both driven by this order. */
enum vmm_opt {
    OPT_KERNEL = 'k', OPT_INITRD = 'i', OPT_CMDLINE = 'c', OPT_MEMORY = 'm', OPT_CPUS = 'n',
    OPT_CONSOLE = 'o', OPT_DISK = 'd', OPT_TIMEOUT = 't', OPT_VSOCK = 'V', OPT_EXEC = 'E',
    OPT_CONTROL = 'C', OPT_RESTORE = 'S', OPT_SNAPSHOT = 'W', OPT_READY_FD = 'R',
    OPT_LIFELINE_FD = 'D', OPT_PROBE = 'P', OPT_HELP = 'h', OPT_ALLOW = 'a', OPT_DENY = 'y',
    OPT_NET = 'N', OPT_PUBLISH = 'p', OPT_SECCOMP = 'x', OPT_MAX_MEMORY = 'M', OPT_MAX_CPUS = 'U',
    OPT_CELL = 'L', OPT_CGROUP = 'G', OPT_VOLUME = 'v', OPT_VOLUME_RO = 'r',
};

static const struct option vmm_options[] = {
    { "kernel", required_argument, NULL, OPT_KERNEL },
    { "initrd", required_argument, NULL, OPT_INITRD },
    { "cmdline", required_argument, NULL, OPT_CMDLINE },
    { "memory", required_argument, NULL, OPT_MEMORY },
    { "cpus", required_argument, NULL, OPT_CPUS },
    { "console", required_argument, NULL, OPT_CONSOLE },
    { "disk", required_argument, NULL, OPT_DISK },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "vsock-socket", required_argument, NULL, OPT_VSOCK },
    { "exec-socket", required_argument, NULL, OPT_EXEC },
    { "control-socket", required_argument, NULL, OPT_CONTROL },
    { "restore", required_argument, NULL, OPT_RESTORE },
    { "snapshot-when-ready", required_argument, NULL, OPT_SNAPSHOT },
    { "ready-fd", required_argument, NULL, OPT_READY_FD },
    { "lifeline-fd", required_argument, NULL, OPT_LIFELINE_FD },
    { "probe", no_argument, NULL, OPT_PROBE },
    { "allow", required_argument, NULL, OPT_ALLOW },
    { "deny", required_argument, NULL, OPT_DENY },
    { "net", required_argument, NULL, OPT_NET },
    { "publish", required_argument, NULL, OPT_PUBLISH },
    { "seccomp", required_argument, NULL, OPT_SECCOMP },
    { "max-memory", required_argument, NULL, OPT_MAX_MEMORY },
    { "max-cpus", required_argument, NULL, OPT_MAX_CPUS },
    { "cell", required_argument, NULL, OPT_CELL },
    { "cgroup", required_argument, NULL, OPT_CGROUP },
    { "volume", required_argument, NULL, OPT_VOLUME },
    { "volume-ro", required_argument, NULL, OPT_VOLUME_RO },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
};

/* The options `supermachine boot` (probe) does not take. */
static const char process_only[] = { OPT_VSOCK, OPT_EXEC, OPT_CONTROL, OPT_RESTORE, OPT_SNAPSHOT,
                                     OPT_READY_FD, OPT_LIFELINE_FD, OPT_MAX_MEMORY, OPT_MAX_CPUS, OPT_CELL, OPT_CGROUP,
                                     OPT_VOLUME, OPT_VOLUME_RO, 0 };

void vmm_args_init(struct vmm_args *a)
{
    memset(a, 0, sizeof *a);
    a->ready_fd = -1;
    a->lifeline_fd = -1;
    net_policy_init(&a->net);
}

/* The network's arguments, after the others: the policy's pairs in order,
 * then one --publish per port. */
static bool push_network(const struct vmm_args *a, struct vmm_argv *out, int *n)
{
    if (!net_policy_argv(&a->net, &out->net))
        return false;
    for (int i = 0; i < out->net.argc && *n < VMM_ARGV_MAX - 1; i++)
        out->argv[(*n)++] = out->net.argv[i];
    for (size_t i = 0; i < a->ports.count && *n < VMM_ARGV_MAX - 2; i++) {
        if (!net_port_format(&a->ports.ports[i], out->ports[i], sizeof out->ports[i]))
            return false;
        out->argv[(*n)++] = "--publish";
        out->argv[(*n)++] = out->ports[i];
    }
    return true;
}

static void push(struct vmm_argv *out, int *n, const char *name, const char *value)
{
    if (!value)
        return;
    out->argv[(*n)++] = (char *)name;
    out->argv[(*n)++] = (char *)value;
}

bool vmm_args_format(const struct vmm_args *a, const char *program, struct vmm_argv *out)
{
    memset(out, 0, sizeof *out);
    int n = 0;
    out->argv[n++] = (char *)program;
    if (a->probe)
        out->argv[n++] = "--probe";
    char *mem = a->memory_mib ? out->numbers[0] : NULL, *cpus = a->cpus ? out->numbers[1] : NULL;
    char *timeout = a->timeout_s > 0 ? out->numbers[2] : NULL, *ready = a->ready_fd >= 0 ? out->numbers[3] : NULL;
    if (mem)
        snprintf(mem, sizeof out->numbers[0], "%" PRIu32, a->memory_mib);
    if (cpus)
        snprintf(cpus, sizeof out->numbers[1], "%" PRIu32, a->cpus);
    if (timeout)
        snprintf(timeout, sizeof out->numbers[2], "%.3f", a->timeout_s);
    if (ready)
        snprintf(ready, sizeof out->numbers[3], "%d", a->ready_fd);
    push(out, &n, "--restore", a->restore_dir);
    push(out, &n, "--kernel", a->kernel);
    push(out, &n, "--initrd", a->initrd);
    push(out, &n, "--cmdline", a->cmdline);
    push(out, &n, "--disk", a->disk);
    for (uint32_t i = 0; i < a->nvolumes && i < SM_MAX_VOLUMES; i++)
        push(out, &n, a->volumes[i].read_only ? "--volume-ro" : "--volume", a->volumes[i].path);
    push(out, &n, "--memory", mem);
    push(out, &n, "--cpus", cpus);
    push(out, &n, "--timeout", timeout);
    push(out, &n, "--console", a->console);
    push(out, &n, "--control-socket", a->control_socket);
    push(out, &n, "--exec-socket", a->exec_socket);
    push(out, &n, "--vsock-socket", a->vsock_socket);
    push(out, &n, "--snapshot-when-ready", a->snapshot_when_ready);
    push(out, &n, "--ready-fd", ready);
    char *lifeline = a->lifeline_fd >= 0 ? out->numbers[6] : NULL;
    if (lifeline)
        snprintf(lifeline, sizeof out->numbers[6], "%d", a->lifeline_fd);
    push(out, &n, "--lifeline-fd", lifeline);
    if (a->no_seccomp)
        push(out, &n, "--seccomp", "off");
    char *max_mem = a->max_memory_mib ? out->numbers[4] : NULL, *max_cpus = a->max_cpus ? out->numbers[5] : NULL;
    if (max_mem)
        snprintf(max_mem, sizeof out->numbers[4], "%" PRIu32, a->max_memory_mib);
    if (max_cpus)
        snprintf(max_cpus, sizeof out->numbers[5], "%" PRIu32, a->max_cpus);
    push(out, &n, "--max-memory", max_mem);
    push(out, &n, "--max-cpus", max_cpus);
    push(out, &n, "--cell", a->cell_dir);
    push(out, &n, "--cgroup", a->cgroup_dir);
    bool ok = push_network(a, out, &n);
    out->argv[n] = NULL;
    return ok && n < VMM_ARGV_MAX;
}

static bool parse_u32(const char *name, const char *text, uint32_t *out, char *why, size_t whylen)
{
    if (number_u32(text, out))
        return true;
    snprintf(why, whylen, "%s wants a whole number, not '%s'", name, text);
    return false;
}

static bool parse_seconds(const char *name, const char *text, double *out, char *why, size_t whylen)
{
    if (number_seconds(text, out))
        return true;
    snprintf(why, whylen, "%s wants a number of seconds (0 < S <= 86400), not '%s'", name, text);
    return false;
}

/* A number in [min, max]: 0 in struct vmm_args means "not given", so a given
 * value is checked here, where it is still known to be given. */
static bool parse_in_range(const char *name, const char *text, uint32_t min, uint32_t max, uint32_t *out,
                           char *why, size_t whylen)
{
    uint32_t v;
    if (!parse_u32(name, text, &v, why, whylen))
        return false;
    if (v < min || v > max) {
        snprintf(why, whylen, "%s %s is out of range: %u to %u", name, text, min, max);
        return false;
    }
    *out = v;
    return true;
}

static bool add_volume(struct vmm_args *a, const char *path, bool read_only, char *why, size_t whylen)
{
    if (a->nvolumes >= SM_MAX_VOLUMES) {
        snprintf(why, whylen, "at most %u volumes", SM_MAX_VOLUMES);
        return false;
    }
    if (path[0] != '/') {
        snprintf(why, whylen, "--volume takes an absolute path, not '%s'", path);
        return false;
    }
    a->volumes[a->nvolumes++] = (struct vmm_volume){ path, read_only };
    return true;
}

/* One option's value into a; false with why filled. */
static bool take_option(struct vmm_args *a, int opt, const char *val, char *why, size_t whylen)
{
    uint32_t fd;
    switch (opt) {
    case OPT_KERNEL: a->kernel = val; return true;
    case OPT_INITRD: a->initrd = val; return true;
    case OPT_CMDLINE: a->cmdline = val; return true;
    case OPT_CONSOLE: a->console = val; return true;
    case OPT_DISK: a->disk = val; return true;
    case OPT_VSOCK: a->vsock_socket = val; return true;
    case OPT_EXEC: a->exec_socket = val; return true;
    case OPT_CONTROL: a->control_socket = val; return true;
    case OPT_CELL: a->cell_dir = val; return true;
    case OPT_CGROUP: a->cgroup_dir = val; return true;
    case OPT_VOLUME: return add_volume(a, val, false, why, whylen);
    case OPT_VOLUME_RO: return add_volume(a, val, true, why, whylen);
    case OPT_RESTORE: a->restore_dir = val; return true;
    case OPT_SNAPSHOT: a->snapshot_when_ready = val; return true;
    case OPT_ALLOW: return net_policy_take_option(&a->net, NET_OPT_ALLOW, val, why, whylen) == 1;
    case OPT_DENY: return net_policy_take_option(&a->net, NET_OPT_DENY, val, why, whylen) == 1;
    case OPT_NET: return net_policy_take_option(&a->net, NET_OPT_NET, val, why, whylen) == 1;
    case OPT_PUBLISH: return net_ports_add(&a->ports, val, why, whylen);
    case OPT_PROBE: a->probe = true; return true;
    case OPT_MAX_MEMORY: return parse_u32("--max-memory", val, &a->max_memory_mib, why, whylen);
    case OPT_MAX_CPUS: return parse_u32("--max-cpus", val, &a->max_cpus, why, whylen);
    case OPT_SECCOMP:
        if (strcmp(val, "on") && strcmp(val, "off")) {
            snprintf(why, whylen, "--seccomp takes on or off, not '%s'", val);
            return false;
        }
        a->no_seccomp = !strcmp(val, "off");
        return true;
    case OPT_MEMORY: return parse_in_range("--memory", val, VMM_MIN_MEM_MIB, VMM_MAX_MEM_MIB, &a->memory_mib, why, whylen);
    case OPT_CPUS: return parse_in_range("--cpus", val, 1, VMM_MAX_CPUS, &a->cpus, why, whylen);
    case OPT_TIMEOUT: return parse_seconds("--timeout", val, &a->timeout_s, why, whylen);
    case OPT_READY_FD:
    case OPT_LIFELINE_FD: {
        const char *name = opt == OPT_READY_FD ? "--ready-fd" : "--lifeline-fd";
        if (!parse_u32(name, val, &fd, why, whylen))
            return false;
        if (fd < 3 || fd > 65535) {
            snprintf(why, whylen, "%s %s is not a descriptor beyond stdin, stdout and stderr", name, val);
            return false;
        }
        *(opt == OPT_READY_FD ? &a->ready_fd : &a->lifeline_fd) = (int)fd;
        return true;
    }
    }
    return false;
}

static bool inside(const char *dir, const char *path)
{
    size_t n = strlen(dir);
    return !path || (!strncmp(path, dir, n) && path[n] == '/' && !strchr(path + n + 1, '/'));
}

/* An absolute path with no "." or ".." in it. */
static bool plain_absolute(const char *path)
{
    size_t n = strlen(path);
    bool dots = strstr(path, "/../") || strstr(path, "/./") || (n >= 3 && !strcmp(path + n - 3, "/..")) ||
                (n >= 2 && !strcmp(path + n - 2, "/."));
    return path[0] == '/' && !dots;
}

/* The cell shows its VMM one host folder: the sockets must be in it. */
static int check_cell(const struct vmm_args *a, char *why, size_t whylen)
{
    if (a->cgroup_dir && !plain_absolute(a->cgroup_dir)) {
        snprintf(why, whylen, "--cgroup takes an absolute folder, not '%s'", a->cgroup_dir);
        return -1;
    }
    if (!a->cell_dir)
        return 0;
    if (!plain_absolute(a->cell_dir)) {
        snprintf(why, whylen, "--cell takes an absolute folder, not '%s'", a->cell_dir);
        return -1;
    }
    const char *sockets[] = { a->exec_socket, a->vsock_socket, a->control_socket };
    for (size_t i = 0; i < sizeof sockets / sizeof sockets[0]; i++)
        if (!inside(a->cell_dir, sockets[i])) {
            snprintf(why, whylen, "the socket %s is not in the cell folder %s", sockets[i], a->cell_dir);
            return -1;
        }
    return 0;
}

/* The combinations: what the options say together. */
static int check_args(const struct vmm_args *a, char *why, size_t whylen)
{
    if (check_cell(a, why, whylen))
        return -1;
    if (a->nvolumes && a->snapshot_when_ready) {
        snprintf(why, whylen, "a VM with volumes cannot be snapshotted: no --volume with --snapshot-when-ready");
        return -1;
    }
    if (a->restore_dir) {
        if (a->kernel || a->snapshot_when_ready) {
            snprintf(why, whylen, "--restore takes the VM from the snapshot: no --kernel or --snapshot-when-ready");
            return -1;
        }
        if (!a->exec_socket) {
            snprintf(why, whylen, "--restore needs --exec-socket: the restored guest gets the host's clock and "
                                  "fresh entropy through it before it is ready");
            return -1;
        }
        return 0;
    }
    if (!a->kernel) {
        snprintf(why, whylen, "--kernel is required");
        return -1;
    }
    return 0;
}

int vmm_args_parse(struct vmm_args *a, int argc, char **argv, char *why, size_t whylen)
{
    vmm_args_init(a);
    /* Every option is first parsed as allowed; probe mode is known only
     * once --probe is seen, which may come anywhere. */
    bool probe_only_violation = false;
    const char *violating = NULL;
    optind = 0; /* glibc: a full reset, as a process may parse twice */
    opterr = 0;
    int c, index = 0;
    while ((c = getopt_long(argc, argv, "", vmm_options, &index)) != -1) {
        if (c == OPT_HELP) {
            for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--probe"))
                    a->probe = true;
            return 1;
        }
        if (c == '?' || c == ':') {
            snprintf(why, whylen, "unknown or incomplete option '%s'", argv[optind - 1]);
            return -1;
        }
        if (strchr(process_only, c) && !violating) {
            probe_only_violation = true;
            violating = vmm_options[index].name;
        }
        if (!take_option(a, c, optarg, why, whylen))
            return -1;
    }
    if (optind < argc) {
        snprintf(why, whylen, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (a->probe && probe_only_violation) {
        snprintf(why, whylen, "unknown option '--%s'", violating);
        return -1;
    }
    return check_args(a, why, whylen);
}

/* ---- ready line ------------------------------------------------------------ */

int vmm_ready_line_format(char *buf, size_t size, const struct vmm_ready *r)
{
    return snprintf(buf, size, "ready %" PRId64 " %" PRIu32 " %" PRIu32 "\n", r->us, r->memory_mib, r->cpus);
}

/* A decimal of at most max, written as the format writes it (no sign, no
 * leading zero), its end at *end; false on anything else. */
static bool take_decimal(const char *s, char **end, long long max, long long *out)
{
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
        return false;
    errno = 0;
    long long v = strtoll(s, end, 10);
    if (errno || v > max)
        return false;
    *out = v;
    return true;
}

bool vmm_ready_line_parse(const char *buf, size_t len, struct vmm_ready *r)
{
    char line[VMM_READY_LINE_MAX];
    if (len < 12 || len >= sizeof line || buf[len - 1] != '\n' || memchr(buf, 0, len))
        return false;
    memcpy(line, buf, len);
    line[len - 1] = 0;
    if (strncmp(line, "ready ", 6) != 0)
        return false;
    char *p;
    long long us, mib, cpus;
    if (!take_decimal(line + 6, &p, INT64_MAX, &us) || *p != ' ' ||
        !take_decimal(p + 1, &p, VMM_MAX_MEM_MIB, &mib) || *p != ' ' ||
        !take_decimal(p + 1, &p, VMM_MAX_CPUS, &cpus) || *p || mib < VMM_MIN_MEM_MIB || cpus < 1)
        return false;
    *r = (struct vmm_ready){ .us = us, .memory_mib = (uint32_t)mib, .cpus = (uint32_t)cpus };
    return true;
}

/* ---- control socket -------------------------------------------------------- */

bool vmm_control_request_parse(const char *line, struct vmm_control_request *req, const char **why)
{
    memset(req, 0, sizeof *req);
    if (!strncmp(line, "snapshot ", 9)) {
        req->verb = VMM_CONTROL_SNAPSHOT;
        req->dir = line + 9;
        if (!*req->dir) {
            *why = "snapshot needs a folder";
            return false;
        }
        return true;
    }
    if (!strcmp(line, "stop")) {
        req->verb = VMM_CONTROL_STOP;
        return true;
    }
    if (!strcmp(line, "stats")) {
        req->verb = VMM_CONTROL_STATS;
        return true;
    }
    if (!strcmp(line, "pause")) {
        req->verb = VMM_CONTROL_PAUSE;
        return true;
    }
    if (!strcmp(line, "resume")) {
        req->verb = VMM_CONTROL_RESUME;
        return true;
    }
    if (!strncmp(line, "publish ", 8)) {
        req->verb = VMM_CONTROL_PUBLISH;
        req->port = line + 8;
        if (!*req->port) {
            *why = "publish needs [HOSTIP:]HOSTPORT:GUESTPORT";
            return false;
        }
        return true;
    }
    if (!strcmp(line, "test-forbidden-syscall")) {
        req->verb = VMM_CONTROL_TEST_FORBIDDEN;
        return true;
    }
    *why = "unknown request (snapshot DIR, stop, stats, publish SPEC, pause, resume)";
    return false;
}

static int format_request(char *buf, size_t size, const struct vmm_control_request *req)
{
    switch (req->verb) {
    case VMM_CONTROL_SNAPSHOT: return snprintf(buf, size, "snapshot %s\n", req->dir ? req->dir : "");
    case VMM_CONTROL_STOP: return snprintf(buf, size, "stop\n");
    case VMM_CONTROL_STATS: return snprintf(buf, size, "stats\n");
    case VMM_CONTROL_PUBLISH: return snprintf(buf, size, "publish %s\n", req->port ? req->port : "");
    case VMM_CONTROL_TEST_FORBIDDEN: return snprintf(buf, size, "test-forbidden-syscall\n");
    case VMM_CONTROL_PAUSE: return snprintf(buf, size, "pause\n");
    case VMM_CONTROL_RESUME: return snprintf(buf, size, "resume\n");
    }
    return -1;
}

static sm_code control_dial(const char *socket_path, int *out, sm_error *err)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(socket_path) >= sizeof addr.sun_path)
        return error_set(err, SM_E_LIMIT, "control socket path too long: %s", socket_path);
    strcpy(addr.sun_path, socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        sm_code rc = error_set_errno(err, SM_E_IO, errno, "cannot reach the VMM at %s (is it running?)",
                                     socket_path);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    *out = fd;
    return SM_OK;
}

/* Reads up to the first newline (excluded); the VMM closes after a reply. */
static size_t read_reply_line(int fd, char *line, size_t cap)
{
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t k = recv(fd, line + got, cap - 1 - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
        if (memchr(line, '\n', got))
            break;
    }
    line[got] = 0;
    line[strcspn(line, "\n")] = 0;
    return got;
}

/* The request, with pass_fd (>= 0) as SCM_RIGHTS on its first byte. */
static bool send_request(int fd, const char *request, size_t len, int pass_fd)
{
    struct iovec iov = { (void *)request, len };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (pass_fd >= 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        struct cmsghdr *h = CMSG_FIRSTHDR(&msg);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &pass_fd, sizeof pass_fd);
    }
    return sendmsg(fd, &msg, MSG_NOSIGNAL) == (ssize_t)len;
}

sm_code vmm_control_call(const char *socket_path, const struct vmm_control_request *req, char *reply,
                         size_t reply_cap, sm_error *err)
{
    return vmm_control_call_fd(socket_path, req, -1, reply, reply_cap, err);
}

sm_code vmm_control_call_fd(const char *socket_path, const struct vmm_control_request *req, int pass_fd,
                            char *reply, size_t reply_cap, sm_error *err)
{
    char request[VMM_CONTROL_MAX_LINE];
    int n = format_request(request, sizeof request, req);
    if (n < 0 || (size_t)n >= sizeof request || memchr(request, '\n', (size_t)n - 1))
        return error_set(err, SM_E_INVALID, "control request too long, or with a newline inside");
    int fd = -1;
    sm_code rc = control_dial(socket_path, &fd, err);
    if (rc)
        return rc;
    char line[1024];
    size_t got = 0;
    if (!send_request(fd, request, (size_t)n, pass_fd))
        rc = error_set_errno(err, SM_E_IO, errno, "cannot send a request to the VMM");
    else
        got = read_reply_line(fd, line, sizeof line);
    close(fd);
    if (rc)
        return rc;
    if (!got)
        return error_set(err, SM_E_IO, "the VMM gave no answer");
    if (strcmp(line, "ok") != 0 && strncmp(line, "ok ", 3) != 0)
        return error_set(err, SM_E_IO, "%s", strncmp(line, "error ", 6) ? line : line + 6);
    if (reply && reply_cap)
        snprintf(reply, reply_cap, "%s", line[2] ? line + 3 : "");
    return SM_OK;
}
