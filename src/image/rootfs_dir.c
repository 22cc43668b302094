/* The content key of a root filesystem folder: see rootfs_dir.h for the
 * record format. The walk uses openat/fstatat from descriptors so a rename
 * in the tree during the walk cannot send it outside dir. */
#include "image/rootfs_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

struct walk {
    oci_sha256 h;
    dev_t dev;
    unsigned max_depth;
    uint64_t max_entries;
    uint64_t entries;
    char path[PATH_MAX];
};

static void put_le(oci_sha256 *h, uint64_t v, size_t bytes)
{
    unsigned char b[8];
    for (size_t i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    oci_sha256_update(h, b, bytes);
}

/* Engines make files in each container's fresh root (podman: an empty
 * /run/.containerenv, an /etc/mtab link to /proc/mounts): the times of
 * folders, links and empty files say when a container was made, not what
 * its image is, so only non-empty regular files' times count (a link's
 * target, a folder's entries are hashed themselves). */
static uint64_t keyed_mtime_ns(const struct stat *st)
{
    if (!S_ISREG(st->st_mode) || st->st_size == 0)
        return 0;
    return (uint64_t)((int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec);
}

/* One record, per the table in rootfs_dir.h. */
static void hash_entry(struct walk *w, size_t path_len, const struct stat *st, const char *target,
                       size_t target_len)
{
    put_le(&w->h, path_len, 4);
    oci_sha256_update(&w->h, w->path, path_len);
    put_le(&w->h, st->st_mode, 4);
    put_le(&w->h, st->st_uid, 4);
    put_le(&w->h, st->st_gid, 4);
    put_le(&w->h, S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size, 8);
    put_le(&w->h, keyed_mtime_ns(st), 8);
    put_le(&w->h, S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) ? (uint64_t)st->st_rdev : 0, 8);
    put_le(&w->h, target_len, 4);
    oci_sha256_update(&w->h, target, target_len);
}

static int by_bytes(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The names in the folder open at fd, sorted bytewise (fd is consumed). */
static sm_code read_names(int fd, struct walk *w, char ***out, size_t *out_n, sm_error *err)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return error_set_errno(err, SM_E_IO, errno, "cannot read the folder %s", w->path[0] ? w->path : ".");
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    sm_code rc = SM_OK;
    struct dirent *e;
    errno = 0;
    while (rc == SM_OK && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (++w->entries > w->max_entries) {
            rc = error_set(err, SM_E_LIMIT, "the root filesystem folder has more than %llu entries",
                           (unsigned long long)w->max_entries);
            break;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = error_set(err, SM_E_NOMEM, "rootfs_dir_key: out of memory");
                break;
            }
            names = nn;
            cap = ncap;
        }
        names[n] = strdup(e->d_name);
        if (!names[n]) {
            rc = error_set(err, SM_E_NOMEM, "rootfs_dir_key: out of memory");
            break;
        }
        n++;
        errno = 0;
    }
    if (rc == SM_OK && errno != 0)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot read the folder %s", w->path[0] ? w->path : ".");
    closedir(d);
    if (rc != SM_OK) {
        free_names(names, n);
        return rc;
    }
    if (n)
        qsort(names, n, sizeof *names, by_bytes);
    *out = names;
    *out_n = n;
    return SM_OK;
}

static sm_code walk_dir(struct walk *w, int dfd, size_t len, unsigned depth, sm_error *err);

/* One entry of the folder at dfd, whose path is w->path[0..len). */
static sm_code walk_entry(struct walk *w, int dfd, const char *name, size_t len, unsigned depth,
                          sm_error *err)
{
    size_t nlen = strlen(name);
    size_t plen = len + (len ? 1 : 0) + nlen;
    if (plen >= sizeof w->path)
        return error_set(err, SM_E_LIMIT, "a path in the root filesystem folder is longer than %d bytes",
                         PATH_MAX - 1);
    if (len)
        w->path[len] = '/';
    memcpy(w->path + len + (len ? 1 : 0), name, nlen + 1);
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot stat %s in the root filesystem folder", w->path);
    char target[PATH_MAX];
    ssize_t tlen = 0;
    if (S_ISLNK(st.st_mode)) {
        tlen = readlinkat(dfd, name, target, sizeof target);
        if (tlen < 0)
            return error_set_errno(err, SM_E_IO, errno, "cannot read the symlink %s", w->path);
        if ((size_t)tlen == sizeof target)
            return error_set(err, SM_E_LIMIT, "the symlink %s has a target of %d bytes or more", w->path,
                             PATH_MAX);
    }
    hash_entry(w, plen, &st, target, (size_t)tlen);
    if (!S_ISDIR(st.st_mode) || st.st_dev != w->dev)
        return SM_OK; /* a mount point is not entered */
    if (depth + 1 > w->max_depth)
        return error_set(err, SM_E_LIMIT, "the root filesystem folder is deeper than %u folders (at %s)",
                         w->max_depth, w->path);
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot open the folder %s", w->path);
    return walk_dir(w, fd, plen, depth + 1, err);
}

/* The entries of the folder open at fd (consumed), in name order. */
static sm_code walk_dir(struct walk *w, int fd, size_t len, unsigned depth, sm_error *err)
{
    int keep = dup(fd);
    if (keep < 0) {
        close(fd);
        return error_set_errno(err, SM_E_IO, errno, "rootfs_dir_key: dup");
    }
    char **names = NULL;
    size_t n = 0;
    sm_code rc = read_names(fd, w, &names, &n, err);
    for (size_t i = 0; rc == SM_OK && i < n; i++)
        rc = walk_entry(w, keep, names[i], len, depth, err);
    w->path[len] = '\0';
    free_names(names, n);
    close(keep);
    return rc;
}

sm_code rootfs_dir_key(const char *dir, const struct rootfs_dir_limits *limits,
                       char out[OCI_DIGEST_SIZE], sm_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, errno == ENOTDIR || errno == ENOENT ? SM_E_INVALID : SM_E_IO, errno,
                               "%s is not a readable folder", dir);
    struct walk *w = calloc(1, sizeof *w);
    if (!w) {
        close(fd);
        return error_set(err, SM_E_NOMEM, "rootfs_dir_key: out of memory");
    }
    struct stat st;
    sm_code rc = fstat(fd, &st) == 0 ? SM_OK : error_set_errno(err, SM_E_IO, errno, "cannot stat %s", dir);
    if (rc == SM_OK)
        rc = oci_sha256_init(&w->h, err);
    if (rc != SM_OK) {
        close(fd);
        free(w);
        return rc;
    }
    w->dev = st.st_dev;
    w->max_depth = limits && limits->max_depth ? limits->max_depth : ROOTFS_DIR_MAX_DEPTH;
    w->max_entries = limits && limits->max_entries ? limits->max_entries : ROOTFS_DIR_MAX_ENTRIES;
    hash_entry(w, 0, &st, "", 0);
    rc = walk_dir(w, fd, 0, 0, err);
    if (rc == SM_OK)
        oci_sha256_final(&w->h, out);
    oci_sha256_free(&w->h);
    free(w);
    return rc;
}
