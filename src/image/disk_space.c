/*
 * Free space on the image store's file system (see disk_space.h). statvfs
 * answers for the file system holding a path; f_bavail is what a writer
 * without CAP_SYS_RESOURCE may use, so the checks err on the safe side
 * when run as root on a file system with reserved blocks.
 */
#include "image/disk_space.h"

#include "base/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

void size_text(uint64_t n, char out[SIZE_TEXT_MAX])
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024) {
        snprintf(out, SIZE_TEXT_MAX, "%llu bytes", (unsigned long long)n);
        return;
    }
    int u = 0;
    uint64_t whole = n >> 10;
    while (u + 1 < (int)(sizeof units / sizeof units[0]) && whole >= 1024) {
        whole >>= 10;
        u++;
    }
    uint64_t unit = 1ull << (10 * (u + 1));
    if (n % unit == 0)
        snprintf(out, SIZE_TEXT_MAX, "%llu %s", (unsigned long long)whole, units[u]);
    else /* rounded down, so that "less than the cap" never reads as equal */
        snprintf(out, SIZE_TEXT_MAX, "%llu.%llu %s", (unsigned long long)whole,
                 (unsigned long long)((n % unit) * 10 / unit), units[u]);
}

void size_text_exact(uint64_t n, char out[SIZE_TEXT_MAX])
{
    size_text(n, out);
    if (n >= 1024) {
        size_t used = strlen(out);
        snprintf(out + used, SIZE_TEXT_MAX - used, " (%llu bytes)", (unsigned long long)n);
    }
}

static uint64_t available(const struct statvfs *v)
{
    uint64_t blocks = v->f_bavail, size = v->f_frsize ? v->f_frsize : v->f_bsize;
    return size && blocks > UINT64_MAX / size ? UINT64_MAX : blocks * size;
}

sm_code disk_space_free(const char *path, uint64_t *free_bytes, sm_error *err)
{
    struct statvfs v;
    if (statvfs(path, &v) != 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot ask how much space is free in %s",
                               path);
    *free_bytes = available(&v);
    return SM_OK;
}

sm_code disk_space_check(const char *dir, uint64_t need, const char *what, sm_error *err)
{
    uint64_t have;
    sm_code rc = disk_space_free(dir, &have, err);
    if (rc || have >= need)
        return rc;
    char needs[SIZE_TEXT_MAX], free_text[SIZE_TEXT_MAX];
    size_text(need, needs);
    size_text(have, free_text);
    return error_set_errno(err, SM_E_LIMIT, ENOSPC,
                           "not enough free space in %s for %s: it needs %s, only %s free", dir,
                           what, needs, free_text);
}

bool disk_space_full(int fd)
{
    struct statvfs v;
    return fstatvfs(fd, &v) == 0 && available(&v) < DISK_SPACE_FULL_BELOW;
}
