/* Asset lookup and the runtime folder (see assets.h). */
#include "lib/assets.h"
#include "base/file.h"
#include "base/error.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where `make install` puts the assets (the VMM, kernel and initramfs: its
 * PKGLIBDIR, LIBDIR/supermachine by default), relative to BINDIR and to LIBDIR.
 * The Makefile defines both from the install layout; relative, so a whole
 * installed tree still finds its assets after it is moved (DESTDIR staging). */
#ifndef SM_ASSETS_FROM_BIN
#define SM_ASSETS_FROM_BIN "../lib/supermachine"
#endif
#ifndef SM_ASSETS_FROM_LIB
#define SM_ASSETS_FROM_LIB "supermachine"
#endif

/* Which names and variables each asset has. */
static const struct {
    const char *file;    /* its name in an asset folder */
    const char *env;     /* a variable naming the file itself */
    bool executable;
} asset_names[] = {
    [ASSET_KERNEL] = { "bzImage", "SUPERMACHINE_KERNEL", false },
    [ASSET_INITRD] = { "initramfs.cpio", "SUPERMACHINE_INITRD", false },
    [ASSET_VMM] = { "supermachine-vmm", "SUPERMACHINE_VMM", true },
};

/* The places looked so far, for the error message. */
struct search {
    char looked[400];
    size_t used;
};

static void note_looked(struct search *s, const char *path)
{
    if (s->used >= sizeof s->looked - 1)
        return;
    int n = snprintf(s->looked + s->used, sizeof s->looked - s->used, "%s%s",
                     s->used ? ", " : "", path);
    if (n > 0)
        s->used += (size_t)n;
    if (s->used >= sizeof s->looked)
        s->used = sizeof s->looked - 1;
}

static bool usable_file(const char *path, bool executable)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
           access(path, executable ? X_OK : R_OK) == 0;
}

/* Tries DIR/NAME; true (with out filled) when it is there. */
static bool try_in(struct search *s, const char *dir, asset_kind kind, char *out, size_t cap)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", dir, asset_names[kind].file);
    if (n < 0 || (size_t)n >= sizeof path)
        return false;
    note_looked(s, path);
    if (!usable_file(path, asset_names[kind].executable) || (size_t)n >= cap)
        return false;
    memcpy(out, path, (size_t)n + 1);
    return true;
}

/* Tries the folder BASE/REL (canonical when it exists: no "bin/../lib" in
 * the paths handed on); true (with out filled) when the asset is there. */
static bool try_relative(struct search *s, const char *base, const char *rel, asset_kind kind,
                         char *out, size_t cap)
{
    char dir[PATH_MAX], real[PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s/%s", base, rel);
    if (n < 0 || (size_t)n >= sizeof dir)
        return false;
    return try_in(s, realpath(dir, real) ? real : dir, kind, out, cap);
}

/* The folder of the running executable, or "" when /proc cannot say. */
static void exe_dir(char *out, size_t cap)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    out[0] = 0;
    if (n <= 0)
        return;
    path[n] = 0;
    char *slash = strrchr(path, '/');
    if (!slash || (size_t)(slash - path) >= cap)
        return;
    *slash = 0;
    snprintf(out, cap, "%s", slash == path ? "/" : path);
}

/* The folder of the shared library this code is in (libsupermachine.so, for
 * a program that links it), or "" when this code is part of the executable
 * itself (the static library) or the dynamic linker cannot say. */
static void shared_lib_dir(char *out, size_t cap)
{
    Dl_info info;
    char lib[PATH_MAX], exe[PATH_MAX];
    out[0] = 0;
    if (!dladdr((void *)shared_lib_dir, &info) || !info.dli_fname || !info.dli_fname[0] ||
        !realpath(info.dli_fname, lib))
        return;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        if (!strcmp(exe, lib))
            return;
    }
    char *slash = strrchr(lib, '/');
    if (!slash || (size_t)(slash - lib) >= cap)
        return;
    *slash = 0;
    snprintf(out, cap, "%s", slash == lib ? "/" : lib);
}

