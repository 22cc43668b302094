/*
 * rootfs_build: an image's layers -> one read-only squashfs, as any user.
 *
 *   layers_flatten --pax tar over a socketpair--> tar2sqfs --> OUT.tmp.<pid>
 *   then fsync(OUT.tmp.<pid>), rename to OUT, fsync(OUT's folder)
 *
 * Why not extraction to a folder plus mksquashfs or mkfs.erofs: without root,
 * extraction loses owners, device nodes and trusted./security. xattrs, and
 * bookworm's mkfs.erofs has no tar input. tar2sqfs (squashfs-tools-ng) reads
 * the tar and stores all of them.
 *
 * The tar2sqfs command line:
 *
 *  | option                       | why                                                        |
 *  |------------------------------|------------------------------------------------------------|
 *  | --compressor zstd            | the guest kernel has SQUASHFS_ZSTD (not LZ4 or XZ)          |
 *  | -X level=6                   | see ROOTFS_ZSTD_LEVEL                                       |
 *  | --no-skip                    | a tar record it cannot read aborts instead of being skipped |
 *  | --defaults uid=0,gid=0,      | for folders it would create itself; layers_flatten writes   |
 *  |   mode=0755,mtime=0          | every folder, the root as "./", so these are a fallback     |
 *  | --quiet                      | no progress lines                                          |
 *  | --force                      | the temporary name is ours: a leftover of a dead process    |
 *  |                              | that had our pid is overwritten                            |
 *  | (defaults kept)              | mtimes kept; xattrs copied from SCHILY.xattr records       |
 *  |                              | (layers_flatten keeps only user./trusted./security., the   |
 *  |                              | prefixes squashfs accepts); block size 128 KiB             |
 *
 * tar2sqfs exits 0 on a tar that just stops, so success needs both:
 * layers_flatten returned SM_OK and tar2sqfs exited 0. The socket (not a
 * pipe) lets the writer see tar2sqfs going away as EPIPE, not SIGPIPE.
 *
 * A full disk: tar2sqfs says only "I/O error" and deletes its output. So we
 * create OUT.tmp.<pid> ourselves and hold it open while tar2sqfs writes it
 * (--force writes into the existing file): its blocks stay allocated after
 * tar2sqfs unlinks it, and the file system, asked through our descriptor,
 * is still full when we look. That is reported as ENOSPC.
 */
#include "image/rootfs.h"
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "image/disk_space.h"

#define TOOL_LOG_TAIL 320 /* bytes of tar2sqfs's output quoted in an error */

/* zstd level. tar2sqfs's default, 15, is slow for little gain. Measured
 * here on a debootstrap minbase bookworm (51.2 MB gzip layer, 116 MB of
 * data, 6678 entries), tar2sqfs -j 1 on the flattened tar:
 *
 *   level   time     image
 *   3       0.7 s    49.2 MB
 *   6       1.0 s    46.8 MB   <- chosen: half of 9's time, 0.8% larger
 *   9       1.9 s    46.4 MB
 *   12      3.7 s    46.2 MB
 *   15     10.8 s    43.5 MB
 *   19     22.4 s    43.2 MB
 *
 * Reading speed in the guest hardly depends on the level. */
#define ROOTFS_ZSTD_LEVEL "level=6"

extern char **environ;

/* Starts a squashfs-tools-ng packer (argv[0], found through PATH) with
 * stdin from in_fd (/dev/null when -1); its stdout and stderr go to log_fd. */
