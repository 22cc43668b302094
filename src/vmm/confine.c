/*
 * The VMM's seccomp allow-lists, one per thread role (confine.h says when
 * each is installed). The lists come from tracing every thread of the VMM
 * (strace -ff) through the VM suite's work (cold boot, bake, restore, exec,
 * files, vsock both ways, snapshots, the network with published ports,
 * stop), checked against every system call and ioctl the VMM's sources
 * make after setup: a trace misses the rare paths (an error's message, a
 * full credit window), which are listed here too.
 *
 * Every thread, after its setup, may:
 *   - run glibc's own machinery: memory (never executable: mmap and mprotect
 *     with PROT_EXEC are refused), futexes, signal masks and returns, clocks,
 *     sleeping, stdio on its open descriptors, thread exit;
 *   - signal its own process only (tgkill: vCPU kicks, abort, SIGSYS).
 * Then each role adds what its work needs, with ioctl limited to the KVM
 * requests named below and socket() to one address family.
 */
#include "vmm/confine.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

/* ---- the lists ------------------------------------------------------------------- */

/* Plain calls (no argument checks), by role. */
static const int every_thread[] = {
    SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(close), SCMP_SYS(futex),
    SCMP_SYS(munmap), SCMP_SYS(madvise), SCMP_SYS(brk), SCMP_SYS(mremap),
    SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(restart_syscall),
    SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
    SCMP_SYS(sched_yield), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getrandom),
    SCMP_SYS(geteuid), /* SO_PEERCRED: is the peer this process's user? */
    SCMP_SYS(newfstatat), SCMP_SYS(fstat), SCMP_SYS(statx), SCMP_SYS(poll), SCMP_SYS(ppoll),
    SCMP_SYS(exit), SCMP_SYS(exit_group),
#if defined(__SANITIZE_ADDRESS__)
    /* The tests' sanitizer builds: ASan unmaps each thread's alternate
     * signal stack as the thread ends. */
    SCMP_SYS(sigaltstack),
#endif
};

/* The event loop: devices (virtio queues, vsock to the host's sockets,
 * the disk), the control socket, and snapshots written to a folder. */
static const int main_thread[] = {
    SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
    SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime),
    SCMP_SYS(accept4), SCMP_SYS(connect), SCMP_SYS(recvfrom), SCMP_SYS(recvmsg),
    SCMP_SYS(sendto), SCMP_SYS(sendmsg), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(shutdown),
    SCMP_SYS(getsockopt),
    SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev),
    SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(ftruncate), SCMP_SYS(fallocate), SCMP_SYS(lseek),
    /* snapshots: the files of a snapshot folder (a descriptor the request
     * brought, in a cell), written then renamed */
    SCMP_SYS(openat), SCMP_SYS(mkdir), SCMP_SYS(rename), SCMP_SYS(unlink), SCMP_SYS(symlink),
    SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(unlinkat), SCMP_SYS(symlinkat),
};

/* The NAT (libslirp): the guest's connections and UDP flows, published
 * ports, and the host's resolver settings for DNS. */
static const int network_thread[] = {
    SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(accept), SCMP_SYS(accept4),
    SCMP_SYS(getsockname), SCMP_SYS(getpeername), SCMP_SYS(getsockopt), SCMP_SYS(setsockopt),
    SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg), SCMP_SYS(shutdown),
    SCMP_SYS(openat), SCMP_SYS(lseek), /* /etc/resolv.conf, read again when it changes */
};

/* After a restore: SYNC and NETCONF to the agent over the exec socket. */
static const int sync_thread[] = {
    SCMP_SYS(connect), SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(setsockopt),
};

/* ioctl requests, by role. */
static const unsigned long vcpu_ioctls[] = {
    KVM_RUN, KVM_IRQ_LINE,
    KVM_GET_REGS, KVM_GET_SREGS, /* where a triple fault happened, for its message */
};

/* Snapshots read the vCPUs' and the VM's state while the vCPUs are parked. */
static const unsigned long main_ioctls[] = {
    KVM_CHECK_EXTENSION, KVM_GET_MSR_INDEX_LIST, KVM_GET_TSC_KHZ, KVM_KVMCLOCK_CTRL, KVM_IRQ_LINE,
    KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_MSRS, KVM_GET_FPU, KVM_GET_LAPIC, KVM_GET_XSAVE, KVM_GET_XCRS,
    KVM_GET_DEBUGREGS, KVM_GET_VCPU_EVENTS, KVM_GET_MP_STATE, KVM_GET_IRQCHIP, KVM_GET_PIT2,
    KVM_GET_CLOCK, KVM_SET_CLOCK,
    TCGETS,   /* stdio asks whether stdout is a terminal */
    FIONREAD, /* vsock: how much a host socket holds, to size a credit update */
};

/* libslirp asks how much a UDP socket holds before reading it. */
static const unsigned long network_ioctls[] = {
    FIONREAD,
};

struct role_lists {
    const char *name;
    const int *calls;
    size_t ncalls;
    const unsigned long *ioctls;
    size_t nioctls;
    int socket_family; /* socket() allowed for this family only; -1: not at all */
    bool fcntl_flags;  /* fcntl F_GETFL/F_SETFL (non-blocking sockets) */
};