/* dirname into out; "" when there is no parent. */
static void parent_of(const char *dir, char *out, size_t cap)
{
    const char *slash = strrchr(dir, '/');
    out[0] = 0;
    if (slash && slash != dir && (size_t)(slash - dir) < cap)
        snprintf(out, cap, "%.*s", (int)(slash - dir), dir);
}

static const char *base_of(const char *dir)
{
    const char *slash = strrchr(dir, '/');
    return slash ? slash + 1 : dir;
}

/* The build tree: an executable in BUILD/bin or BUILD/tests finds guest files
 * in BUILD/guest, and the kernel (built once, in build/guest only) also in
 * the parent of a sanitizer build BUILD/asan; the VMM in BUILD/bin. */
static bool try_build_tree(struct search *s, const char *exe, asset_kind kind, char *out,
                           size_t cap)
{
    const char *base = base_of(exe);
    if (strcmp(base, "bin") && strcmp(base, "tests"))
        return false;
    char build[PATH_MAX], dir[PATH_MAX + 16];
    parent_of(exe, build, sizeof build);
    if (!build[0])
        return false;
    if (kind == ASSET_VMM) {
        snprintf(dir, sizeof dir, "%s/bin", build);
        return strcmp(base, "bin") && try_in(s, dir, kind, out, cap);
    }
    snprintf(dir, sizeof dir, "%s/guest", build);
    if (try_in(s, dir, kind, out, cap))
        return true;
    if (strcmp(base_of(build), "asan"))
        return false;
    char top[PATH_MAX];
    parent_of(build, top, sizeof top);
    snprintf(dir, sizeof dir, "%s/guest", top);
    return top[0] && try_in(s, dir, kind, out, cap);
}

static bool try_path_env(struct search *s, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        return false;
    char dir[PATH_MAX];
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        if (n > 0 && n < sizeof dir) {
            memcpy(dir, p, n);
            dir[n] = 0;
            if (try_in(s, dir, ASSET_VMM, out, cap))
                return true;
        }
        p += n;
        if (*p == ':')
            p++;
    }
    return false;
}

/* $SUPERMACHINE_KERNEL and the like: when set, the file must be there. */
static sm_code from_env(asset_kind kind, char *out, size_t cap, bool *found, sm_error *err)
{
    const char *var = asset_names[kind].env;
    const char *v = getenv(var);
    *found = false;
    if (!v || !*v)
        return SM_OK;
    if (!usable_file(v, asset_names[kind].executable))
        return error_set(err, SM_E_INVALID, "$%s is '%s', which is not a %s file; fix or unset it",
                       var, v, asset_names[kind].executable ? "runnable" : "readable");
    if (strlen(v) >= cap)
        return error_set(err, SM_E_INVALID, "$%s is too long a path", var);
    snprintf(out, cap, "%s", v);
    *found = true;
    return SM_OK;
}

sm_code assets_find(asset_kind kind, char *out, size_t cap, sm_error *err)
{
    if ((unsigned)kind > ASSET_VMM || !out || cap == 0)
        return error_set(err, SM_E_INVALID, "assets_find: bad arguments");
    bool found;
    sm_code rc = from_env(kind, out, cap, &found, err);
    if (rc || found)
        return rc;
    struct search s = { .used = 0 };
    char exe[PATH_MAX], lib[PATH_MAX], dir[PATH_MAX + 32];
    exe_dir(exe, sizeof exe);
    const char *assets = getenv("SUPERMACHINE_ASSETS");
    if (kind != ASSET_VMM && assets && *assets && try_in(&s, assets, kind, out, cap))
        return SM_OK;
    if (exe[0]) {
        if (try_in(&s, exe, kind, out, cap))
            return SM_OK;
        /* The installed tree: BINDIR/SM_ASSETS_FROM_BIN is PKGLIBDIR. */
        if (try_relative(&s, exe, SM_ASSETS_FROM_BIN, kind, out, cap))
            return SM_OK;
    }
    /* A program linked with the installed libsupermachine.so, wherever the
     * program is: LIBDIR/SM_ASSETS_FROM_LIB is PKGLIBDIR too. */
    shared_lib_dir(lib, sizeof lib);
    if (lib[0] && try_relative(&s, lib, SM_ASSETS_FROM_LIB, kind, out, cap))
        return SM_OK;
    if (kind != ASSET_VMM) {
        const char *data = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
        if (data && *data)
            snprintf(dir, sizeof dir, "%s/supermachine", data);
        else if (home && *home)
            snprintf(dir, sizeof dir, "%s/.local/share/supermachine", home);
        else
            dir[0] = 0;
        if (dir[0] && try_in(&s, dir, kind, out, cap))
            return SM_OK;
    }
    if (exe[0] && try_build_tree(&s, exe, kind, out, cap))
        return SM_OK;
    if (kind == ASSET_VMM && try_path_env(&s, out, cap))
        return SM_OK;
    return error_set(err, SM_E_NOTFOUND,
                   "no %s found; set $%s%s, or install it (make install); looked in: %s%s",
                   asset_names[kind].file, asset_names[kind].env,
                   kind == ASSET_VMM ? "" : " or $SUPERMACHINE_ASSETS", s.looked,
                   s.used >= sizeof s.looked - 1 ? "..." : "");
}

