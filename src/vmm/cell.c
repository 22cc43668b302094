/*
 * The VMM's cell (cell.h says what and in which order).
 */
#include "vmm/cell.h"
#include "base/error.h"
#include "base/file.h"
#include "vmm/confine.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Descriptors the VMM may hold: the NAT's 256 host sockets, vsock's 1024
 * connections, and its own few dozen (KVM, eventfds, listeners, files). */
#define CELL_MAX_FDS 2048

/* The signals the stand-in passes on: every one a user or the library sends
 * to stop or poke a VMM. */
static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

/* ---- descriptors --------------------------------------------------------------- */

/* Everything from 3 up is closed but the kept ones: whatever the embedder leaked
 * to us is not the guest's to find. */
static void close_inherited(const int keep[CELL_KEEP_FDS])
{
    unsigned from = 3;
    for (;;) { /* close [from, the next kept fd above it), then go on past it */
        unsigned next = ~0u;
        for (int i = 0; i < CELL_KEEP_FDS; i++)
            if (keep[i] >= (int)from && (unsigned)keep[i] < next)
                next = (unsigned)keep[i];
        if (next > from)
            syscall(SYS_close_range, from, next == ~0u ? ~0u : next - 1, 0u);
        if (next == ~0u)
            return;
        from = next + 1;
    }
}

/* ---- namespaces ---------------------------------------------------------------- */

/* Only our own uid and gid exist in the new user namespace, mapped to
 * themselves, so that files keep their owners; setgroups is denied, as an
 * unprivileged map requires. */
static sm_code map_ids(uid_t uid, gid_t gid, sm_error *err)
{
    char map[64];
    if (!file_write_text("/proc/self/setgroups", "deny") && errno != ENOENT)
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot deny setgroups");
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
    if (!file_write_text("/proc/self/gid_map", map))
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot write the gid map");
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    if (!file_write_text("/proc/self/uid_map", map))
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot write the uid map");
    return SM_OK;
}

/* ---- the stand-in ---------------------------------------------------------------- */

/* It may wait for signals and for its child, pass signals on, and end. */
static bool confine_stand_in(pid_t child)
{
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!f)
        return false;
    static const int calls[] = {
        SCMP_SYS(rt_sigtimedwait), SCMP_SYS(wait4), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction),
        SCMP_SYS(rt_sigreturn), SCMP_SYS(restart_syscall), SCMP_SYS(getpid), SCMP_SYS(gettid),
        SCMP_SYS(tgkill), SCMP_SYS(prlimit64), SCMP_SYS(write), SCMP_SYS(close), SCMP_SYS(exit),
        SCMP_SYS(exit_group),
#if defined(__SANITIZE_ADDRESS__)
        SCMP_SYS(sigaltstack), /* the tests' sanitizer builds: ASan's _exit looks at it */
#endif
    };
    int rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_NNP, 1);
    for (size_t i = 0; i < sizeof calls / sizeof calls[0] && !rc; i++)
        rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, calls[i], 0);
    struct scmp_arg_cmp to_child = { .arg = 0, .op = SCMP_CMP_EQ, .datum_a = (scmp_datum_t)child };
    if (!rc)
        rc = seccomp_rule_add_array(f, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, &to_child);
    if (!rc)
        rc = seccomp_load(f);
    seccomp_release(f);
    return rc == 0;
}

/* Ends this process as the VMM ended: a signal is re-raised with its
 * default action (no core: the VMM's would have been refused too). A VMM
 * that was PID 1 of its namespace cannot die of its own SIGSYS, so its
 * seccomp handler exits with CONFINE_EXIT_SIGSYS: that is a SIGSYS too. */