static sm_code spawn_tool(char *const argv[], int in_fd, int log_fd, pid_t *pid, sm_error *err)
{
    const char *tool = argv[0];
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return error_set(err, SM_E_NOMEM, "starting %s: out of memory", tool);
    if (posix_spawnattr_init(&attr) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return error_set(err, SM_E_NOMEM, "starting %s: out of memory", tool);
    }
    /* The caller's signal mask and ignored SIGPIPE must not leak into it. */
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    int rc = in_fd >= 0 ? posix_spawn_file_actions_adddup2(&fa, in_fd, 0)
                        : posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, log_fd, 1);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
    if (rc == 0)
        rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(&attr, &defaults);
    if (rc == 0)
        rc = posix_spawnp(pid, tool, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc == ENOENT)
        return error_set(err, SM_E_UNSUPPORTED,
                       "%s is not installed (it packs the guest's root filesystem into a squashfs): "
                       "apt-get install %s",
                       tool, ROOTFS_TOOL_PACKAGE);
    if (rc != 0)
        return error_set_errno(err, SM_E_IO, rc, "starting %s", tool);
    return SM_OK;
}

/* Starts tar2sqfs writing `image`, reading the tar from in_fd. */
static sm_code spawn_packer(const char *image, int in_fd, int log_fd, pid_t *pid, sm_error *err)
{
    char *const argv[] = {
        (char *)ROOTFS_TOOL, (char *)"--quiet", (char *)"--no-skip", (char *)"--force",
        (char *)"--compressor", (char *)"zstd", (char *)"--comp-extra", (char *)ROOTFS_ZSTD_LEVEL,
        (char *)"--defaults", (char *)"uid=0,gid=0,mode=0755,mtime=0",
        (char *)image, NULL,
    };
    return spawn_tool(argv, in_fd, log_fd, pid, err);
}

static sm_code wait_packer(pid_t pid, int *status, sm_error *err)
{
    while (waitpid(pid, status, 0) < 0) {
        if (errno != EINTR)
            return error_set_errno(err, SM_E_IO, errno, "waiting for the squashfs packer (%s)", ROOTFS_TOOL_PACKAGE);
    }
    return SM_OK;
}

/* The end of what tar2sqfs printed, on one line. */
static void packer_log_tail(int log_fd, char *out, size_t cap)
{
    out[0] = 0;
    off_t end = lseek(log_fd, 0, SEEK_END);
    if (end <= 0 || cap < 2)
        return;
    size_t want = cap - 1 < (size_t)end ? cap - 1 : (size_t)end;
    ssize_t got = pread(log_fd, out, want, end - (off_t)want);
    if (got <= 0)
        return;
    size_t len = (size_t)got;
    while (len && (out[len - 1] == '\n' || out[len - 1] == ' '))
        len--;
    out[len] = 0;
    for (size_t i = 0; i < len; i++)
        if (out[i] == '\n')
            out[i] = ';';
        else if ((unsigned char)out[i] < 0x20)
            out[i] = ' ';
}

static void describe_status(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(out, cap, "status 0x%x", (unsigned)status);
}

static bool exited_zero(int status)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Gives the finished temporary image its name, by the rule of src/base/file.h
 * (tar2sqfs wrote it, so the steps are spelled out here). */
static sm_code publish(const char *tmp, const char *out_path, sm_error *err)
{
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "opening %s to sync it", tmp);
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc != 0)
        return error_set_errno(err, SM_E_IO, saved, "fsync %s", tmp);
    if (rename(tmp, out_path) != 0)
        return error_set_errno(err, SM_E_IO, errno, "renaming %s to %s", tmp, out_path);
    if (!fsync_parent_dir(out_path))
        return error_set_errno(err, SM_E_IO, errno, "fsync the folder of %s", out_path);
    return SM_OK;
}

/* tar2sqfs, the output file, and where the image goes (for messages). */
struct packer {
    const char *tool; /* for messages */
    pid_t pid;
    int log_fd;
    int held_fd; /* OUT.tmp.<pid>, held open: see the top of this file */
    const char *out_path;
};

/* tar2sqfs failed by itself (not killed by us): why, in its words, and as
 * ENOSPC when the file system it wrote to is full. */
