/*
 * sm_store_prune: the OCI store's files that nothing uses any more.
 *
 * The OCI store (IMAGES/.oci, src/lib/oci_image.c) only grows: a pull adds
 * blobs and a root filesystem, and rmi removes the image folder only. What
 * is still in use, and so kept:
 *
 *   what                          kept while
 *   .oci/rootfs/HEX.sqfs,         a `disk` link leads to it: of any folder in IMAGES
 *     .oci/rootfs/dir-HEX.sqfs    (the second: a folder's, sm_image_from_rootfs)
 *                                 (named images, and the hidden ones a bake or a
 *                                 snapshot is writing), or of any VM folder of the
 *                                 store (VM_DISK_LINK, dead VMs' too until `stop`)
 *   .oci/blobs/sha256/HEX         an image folder's image.info names it as its digest,
 *                                 or that digest's manifest names it (config, layers);
 *                                 a docker-archive's digest is its config, whose
 *                                 diff_ids name its (uncompressed) layers
 *
 * Everything else of those two folders' plain files (names of 64 hex digits,
 * with .sqfs in rootfs/) goes. Downloads in progress (.partial, .import-*),
 * the refs, links and anything else are never touched; the folders are
 * opened without following links, and files are removed by name in the
 * folder opened (unlinkat), so a link planted in the store leads nowhere.
 *
 * A pull (sm_image_from_oci) holds .oci/lock shared from its first blob to
 * its baked image; a prune takes it exclusive, or fails with SM_E_BUSY, so
 * it never takes the blobs of an image that is being made.
 */
#include "lib/prune.h"
#include "lib/image_info.h"
#include "lib/store.h"
#include "lib/vm_state.h"
#include "base/error.h"
#include "image/blob_store.h"
#include "image/digest.h"
#include "image/oci_config.h"
#include "image/oci_manifest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define PRUNE_OCI_DIR ".oci"
#define PRUNE_LOCK "lock"
#define HEX_LEN 64

/* A growing list of strings: the paths and digests in use. */
struct names {
    char **v;
    size_t n, cap;
    bool failed;
};

static void names_add(struct names *s, const char *name)
{
    if (s->failed)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        char **grown = realloc(s->v, cap * sizeof *grown);
        if (!grown) {
            s->failed = true;
            return;
        }
        s->v = grown;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(name)))
        s->failed = true;
    else
        s->n++;
}

static bool names_has(const struct names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], name))
            return true;
    return false;
}

