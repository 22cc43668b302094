/*
 * Files in the guest: atomic writes (a temporary file next to the target,
 * then rename(2), so a reader sees the old file or the whole new one, never a
 * part) for staged files and WRITE_FILE, and opening files for READ_FILE.
 */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Creates every missing parent folder of path (mode 0755). */
static bool make_parents(const char *path, char *why, size_t whylen)
{
    char buf[SM_WIRE_MAX_PATH];
    if (strlen(path) >= sizeof buf) {
        snprintf(why, whylen, "path too long: %.80s", path);
        return false;
    }
    strcpy(buf, path);
    for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
        *p = 0;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
            snprintf(why, whylen, "cannot create folder %s: %s", buf, strerror(errno));
            return false;
        }
        *p = '/';
    }
    return true;
}

/* Opens a fresh temporary file beside path; returns the fd and its name. */
static int open_temp(const char *path, char **tmp_out, char *why, size_t whylen)
{
    static unsigned counter;
    if (!make_parents(path, why, whylen))
        return -1;
    const char *slash = strrchr(path, '/');
    if (!slash || !slash[1]) {
        snprintf(why, whylen, "'%.80s' does not name a file", path);
        return -1;
    }
    size_t len = strlen(path) + 64;
    char *tmp = malloc(len);
    if (!tmp) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    snprintf(tmp, len, "%.*s.%s.sm-%d-%u", (int)(slash + 1 - path), path, slash + 1,
             (int)getpid(), counter++);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(why, whylen, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    *tmp_out = tmp;
    return fd;
}

static bool write_all(int fd, const uint8_t *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        data += n;
        len -= (size_t)n;
    }
    return true;
}

/* Sets the mode and renames into place; closes fd, removes tmp on failure. */
static bool commit_temp(int fd, char *tmp, const char *path, uint32_t mode, char *why,
                        size_t whylen)
{
    bool ok = fchmod(fd, (mode_t)mode) == 0;
    if (!ok)
        snprintf(why, whylen, "cannot set mode %o on %s: %s", mode, path, strerror(errno));
    if (close(fd) < 0 && ok) {
        snprintf(why, whylen, "writing %s failed: %s", path, strerror(errno));
        ok = false;
    }
    if (ok && rename(tmp, path) < 0) {
        snprintf(why, whylen, "cannot rename into %s: %s", path, strerror(errno));
        ok = false;
    }
    if (!ok)
        unlink(tmp);
    return ok;
}

bool files_write_atomic(const char *path, const void *data, size_t len, uint32_t mode,
                        char *why, size_t whylen)
{
    char *tmp;
    int fd = open_temp(path, &tmp, why, whylen);
    if (fd < 0)
        return false;
    bool ok = write_all(fd, data, len);
    if (!ok) {
        snprintf(why, whylen, "writing %s failed: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
    } else {
        ok = commit_temp(fd, tmp, path, mode, why, whylen);
    }
    free(tmp);
    return ok;
}

bool files_upload_begin(file_upload *u, const sm_wire_file_head *h, char *why, size_t whylen)
{
    memset(u, 0, sizeof *u);
    u->fd = -1;
    u->path = strdup(h->path);
    if (!u->path) {
        snprintf(why, whylen, "out of memory");
        return false;
    }
    u->fd = open_temp(h->path, &u->tmp, why, whylen);
    if (u->fd < 0) {
        free(u->path);
        u->path = NULL;
        return false;
    }
    u->mode = h->mode;
    u->size = h->size;
    return true;
}

bool files_upload_data(file_upload *u, const uint8_t *data, size_t len, char *why, size_t whylen)
{
    if (len > u->size - u->got) {
        snprintf(why, whylen, "more bytes than the %llu announced for %s",
                 (unsigned long long)u->size, u->path);
        files_upload_abort(u);
        return false;
    }
    if (!write_all(u->fd, data, len)) {
        snprintf(why, whylen, "writing %s failed: %s", u->path, strerror(errno));
        files_upload_abort(u);
        return false;
    }
    u->got += len;
    return true;
}

bool files_upload_finish(file_upload *u, char *why, size_t whylen)
{
    if (u->fd < 0) {
        snprintf(why, whylen, "no file upload in progress");
        return false;
    }
    if (u->got != u->size) {
        snprintf(why, whylen, "%s: got %llu bytes of the %llu announced", u->path,
                 (unsigned long long)u->got, (unsigned long long)u->size);
        files_upload_abort(u);
        return false;
    }
    bool ok = commit_temp(u->fd, u->tmp, u->path, u->mode, why, whylen);
    u->fd = -1;
    free(u->tmp);
    free(u->path);
    u->tmp = u->path = NULL;
    return ok;
}

void files_upload_abort(file_upload *u)
{
    if (u->fd >= 0) {
        close(u->fd);
        unlink(u->tmp);
    }
    u->fd = -1;
    free(u->tmp);
    free(u->path);
    u->tmp = u->path = NULL;
}

int files_open_for_read(const char *path, uint64_t *size, uint32_t *mode, uint32_t *kind,
                        char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        *kind = errno == ENOENT ? SM_WIRE_ERR_NOTFOUND : SM_WIRE_ERR_IO;
        snprintf(why, whylen, "cannot open %s in the guest: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        *kind = SM_WIRE_ERR_IO;
        snprintf(why, whylen, "%s in the guest is not a regular file", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > SM_WIRE_MAX_FILE_SIZE) {
        *kind = SM_WIRE_ERR_LIMIT;
        snprintf(why, whylen, "%s is %lld bytes, over the transfer limit of %llu", path,
                 (long long)st.st_size, (unsigned long long)SM_WIRE_MAX_FILE_SIZE);
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, 0);
    *size = (uint64_t)st.st_size;
    *mode = st.st_mode & 07777;
    return fd;
}
