/*
 * Volumes (supermachine.h): ext4 file systems in files that outlive VMs.
 *
 * A named volume is IMAGES/.volumes/NAME.ext4 (IMAGES: the store's images
 * folder; the dot keeps it apart from image names, which never start with
 * one). It is made by mkfs.ext4 on a sparse file of the asked size, under a
 * temporary name, and linked into place only when whole: a name never
 * stands for half a file system.
 *
 * Who holds a volume is told by flock(2) on its file, the lock the VMM takes
 * for as long as it runs (exclusive to write, shared to read; vmm/vm.c). The
 * library only tries the lock, to say "in use" early and clearly; the
 * VMM's is the one that counts.
 */
#include "lib/volume.h"
#include "lib/store.h"
#include "base/error.h"
#include "base/file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define VOLUMES_DIR   ".volumes"
#define VOLUME_SUFFIX ".ext4"
#define MIN_SIZE      (16ull << 20)
#define MAX_SIZE      (16ull << 40)

extern char **environ;

bool volume_size_ok(uint64_t bytes)
{
    return bytes >= MIN_SIZE && bytes <= MAX_SIZE;
}

/* IMAGES/.volumes, made (0700) if missing. */
static sm_code volumes_dir(const sm_store *store, char *out, size_t cap, sm_error *err)
{
    char base[PATH_MAX];
    sm_code rc = store_images_dir(store, base, sizeof base, err);
    if (rc)
        return rc;
    if (snprintf(out, cap, "%s/" VOLUMES_DIR, base) >= (int)cap)
        return error_set(err, SM_E_LIMIT, "the volumes folder path is too long");
    if (mkdir(out, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, SM_E_IO, errno, "cannot create %s", out);
    struct stat st;
    if (!dir_is_ours(out, false, &st))
        return error_set(err, SM_E_IO, "the volumes folder %s is not safe to use: it must be a folder of this "
                         "user that others cannot write into", out);
    return SM_OK;
}

static sm_code named_path(const sm_store *store, const char *name, char *out, size_t cap, sm_error *err)
{
    char dir[PATH_MAX];
    sm_code rc = store_name_check("volume", name, err);
    if (!rc)
        rc = volumes_dir(store, dir, sizeof dir, err);
    if (rc)
        return rc;
    if (snprintf(out, cap, "%s/%s" VOLUME_SUFFIX, dir, name) >= (int)cap)
        return error_set(err, SM_E_LIMIT, "the volume path is too long");
    return SM_OK;
}

/* Whether a VM holds the volume at path so that we could not: to write
 * (exclusive) nobody may hold it; to read, no writer. */
static bool held(const char *path, bool exclusive)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return false;
    bool busy = flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return busy;
}

/* mkfs.ext4 from e2fsprogs, which is often outside a user's PATH. */
static const char *find_mkfs(void)
{
    static const char *const places[] = { "/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "/usr/bin/mkfs.ext4" };
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++)
        if (access(places[i], X_OK) == 0)
            return places[i];
    return NULL;
}

/* Runs mkfs.ext4 on the file at path; its complaint (a line of it) comes
 * back in the error. Lazy init: the inode tables and journal are zeroed by
 * the guest kernel when it first mounts, not written out here, so a new
 * volume takes no room until it is used. */
