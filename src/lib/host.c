/*
 * Host detection: can this machine run a standard guest through /dev/kvm?
 *
 * Facts gathered, and where from:
 *
 *   fact                      source
 *   kvm_present               stat("/dev/kvm")
 *   kvm_open_errno            open("/dev/kvm", O_RDWR)
 *   api_version               ioctl(KVM_GET_API_VERSION), must be 12
 *   missing_caps              ioctl(KVM_CHECK_EXTENSION) for each cap we use
 *   cpu_vmx / svm / hyperv.   the first "flags" line of /proc/cpuinfo
 *   kvm_module                /sys/module/{kvm_pvm,kvm_intel,kvm_amd}
 *
 * PVM answers the whole KVM API (API 12, the usual capabilities), so the API
 * alone cannot tell it apart: the kvm_pvm module, or KVM on a CPU that shows
 * neither vmx nor svm, says a standard guest kernel will not boot here.
 */
#include "lib/host.h"
#include "lib/vm_cgroup.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KVM_PATH        "/dev/kvm"
#define CPUINFO_PATH    "/proc/cpuinfo"
#define CPUINFO_MAX     (64 * 1024)   /* the first CPU's block is far smaller */
#define KVM_API_WANTED  12

/* The capabilities the VMM relies on. */
static const struct {
    int cap;
    const char *name;
} needed_caps[] = {
    { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
    { KVM_CAP_IRQCHIP,     "KVM_CAP_IRQCHIP" },
    { KVM_CAP_IRQFD,       "KVM_CAP_IRQFD" },
    { KVM_CAP_IOEVENTFD,   "KVM_CAP_IOEVENTFD" },
    { KVM_CAP_PIT2,        "KVM_CAP_PIT2" },
    { KVM_CAP_EXT_CPUID,   "KVM_CAP_EXT_CPUID" },
};

const char *sm_host_kind_name(sm_host_kind kind)
{
    switch (kind) {
    case SM_HOST_KVM_HARDWARE:  return "hardware KVM";
    case SM_HOST_KVM_PVM:       return "PVM (paravirtual KVM)";
    case SM_HOST_NO_KVM:        return "no KVM";
    case SM_HOST_KVM_NO_ACCESS: return "KVM without access";
    case SM_HOST_KVM_UNUSABLE:  return "unusable KVM";
    }
    return "unknown";
}

/* --- /proc/cpuinfo --------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* The line [line, end) is "flags<spaces>: f1 f2 ..."; is flag one of them? */
static bool flags_line_has(const char *line, const char *end, const char *flag)
{
    const char *p = line + 5;   /* past "flags" */
    while (p < end && is_space(*p))
        p++;
    if (p == end || *p != ':')
        return false;
    p++;
    size_t flen = strlen(flag);
    while (p < end) {
        while (p < end && is_space(*p))
            p++;
        const char *word = p;
        while (p < end && !is_space(*p))
            p++;
        if ((size_t)(p - word) == flen && flen > 0 && !memcmp(word, flag, flen))
            return true;
    }
    return false;
}

bool host_cpuinfo_has_flag(const char *cpuinfo, size_t len, const char *flag)
{
    const char *p = cpuinfo, *end = cpuinfo + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        if (line_end - p >= 5 && !memcmp(p, "flags", 5))
            return flags_line_has(p, line_end, flag);
        p = nl ? nl + 1 : end;
    }
    return false;
}

