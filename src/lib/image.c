/*
 * Images: a baked VM to restore from. An image is a folder:
 *
 *   state         the snapshot's state (src/snapshot/format.h)
 *   memory        the snapshot's guest memory, mapped copy-on-write by every
 *                 VM restored from it: never modified once written
 *   image.info    what it is, a line per "key value": memory_mib, cpus,
 *                 created_unix; for an OCI image also ref and digest
 *   disk          an OCI image's root filesystem: a symlink to its squashfs
 *                 in the OCI store (src/lib/oci_image.c), /dev/vda in guests
 *   oci-config.json  an OCI image's config (Entrypoint, Cmd, ...)
 *
 * Named images live in ${XDG_DATA_HOME:-~/.local/share}/supermachine/images/
 * NAME. Baking writes into a hidden temporary folder beside the final one and
 * renames it, so a half-baked image is never seen under its name.
 */
#include "lib/image.h"
#include "lib/image_info.h"
#include "base/file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/assets.h"
#include "base/error.h"
#include "protocol/vmm.h"
#include "lib/vm_state.h"
#include "lib/store.h"
#include "image/digest.h"

#define IMAGE_OCI_CONFIG "oci-config.json"
#define BAKE_LOG_TAIL 400

struct sm_image {
    char dir[PATH_MAX];
    char vms[PATH_MAX];    /* the VM folder of the store it came from; "" default */
    char images[PATH_MAX]; /* and its images folder (where volumes are); "" default */
};

/* dir/name into out; false (out unusable) when it does not fit. */
static bool join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < cap;
}

static bool is_file(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    return join(p, sizeof p, dir, name) && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

sm_code sm_image_from_snapshot(const char *dir, sm_image **out, sm_error *err)
{
    return image_open_dir(NULL, dir, out, err);
}

sm_code sm_vm_config_image(sm_vm_config *cfg, const sm_image *img)
{
    if (!img)
        return vm_config_set_image(cfg, NULL, NULL, NULL);
    return vm_config_set_image(cfg, img->dir, img->vms[0] ? img->vms : NULL, img->images[0] ? img->images : NULL);
}

sm_code image_open_dir(const sm_store *store, const char *dir, sm_image **out, sm_error *err)
{
    if (!dir || !out)
        return error_set(err, SM_E_INVALID, "sm_image_from_snapshot: NULL argument");
    *out = NULL;
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno, "no image at %s", dir);
    if (!is_file(real, VMM_SNAPSHOT_STATE) || !is_file(real, VMM_SNAPSHOT_MEMORY))
        return error_set(err, SM_E_NOTFOUND, "%s is not an image: it needs the files %s and %s (bake one with "
                       "`supermachine bake NAME`)", real, VMM_SNAPSHOT_STATE, VMM_SNAPSHOT_MEMORY);
    sm_image *img = calloc(1, sizeof *img);
    if (!img)
        return error_set(err, SM_E_NOMEM, "out of memory");
    snprintf(img->dir, sizeof img->dir, "%s", real);
    snprintf(img->vms, sizeof img->vms, "%s", store_vms_choice(store));
    snprintf(img->images, sizeof img->images, "%s", store_images_choice(store));
    *out = img;
    return SM_OK;
}

const char *sm_image_dir(const sm_image *img)
{
    return img ? img->dir : NULL;
}

void sm_image_free(sm_image *img)
{
    free(img);
}

/* ---- named images ----------------------------------------------------------- */

static sm_code named_dir(const sm_store *store, const char *name, char *out, size_t cap, sm_error *err)
{
    char base[PATH_MAX];
    sm_code rc = store_name_check("image", name, err);
    if (!rc)
        rc = store_images_dir(store, base, sizeof base, err);
    if (rc)
        return rc;
    if (snprintf(out, cap, "%s/%s", base, name) >= (int)cap)
        return error_set(err, SM_E_LIMIT, "image path too long");
    return SM_OK;
}

sm_code image_named_dir(const sm_store *store, const char *name, char *out, size_t cap, sm_error *err)
{
    return named_dir(store, name, out, cap, err);
}