static sm_code packer_failed(const struct packer *p, int status, const char *then, sm_error *err)
{
    char how[48], said[TOOL_LOG_TAIL];
    describe_status(status, how, sizeof how);
    packer_log_tail(p->log_fd, said, sizeof said);
    if (disk_space_full(p->held_fd))
        return error_set_errno(err, SM_E_IO, ENOSPC,
                               "the root filesystem does not fit on the file system of %s: it "
                               "filled up while %s wrote it (%s: %s)",
                               p->out_path, p->tool, how, said[0] ? said : "no message");
    return error_set(err, SM_E_IO, "%s failed (%s): %s%s%s", p->tool, how,
                     said[0] ? said : "(no message)", then ? "; then: " : "", then ? then : "");
}

/* Runs the flattening into a started tar2sqfs and judges the outcome. */
static sm_code feed_packer(const char *const *layer_paths, size_t n, int sock, const struct packer *p,
                           uint64_t max_unpacked, struct layers_stats *st, sm_error *err)
{
    sm_error flat_err = { 0 };
    sm_code flat = layers_flatten(layer_paths, n, sock, max_unpacked, st, &flat_err);
    close(sock); /* end of the tar for tar2sqfs */
    if (flat != SM_OK)
        kill(p->pid, SIGKILL); /* ours: a half tar must not become an image */
    int status = 0;
    sm_code rc = wait_packer(p->pid, &status, err);
    if (rc != SM_OK)
        return rc;
    if (flat == SM_OK)
        return exited_zero(status) ? SM_OK : packer_failed(p, status, NULL, err);
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) /* it stopped first: its reason comes first */
        return packer_failed(p, status, flat_err.message, err);
    if (err)
        *err = flat_err;
    return flat;
}

/* The folder of path, into dir ("." when it has none). */
static void folder_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, cap, ".");
    else if (slash == path)
        snprintf(dir, cap, "/");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

sm_code rootfs_check_space(const char *const *layer_paths, size_t n, const char *out_path,
                           sm_error *err)
{
    uint64_t layers = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(layer_paths[i], &st) != 0)
            return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno,
                                   "cannot stat the layer %s", layer_paths[i]);
        layers += (uint64_t)st.st_size; /* file sizes: no wrap over 1000 layers */
    }
    char dir[PATH_MAX];
    folder_of(out_path, dir, sizeof dir);
    uint64_t need = layers > UINT64_MAX / ROOTFS_SPACE_FACTOR ? UINT64_MAX : layers * ROOTFS_SPACE_FACTOR;
    char what[128], layers_text[SIZE_TEXT_MAX];
    size_text(layers, layers_text);
    snprintf(what, sizeof what, "the image's root filesystem (%d times its %s of layers)", ROOTFS_SPACE_FACTOR,
             layers_text);
    return disk_space_check(dir, need, what, err);
}

/* Starts tar2sqfs on the socket and feeds it; the image is at tmp after
 * SM_OK. */
static sm_code pack(const char *const *layer_paths, size_t n, const char *tmp, struct packer *p,
                    uint64_t max_unpacked, struct layers_stats *st, sm_error *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return error_set_errno(err, SM_E_IO, errno, "rootfs_build: socketpair");
    sm_code rc = spawn_packer(tmp, sv[1], p->log_fd, &p->pid, err);
    close(sv[1]);
    if (rc != SM_OK) {
        close(sv[0]);
        return rc;
    }
    return feed_packer(layer_paths, n, sv[0], p, max_unpacked, st, err);
}

/* One way of filling the temporary image at tmp (p's log and held file are
 * open); SM_OK when it holds the whole squashfs. */
typedef sm_code (*pack_fn)(const char *tmp, struct packer *p, void *ctx, sm_error *err);

/* Whole or nothing, for both packers: the image is packed at
 * out_path.tmp.<pid> (created and held by us: see the top of this file),
 * then published; on any failure the temporary file is removed. */