static void read_cpu_flags(sm_host_report *r)
{
    char *buf = malloc(CPUINFO_MAX);
    int fd = buf ? open(CPUINFO_PATH, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        free(buf);
        return;   /* no flags known: the verdict says what it can without them */
    }
    size_t len = 0;
    while (len < CPUINFO_MAX) {
        ssize_t got = read(fd, buf + len, CPUINFO_MAX - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    r->cpu_vmx = host_cpuinfo_has_flag(buf, len, "vmx");
    r->cpu_svm = host_cpuinfo_has_flag(buf, len, "svm");
    r->cpu_hypervisor = host_cpuinfo_has_flag(buf, len, "hypervisor");
    free(buf);
}

/* --- /sys/module and /dev/kvm ----------------------------------------------- */

static void find_kvm_module(sm_host_report *r)
{
    /* PVM first: a PVM host may load kvm_intel/kvm_amd names too. */
    static const char *const names[] = { "kvm_pvm", "kvm_intel", "kvm_amd" };
    char path[64];
    struct stat st;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "/sys/module/%s", names[i]);
        if (stat(path, &st) == 0) {
            snprintf(r->kvm_module, sizeof r->kvm_module, "%s", names[i]);
            return;
        }
    }
}

static void append_word(char *buf, size_t size, const char *word)
{
    size_t used = strlen(buf);
    if (used + 1 + strlen(word) + 1 > size)
        return;   /* cannot happen with our names; never overflow */
    snprintf(buf + used, size - used, "%s%s", used ? " " : "", word);
}

static void probe_kvm(sm_host_report *r)
{
    struct stat st;
    r->kvm_present = stat(KVM_PATH, &st) == 0;
    if (!r->kvm_present)
        return;
    int fd = open(KVM_PATH, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        r->kvm_open_errno = errno;
        return;
    }
    r->api_version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (r->api_version == KVM_API_WANTED) {
        for (size_t i = 0; i < sizeof needed_caps / sizeof needed_caps[0]; i++)
            if (ioctl(fd, KVM_CHECK_EXTENSION, needed_caps[i].cap) <= 0)
                append_word(r->missing_caps, sizeof r->missing_caps, needed_caps[i].name);
    }
    close(fd);
}

/* --- the verdict ------------------------------------------------------------ */

#define SAY(field, ...) snprintf(r->field, sizeof r->field, __VA_ARGS__)

static const char kvmbox_hint[] =
    "; to work here anyway, run VM work inside the emulated KVM host: tools/kvmbox -- CMD";

void host_classify(sm_host_report *r)
{
    bool hw_flags = r->cpu_vmx || r->cpu_svm;
    r->advice[0] = '\0';
    if (!r->kvm_present) {
        r->kind = SM_HOST_NO_KVM;
        SAY(summary, "no /dev/kvm%s", hw_flags ? "" : ", and the CPU shows no vmx/svm flag");
        if (hw_flags)
            SAY(advice, "load KVM: modprobe %s (as root)%s", r->cpu_vmx ? "kvm_intel" : "kvm_amd", kvmbox_hint);
        else if (r->cpu_hypervisor)
            SAY(advice, "this is a VM without nested virtualization: enable it for this VM in its "
                        "hypervisor or cloud settings%s", kvmbox_hint);
        else
            SAY(advice, "enable VT-x/AMD-V (\"virtualization technology\", SVM) in the firmware "
                        "settings, then load kvm_intel or kvm_amd%s", kvmbox_hint);
        return;
    }
    if (r->kvm_open_errno == EACCES || r->kvm_open_errno == EPERM) {
        r->kind = SM_HOST_KVM_NO_ACCESS;
        SAY(summary, "/dev/kvm exists but this user may not open it (%s)", strerror(r->kvm_open_errno));
        SAY(advice, "add yourself to the kvm group: sudo usermod -aG kvm \"$USER\", then log in "
                    "again (or run as root)");
        return;
    }
    if (r->kvm_open_errno != 0) {
        r->kind = SM_HOST_KVM_UNUSABLE;
        SAY(summary, "/dev/kvm exists but does not open: %s", strerror(r->kvm_open_errno));
        SAY(advice, "check that the kvm module loaded cleanly (dmesg | grep -i kvm)%s", kvmbox_hint);
        return;
    }
    if (!strcmp(r->kvm_module, "kvm_pvm") || !hw_flags) {
        r->kind = SM_HOST_KVM_PVM;
        SAY(summary, "this host's /dev/kvm is PVM (%s): it cannot run a standard guest",
            r->kvm_module[0] ? "module kvm_pvm" : "KVM without vmx/svm in the CPU flags");
        SAY(advice, "PVM runs only guest kernels patched for it; run VM work through "
                    "tools/kvmbox (an emulated host with real KVM): tools/kvmbox -- CMD");
        return;
    }
    if (r->api_version != KVM_API_WANTED) {
        r->kind = SM_HOST_KVM_UNUSABLE;
        SAY(summary, "/dev/kvm answers API version %d, not %d", r->api_version, KVM_API_WANTED);
        SAY(advice, "this KVM is too old or not KVM at all; use a Linux kernel from the last decade");
        return;
    }
    if (r->missing_caps[0]) {
        r->kind = SM_HOST_KVM_UNUSABLE;
        SAY(summary, "KVM lacks capabilities we need: %s", r->missing_caps);
        SAY(advice, "upgrade the host kernel (these capabilities are in every kernel since 3.x)");
        return;
    }
    r->kind = SM_HOST_KVM_HARDWARE;
    SAY(summary, "hardware KVM (%s, %s): guests can run here",
        r->kvm_module[0] ? r->kvm_module : "kvm", r->cpu_vmx ? "Intel VT-x" : "AMD-V");
}

