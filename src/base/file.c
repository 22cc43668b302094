#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len) {
        /* One write of at most 1 GiB: Linux caps a single write below 2 GiB. */
        ssize_t n = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (n == 0) {
            errno = EIO;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* A name unique to this process and call, so that two writers of one path
 * (two processes, or two threads) never share a temporary file. */
static bool temp_name(char *out, size_t size, const char *path)
{
    static unsigned counter;
    unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    const char *name = slash ? slash + 1 : path;
    int len = snprintf(out, size, "%.*s.%s.tmp.%ld.%u", dir_len, path, name, (long)getpid(), n);
    if (len < 0 || (size_t)len >= size) {
        errno = ENAMETOOLONG;
        return false;
    }
    return true;
}

bool atomic_file_begin_at(struct atomic_file *f, int dir_fd, const char *path, mode_t mode)
{
    f->fd = -1;
    f->dir_fd = dir_fd;
    if (strlen(path) >= sizeof f->path) {
        errno = ENAMETOOLONG;
        return false;
    }
    strcpy(f->path, path);
    if (!temp_name(f->tmp_path, sizeof f->tmp_path, path))
        return false;
    f->fd = openat(dir_fd, f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    return f->fd >= 0;
}

bool atomic_file_begin(struct atomic_file *f, const char *path, mode_t mode)
{
    return atomic_file_begin_at(f, AT_FDCWD, path, mode);
}

void atomic_file_abort(struct atomic_file *f)
{
    int saved = errno;
    if (f->fd >= 0) {
        close(f->fd);
        unlinkat(f->dir_fd, f->tmp_path, 0);
    }
    f->fd = -1;
    errno = saved;
}

bool fsync_parent_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else {
        errno = ENAMETOOLONG;
        return false;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fsync(fd) == 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return ok;
}

bool atomic_file_commit(struct atomic_file *f)
{
    if (fsync(f->fd) < 0) {
        atomic_file_abort(f);
        return false;
    }
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) < 0 || renameat(f->dir_fd, f->tmp_path, f->dir_fd, f->path) < 0) {
        int saved = errno;
        unlinkat(f->dir_fd, f->tmp_path, 0);
        errno = saved;
        return false;
    }
    if (f->dir_fd != AT_FDCWD && !strchr(f->path, '/'))
        return fsync(f->dir_fd) == 0;
    return fsync_parent_dir(f->path);
}

bool write_file_atomic_at(int dir_fd, const char *path, const void *data, size_t len, mode_t mode)
{
    struct atomic_file f;
    if (!atomic_file_begin_at(&f, dir_fd, path, mode))
        return false;
    if (!write_all(f.fd, data, len)) {
        atomic_file_abort(&f);
        return false;
    }
    return atomic_file_commit(&f);
}

bool write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    return write_file_atomic_at(AT_FDCWD, path, data, len, mode);
}

int file_open_read(const char *path, bool follow, bool block_ok, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
    if (fd < 0)
        return -1;
    bool ok = fstat(fd, st) == 0;
    int e = errno;
    if (ok && !S_ISREG(st->st_mode) && !(block_ok && S_ISBLK(st->st_mode))) {
        ok = false;
        e = EINVAL;
    }
    if (ok && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

FILE *file_create_private(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "we") : NULL;
    if (fd >= 0 && !f) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}

bool dir_is_ours(const char *path, bool private_only, struct stat *st)
{
    if (lstat(path, st) < 0)
        return false;
    errno = 0;
    mode_t closed = private_only ? 077 : 022;
    return S_ISDIR(st->st_mode) && st->st_uid == geteuid() && !(st->st_mode & closed);
}

bool file_read_text(const char *path, char *buf, size_t cap)
{
    if (cap == 0)
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, cap - 1);
    int e = errno;
    close(fd);
    errno = e;
    if (n < 0)
        return false;
    buf[n] = 0;
    return true;
}

bool file_write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return false;
    size_t len = strlen(text);
    bool ok = write(fd, text, len) == (ssize_t)len;
    int e = errno;
    close(fd);
    errno = e;
    return ok;
}
