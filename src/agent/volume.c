/*
 * Volumes: the VOLUME request (protocol/wire.h). A volume's disk sits in a
 * slot of its own (protocol/guest_abi.h) that the kernel command line does
 * not name, since a restored guest's command line is its bake's. So PID 1
 * registers the slot with virtio_mmio at run time, the way the command line
 * would have:
 *
 *   step  what                                              bounded by
 *   1     "4K@BASE:IRQ" into virtio_mmio's `device`          -
 *         parameter: the kernel adds the platform device
 *         and probes it
 *   2     the disk whose virtio-blk ID is "sm-volume-<i>"    DISK_WAIT_MS
 *         appears as /sys/block/vdX (and /dev/vdX, devtmpfs)
 *   3     the path is made (0755 folders) and the ext4 on    -
 *         /dev/vdX is mounted there, read-only if asked
 *
 * The disk is found by its ID, not by its name: vdX letters go in probe
 * order, which a restored guest does not share with its host.
 */
#include "agent/agent.h"
#include "protocol/guest_abi.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MMIO_DEVICE_PARAM "/sys/module/virtio_mmio/parameters/device"
#define DISK_WAIT_MS      10000
#define POLL_MS           5

static bool register_slot(uint32_t slot, char *why, size_t whylen)
{
    char spec[64];
    int len = snprintf(spec, sizeof spec, "4K@0x%llx:%u",
                       (unsigned long long)(SM_VOLUME_MMIO_BASE + SM_VOLUME_MMIO_STRIDE * slot),
                       SM_VOLUME_FIRST_IRQ + slot);
    int fd = open(MMIO_DEVICE_PARAM, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "cannot open %s: %s", MMIO_DEVICE_PARAM, strerror(errno));
        return false;
    }
    bool ok = write(fd, spec, (size_t)len) == len;
    int e = errno;
    close(fd);
    if (!ok)
        snprintf(why, whylen, "registering volume slot %u (%s): %s", slot, spec, strerror(e));
    return ok;
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

bool volume_mount(const wire_volume *v, char *why, size_t whylen)
{
    char dev[48];
    if (!strcmp(v->path, "/")) {
        snprintf(why, whylen, "a volume cannot be mounted on /");
        return false;
    }
    if (!register_slot(v->slot, why, whylen) || !wait_for_disk(v->slot, dev, sizeof dev, why, whylen) ||
        !make_path(v->path, why, whylen))
        return false;
    if (mount(dev, v->path, "ext4", v->read_only ? MS_RDONLY : 0, NULL) == 0)
        return true;
    int e = errno;
    snprintf(why, whylen, "mounting the volume's ext4 (%s) on %s%s: %s%s", dev, v->path,
             v->read_only ? " read-only" : "", strerror(e),
             v->read_only && e == EROFS ? " (its journal needs a replay: mount it read-write once)" : "");
    return false;
}