/* Whether a VMM here gets its cell (src/vmm/cell.h): a child tries the
 * namespaces it would make, and answers with the errno of the refusal. */
static int cell_refusal(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP) < 0 ? errno & 0xff : 0);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return pid < 0 ? errno : ECHILD;
    return WIFEXITED(status) ? WEXITSTATUS(status) : ECHILD;
}

/* Seccomp filters need a kernel built with them: /proc/self/status then
 * has a Seccomp line. The cell needs user namespaces. */
static void describe_confinement(sm_host_report *out)
{
    FILE *f = fopen("/proc/self/status", "re");
    bool seccomp = false;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        seccomp |= !strncmp(line, "Seccomp:", 8);
    if (f)
        fclose(f);
    const char *off = getenv("SUPERMACHINE_VMM_SECCOMP");
    if (off && !strcmp(off, "off")) {
        snprintf(out->confinement, sizeof out->confinement,
                 "OFF (SUPERMACHINE_VMM_SECCOMP=off): no seccomp filters, no cell");
        return;
    }
    int refused = cell_refusal();
    char cell[128];
    if (refused)
        snprintf(cell, sizeof cell, "no cell: the kernel refuses user namespaces here (%s)", strerror(refused));
    else
        snprintf(cell, sizeof cell, "a cell (user, mount, PID, IPC, UTS, cgroup namespaces; its own root; rlimits)");
    snprintf(out->confinement, sizeof out->confinement, "%s; %s",
             seccomp ? "seccomp per VMM thread, no_new_privs" : "no seccomp in this kernel", cell);
}

/* Where a VMM's resource limits would go (lib/vm_cgroup.h), looked for
 * without making anything. */
static void describe_limits(sm_host_report *out)
{
    char home[PATH_MAX];
    sm_error err = { 0 };
    if (vm_cgroup_home(NULL, false, home, sizeof home, &err))
        snprintf(out->limits, sizeof out->limits, "none (--memory-limit, --cpu-limit refused): %.200s", err.message);
    else
        snprintf(out->limits, sizeof out->limits, "cgroup v2, under %.200s", home);
}

sm_code sm_host_check(sm_host_report *out, sm_error *err)
{
    if (!out)
        return error_set(err, SM_E_INVALID, "sm_host_check: the report pointer is NULL");
    memset(out, 0, sizeof *out);
    out->api_version = -1;
    read_cpu_flags(out);
    find_kvm_module(out);
    probe_kvm(out);
    describe_confinement(out);
    describe_limits(out);
    host_classify(out);
    if (out->kind != SM_HOST_KVM_HARDWARE)
        return error_set(err, SM_E_UNSUPPORTED, "%s: %s", out->summary, out->advice);
    return SM_OK;
}
