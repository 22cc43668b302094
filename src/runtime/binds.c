/* config.json's bind mounts of single files: see binds.h. */
#include "runtime/binds.h"

#include "base/error.h"
#include "base/file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool has_option(const struct rt_mount *m, const char *opt)
{
    for (size_t i = 0; i < m->noptions; i++)
        if (!strcmp(m->options[i], opt))
            return true;
    return false;
}

static bool is_bind(const struct rt_mount *m)
{
    return (m->type && !strcmp(m->type, "bind")) || has_option(m, "bind") ||
           has_option(m, "rbind");
}

/* The engine's shared-memory folder: the guest has a /dev/shm of its own,
 * which the container's processes share as they would the engine's. */
static bool is_guests_own(const struct rt_mount *m)
{
    return !strcmp(m->destination, "/dev/shm");
}

static const char *kind_of(mode_t mode)
{
    return S_ISDIR(mode) ? "a folder" : S_ISCHR(mode) || S_ISBLK(mode) ? "a device"
           : S_ISSOCK(mode)                                        ? "a socket"
           : S_ISFIFO(mode)                                        ? "a FIFO"
                                                                   : "not a regular file";
}

/* The host file behind bind mount i, checked: a regular file within the cap. */
static sm_code check_one(const struct rt_mount *m, size_t i, struct stat *st, sm_error *err)
{
    if (!m->source || m->source[0] != '/')
        return error_set(err, SM_E_INVALID, "config.json: mounts[%zu]: a bind mount needs an "
                         "absolute source", i);
    if (stat(m->source, st) != 0)
        return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno,
                               "config.json: mounts[%zu]: source %s", i, m->source);
    if (!S_ISREG(st->st_mode))
        return error_set(err, SM_E_UNSUPPORTED,
                         "config.json: mounts[%zu]: a bind mount of %s (%s on %s) is not "
                         "supported: a container's VM shares no files with the host; single "
                         "files are copied in",
                         i, kind_of(st->st_mode), m->source, m->destination);
    if ((uint64_t)st->st_size > RT_BIND_FILE_MAX)
        return error_set(err, SM_E_UNSUPPORTED,
                         "config.json: mounts[%zu]: %s is %lld bytes; a bind-mounted file is "
                         "copied into the VM, up to %u bytes",
                         i, m->source, (long long)st->st_size, RT_BIND_FILE_MAX);
    return SM_OK;
}

sm_code rt_binds_check(const struct rt_config *cfg, sm_error *err)
{
    uint64_t total = 0;
    for (size_t i = 0; i < cfg->nmounts; i++) {
        struct stat st;
        if (!is_bind(&cfg->mounts[i]) || is_guests_own(&cfg->mounts[i]))
            continue;
        sm_code rc = check_one(&cfg->mounts[i], i, &st, err);
        if (rc)
            return rc;
        if ((total += (uint64_t)st.st_size) > RT_BIND_TOTAL_MAX)
            return error_set(err, SM_E_UNSUPPORTED,
                             "config.json: mounts: the bind-mounted files come to more than %u "
                             "bytes, all of which would be copied into the VM",
                             RT_BIND_TOTAL_MAX);
    }
    return SM_OK;
}

/* The whole file, read through one descriptor (what was checked is what is read). */
static sm_code read_bind(const struct rt_mount *m, size_t i, uint8_t **data, size_t *len,
                         mode_t *mode, sm_error *err)
{
    struct stat st;
    int fd = file_open_read(m->source, true, false, &st);
    if (fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "config.json: mounts[%zu]: cannot open %s", i,
                               m->source);
    sm_code rc = SM_OK;
    *data = NULL;
    *len = 0;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > RT_BIND_FILE_MAX)
        rc = error_set(err, SM_E_UNSUPPORTED, "config.json: mounts[%zu]: %s changed since create",
                       i, m->source);
    else if (!(*data = malloc((size_t)st.st_size + 1)))
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    while (!rc && *len < (size_t)st.st_size) {
        ssize_t n = read(fd, *data + *len, (size_t)st.st_size - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = error_set_errno(err, SM_E_IO, n < 0 ? errno : EIO,
                                 "config.json: mounts[%zu]: cannot read %s", i, m->source);
            break;
        }
        *len += (size_t)n;
    }
    close(fd);
    *mode = st.st_mode & 07777;
    if (rc) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

sm_code rt_binds_stage(sm_exec_builder *b, const struct rt_config *cfg, sm_error *err)
{
    for (size_t i = 0; i < cfg->nmounts; i++) {
        const struct rt_mount *m = &cfg->mounts[i];
        if (!is_bind(m) || is_guests_own(m))
            continue;
        uint8_t *data = NULL;
        size_t len = 0;
        mode_t mode = 0644;
        sm_code rc = read_bind(m, i, &data, &len, &mode, err);
        if (rc)
            return rc;
        rc = sm_exec_builder_stage_file_mode(b, m->destination, data, len, mode);
        free(data);
        if (rc)
            return error_set(err, rc, "config.json: mounts[%zu]: cannot copy %s to %s", i,
                             m->source, m->destination);
    }
    return SM_OK;
}