static void names_free(struct names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

sm_code oci_store_lock(const char *oci_dir, bool exclusive, int *fd_out, sm_error *err)
{
    char path[PATH_MAX];
    *fd_out = -1;
    if ((size_t)snprintf(path, sizeof path, "%s/" PRUNE_LOCK, oci_dir) >= sizeof path)
        return error_set(err, SM_E_LIMIT, "path too long: %s/" PRUNE_LOCK, oci_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot open %s", path);
    int r;
    while ((r = flock(fd, exclusive ? LOCK_EX | LOCK_NB : LOCK_SH)) < 0 && errno == EINTR)
        ;
    if (r < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return error_set(err, SM_E_BUSY, "an image is being pulled into this store: prune once it is done");
        return error_set_errno(err, SM_E_IO, e, "cannot lock %s", path);
    }
    *fd_out = fd;
    return SM_OK;
}

/* ---- what is in use ---------------------------------------------------------- */

/* The file dir/disk leads to, resolved, into used (nothing when no link). */
static void add_disk_link(const char *dir, const char *link_name, struct names *used)
{
    char link[PATH_MAX], real[PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(link, sizeof link, "%s/%s", dir, link_name) < sizeof link && lstat(link, &st) == 0 &&
        S_ISLNK(st.st_mode) && realpath(link, real))
        names_add(used, real);
}

/* Every blob the image of digest names: the digest itself, and what its
 * manifest (or, for a docker-archive, its config) lists. A manifest gone
 * keeps nothing more: its image can no longer be rebuilt anyway. */
static sm_code add_image_blobs(const char *oci_dir, const char *digest, struct names *blobs, sm_error *err)
{
    char *json = NULL;
    size_t len = 0;
    names_add(blobs, digest);
    sm_code rc = blob_store_read(oci_dir, digest, OCI_JSON_MAX, &json, &len, NULL);
    if (rc)
        return SM_OK;
    struct oci_manifest m;
    struct oci_config c;
    if (oci_manifest_parse(json, len, NULL, &m, NULL) == SM_OK) {
        if (m.kind == OCI_KIND_IMAGE) {
            names_add(blobs, m.config.digest);
            for (size_t i = 0; i < m.nlayers; i++)
                names_add(blobs, m.layers[i].digest);
        }
        oci_manifest_free(&m);
    } else if (oci_config_parse(json, len, &c, NULL) == SM_OK) {
        for (size_t i = 0; i < c.ndiff_ids; i++)
            names_add(blobs, c.diff_ids[i]);
        oci_config_free(&c);
    } else {
        rc = error_set(err, SM_E_PROTOCOL, "the blob %s, an image's manifest, is neither a manifest nor a config: "
                       "nothing removed", digest);
    }
    free(json);
    return rc;
}

/* Root filesystems and blobs the folders in images use. */
static sm_code collect_images(const char *images, const char *oci_dir, struct names *disks, struct names *blobs,
                              sm_error *err)
{
    DIR *d = opendir(images);
    if (!d)
        return error_set_errno(err, SM_E_IO, errno, "cannot list %s", images);
    sm_code rc = SM_OK;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        char dir[PATH_MAX];
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, PRUNE_OCI_DIR) ||
            (size_t)snprintf(dir, sizeof dir, "%s/%s", images, e->d_name) >= sizeof dir ||
            lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
            continue;
        add_disk_link(dir, "disk", disks);
        sm_image_info info = { 0 };
        image_info_read(dir, &info);
        if (oci_digest_valid(info.digest))
            rc = add_image_blobs(oci_dir, info.digest, blobs, err);
    }
    closedir(d);
    return rc;
}

/* Root filesystems the store's VMs were given, running or dead. */
static sm_code collect_vms(const sm_store *store, struct names *disks, sm_error *err)
{
    char vms[PATH_MAX];
    sm_code rc = store_vms_dir(store, vms, sizeof vms, false, err);
    if (rc)
        return rc;
    DIR *d = opendir(vms);
    if (!d)
        return errno == ENOENT ? SM_OK : error_set_errno(err, SM_E_IO, errno, "cannot list %s", vms);
    for (struct dirent *e; (e = readdir(d));) {
        char dir[PATH_MAX];
        if (vm_id_valid(e->d_name) && (size_t)snprintf(dir, sizeof dir, "%s/%s", vms, e->d_name) < sizeof dir)
            add_disk_link(dir, VM_DISK_LINK, disks);
    }
    closedir(d);
    return SM_OK;
}

/* ---- what goes ----------------------------------------------------------------- */

struct sweep {
    bool dry_run;
    sm_prune_fn each;
    void *ctx;
    sm_prune_report *report;
};

/* A name of 64 lowercase hex digits, then suffix. */
/* HEX+suffix; in rootfs/ (suffix .sqfs) also dir-HEX.sqfs, a folder's
 * root filesystem (sm_image_from_rootfs), kept by the same rule. */
static bool hex_name(const char *name, const char *suffix)
{
    if (!strcmp(suffix, ".sqfs") && !strncmp(name, ROOTFS_DIR_PREFIX, strlen(ROOTFS_DIR_PREFIX)))
        name += strlen(ROOTFS_DIR_PREFIX);
    return strspn(name, "0123456789abcdef") == HEX_LEN && !strcmp(name + HEX_LEN, suffix);
}

/* Opens parent/name as a folder without following a link there. */
static int open_folder_at(int parent, const char *name)
{
    return openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Removes (or counts, dry) the plain files of folder fd, named HEX+suffix,
 * for which in_use says no; path names the folder in the report. */
static sm_code sweep_folder(int fd, const char *path, const char *suffix, bool (*in_use)(const char *name, void *arg),
                            void *arg, const struct sweep *s, uint64_t *removed, sm_error *err)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return error_set_errno(err, SM_E_IO, errno, "cannot list %s", path);
    }
    sm_code rc = SM_OK;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        struct stat st;
        if (!hex_name(e->d_name, suffix) || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode) || in_use(e->d_name, arg))
            continue;
        if (!s->dry_run && unlinkat(dirfd(d), e->d_name, 0) < 0) {
            if (errno != ENOENT)
                rc = error_set_errno(err, SM_E_IO, errno, "cannot remove %s/%s", path, e->d_name);
            continue;
        }
        uint64_t bytes = (uint64_t)st.st_blocks * 512u;
        (*removed)++;
        s->report->bytes_freed += bytes;
        if (s->each) {
            char file[PATH_MAX];
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            s->each(s->ctx, file, bytes);
        }
    }
    closedir(d);
    return rc;
}

