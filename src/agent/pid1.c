/*
 * The agent as PID 1 of the guest: the mounts a command expects, stdio on
 * the console, readiness through the VMM's signal port (protocol/guest_abi.h)
 * and power off. PID 1 must never exit (the kernel panics), so failures here
 * are logged and the agent carries on or powers off.
 */
#include "agent/agent.h"
#include "protocol/guest_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/random.h>
#include <net/if.h>
#include <sys/io.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct mount_step {
    const char *source, *target, *type;
    unsigned long flags;
    const char *options;
};

static const struct mount_step mounts[] = {
    { "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
    { "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
    { "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755" },
    { "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "ptmxmode=0666,mode=0620" },
    /* POSIX shared memory (shm_open) and what engines give a container. */
    { "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
    { "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
    { "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755" },
};

static void mount_all(void)
{
    for (size_t i = 0; i < sizeof mounts / sizeof mounts[0]; i++) {
        const struct mount_step *m = &mounts[i];
        mkdir(m->target, 0755);
        if (mount(m->source, m->target, m->type, m->flags, m->options) < 0 && errno != EBUSY)
            agent_log("mount %s on %s: %s", m->type, m->target, strerror(errno));
    }
    /* devtmpfs may lack /dev/ptmx; the devpts instance always has one. */
    struct stat st;
    if (stat("/dev/ptmx", &st) < 0 && symlink("pts/ptmx", "/dev/ptmx") < 0)
        agent_log("cannot provide /dev/ptmx: %s", strerror(errno));
    else if (stat("/dev/ptmx", &st) == 0)
        chmod("/dev/ptmx", 0666);
}

static void stdio_to_console(void)
{
    int fd = open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0)
        fd = open("/dev/null", O_RDWR);
    if (fd < 0)
        return;
    for (int i = 0; i < 3; i++)
        if (fd != i)
            dup2(fd, i);
    if (fd > 2)
        close(fd);
}

/* The loopback interface up: programs in images expect 127.0.0.1 to work. */
static void loopback_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 ||
        (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr) < 0))
        agent_log("cannot bring up the loopback interface: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
}

bool cmdline_token(const char *prefix, char *rest, size_t cap)
{
    char line[4096];
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, line, sizeof line - 1);
    close(fd);
    if (n <= 0)
        return false;
    line[n] = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
        if (!strncmp(tok, prefix, strlen(prefix))) {
            if (rest && cap)
                snprintf(rest, cap, "%s", tok + strlen(prefix));
            return true;
        }
    return false;
}

void pid1_setup(bool in_vm)
{
    mount_all();
    if (in_vm)
        loopback_up();
    if (in_vm)
        stdio_to_console();
    setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 0);
    setenv("HOME", "/root", 0);
    setenv("TERM", "linux", 0);
    if (chdir("/") < 0)
        agent_log("chdir /: %s", strerror(errno));
    /* It may change the directory and the environment. */
    image_root_setup();
    /* After the image's root is in place: its /etc gets the resolver. */
    char why[200];
    if (in_vm && netconf_present() && !cmdline_token(SM_CMDLINE_NET_OFF, NULL, 0) && !netconf_apply(true, why, sizeof why))
        agent_log("the network is not configured: %s", why);
}

bool pid1_signal_ready(void)
{
    if (ioperm(SM_SIGNAL_PORT, 4, 1) < 0) {
        agent_log("no access to the signal port 0x%x (%s); the VMM will not see us ready",
                  SM_SIGNAL_PORT, strerror(errno));
        dprintf(1, "supermachine-agent: ready\n");
        return false;
    }
    outl(SM_SIGNAL_READY, SM_SIGNAL_PORT);
    unsigned cmd = inl(SM_SIGNAL_PORT);
    /* No port I/O from user mode after this point (protocol/guest_abi.h):
     * the VMM may snapshot us from here on. */
    ioperm(SM_SIGNAL_PORT, 4, 0);
    dprintf(1, "supermachine-agent: ready\n");
    return cmd == SM_SIGNAL_CMD_POWEROFF;
}

void pid1_poweroff(const char *why)
{
    dprintf(1, "supermachine-agent: powering off (%s)\n", why);
    sync();
    volume_unmount_all();
    reboot(RB_AUTOBOOT); /* reboot=k: the i8042 reset, which the VMM takes as power off */
    for (;;)
        pause();
}

bool pid1_sync(uint64_t realtime_ns, const uint8_t *entropy, size_t len, char *why, size_t why_len)
{
    struct timespec ts = { .tv_sec = (time_t)(realtime_ns / 1000000000u),
                           .tv_nsec = (long)(realtime_ns % 1000000000u) };
    if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
        snprintf(why, why_len, "cannot set the clock: %s", strerror(errno));
        return false;
    }
    /* RNDADDENTROPY credits the bytes; RNDRESEEDCRNG makes the next read use them. */
    union { /* rand_pool_info ends in a flexible array: room for it */
        struct rand_pool_info info;
        uint8_t bytes[sizeof(struct rand_pool_info) + 256];
    } pool;
    if (len > 256)
        len = 256;
    memset(&pool, 0, sizeof pool);
    pool.info.entropy_count = (int)(len * 8);
    pool.info.buf_size = (int)len;
    memcpy(pool.bytes + sizeof(struct rand_pool_info), entropy, len);
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    bool ok = fd >= 0 && ioctl(fd, RNDADDENTROPY, &pool.info) == 0 && ioctl(fd, RNDRESEEDCRNG) == 0;
    int e = errno;
    if (fd >= 0)
        close(fd);
    explicit_bzero(&pool, sizeof pool);
    if (!ok) {
        snprintf(why, why_len, "cannot reseed the kernel's random pool: %s", strerror(e));
        return false;
    }
    return true;
}