static sm_code make_ext4(const char *path, sm_error *err)
{
    const char *mkfs = find_mkfs();
    if (!mkfs)
        return error_set(err, SM_E_UNSUPPORTED, "mkfs.ext4 is not installed (Debian: apt install e2fsprogs)");
    char *const argv[] = { "mkfs.ext4", "-q", "-F", "-m", "0", "-L", "supermachine",
                           "-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", (char *)path, NULL };
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        return error_set_errno(err, SM_E_IO, errno, "pipe for mkfs.ext4");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    pid_t pid;
    int e = posix_spawn(&pid, mkfs, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    if (e) {
        close(out[0]);
        return error_set_errno(err, SM_E_IO, e, "cannot run %s", mkfs);
    }
    char said[256] = "";
    size_t got = 0;
    for (ssize_t n; got < sizeof said - 1 && (n = read(out[0], said + got, sizeof said - 1 - got)) != 0;)
        if (n > 0)
            got += (size_t)n;
        else if (errno != EINTR)
            break;
    said[got] = 0;
    said[strcspn(said, "\n")] = 0;
    close(out[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return error_set_errno(err, SM_E_IO, errno, "waiting for mkfs.ext4");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return error_set(err, SM_E_IO, "mkfs.ext4 failed (status %d): %s", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                         said[0] ? said : "no message");
    return SM_OK;
}

/* An empty ext4 of size bytes at path, which must not exist: made beside it
 * and linked into place whole (link(2) never replaces). */
static sm_code create_at(const char *path, uint64_t size, sm_error *err)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.new-%d", path, (int)getpid()) >= (int)sizeof tmp)
        return error_set(err, SM_E_LIMIT, "the volume path is too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot create %s", tmp);
    sm_code rc = SM_OK;
    if (ftruncate(fd, (off_t)size) < 0)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot size %s", tmp);
    close(fd);
    if (!rc)
        rc = make_ext4(tmp, err);
    if (!rc && link(tmp, path) < 0)
        rc = errno == EEXIST ? error_set(err, SM_E_INVALID, "the volume %s exists already", path)
                             : error_set_errno(err, SM_E_IO, errno, "cannot put the volume at %s", path);
    unlink(tmp);
    return rc;
}

sm_code sm_volume_create(const sm_store *store, const char *name, uint64_t size_bytes, sm_error *err)
{
    uint64_t size = size_bytes ? size_bytes : SM_VOLUME_DEFAULT_SIZE;
    if (!volume_size_ok(size))
        return error_set(err, SM_E_INVALID, "a volume's size is 16 MiB to 16 TiB, not %llu bytes",
                         (unsigned long long)size);
    char path[PATH_MAX];
    sm_code rc = named_path(store, name, path, sizeof path, err);
    if (rc)
        return rc;
    if (access(path, F_OK) == 0)
        return error_set(err, SM_E_INVALID, "the volume '%s' exists already", name);
    return create_at(path, size, err);
}

sm_code sm_volume_remove(const sm_store *store, const char *name, sm_error *err)
{
    char path[PATH_MAX];
    sm_code rc = named_path(store, name, path, sizeof path, err);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT)
        return error_set(err, SM_E_NOTFOUND, "there is no volume '%s'", name);
    if (fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot open the volume %s", path);
    /* Held while it goes, so that no VM takes it in between. */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        return e == EWOULDBLOCK ? error_set(err, SM_E_BUSY, "the volume '%s' is in use by a VM", name)
                                : error_set_errno(err, SM_E_IO, e, "cannot lock the volume %s", path);
    }
    rc = unlink(path) < 0 ? error_set_errno(err, SM_E_IO, errno, "cannot remove %s", path) : SM_OK;
    close(fd);
    return rc;
}

/* NAME out of "NAME.ext4", if it is a volume's file name. */
static bool volume_name_of(const char *file, char *name, size_t cap)
{
    size_t n = strlen(file), k = strlen(VOLUME_SUFFIX);
    if (n <= k || strcmp(file + n - k, VOLUME_SUFFIX) || n - k >= cap)
        return false;
    memcpy(name, file, n - k);
    name[n - k] = 0;
    return store_name_valid(name);
}

static bool fill_info(const char *dir, const char *file, sm_volume_info *info)
{
    char path[PATH_MAX];
    struct stat st;
    memset(info, 0, sizeof *info);
    if (!volume_name_of(file, info->name, sizeof info->name) ||
        snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path || lstat(path, &st) < 0 ||
        !S_ISREG(st.st_mode))
        return false;
    info->size_bytes = (uint64_t)st.st_size;
    info->disk_bytes = (uint64_t)st.st_blocks * 512u;
    info->in_use = held(path, true);
    return true;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const sm_volume_info *)a)->name, ((const sm_volume_info *)b)->name);
}

sm_code sm_volume_list(const sm_store *store, sm_volume_info **list, size_t *count, sm_error *err)
{
    if (!list || !count)
        return error_set(err, SM_E_INVALID, "sm_volume_list: NULL list or count");
    *list = NULL;
    *count = 0;
    char dir[PATH_MAX];
    sm_code rc = volumes_dir(store, dir, sizeof dir, err);
    if (rc)
        return rc;
    DIR *d = opendir(dir);
    if (!d)
        return error_set_errno(err, SM_E_IO, errno, "cannot list %s", dir);
    size_t cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (*count == cap) {
            sm_volume_info *grown = realloc(*list, (cap = cap ? cap * 2 : 8) * sizeof **list);
            if (!grown) {
                rc = error_set(err, SM_E_NOMEM, "out of memory");
                break;
            }
            *list = grown;
        }
        if (fill_info(dir, e->d_name, &(*list)[*count]))
            (*count)++;
    }
    closedir(d);
    if (rc) {
        free(*list);
        *list = NULL;
        *count = 0;
        return rc;
    }
    qsort(*list, *count, sizeof **list, by_name);
    return SM_OK;
}

sm_code volume_resolve(const sm_store *store, const char *source, bool read_only, uint64_t create_size, char *out,
                       size_t cap, sm_error *err)
{
    char path[PATH_MAX];
    sm_code rc = SM_OK;
    if (strchr(source, '/')) {
        if (!realpath(source, path))
            return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno,
                                   "the volume file %s", source);
    } else {
        rc = named_path(store, source, path, sizeof path, err);
        if (!rc && access(path, F_OK) < 0 && errno == ENOENT) {
            rc = create_at(path, create_size, err);
            if (rc == SM_E_INVALID) /* another start made it meanwhile: use it */
                rc = SM_OK;
        }
    }
    struct stat st; /* a named volume is never a link: lstat */
    if (!rc && (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)))
        rc = error_set(err, SM_E_INVALID, "the volume %s is not a regular file", source);
    if (!rc && held(path, !read_only))
        rc = error_set(err, SM_E_BUSY, "the volume %s is in use by another VM%s", source,
                       read_only ? " that writes it" : "");
    if (!rc && snprintf(out, cap, "%s", path) >= (int)cap)
        rc = error_set(err, SM_E_LIMIT, "the volume path is too long");
    return rc;
}