static sm_code build_atomically(const char *out_path, const char *tool, pack_fn fill, void *ctx,
                                sm_error *err)
{
    if (!out_path || !out_path[0])
        return error_set(err, SM_E_INVALID, "rootfs_build: no output path");
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_path, (long)getpid()) >= (int)sizeof tmp)
        return error_set(err, SM_E_INVALID, "rootfs_build: output path too long");
    struct packer p = { .tool = tool, .out_path = out_path, .log_fd = -1, .held_fd = -1 };
    p.log_fd = memfd_create("squashfs-packer-log", MFD_CLOEXEC);
    if (p.log_fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "rootfs_build: memfd_create");
    p.held_fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    sm_code rc = p.held_fd >= 0 ? SM_OK : error_set_errno(err, SM_E_IO, errno, "cannot create %s", tmp);
    if (rc == SM_OK)
        rc = fill(tmp, &p, ctx, err);
    if (rc == SM_OK)
        rc = publish(tmp, out_path, err);
    if (rc != SM_OK && p.held_fd >= 0)
        unlink(tmp);
    if (p.held_fd >= 0)
        close(p.held_fd); /* last: a full disk's blocks are freed here */
    close(p.log_fd);
    return rc; /* no prefix: callers add theirs, and the layer messages are long */
}

struct layers_job {
    const char *const *layer_paths;
    size_t n;
    uint64_t max_unpacked;
    struct layers_stats *st;
};

static sm_code pack_layers(const char *tmp, struct packer *p, void *ctx, sm_error *err)
{
    struct layers_job *j = ctx;
    return pack(j->layer_paths, j->n, tmp, p, j->max_unpacked, j->st, err);
}

sm_code rootfs_build(const char *const *layer_paths, size_t n, const char *out_path,
                     uint64_t max_unpacked, struct layers_stats *st, sm_error *err)
{
    struct layers_job j = { layer_paths, n, max_unpacked, st };
    return build_atomically(out_path, ROOTFS_TOOL, pack_layers, &j, err);
}

/* The gensquashfs command line (rootfs_build_dir):
 *
 *  | option                | why                                                   |
 *  |-----------------------|-------------------------------------------------------|
 *  | --pack-dir DIR        | the folder is the root filesystem                     |
 *  | --compressor zstd     | as tar2sqfs above                                     |
 *  | -X level=6            | ROOTFS_ZSTD_LEVEL                                     |
 *  | --keep-time           | mtimes kept (the default is the time of the build)    |
 *  | --keep-xattr          | xattrs kept where readable (user., and trusted. as    |
 *  |                       | root); owners are kept by default with --pack-dir     |
 *  | --one-file-system     | mount points are not entered: as rootfs_dir_key       |
 *  | --quiet, --force      | as tar2sqfs above                                     |
 *
 * gensquashfs does not follow symlinks; it stores them. */
static sm_code pack_dir(const char *tmp, struct packer *p, void *ctx, sm_error *err)
{
    char *const argv[] = {
        (char *)ROOTFS_DIR_TOOL, (char *)"--quiet", (char *)"--force",
        (char *)"--compressor", (char *)"zstd", (char *)"--comp-extra", (char *)ROOTFS_ZSTD_LEVEL,
        (char *)"--keep-time", (char *)"--keep-xattr", (char *)"--one-file-system",
        (char *)"--pack-dir", (char *)ctx, (char *)tmp, NULL,
    };
    sm_code rc = spawn_tool(argv, -1, p->log_fd, &p->pid, err);
    if (rc != SM_OK)
        return rc;
    int status = 0;
    rc = wait_packer(p->pid, &status, err);
    if (rc != SM_OK)
        return rc;
    return exited_zero(status) ? SM_OK : packer_failed(p, status, NULL, err);
}

sm_code rootfs_build_dir(const char *dir, const char *out_path, sm_error *err)
{
    if (!dir || !dir[0])
        return error_set(err, SM_E_INVALID, "rootfs_build_dir: no folder");
    return build_atomically(out_path, ROOTFS_DIR_TOOL, pack_dir, (void *)dir, err);
}
