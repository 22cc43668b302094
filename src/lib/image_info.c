/*
 * An image folder's own description: image.info, and the disk link of an
 * OCI image, read and checked here for both the images (image.c) and the
 * VMs restored from them (vm.c).
 */
#include "lib/image_info.h"
#include "lib/store.h"
#include "base/error.h"
#include "base/file.h"
#include "image/digest.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void image_info_read(const char *dir, sm_image_info *info)
{
    char p[PATH_MAX];
    struct stat st;
    /* Not through a link, and never waiting on a FIFO planted there. */
    int fd = snprintf(p, sizeof p, "%s/" IMAGE_INFO, dir) < (int)sizeof p ? file_open_read(p, false, false, &st) : -1;
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *value = strchr(line, ' ');
        if (!value)
            continue;
        *value++ = 0;
        if (!strcmp(line, "memory_mib"))
            info->memory_mib = (uint32_t)strtoul(value, NULL, 10);
        else if (!strcmp(line, "cpus"))
            info->cpus = (uint32_t)strtoul(value, NULL, 10);
        else if (!strcmp(line, "created_unix"))
            info->created_unix = strtoll(value, NULL, 10);
        else if (!strcmp(line, "ref"))
            snprintf(info->ref, sizeof info->ref, "%s", value);
        else if (!strcmp(line, "digest"))
            snprintf(info->digest, sizeof info->digest, "%s", value);
    }
    fclose(f);
}

/* Whether file's folder is root, resolved (both are absolute, real paths). */
static bool in_folder(const char *file, const char *root)
{
    size_t n = strlen(root);
    return !strncmp(file, root, n) && file[n] == '/' && !strchr(file + n + 1, '/');
}

/* IMAGES/.oci/rootfs, resolved; false when it does not exist. */
static bool rootfs_folder(const char *images, char *out)
{
    char p[PATH_MAX];
    return snprintf(p, sizeof p, "%s/.oci/rootfs", images) < (int)sizeof p && realpath(p, out);
}

sm_code image_disk_for_restore(const char *image_dir, char *out, size_t cap, sm_error *err)
{
    char link[PATH_MAX], real[PATH_MAX], parent[PATH_MAX], here[PATH_MAX], fallback[PATH_MAX];
    struct stat st;
    out[0] = 0;
    if (snprintf(link, sizeof link, "%s/disk", image_dir) >= (int)sizeof link)
        return error_set(err, SM_E_LIMIT, "image path too long");
    if (lstat(link, &st) < 0)
        return errno == ENOENT ? SM_OK : error_set_errno(err, SM_E_IO, errno, "cannot examine %s", link);
    if (!S_ISLNK(st.st_mode) || !realpath(link, real) || stat(real, &st) < 0 || !S_ISREG(st.st_mode))
        return error_set(err, SM_E_INVALID, "the image's disk %s is not a link to a root filesystem file", link);
    snprintf(parent, sizeof parent, "%s", image_dir);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = 0;
    bool ok = rootfs_folder(parent, here) && in_folder(real, here);
    if (!ok && store_images_dir(NULL, parent, sizeof parent, NULL) == SM_OK)
        ok = rootfs_folder(parent, fallback) && in_folder(real, fallback);
    if (!ok)
        return error_set(err, SM_E_INVALID, "the image's disk leads to %s, outside the image store's root "
                         "filesystems: refused", real);
    sm_image_info info = { 0 };
    image_info_read(image_dir, &info);
    char want[128];
    if (info.digest[0] && snprintf(want, sizeof want, "%s.sqfs", oci_digest_hex(info.digest)) < (int)sizeof want &&
        strcmp(strrchr(real, '/') + 1, want))
        return error_set(err, SM_E_INVALID, "the image's disk is %s, not the root filesystem of its digest %s",
                         real, info.digest);
    if (strlen(real) >= cap)
        return error_set(err, SM_E_LIMIT, "disk path too long");
    memcpy(out, real, strlen(real) + 1);
    return SM_OK;
}

