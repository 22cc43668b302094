/*
 * Images from a root filesystem folder (sm_image_from_rootfs), for an OCI
 * runtime given a bundle's root.path. Beside sm_image_from_oci's files:
 *
 *   .oci/rootfs/dir-HEX.sqfs      the folder packed (image/rootfs.c), by its
 *                                 content key (image/rootfs_dir.h)
 *   rootfs-HEX12-<mem>m<cpus>c/   the baked image, by key and VM settings;
 *                                 its disk -> the squashfs
 *
 * The store lock (.oci/lock, shared) is held from the pack to the baked
 * image, so a prune cannot take the squashfs between the two. Two callers
 * at once both succeed: each packs to a name of its own and renames it
 * into place, and the bake is image_bake's (as for two pulls).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "image/rootfs.h"
#include "image/rootfs_dir.h"
#include "lib/image.h"
#include "lib/prune.h"
#include "lib/store.h"

#define ROOT_CMDLINE "supermachine.root=/dev/vda" /* as oci_image.c */

struct dir_paths {
    char oci[PATH_MAX];
    char sqfs[PATH_MAX];
    char name[96];
};

static sm_code make_folder(const char *path, sm_error *err)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, SM_E_IO, errno, "cannot create %s", path);
    return SM_OK;
}

/* The store's .oci and .oci/rootfs (created), the squashfs and image names. */
static sm_code dir_paths(const sm_store *store, const char *key, const sm_vm_config *cfg, struct dir_paths *p,
                         sm_error *err)
{
    char base[PATH_MAX];
    sm_code rc = store_images_dir(store, base, sizeof base, err);
    if (rc)
        return rc;
    const char *hex = oci_digest_hex(key);
    if (snprintf(p->oci, sizeof p->oci, "%s/.oci", base) >= (int)sizeof p->oci ||
        snprintf(p->sqfs, sizeof p->sqfs, "%s/rootfs/%s%s.sqfs", p->oci, ROOTFS_DIR_PREFIX, hex) >=
            (int)sizeof p->sqfs)
        return error_set(err, SM_E_LIMIT, "path too long: %s", base);
    snprintf(p->name, sizeof p->name, "rootfs-%.12s-%um%uc", hex, vm_config_memory_mib(cfg), vm_config_cpus(cfg));
    char sub[PATH_MAX + 8];
    snprintf(sub, sizeof sub, "%s/rootfs", p->oci);
    rc = make_folder(p->oci, err);
    return rc ? rc : make_folder(sub, err);
}

/* Packs (unless already there) and bakes, under the store lock. */
static sm_code pack_and_bake(const sm_store *store, const char *dir, const sm_vm_config *cfg,
                             const struct dir_paths *p, sm_image **out, sm_error *err)
{
    int lock = -1;
    sm_code rc = oci_store_lock(p->oci, false, &lock, err);
    if (rc)
        return rc;
    if (sm_image_open(store, p->name, out, NULL) == SM_OK) { /* another caller baked it meanwhile */
        close(lock);
        return SM_OK;
    }
    struct stat st;
    if (stat(p->sqfs, &st) < 0) {
        rc = rootfs_build_dir(dir, p->sqfs, err);
        if (rc)
            error_prefix(err, "packing the root filesystem folder %s", dir);
    }
    if (!rc) {
        char ref[PATH_MAX + 8];
        snprintf(ref, sizeof ref, "rootfs:%s", dir);
        struct image_bake_extra x = { .disk = p->sqfs, .cmdline = ROOT_CMDLINE, .ref = ref };
        rc = image_bake(store, p->name, cfg, &x, out, err);
        if (rc)
            error_prefix(err, "baking the root filesystem folder %s", dir);
    }
    close(lock);
    return rc;
}

sm_code sm_image_from_rootfs(const sm_store *store, const char *dir, const sm_vm_config *cfg, sm_image **out,
                             sm_error *err)
{
    if (!dir || !*dir || !out)
        return error_set(err, SM_E_INVALID, "sm_image_from_rootfs: no folder or no out");
    sm_vm_config *own = NULL;
    if (!cfg && !(cfg = own = sm_vm_config_new()))
        return error_set(err, SM_E_NOMEM, "out of memory");
    char key[OCI_DIGEST_SIZE];
    struct dir_paths p;
    sm_code rc = rootfs_dir_key(dir, NULL, key, err);
    if (rc)
        error_prefix(err, "reading the root filesystem folder %s", dir);
    if (!rc)
        rc = dir_paths(store, key, cfg, &p, err);
    if (!rc && sm_image_open(store, p.name, out, NULL) != SM_OK) /* cached: no pack, no bake */
        rc = pack_and_bake(store, dir, cfg, &p, out, err);
    sm_vm_config_free(own);
    return rc;
}