static void end_like(int status)
{
    int sig = WIFSIGNALED(status) ? WTERMSIG(status)
              : WIFEXITED(status) && WEXITSTATUS(status) == CONFINE_EXIT_SIGSYS ? SIGSYS
                                                                               : 0;
    if (!sig)
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigaction(sig, &dfl, NULL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    raise(sig); /* tgkill: on the stand-in's list, where kill() is for the child only */
    _exit(128 + sig);
}

/* The VMM goes on only once the stand-in is confined (the end of `gate`
 * tells it), so that no instant of a running VMM has an unconfined parent. */
static _Noreturn void stand_in(pid_t child, const sigset_t *watched, int gate)
{
    /* stderr stays (the VMM's log); the ready pipe must reach its end when
     * the VMM's copy does. */
    for (int fd = 0; fd < 2; fd++)
        if (fd != gate) /* a VMM started without stdin or stdout has its gate there */
            close(fd);
    if (gate > 3)
        syscall(SYS_close_range, 3u, (unsigned)gate - 1, 0u);
    syscall(SYS_close_range, gate >= 3 ? (unsigned)gate + 1 : 3u, ~0u, 0u);
    if (!confine_stand_in(child))
        (void)!write(2, "supermachine-vmm: cell: the stand-in's seccomp filter failed to load\n", 70);
    close(gate);
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(watched, &si);
        if (sig == SIGCHLD) {
            int status;
            if (waitpid(child, &status, WNOHANG) == child)
                end_like(status);
        } else if (sig > 0) {
            kill(child, sig);
        }
    }
}

/* The signals the stand-in waits for are blocked before the fork, so that
 * none is lost between it and sigwaitinfo; the VMM keeps the stop signals
 * blocked: as PID 1 of its namespace it would drop them at their default
 * action, and run.c reads them from a signalfd. */
static void block_watched(sigset_t *watched)
{
    sigemptyset(watched);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaddset(watched, forwarded[i]);
    sigaddset(watched, SIGCHLD);
    sigprocmask(SIG_BLOCK, watched, NULL);
}

