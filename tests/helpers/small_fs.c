/* tests/helpers/small_fs.h: a tmpfs of a set size in a child's own mount
 * namespace. As root, CLONE_NEWNS alone; otherwise in a user namespace of
 * its own, mapped to the caller's ids, where mounting a tmpfs is allowed. */
#include "small_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* In the child: a mount namespace of its own, root in it. */
static int own_mounts(void)
{
    if (unshare(CLONE_NEWNS) == 0)
        return 0;
    uid_t uid = getuid();
    gid_t gid = getgid();
    char map[64];
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
        return -1;
    snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
    if (write_text("/proc/self/uid_map", map) != 0 || write_text("/proc/self/setgroups", "deny") != 0)
        return -1;
    snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
    return write_text("/proc/self/gid_map", map);
}

static int child(const char *dir, uint64_t bytes, int (*fn)(void *), void *arg)
{
    char opts[64];
    snprintf(opts, sizeof opts, "size=%llu,mode=0755", (unsigned long long)bytes);
    /* Private first: a mount made under a shared root would show on the host. */
    if (own_mounts() != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("sm-test-small", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
        printf("     SKIPPED: cannot mount a small tmpfs here (%s)\n", strerror(errno));
        return SMALL_FS_UNAVAILABLE;
    }
    return fn(arg);
}

int small_fs_run(const char *dir, uint64_t bytes, int (*fn)(void *arg), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        int rc = child(dir, bytes, fn, arg);
        fflush(stdout);
        _exit(rc & 0xff);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