sm_code sm_image_open(const sm_store *store, const char *name, sm_image **out, sm_error *err)
{
    char dir[PATH_MAX];
    sm_code rc = named_dir(store, name, dir, sizeof dir, err);
    if (rc)
        return rc;
    if (access(dir, F_OK) != 0)
        return error_set(err, SM_E_NOTFOUND, "no image named '%s' (bake it with `supermachine bake %s`)", name, name);
    return image_open_dir(store, dir, out, err);
}

static sm_code remove_tree(const char *dir, sm_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? SM_OK : error_set_errno(err, SM_E_IO, errno, "cannot open %s", dir);
    struct dirent *e;
    sm_code rc = SM_OK;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[PATH_MAX];
        /* Images hold plain files only; anything else is not ours to delete. */
        if ((!join(p, sizeof p, dir, e->d_name) || unlink(p) < 0) && !rc)
            rc = error_set_errno(err, SM_E_IO, errno, "cannot remove %s", p);
    }
    closedir(d);
    if (!rc && rmdir(dir) < 0)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot remove %s", dir);
    return rc;
}

sm_code sm_image_remove(const sm_store *store, const char *name, sm_error *err)
{
    char dir[PATH_MAX];
    sm_code rc = named_dir(store, name, dir, sizeof dir, err);
    if (rc)
        return rc;
    if (access(dir, F_OK) != 0)
        return error_set(err, SM_E_NOTFOUND, "no image named '%s'", name);
    /* VMs restored from it keep their mapping of its memory: removing the
     * names is safe for them. */
    return remove_tree(dir, err);
}

static uint64_t disk_bytes(const char *dir)
{
    uint64_t total = 0;
    /* The disk (an OCI image's root filesystem) is shared by the images baked
     * from it with other VM settings, and counted in each. */
    const char *names[] = { VMM_SNAPSHOT_STATE, VMM_SNAPSHOT_MEMORY, IMAGE_INFO, VMM_SNAPSHOT_DISK };
    for (size_t i = 0; i < 4; i++) {
        char p[PATH_MAX];
        struct stat st;
        if (join(p, sizeof p, dir, names[i]) && stat(p, &st) == 0)
            total += (uint64_t)st.st_blocks * 512u;
    }
    return total;
}

sm_code sm_image_list(const sm_store *store, sm_image_info **list, size_t *count, sm_error *err)
{
    *list = NULL;
    *count = 0;
    char base[PATH_MAX];
    sm_code rc = store_images_dir(store, base, sizeof base, err);
    if (rc)
        return rc;
    DIR *d = opendir(base);
    if (!d)
        return error_set_errno(err, SM_E_IO, errno, "cannot list %s", base);
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(d))) {
        char dir[PATH_MAX];
        if (!store_name_valid(e->d_name) || !join(dir, sizeof dir, base, e->d_name) ||
            !is_file(dir, VMM_SNAPSHOT_STATE))
            continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 8;
            sm_image_info *grown = realloc(*list, cap * sizeof **list);
            if (!grown) {
                closedir(d);
                free(*list);
                *list = NULL;
                *count = 0;
                return error_set(err, SM_E_NOMEM, "out of memory");
            }
            *list = grown;
        }
        sm_image_info *info = &(*list)[(*count)++];
        memset(info, 0, sizeof *info);
        memcpy(info->name, e->d_name, strlen(e->d_name) + 1); /* valid_name: at most 64 bytes */
        image_info_read(dir, info);
        info->disk_bytes = disk_bytes(dir);
    }
    closedir(d);
    return SM_OK;
}

/* ---- baking ------------------------------------------------------------------- */

/* image.info; ref and digest may be NULL. */
static sm_code write_info(const char *dir, uint32_t memory_mib, uint32_t cpus, const char *ref, const char *digest,
                          sm_error *err)
{
    char p[PATH_MAX];
    FILE *f = join(p, sizeof p, dir, IMAGE_INFO) ? file_create_private(p) : NULL;
    if (!f)
        return error_set_errno(err, SM_E_IO, errno, "cannot write the image info in %s", dir);
    fprintf(f, "memory_mib %u\ncpus %u\ncreated_unix %lld\n", memory_mib, cpus, (long long)time(NULL));
    if (ref)
        fprintf(f, "ref %s\n", ref);
    if (digest)
        fprintf(f, "digest %s\n", digest);
    return fclose(f) == 0 ? SM_OK : error_set_errno(err, SM_E_IO, errno, "cannot write %s", p);
}