static bool split(struct cell *c, sm_error *err)
{
    sigset_t watched;
    int gate[2];
    if (pipe2(gate, O_CLOEXEC) < 0) {
        error_set_errno(err, SM_E_SETUP, errno, "cell: cannot make the stand-in's gate");
        return false;
    }
    block_watched(&watched);
    pid_t child = fork();
    if (child < 0) {
        error_set_errno(err, SM_E_SETUP, errno, "cell: cannot fork into the new PID namespace");
        close(gate[0]);
        close(gate[1]);
        return false;
    }
    if (child > 0) {
        close(gate[0]);
        stand_in(child, &watched, gate[1]);
    }
    close(gate[1]);
    char none;
    while (read(gate[0], &none, 1) < 0 && errno == EINTR)
        ;
    close(gate[0]);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
    /* The stand-in is outside this PID namespace: getppid() says 0, and
     * once it is gone, the signal below has come. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        error_set_errno(err, SM_E_SETUP, errno, "cell: cannot tie the VMM to its stand-in");
        return false;
    }
    c->namespaces = true;
    return true;
}

sm_code cell_join_cgroup(const char *dir, sm_error *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= (int)sizeof path)
        return error_set(err, SM_E_INVALID, "--cgroup %s is too long", dir);
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    bool ok = fd >= 0 && write(fd, "0\n", 2) == 2;
    int e = errno;
    if (fd >= 0)
        close(fd);
    return ok ? SM_OK : error_set_errno(err, SM_E_IO, e, "cannot move into the cgroup %s", dir);
}

bool cell_enter(struct cell *c, sm_error *err)
{
    close_inherited(c->keep_fds);
    c->namespaces = false;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP |
                (c->host_network ? 0 : CLONE_NEWNET);
    if (unshare(flags) < 0) {
        fprintf(stderr, "supermachine-vmm: cell: the kernel refused new namespaces (%s): this VMM runs "
                        "with its seccomp filters, rlimits and closed descriptors only\n", strerror(errno));
        return true;
    }
    if (map_ids(uid, gid, err))
        return false;
    if (sethostname("supermachine-vmm", 16) < 0) {
        error_set_errno(err, SM_E_SETUP, errno, "cell: cannot name its host");
        return false;
    }
    return split(c, err);
}

/* ---- the root ---------------------------------------------------------------------- */

/* Creates every folder of path below base (base/path must not exist yet). */
static bool make_path(const char *base, const char *path)
{
    char p[PATH_MAX];
    int n = snprintf(p, sizeof p, "%s%s", base, path);
    if (n < 0 || (size_t)n >= sizeof p) {
        errno = ENAMETOOLONG;
        return false;
    }
    for (char *s = p + strlen(base) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return false;
        *s = '/';
    }
    return mkdir(p, 0755) == 0 || errno == EEXIST;
}

/* The flags a read-only remount of a bind must keep: a user namespace may
 * not clear what the mount it came from has. */
static unsigned long kept_flags(const char *path)
{
    struct statvfs sv;
    unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (statvfs(path, &sv) == 0) {
        if (sv.f_flag & ST_NOATIME)
            flags |= MS_NOATIME;
        if (sv.f_flag & ST_NODIRATIME)
            flags |= MS_NODIRATIME;
        if (sv.f_flag & ST_RELATIME)
            flags |= MS_RELATIME;
    }
    return flags;
}

static bool bind_read_only(const char *from, const char *to)
{
    return mount(from, to, NULL, MS_BIND, NULL) == 0 &&
           mount(NULL, to, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(to), NULL) == 0;
}

/* The host's resolv.conf at /etc/resolv.conf of the new root, where
 * libslirp reads it for the guest's DNS; skipped when the host has none. */
static sm_code bind_resolv_conf(const char *base, sm_error *err)
{
    struct stat st;
    if (stat("/etc/resolv.conf", &st) < 0 || !S_ISREG(st.st_mode))
        return SM_OK;
    char etc[PATH_MAX], file[PATH_MAX];
    snprintf(etc, sizeof etc, "%s/etc", base);
    snprintf(file, sizeof file, "%s/etc/resolv.conf", base);
    int fd = -1;
    if ((mkdir(etc, 0755) < 0 && errno != EEXIST) ||
        (fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0)
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot make %s", file);
    close(fd);
    if (!bind_read_only("/etc/resolv.conf", file))
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot show /etc/resolv.conf in the cell");
    return SM_OK;
}

/* The new root is a small tmpfs mounted over the cell's parent (the VM
 * folder: in this mount namespace only, and its own files are not needed
 * any more), the cell bound into it at its own path from a descriptor
 * taken before the tmpfs hid it. */
static sm_code build_root(const struct cell *c, const char *base, sm_error *err)
{
    int cell_fd = open(c->dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cell_fd < 0)
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot open %s", c->dir);
    char from[64], to[PATH_MAX];
    snprintf(from, sizeof from, "/proc/self/fd/%d", cell_fd);
    snprintf(to, sizeof to, "%s%s", base, c->dir);
    sm_code rc = SM_OK;
    if (mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755") < 0)
        rc = error_set_errno(err, SM_E_SETUP, errno, "cell: cannot mount its root");
    else if (!make_path(base, c->dir))
        rc = error_set_errno(err, SM_E_SETUP, errno, "cell: cannot make %s", to);
    else if (!bind_read_only(from, to))
        rc = error_set_errno(err, SM_E_SETUP, errno, "cell: cannot show %s in the cell", c->dir);
    else if (c->host_network)
        rc = bind_resolv_conf(base, err);
    close(cell_fd);
    return rc;
}

/* pivot_root(".", "."): the old root ends up on top of the new one and is
 * detached at once, with every host mount under it. */
static sm_code enter_root(const char *base, sm_error *err)
{
    if (chdir(base) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
        chdir("/") < 0)
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot make %s its root", base);
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot make its root read-only");
    return SM_OK;
}

static sm_code set_limits(sm_error *err)
{
    struct rlimit no_core = { 0, 0 }, files;
    if (setrlimit(RLIMIT_CORE, &no_core) < 0 || getrlimit(RLIMIT_NOFILE, &files) < 0)
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot set its limits");
    if (files.rlim_max == RLIM_INFINITY || files.rlim_max > CELL_MAX_FDS)
        files.rlim_max = CELL_MAX_FDS;
    files.rlim_cur = files.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &files) < 0)
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot bound its descriptors");
    return SM_OK;
}

sm_code cell_seal(const struct cell *c, sm_error *err)
{
    sm_code rc = set_limits(err);
    if (rc || !c->namespaces)
        return rc;
    char base[PATH_MAX];
    const char *slash = strrchr(c->dir, '/');
    if (c->dir[0] != '/' || !slash || slash == c->dir || (size_t)(slash - c->dir) >= sizeof base)
        return error_set(err, SM_E_INVALID, "cell: %s is not an absolute folder below another", c->dir);
    snprintf(base, sizeof base, "%.*s", (int)(slash - c->dir), c->dir);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return error_set_errno(err, SM_E_SETUP, errno, "cell: cannot make its mounts private");
    rc = build_root(c, base, err);
    if (!rc)
        rc = enter_root(base, err);
    return rc;
}

void cell_close_door(void)
{
    struct rlimit none = { 0, 0 };
    setrlimit(RLIMIT_NPROC, &none);
}
