/*
 * Stores: an embedder may hold several (two users' images, a test's private
 * folders); NULL is the default store, found from the XDG folders each time
 * (so it follows a change of $XDG_RUNTIME_DIR, as a test makes). The CLI's
 * $SUPERMACHINE_IMAGES is the CLI's own default, not the library's.
 */
#include "lib/store.h"
#include "lib/assets.h"
#include "base/error.h"
#include "base/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static sm_code mkdir_p(char *path, mode_t mode, sm_error *err)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int r = mkdir(path, 0755);
        *p = '/';
        if (r < 0 && errno != EEXIST)
            return error_set_errno(err, SM_E_IO, errno, "cannot create %s", path);
    }
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return error_set_errno(err, SM_E_IO, errno, "cannot create %s", path);
    return SM_OK;
}

/* Whoever can write into a store can plant an image, a snapshot or a
 * socket in it: it must be ours and closed to others' writes. */
static sm_code check_store_dir(const char *path, const char *what, sm_error *err)
{
    struct stat st;
    if (dir_is_ours(path, false, &st))
        return SM_OK;
    if (errno)
        return error_set_errno(err, SM_E_IO, errno, "cannot examine the %s folder %s", what, path);
    return error_set(err, SM_E_IO, "the %s folder %s is not safe to use: it must be a folder of this user that "
                     "others cannot write into (owner %u, mode %o)", what, path, (unsigned)st.st_uid,
                     (unsigned)(st.st_mode & 07777));
}

static sm_code copy_dir(char *out, size_t cap, const char *dir, const char *what, sm_error *err)
{
    if (dir[0] != '/')
        return error_set(err, SM_E_INVALID, "the %s folder '%s' must be an absolute path", what, dir);
    if ((size_t)snprintf(out, cap, "%s", dir) >= cap)
        return error_set(err, SM_E_LIMIT, "the %s folder path is too long", what);
    return SM_OK;
}

sm_code sm_store_new(const char *images_dir, const char *vms_dir, sm_store **out, sm_error *err)
{
    if (!out)
        return error_set(err, SM_E_INVALID, "sm_store_new: NULL out");
    *out = NULL;
    sm_store *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(err, SM_E_NOMEM, "out of memory");
    sm_code rc = SM_OK;
    if (images_dir && *images_dir)
        rc = copy_dir(s->images, sizeof s->images, images_dir, "images", err);
    if (!rc && vms_dir && *vms_dir)
        rc = copy_dir(s->vms, sizeof s->vms, vms_dir, "VM state", err);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return SM_OK;
}

void sm_store_free(sm_store *s)
{
    free(s);
}

sm_code store_images_dir(const sm_store *s, char *out, size_t cap, sm_error *err)
{
    const char *data = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    int n;
    if (s && s->images[0])
        n = snprintf(out, cap, "%s", s->images);
    else if (data && *data)
        n = snprintf(out, cap, "%s/supermachine/images", data);
    else if (home && *home)
        n = snprintf(out, cap, "%s/.local/share/supermachine/images", home);
    else
        return error_set(err, SM_E_NOTFOUND, "no place for images: give the store one, or set XDG_DATA_HOME or HOME");
    if (n < 0 || (size_t)n >= cap)
        return error_set(err, SM_E_LIMIT, "the images folder path is too long");
    sm_code rc = mkdir_p(out, 0700, err);
    return rc ? rc : check_store_dir(out, "images", err);
}

sm_code store_vms_dir(const sm_store *s, char *out, size_t cap, bool create, sm_error *err)
{
    if (!s || !s->vms[0])
        return assets_vms_dir(out, cap, create, err);
    if ((size_t)snprintf(out, cap, "%s", s->vms) >= cap)
        return error_set(err, SM_E_LIMIT, "the VM state folder path is too long");
    sm_code rc = create ? mkdir_p(out, 0700, err) : SM_OK;
    if (!rc && (create || access(out, F_OK) == 0))
        rc = check_store_dir(out, "VM state", err);
    return rc;
}

const char *store_vms_choice(const sm_store *s)
{
    return s ? s->vms : "";
}

const char *store_images_choice(const sm_store *s)
{
    return s ? s->images : "";
}

sm_code sm_store_images_dir(const sm_store *s, char *out, size_t cap, sm_error *err)
{
    if (!out || !cap)
        return error_set(err, SM_E_INVALID, "sm_store_images_dir: no buffer");
    return store_images_dir(s, out, cap, err);
}

sm_code sm_store_vms_dir(const sm_store *s, char *out, size_t cap, sm_error *err)
{
    if (!out || !cap)
        return error_set(err, SM_E_INVALID, "sm_store_vms_dir: no buffer");
    return store_vms_dir(s, out, cap, false, err);
}

bool store_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.'))
            return false;
    }
    return true;
}

sm_code store_name_check(const char *what, const char *name, sm_error *err)
{
    if (name && store_name_valid(name))
        return SM_OK;
    return error_set(err, SM_E_INVALID, "%s name '%s' is not valid: use 1-64 of [A-Za-z0-9._-], not starting "
                     "with '.'", what, name ? name : "(null)");
}