static sm_code write_config(const char *dir, const struct image_bake_extra *x, sm_error *err)
{
    char p[PATH_MAX];
    if (!x || !x->config_json)
        return SM_OK;
    FILE *f = join(p, sizeof p, dir, IMAGE_OCI_CONFIG) ? file_create_private(p) : NULL;
    if (!f)
        return error_set_errno(err, SM_E_IO, errno, "cannot write the image config in %s", dir);
    size_t n = fwrite(x->config_json, 1, x->config_len, f);
    if (fclose(f) != 0 || n != x->config_len)
        return error_set_errno(err, SM_E_IO, errno, "cannot write %s", p);
    return SM_OK;
}

static void log_tail(int fd, char *out, size_t cap)
{
    out[0] = 0;
    off_t end = lseek(fd, 0, SEEK_END);
    if (end <= 0)
        return;
    off_t from = end > (off_t)cap - 1 ? end - (off_t)cap + 1 : 0;
    ssize_t n = pread(fd, out, cap - 1, from);
    out[n > 0 ? n : 0] = 0;
    for (char *c = out; *c; c++)
        if (*c == '\n')
            *c = ' ';
}

/* Boots the guest with supermachine-vmm --snapshot-when-ready into tmp. */
static sm_code run_bake(const sm_vm_config *cfg, const struct image_bake_extra *x, const char *tmp, sm_error *err)
{
    char vmm[PATH_MAX], kernel[PATH_MAX], initrd[PATH_MAX], logp[PATH_MAX];
    sm_code rc;
    if ((rc = assets_find(ASSET_VMM, vmm, sizeof vmm, err)) ||
        (rc = vm_config_kernel_path(cfg, kernel, sizeof kernel, err)) ||
        (rc = vm_config_initrd_path(cfg, initrd, sizeof initrd, err)))
        return rc;
    if (!join(logp, sizeof logp, tmp, ".bake.log"))
        return error_set(err, SM_E_LIMIT, "image path too long");
    struct vmm_args a;
    vmm_args_init(&a);
    a.kernel = kernel;
    a.initrd = initrd;
    a.memory_mib = vm_config_memory_mib(cfg);
    a.cpus = vm_config_cpus(cfg);
    a.snapshot_when_ready = tmp;
    /* Its cell shows it only the folder it bakes into (read-only: the
     * snapshot is written through a descriptor opened before the seal). */
    a.cell_dir = tmp[0] == '/' ? tmp : NULL;
    a.disk = x ? x->disk : NULL;
    a.cmdline = x ? x->cmdline : NULL;
    a.no_seccomp = vm_seccomp_off();
    struct vmm_argv args;
    if (!vmm_args_format(&a, vmm, &args))
        return error_set(err, SM_E_INVALID, "too many arguments for the VMM");
    char **argv = args.argv;
    int log = open(logp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot create %s", logp);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, log, 1);
    posix_spawn_file_actions_adddup2(&fa, log, 2);
    pid_t pid;
    char *env[VMM_ENV_MAX];
    vmm_environment(env);
    int e = posix_spawn(&pid, vmm, &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    if (e) {
        close(log);
        return error_set_errno(err, SM_E_IO, e, "cannot run %s", vmm);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    char tail[BAKE_LOG_TAIL];
    log_tail(log, tail, sizeof tail);
    close(log);
    unlink(logp);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
        return error_set(err, SM_E_IO, "baking failed: the VMM was killed by its seccomp filter (a bug of "
                         "ours: please report it with this message): %s", tail);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return error_set(err, SM_E_GUEST, "baking failed: the VMM ended with status %d: %s",
                       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), tail);
    return SM_OK;
}

/*
 * A baked snapshot must restore: one VM is started from it, which takes the
 * restored agent's answer (sm_vm_start syncs its clock through it), and
 * stopped. A check that fails loudly, not a retry: a snapshot that does not
 * restore is a bug (the one seen, a snapshot taken between the agent's two
 * signal-port instructions, is described in protocol/guest_abi.h), and it
 * must never become an image.
 */
static sm_code verify_bake(const sm_store *store, const char *tmp, sm_error *err)
{
    sm_image *img = NULL;
    sm_vm *vm = NULL;
    sm_vm_config *c = sm_vm_config_new();
    sm_code rc = !c ? error_set(err, SM_E_NOMEM, "out of memory") : image_open_dir(store, tmp, &img, err);
    if (!rc)
        rc = sm_vm_config_image(c, img);
    if (!rc)
        rc = sm_vm_start(c, &vm, err);
    if (!rc)
        rc = sm_vm_stop(vm, err);
    sm_vm_free(vm);
    sm_vm_config_free(c);
    sm_image_free(img);
    return rc;
}

sm_code sm_image_bake(const sm_store *store, const char *name, const sm_vm_config *cfg, sm_image **out,
                      sm_error *err)
{
    return image_bake(store, name, cfg, NULL, out, err);
}

sm_code image_bake(const sm_store *store, const char *name, const sm_vm_config *cfg, const struct image_bake_extra *x,
                   sm_image **out, sm_error *err)
{
    char dir[PATH_MAX], tmp[PATH_MAX + 32];
    if (cfg && vm_config_volume_count(cfg))
        return error_set(err, SM_E_UNSUPPORTED, "an image cannot be baked with volumes: a volume is not part of a "
                         "snapshot (give the volumes to the VMs that start from it)");
    sm_code rc = named_dir(store, name, dir, sizeof dir, err);
    if (rc)
        return rc;
    sm_vm_config *own = NULL;
    if (!cfg && !(cfg = own = sm_vm_config_new()))
        return error_set(err, SM_E_NOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    snprintf(tmp, sizeof tmp, "%.*s/.%s.baking-%d", (int)(slash - dir), dir, name, (int)getpid());
    remove_tree(tmp, NULL);
    if (mkdir(tmp, 0700) < 0)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot create %s", tmp);
    if (!rc)
        rc = run_bake(cfg, x, tmp, err);
    if (!rc && (rc = verify_bake(store, tmp, err)))
        error_prefix(err, "the baked snapshot does not restore");
    if (!rc)
        rc = write_info(tmp, vm_config_memory_mib(cfg), vm_config_cpus(cfg), x ? x->ref : NULL, x ? x->digest : NULL,
                        err);
    if (!rc)
        rc = write_config(tmp, x, err);
    /* Replace an older image of the same name only once the new one is whole. */
    if (!rc && access(dir, F_OK) == 0)
        rc = remove_tree(dir, err);
    if (!rc && rename(tmp, dir) < 0)
        rc = error_set_errno(err, SM_E_IO, errno, "cannot rename %s to %s", tmp, dir);
    if (rc)
        remove_tree(tmp, NULL);
    sm_vm_config_free(own);
    if (!rc && out)
        rc = image_open_dir(store, dir, out, err);
    return rc;
}

/* ---- a running VM's snapshot ----------------------------------------------------- */

sm_code sm_vm_snapshot(const sm_vm *vm, const char *dest_dir, sm_error *err)
{
    if (!vm || !dest_dir)
        return error_set(err, SM_E_INVALID, "sm_vm_snapshot: NULL argument");
    if (vm_volume_count(vm))
        return error_set(err, SM_E_UNSUPPORTED, "the VM %s has volumes, and a VM with volumes cannot be "
                         "snapshotted: a volume is not part of a snapshot", sm_vm_id(vm));
    char dest[PATH_MAX];
    if (mkdir(dest_dir, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, SM_E_IO, errno, "cannot create %s", dest_dir);
    if (!realpath(dest_dir, dest))
        return error_set_errno(err, SM_E_IO, errno, "cannot resolve %s", dest_dir);
    char sock[PATH_MAX];
    if (!join(sock, sizeof sock, sm_vm_state_dir(vm), VM_CONTROL_SOCKET))
        return error_set(err, SM_E_LIMIT, "control socket path too long");
    struct vmm_control_request req = { .verb = VMM_CONTROL_SNAPSHOT, .dir = dest };
    int dest_fd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dest_fd < 0)
        return error_set_errno(err, SM_E_IO, errno, "cannot open %s", dest);
    sm_code rc = vmm_control_call_fd(sock, &req, dest_fd, NULL, 0, err);
    close(dest_fd);
    if (rc)
        error_prefix(err, "the VMM could not snapshot VM %s", sm_vm_id(vm));
    if (!rc) {
        /* The folder becomes an image: say what it holds. */
        char p[PATH_MAX];
        FILE *f = join(p, sizeof p, dest, IMAGE_INFO) ? file_create_private(p) : NULL;
        if (f) {
            fprintf(f, "created_unix %lld\n", (long long)time(NULL));
            fclose(f);
        }
    }
    return rc;
}

/* ---- a running VM as a named image ------------------------------------------------ */

/* A VM restored from an OCI image has its root filesystem's link in the
 * snapshot; the file is named after the image's manifest digest, which
 * image.info then names (so that its blobs are kept by a prune, and the
 * link is checked against it on every restore). digest is "" for no disk. */
static sm_code snapshot_disk_digest(const char *dir, char digest[OCI_DIGEST_SIZE], sm_error *err)
{
    char disk[PATH_MAX];
    digest[0] = 0;
    sm_code rc = image_disk_for_restore(dir, disk, sizeof disk, err);
    if (rc || !disk[0])
        return rc;
    const char *file = strrchr(disk, '/') + 1;
    size_t hex = strlen(file) >= 5 ? strlen(file) - 5 : 0;
    if (hex != OCI_DIGEST_SIZE - 8 || strcmp(file + hex, ".sqfs"))
        return error_set(err, SM_E_INVALID, "the VM's disk %s is not a root filesystem of the store", disk);
    snprintf(digest, OCI_DIGEST_SIZE, "sha256:%.*s", (int)hex, file);
    return oci_digest_valid(digest) ? SM_OK
                                    : error_set(err, SM_E_INVALID, "the VM's disk %s is not named by a digest", disk);
}

sm_code sm_image_from_vm(const sm_store *store, const char *name, const sm_vm *vm, bool replace, sm_image **out,
                         sm_error *err)
{
    if (out)
        *out = NULL;
    if (!vm)
        return error_set(err, SM_E_INVALID, "sm_image_from_vm: NULL VM");
    char dir[PATH_MAX], tmp[PATH_MAX + 32], digest[OCI_DIGEST_SIZE];
    sm_code rc = named_dir(store, name, dir, sizeof dir, err);
    if (rc)
        return rc;
    if (!replace && access(dir, F_OK) == 0)
        return error_set(err, SM_E_INVALID, "an image named '%s' exists already: remove it first (`supermachine rmi "
                         "%s`) or replace it", name, name);
    struct vm_record rec;
    if ((rc = vm_record_read(sm_vm_state_dir(vm), &rec, err)))
        return rc;
    char *slash = strrchr(dir, '/');
    snprintf(tmp, sizeof tmp, "%.*s/.%s.snapshot-%d", (int)(slash - dir), dir, name, (int)getpid());
    remove_tree(tmp, NULL);
    rc = sm_vm_snapshot(vm, tmp, err);
    if (!rc)
        rc = snapshot_disk_digest(tmp, digest, err);
    if (!rc)
        rc = write_info(tmp, rec.memory_mib, rec.cpus, NULL, digest[0] ? digest : NULL, err);
    /* The old image goes only once the new one is whole; without replace, a
     * folder made meanwhile under the name makes the rename fail. */
    if (!rc && replace && access(dir, F_OK) == 0)
        rc = remove_tree(dir, err);
    if (!rc && rename(tmp, dir) < 0)
        rc = errno == ENOTEMPTY || errno == EEXIST
                 ? error_set(err, SM_E_INVALID, "an image named '%s' appeared meanwhile: not replaced", name)
                 : error_set_errno(err, SM_E_IO, errno, "cannot rename %s to %s", tmp, dir);
    if (rc)
        remove_tree(tmp, NULL);
    if (!rc && out)
        rc = image_open_dir(store, dir, out, err);
    return rc;
}