struct rootfs_use {
    const char *folder; /* the rootfs folder's real path */
    const struct names *disks;
};

static bool rootfs_in_use(const char *name, void *arg)
{
    const struct rootfs_use *u = arg;
    char path[PATH_MAX];
    return (size_t)snprintf(path, sizeof path, "%s/%s", u->folder, name) >= sizeof path || names_has(u->disks, path);
}

static bool blob_in_use(const char *name, void *arg)
{
    char digest[OCI_DIGEST_SIZE];
    snprintf(digest, sizeof digest, "sha256:%s", name);
    return names_has(arg, digest);
}

/* The two folders, each opened from .oci without following links. */
static sm_code sweep_store(int oci_fd, const char *oci_dir, const struct names *disks, const struct names *blobs,
                           const struct sweep *s, sm_error *err)
{
    char path[PATH_MAX + 32];
    sm_code rc = SM_OK;
    int fd = open_folder_at(oci_fd, "rootfs");
    snprintf(path, sizeof path, "%s/rootfs", oci_dir);
    if (fd >= 0) {
        struct rootfs_use u = { path, disks };
        rc = sweep_folder(fd, path, ".sqfs", rootfs_in_use, &u, s, &s->report->rootfs_removed, err);
    } else if (errno != ENOENT) {
        rc = error_set_errno(err, SM_E_IO, errno, "cannot open %s (a link there is refused)", path);
    }
    int blobs_fd = open_folder_at(oci_fd, "blobs");
    fd = blobs_fd >= 0 ? open_folder_at(blobs_fd, "sha256") : -1;
    if (blobs_fd >= 0)
        close(blobs_fd);
    snprintf(path, sizeof path, "%s/blobs/sha256", oci_dir);
    if (!rc && fd >= 0)
        return sweep_folder(fd, path, "", blob_in_use, (void *)blobs, s, &s->report->blobs_removed, err);
    if (fd >= 0)
        close(fd);
    else if (!rc && errno != ENOENT)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot open %s (a link there is refused)", path);
    return rc;
}

sm_code sm_store_prune(const sm_store *store, bool dry_run, sm_prune_fn each, void *ctx, sm_prune_report *report,
                       sm_error *err)
{
    sm_prune_report own;
    if (!report)
        report = &own;
    memset(report, 0, sizeof *report);
    char images[PATH_MAX], real[PATH_MAX], oci_dir[PATH_MAX + 8];
    sm_code rc = store_images_dir(store, images, sizeof images, err);
    if (rc)
        return rc;
    if (!realpath(images, real))
        return error_set_errno(err, SM_E_IO, errno, "cannot resolve %s", images);
    snprintf(oci_dir, sizeof oci_dir, "%s/" PRUNE_OCI_DIR, real);
    int oci_fd = open(oci_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (oci_fd < 0)
        return errno == ENOENT ? SM_OK
                               : error_set_errno(err, SM_E_IO, errno, "cannot open %s (a link there is refused)",
                                                 oci_dir);
    int lock;
    if ((rc = oci_store_lock(oci_dir, true, &lock, err))) {
        close(oci_fd);
        return rc;
    }
    struct names disks = { 0 }, blobs = { 0 };
    rc = collect_images(real, oci_dir, &disks, &blobs, err);
    if (!rc)
        rc = collect_vms(store, &disks, err);
    if (!rc && (disks.failed || blobs.failed))
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    struct sweep s = { dry_run, each, ctx, report };
    if (!rc)
        rc = sweep_store(oci_fd, oci_dir, &disks, &blobs, &s, err);
    names_free(&disks);
    names_free(&blobs);
    close(lock);
    close(oci_fd);
    return rc;
}
