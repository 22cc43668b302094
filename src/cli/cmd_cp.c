/*
 * supermachine cp ID:GUEST_PATH HOST_PATH
 * supermachine cp HOST_PATH ID:GUEST_PATH
 *
 * Copies one regular file out of or into a running VM, through its agent.
 * Binary-safe and atomic at the destination (a temporary file renamed into
 * place), up to 1 GiB (SM_VM_FILE_MAX). A destination that is a folder (or
 * ends in '/') gets the source's file name. A guest path is absolute; an ID
 * is the hex id `supermachine start` printed. Exit status 0, 1 on failure,
 * 2 for a usage error.
 */
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "base/file.h"
#include "supermachine.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void cp_usage(FILE *out)
{
    fprintf(out,
        "usage: supermachine cp ID:GUEST_PATH HOST_PATH\n"
        "       supermachine cp HOST_PATH ID:GUEST_PATH\n"
        "  copies a file out of or into the running VM ID (up to 1 GiB); GUEST_PATH\n"
        "  is absolute; a destination folder keeps the source's file name\n");
}

/* "ID:/path" → id (into id_out) and the guest path; NULL for a host path. */
static const char *split_guest(const char *arg, char *id_out, size_t cap)
{
    const char *colon = strchr(arg, ':');
    size_t n = colon ? (size_t)(colon - arg) : 0;
    if (!colon || n == 0 || n >= cap || strspn(arg, "0123456789abcdef") != n || colon[1] != '/')
        return NULL;
    memcpy(id_out, arg, n);
    id_out[n] = 0;
    return colon + 1;
}

static const char *file_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static bool read_host(const char *path, uint8_t **data, size_t *len, mode_t *mode)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "supermachine cp: %s: %s\n", path,
                fd < 0 || errno ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return false;
    }
    if ((uint64_t)st.st_size > SM_VM_FILE_MAX) {
        fprintf(stderr, "supermachine cp: %s is %lld bytes, over the limit of %zu\n", path,
                (long long)st.st_size, SM_VM_FILE_MAX);
        close(fd);
        return false;
    }
    size_t size = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(size ? size : 1);
    while (buf && got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf || got != size) {
        fprintf(stderr, "supermachine cp: cannot read %s%s\n", path, buf ? " whole" : ": no memory");
        free(buf);
        return false;
    }
    *data = buf;
    *len = size;
    *mode = st.st_mode & 07777;
    return true;
}

/* Replaces path atomically (src/base/file.h). */
static bool write_host(const char *path, const uint8_t *data, size_t len)
{
    if (!write_file_atomic(path, data, len, 0644)) {
        fprintf(stderr, "supermachine cp: cannot write %s: %s\n", path, strerror(errno));
        return false;
    }
    return true;
}

static bool open_running(const char *id, sm_vm **vm)
{
    sm_error err;
    if (sm_vm_open(cli_store(), id, vm, &err)) {
        fprintf(stderr, "supermachine cp: %s\n", err.message);
        return false;
    }
    if (!sm_vm_running(*vm)) {
        fprintf(stderr, "supermachine cp: VM %s is dead (its VMM is gone); `supermachine stop "
                "%s` cleans it up\n", id, id);
        sm_vm_free(*vm);
        return false;
    }
    return true;
}

static int copy_out(const char *id, const char *guest, const char *host)
{
    char dest[PATH_MAX];
    struct stat st;
    size_t hl = strlen(host);
    if ((hl && host[hl - 1] == '/') || (stat(host, &st) == 0 && S_ISDIR(st.st_mode)))
        snprintf(dest, sizeof dest, "%s%s%s", host, hl && host[hl - 1] == '/' ? "" : "/",
                 file_name(guest));
    else
        snprintf(dest, sizeof dest, "%s", host);
    sm_vm *vm;
    if (!open_running(id, &vm))
        return 1;
    uint8_t *data;
    size_t len;
    sm_error err;
    sm_code rc = sm_vm_read_file(vm, guest, SM_VM_FILE_MAX, &data, &len, &err);
    sm_vm_free(vm);
    if (rc) {
        fprintf(stderr, "supermachine cp: %s\n", err.message);
        return 1;
    }
    bool ok = write_host(dest, data, len);
    free(data);
    return ok ? 0 : 1;
}

static int copy_in(const char *host, const char *id, const char *guest)
{
    char dest[PATH_MAX];
    size_t gl = strlen(guest);
    if (gl && guest[gl - 1] == '/')
        snprintf(dest, sizeof dest, "%s%s", guest, file_name(host));
    else
        snprintf(dest, sizeof dest, "%s", guest);
    uint8_t *data;
    size_t len;
    mode_t mode;
    if (!read_host(host, &data, &len, &mode))
        return 1;
    sm_vm *vm;
    int status = 1;
    if (open_running(id, &vm)) {
        sm_error err;
        if (sm_vm_write_file(vm, dest, data, len, mode, &err))
            fprintf(stderr, "supermachine cp: %s\n", err.message);
        else
            status = 0;
        sm_vm_free(vm);
    }
    free(data);
    return status;
}

int cmd_cp(int argc, char **argv)
{
    int first, status = flags_help_only("supermachine cp", argc, argv, cp_usage, &first);
    if (status != FLAGS_GO_ON)
        return status;
    if (argc - first != 2) {
        cp_usage(stderr);
        return 2;
    }
    const char *src = argv[first], *dst = argv[first + 1];
    char src_id[16], dst_id[16];
    const char *src_guest = split_guest(src, src_id, sizeof src_id);
    const char *dst_guest = split_guest(dst, dst_id, sizeof dst_id);
    if (!src_guest == !dst_guest) {
        fprintf(stderr, "supermachine cp: exactly one side is ID:/GUEST_PATH\n\n");
        cp_usage(stderr);
        return 2;
    }
    return src_guest ? copy_out(src_id, src_guest, dst) : copy_in(src, dst_id, dst_guest);
}
