/*
 * Files in the guest: atomic writes (a temporary file next to the target,
 * then rename(2), so a reader sees the old file or the whole new one, never a
 * part) for staged files and WRITE_FILE, and opening files for READ_FILE.
 */
#include "agent/agent.h"
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Creates every missing parent folder of path (mode 0755). */
static bool make_parents(const char *path, char *why, size_t whylen)
{
    char buf[WIRE_MAX_PATH];
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

/* Starts the atomic replacement of path (src/base/file.h), creating its
 * parent folders. The file is created 0600 and gets its mode at the end, so
 * nobody reads a half-written file through a looser mode. */
static bool begin_replace(struct atomic_file *f, const char *path, char *why, size_t whylen)
{
    f->fd = -1;
    if (!make_parents(path, why, whylen))
        return false;
    const char *slash = strrchr(path, '/');
    if (!slash || !slash[1]) {
        snprintf(why, whylen, "'%.80s' does not name a file", path);
        return false;
    }
    if (!atomic_file_begin(f, path, 0600)) {
        snprintf(why, whylen, "cannot create a file beside %s: %s", path, strerror(errno));
        return false;
    }
    return true;
}

/* Sets the mode and commits; removes the temporary file on failure. */
static bool finish_replace(struct atomic_file *f, uint32_t mode, char *why, size_t whylen)
{
    if (fchmod(f->fd, (mode_t)mode) < 0) {
        snprintf(why, whylen, "cannot set mode %o on %s: %s", mode, f->path, strerror(errno));
        atomic_file_abort(f);
        return false;
    }
    if (!atomic_file_commit(f)) {
        snprintf(why, whylen, "writing %s failed: %s", f->path, strerror(errno));
        return false;
    }
    return true;
}

bool files_write_atomic(const char *path, const void *data, size_t len, uint32_t mode,
                        char *why, size_t whylen)
{
    struct atomic_file f;
    if (!begin_replace(&f, path, why, whylen))
        return false;
    if (!write_all(f.fd, data, len)) {
        snprintf(why, whylen, "writing %s failed: %s", path, strerror(errno));
        atomic_file_abort(&f);
        return false;
    }
    return finish_replace(&f, mode, why, whylen);
}

bool files_upload_begin(file_upload *u, const wire_file_head *h, char *why, size_t whylen)
{
    memset(u, 0, sizeof *u);
    if (!begin_replace(&u->file, h->path, why, whylen))
        return false;
    u->active = true;
    u->mode = h->mode;
    u->size = h->size;
    return true;
}

bool files_upload_data(file_upload *u, const uint8_t *data, size_t len, char *why, size_t whylen)
{
    if (len > u->size - u->got) {
        snprintf(why, whylen, "more bytes than the %llu announced for %s",
                 (unsigned long long)u->size, u->file.path);
        files_upload_abort(u);
        return false;
    }
    if (!write_all(u->file.fd, data, len)) {
        snprintf(why, whylen, "writing %s failed: %s", u->file.path, strerror(errno));
        files_upload_abort(u);
        return false;
    }
    u->got += len;
    return true;
}

bool files_upload_finish(file_upload *u, char *why, size_t whylen)
{
    if (!u->active) {
        snprintf(why, whylen, "no file upload in progress");
        return false;
    }
    if (u->got != u->size) {
        snprintf(why, whylen, "%s: got %llu bytes of the %llu announced", u->file.path,
                 (unsigned long long)u->got, (unsigned long long)u->size);
        files_upload_abort(u);
        return false;
    }
    u->active = false;
    return finish_replace(&u->file, u->mode, why, whylen);
}

void files_upload_abort(file_upload *u)
{
    if (u->active)
        atomic_file_abort(&u->file);
    u->active = false;
}

int files_open_for_read(const char *path, uint64_t *size, uint32_t *mode, uint32_t *kind,
                        char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        *kind = errno == ENOENT ? WIRE_ERR_NOTFOUND : WIRE_ERR_IO;
        snprintf(why, whylen, "cannot open %s in the guest: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        *kind = WIRE_ERR_IO;
        snprintf(why, whylen, "%s in the guest is not a regular file", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > WIRE_MAX_FILE_SIZE) {
        *kind = WIRE_ERR_LIMIT;
        snprintf(why, whylen, "%s is %lld bytes, over the transfer limit of %llu", path,
                 (long long)st.st_size, (unsigned long long)WIRE_MAX_FILE_SIZE);
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, 0);
    *size = (uint64_t)st.st_size;
    *mode = st.st_mode & 07777;
    return fd;
}
