/*
 * Volumes: the VOLUME request (protocol/wire.h). Every VM's kernel command
 * line names the volume slots (protocol/guest_abi.h); a slot with no disk
 * behind it says "no device" and the kernel leaves it unbound, and a VM
 * restored from a snapshot has its bake's command line, so the slot is
 * bound to the driver only when a volume is there, by PID 1:
 *
 *   step  what                                              bounded by
 *   1     the slot's platform device, found by its address  -
 *         in /proc/iomem ("d0010000-d0010fff : virtio-mmio.4")
 *   2     its name into the virtio-mmio driver's `bind`:     -
 *         the driver probes it again and finds the disk
 *         (already bound, as after a boot with the volume: fine)
 *   3     the disk whose virtio-blk ID is "sm-volume-<i>"    DISK_WAIT_MS
 *         appears as /sys/block/vdX (and /dev/vdX, devtmpfs)
 *   4     the path is made (0755 folders) and the ext4 on    -
 *         /dev/vdX is mounted there, read-only if asked
 *
 * The disk is found by its ID, not by its name: vdX letters go in probe
 * order, which a restored guest does not share with its host.
 */
#include "agent/agent.h"
#include "protocol/guest_abi.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IOMEM        "/proc/iomem"
#define DRIVER_BIND  "/sys/bus/platform/drivers/virtio-mmio/bind"
#define DISK_WAIT_MS 10000
#define REAP_WAIT_MS 2000  /* the killed processes, before the unmounts */
#define POLL_MS      5

/* The platform device at base ("virtio-mmio.N") into name, from /proc/iomem. */
static bool slot_device(uint64_t base, char *name, size_t cap)
{
    FILE *f = fopen(IOMEM, "re");
    if (!f)
        return false;
    char line[256], want[32];
    snprintf(want, sizeof want, "%llx-", (unsigned long long)base);
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        const char *p = line + strspn(line, " ");
        const char *colon = strstr(p, " : ");
        if (strncmp(p, want, strlen(want)) != 0 || !colon || strncmp(colon + 3, "virtio-mmio.", 12) != 0)
            continue;
        size_t n = strcspn(colon + 3, "\n");
        if (n < cap) {
            memcpy(name, colon + 3, n);
            name[n] = 0;
            found = true;
        }
    }
    fclose(f);
    return found;
}

static bool bind_slot(uint32_t slot, char *why, size_t whylen)
{
    uint64_t base = SM_VOLUME_MMIO_BASE + SM_VOLUME_MMIO_STRIDE * slot;
    char dev[64];
    if (!slot_device(base, dev, sizeof dev)) {
        snprintf(why, whylen, "volume slot %u: no device at 0x%llx: this guest was booted without volume slots "
                 "(an image baked before volumes: bake it again)", slot, (unsigned long long)base);
        return false;
    }
    if (!file_write_text(DRIVER_BIND, dev) && errno != EBUSY) {
        snprintf(why, whylen, "binding %s (volume slot %u): %s", dev, slot, strerror(errno));
        return false;
    }
    return true;
}

/* The name (vdX) of the disk whose ID is serial, into name; false if none yet. */
static bool find_disk(const char *serial, char *name, size_t cap)
{
    DIR *d = opendir("/sys/block");
    if (!d)
        return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        if (strncmp(e->d_name, "vd", 2) != 0 || strlen(e->d_name) >= cap)
            continue;
        char path[300], id[64];
        snprintf(path, sizeof path, "/sys/block/%s/serial", e->d_name);
        if (!file_read_text(path, id, sizeof id))
            continue;
        id[strcspn(id, "\n")] = 0;
        if (!strcmp(id, serial)) {
            memcpy(name, e->d_name, strlen(e->d_name) + 1);
            found = true;
        }
    }
    closedir(d);
    return found;
}

/* Waits for the slot's disk and its device node: /dev/vdX into dev. */
static bool wait_for_disk(uint32_t slot, char *dev, size_t cap, char *why, size_t whylen)
{
    char serial[32], name[32];
    snprintf(serial, sizeof serial, SM_VOLUME_SERIAL, slot);
    struct timespec pause = { 0, POLL_MS * 1000000L };
    for (int waited = 0; waited <= DISK_WAIT_MS; waited += POLL_MS) {
        struct stat st;
        if (find_disk(serial, name, sizeof name) && snprintf(dev, cap, "/dev/%s", name) < (int)cap &&
            stat(dev, &st) == 0 && S_ISBLK(st.st_mode))
            return true;
        nanosleep(&pause, NULL);
    }
    snprintf(why, whylen, "volume slot %u: no disk with the ID %s appeared within %d ms", slot, serial,
             DISK_WAIT_MS);
    return false;
}

/* mkdir -p, 0755 for what it makes; path is absolute. */
static bool make_path(const char *path, char *why, size_t whylen)
{
    char p[WIRE_MAX_PATH];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1;; s++) {
        bool end = *s == 0;
        if (*s != '/' && !end)
            continue;
        *s = 0;
        if (p[0] && mkdir(p, 0755) < 0 && errno != EEXIST) {
            snprintf(why, whylen, "cannot make %s: %s", p, strerror(errno));
            return false;
        }
        if (end)
            return true;
        *s = '/';
    }
}

/* Where this guest's volumes are mounted, for volume_unmount_all. */
static char mounted[SM_MAX_VOLUMES][WIRE_MAX_PATH];

void volume_unmount_all(void)
{
    bool any = false;
    for (uint32_t i = 0; i < SM_MAX_VOLUMES; i++)
        any |= mounted[i][0] != 0;
    if (!any)
        return;
    kill(-1, SIGKILL); /* every process but PID 1, then reap them, a while at most */
    struct timespec pause = { 0, POLL_MS * 1000000L };
    for (int waited = 0; waited < REAP_WAIT_MS; waited += POLL_MS) {
        pid_t r = waitpid(-1, NULL, WNOHANG);
        if (r < 0)
            break; /* no child left */
        if (r == 0)
            nanosleep(&pause, NULL);
    }
    for (uint32_t i = 0; i < SM_MAX_VOLUMES; i++) {
        if (!mounted[i][0])
            continue;
        if (umount2(mounted[i], 0) < 0 && mount(NULL, mounted[i], NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
            agent_log("volume at %s stays mounted: %s", mounted[i], strerror(errno));
        mounted[i][0] = 0;
    }
}

bool volume_mount(const wire_volume *v, char *why, size_t whylen)
{
    char dev[48];
    if (!strcmp(v->path, "/")) {
        snprintf(why, whylen, "a volume cannot be mounted on /");
        return false;
    }
    if (!bind_slot(v->slot, why, whylen) || !wait_for_disk(v->slot, dev, sizeof dev, why, whylen) ||
        !make_path(v->path, why, whylen))
        return false;
    if (mount(dev, v->path, "ext4", v->read_only ? MS_RDONLY : 0, NULL) == 0) {
        snprintf(mounted[v->slot], sizeof mounted[v->slot], "%s", v->path);
        return true;
    }
    int e = errno;
    snprintf(why, whylen, "mounting the volume's ext4 (%s) on %s%s: %s%s", dev, v->path,
             v->read_only ? " read-only" : "", strerror(e),
             v->read_only && e == EROFS ? " (its journal needs a replay: mount it read-write once)" : "");
    return false;
}