#define LIST(a) a, sizeof a / sizeof a[0]
static const struct role_lists roles[] = {
    [CONFINE_MAIN] = { "main", LIST(main_thread), LIST(main_ioctls), AF_UNIX, true },
    [CONFINE_VCPU] = { "vcpu", NULL, 0, LIST(vcpu_ioctls), -1, false },
    [CONFINE_NETWORK] = { "network", LIST(network_thread), LIST(network_ioctls), AF_INET, true },
    [CONFINE_SYNC] = { "sync", LIST(sync_thread), NULL, 0, AF_UNIX, false },
};

/* ---- the SIGSYS report ---------------------------------------------------------- */

static _Thread_local const char *thread_role = "?";

static size_t put_text(char *buf, size_t at, size_t cap, const char *s)
{
    while (*s && at < cap)
        buf[at++] = *s++;
    return at;
}

static size_t put_number(char *buf, size_t at, size_t cap, long v)
{
    char digits[24];
    size_t n = 0;
    unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
    do
        digits[n++] = (char)('0' + u % 10);
    while ((u /= 10) && n < sizeof digits);
    if (v < 0 && at < cap)
        buf[at++] = '-';
    while (n && at < cap)
        buf[at++] = digits[--n];
    return at;
}

/* Async-signal-safe: raw writes only. SA_RESETHAND has put the default
 * action back, so the re-raised SIGSYS ends the process, except as PID 1
 * of a PID namespace (the cell), where it is dropped: then the exit. */
static void on_sigsys(int sig, siginfo_t *info, void *ctx)
{
    (void)ctx;
    char line[160];
    size_t n = put_text(line, 0, sizeof line, "supermachine-vmm: " VMM_SECCOMP_KILLED);
    n = put_number(line, n, sizeof line, info->si_syscall);
    n = put_text(line, n, sizeof line, " (thread ");
    n = put_text(line, n, sizeof line, thread_role);
    n = put_text(line, n, sizeof line, ")\n");
    (void)!write(2, line, n);
    syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
    syscall(SYS_exit_group, CONFINE_EXIT_SIGSYS);
}

static bool handler_ready(void)
{
    struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER };
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGSYS, &sa, NULL) == 0;
}

/* ---- building a filter ------------------------------------------------------------ */

/* One call allowed when argument `arg`, masked with `mask`, equals `value`
 * (libseccomp's SCMP_A* macros leave a field of the struct out, which
 * clang's -Wextra reports). */
static int allow_if(scmp_filter_ctx f, int call, unsigned arg, scmp_datum_t mask, scmp_datum_t value)
{
    struct scmp_arg_cmp cmp = { .arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = value };
    return seccomp_rule_add_array(f, SCMP_ACT_ALLOW, call, 1, &cmp);
}

#define ALL_BITS (~(scmp_datum_t)0)

static int allow_common(scmp_filter_ctx f)
{
    int rc = 0;
    for (size_t i = 0; i < sizeof every_thread / sizeof every_thread[0] && !rc; i++)
        rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, every_thread[i], 0);
    /* memory, never executable */
    if (!rc)
        rc = allow_if(f, SCMP_SYS(mmap), 2, PROT_EXEC, 0);
    if (!rc)
        rc = allow_if(f, SCMP_SYS(mprotect), 2, PROT_EXEC, 0);
    /* signals to this process's own threads */
    if (!rc)
        rc = allow_if(f, SCMP_SYS(tgkill), 0, ALL_BITS, (scmp_datum_t)getpid());
    /* reading a limit, never setting one */
    if (!rc)
        rc = allow_if(f, SCMP_SYS(prlimit64), 2, ALL_BITS, 0);
    return rc;
}

static int allow_role(scmp_filter_ctx f, const struct role_lists *r)
{
    int rc = 0;
    for (size_t i = 0; i < r->ncalls && !rc; i++)
        rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, r->calls[i], 0);
    /* The kernel reads an ioctl request as 32 bits: compare those only. */
    for (size_t i = 0; i < r->nioctls && !rc; i++)
        rc = allow_if(f, SCMP_SYS(ioctl), 1, 0xffffffffu, (uint32_t)r->ioctls[i]);
    if (!rc && r->socket_family >= 0)
        rc = allow_if(f, SCMP_SYS(socket), 0, ALL_BITS, (scmp_datum_t)r->socket_family);
    if (!rc && r->fcntl_flags)
        rc = allow_if(f, SCMP_SYS(fcntl), 1, ALL_BITS, F_GETFL);
    if (!rc && r->fcntl_flags)
        rc = allow_if(f, SCMP_SYS(fcntl), 1, ALL_BITS, F_SETFL);
    return rc;
}

sm_code confine_thread(enum confine_role role, sm_error *err)
{
    const struct role_lists *r = &roles[role];
    if (!handler_ready())
        return error_set_errno(err, SM_E_IO, errno, "cannot install the SIGSYS handler");
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_TRAP);
    if (!f)
        return error_set(err, SM_E_NOMEM, "seccomp_init failed");
    int rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_NNP, 1);
    if (!rc)
        rc = allow_common(f);
    if (!rc)
        rc = allow_role(f, r);
    if (!rc)
        rc = seccomp_load(f);
    seccomp_release(f);
    if (rc)
        return error_set_errno(err, SM_E_IO, -rc, "cannot load the %s thread's seccomp filter", r->name);
    thread_role = r->name;
    return SM_OK;
}

void confine_call_forbidden(void)
{
    /* ptrace: on no list, and what an attacker would want first. */
    syscall(SYS_ptrace, 0, 0, 0, 0);
}