/* mkdir that accepts an existing folder. */
static sm_code make_dir(const char *path, sm_error *err)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return SM_OK;
    return error_set_errno(err, SM_E_IO, errno, "cannot create the folder %s", path);
}

/* Whoever can write into a folder of the VM state can plant sockets and
 * folders there: every level must be ours and closed to others' writes.
 * The /tmp fallback is shared by all users: it must be closed to them
 * altogether, or someone could have planted it. */
static sm_code check_dir(const char *path, bool private_only, sm_error *err)
{
    struct stat st;
    if (dir_is_ours(path, private_only, &st))
        return SM_OK;
    if (errno)
        return error_set_errno(err, SM_E_IO, errno, "cannot examine %s", path);
    return error_set(err, SM_E_IO, "%s is not a %s folder of this user (owner %u, mode %o); fix or remove it%s",
                     path, private_only ? "private" : "safe", (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
                     private_only ? ", or set $XDG_RUNTIME_DIR" : "");
}

sm_code assets_vms_dir(char *out, size_t cap, bool create, sm_error *err)
{
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    char base[PATH_MAX];
    bool fallback = !runtime || runtime[0] != '/';
    if (fallback)
        snprintf(base, sizeof base, "/tmp/supermachine-%u", (unsigned)geteuid());
    else if ((size_t)snprintf(base, sizeof base, "%s", runtime) >= sizeof base)
        return error_set(err, SM_E_INVALID, "$XDG_RUNTIME_DIR is too long");
    int n = snprintf(out, cap, "%s/supermachine/vms", base);
    if (n < 0 || (size_t)n >= cap)
        return error_set(err, SM_E_INVALID, "the runtime folder %s is too long a path", base);
    char mid[PATH_MAX + 16];
    snprintf(mid, sizeof mid, "%s/supermachine", base);
    if (!create) {
        sm_code rc = SM_OK;
        const char *levels[] = { base, mid, out };
        for (size_t i = 0; i < 3 && !rc && access(levels[i], F_OK) == 0; i++)
            rc = check_dir(levels[i], i == 0 && fallback, err);
        return rc;
    }
    sm_code rc = make_dir(base, err);
    if (!rc)
        rc = check_dir(base, fallback, err);
    if (!rc)
        rc = make_dir(mid, err);
    if (!rc)
        rc = check_dir(mid, false, err);
    if (!rc)
        rc = make_dir(out, err);
    if (!rc)
        rc = check_dir(out, false, err);
    return rc;
}

sm_code sm_asset_find(sm_asset which, char *out, size_t cap, sm_error *err)
{
    switch (which) {
    case SM_ASSET_KERNEL: return assets_find(ASSET_KERNEL, out, cap, err);
    case SM_ASSET_INITRD: return assets_find(ASSET_INITRD, out, cap, err);
    case SM_ASSET_VMM: return assets_find(ASSET_VMM, out, cap, err);
    }
    return error_set(err, SM_E_INVALID, "sm_asset_find: unknown asset %d", (int)which);
}
