/*
 * Images from OCI/Docker images (the spec's Image::from_oci): pull, build the
 * root filesystem, bake. Everything lives under the images dir:
 *
 *   .oci/blobs/sha256/HEX      verified blobs (src/image/blob_store.c)
 *   .oci/rootfs/HEX.sqfs       an image's root filesystem, by manifest digest:
 *                              its layers flattened plus our settings layer,
 *                              shared read-only by every VM of the image
 *   .oci/lock                  held shared by a pull, exclusive by a prune (prune.c)
 *   .oci/refs/H                the manifest digest a reference last resolved
 *                              to (H = sha256 of the reference as given), so
 *                              that running a pulled image needs no network
 *   oci-HEX12-<mem>m<cpus>c/   the baked image (image.c), by manifest digest
 *                              and VM settings: its snapshot, image.info with
 *                              ref and digest, disk -> the rootfs, and
 *                              oci-config.json
 *
 * The settings layer is one file, /.supermachine/image.conf, which the agent
 * reads at boot and then hides (its format: src/agent/image_root.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "image/digest.h"
#include "base/file.h"
#include "image/oci_config.h"
#include "image/oci_fetch.h"
#include "image/rootfs.h"
#include "base/error.h"
#include "lib/image.h"
#include "lib/prune.h"
#include "lib/store.h"

#define OCI_STORE      ".oci"
#define ROOT_CMDLINE   "supermachine.root=/dev/vda"
#define SETTINGS_PATH  ".supermachine/image.conf"

struct sm_pull_options {
    bool plain_http;
    bool refresh;
    char *ca_file;
    char *username, *password;
    sm_progress_fn progress;
    void *progress_ctx;
    uint64_t max_compressed, max_unpacked; /* never 0 */
};

sm_pull_options *sm_pull_options_new(void)
{
    sm_pull_options *o = calloc(1, sizeof(sm_pull_options));
    if (o) {
        o->max_compressed = SM_PULL_DEFAULT_MAX_COMPRESSED;
        o->max_unpacked = SM_PULL_DEFAULT_MAX_UNPACKED;
    }
    return o;
}

void sm_pull_options_free(sm_pull_options *o)
{
    if (!o)
        return;
    free(o->ca_file);
    free(o->username);
    if (o->password)
        explicit_bzero(o->password, strlen(o->password));
    free(o->password);
    free(o);
}

sm_code sm_pull_options_plain_http(sm_pull_options *o, bool on)
{
    if (!o)
        return SM_E_INVALID;
    o->plain_http = on;
    return SM_OK;
}

sm_code sm_pull_options_refresh(sm_pull_options *o, bool on)
{
    if (!o)
        return SM_E_INVALID;
    o->refresh = on;
    return SM_OK;
}

static sm_code replace_string(char **slot, const char *value)
{
    char *copy = NULL;
    if (value && !(copy = strdup(value)))
        return SM_E_NOMEM;
    free(*slot);
    *slot = copy;
    return SM_OK;
}

sm_code sm_pull_options_ca_file(sm_pull_options *o, const char *path)
{
    return o ? replace_string(&o->ca_file, path) : SM_E_INVALID;
}

sm_code sm_pull_options_credentials(sm_pull_options *o, const char *user, const char *password)
{
    if (!o || !user != !password)
        return SM_E_INVALID;
    sm_code rc = replace_string(&o->username, user);
    return rc ? rc : replace_string(&o->password, password);
}

sm_code sm_pull_options_progress(sm_pull_options *o, sm_progress_fn fn, void *ctx)
{
    if (!o)
        return SM_E_INVALID;
    o->progress = fn;
    o->progress_ctx = ctx;
    return SM_OK;
}

sm_code sm_pull_options_max_compressed_bytes(sm_pull_options *o, uint64_t bytes)
{
    if (!o || !bytes)
        return SM_E_INVALID;
    o->max_compressed = bytes;
    return SM_OK;
}

sm_code sm_pull_options_max_unpacked_bytes(sm_pull_options *o, uint64_t bytes)
{
    if (!o || !bytes)
        return SM_E_INVALID;
    o->max_unpacked = bytes;
    return SM_OK;
}

/* ---- paths ------------------------------------------------------------------ */

struct oci_paths {
    char store[PATH_MAX];
};

static sm_code mkdir_in(const char *parent, const char *name, char *out, size_t cap, sm_error *err)
{
    if (snprintf(out, cap, "%s/%s", parent, name) >= (int)cap)
        return error_set(err, SM_E_LIMIT, "path too long: %s/%s", parent, name);
    if (mkdir(out, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, SM_E_IO, errno, "cannot create %s", out);
    return SM_OK;
}

static sm_code store_paths(const sm_store *store, struct oci_paths *p, sm_error *err)
{
    char base[PATH_MAX], sub[PATH_MAX];
    sm_code rc = store_images_dir(store, base, sizeof base, err);
    if (!rc)
        rc = mkdir_in(base, OCI_STORE, p->store, sizeof p->store, err);
    if (!rc)
        rc = mkdir_in(p->store, "rootfs", sub, sizeof sub, err);
    if (!rc)
        rc = mkdir_in(p->store, "refs", sub, sizeof sub, err);
    return rc;
}

/* The baked image's name for a manifest digest and VM settings. */
static void baked_name(const char *digest, const sm_vm_config *cfg, char *out, size_t cap)
{
    snprintf(out, cap, "oci-%.12s-%um%uc", oci_digest_hex(digest), vm_config_memory_mib(cfg), vm_config_cpus(cfg));
}

static sm_code ref_file(const struct oci_paths *p, const char *ref, char *out, size_t cap, sm_error *err)
{
    char h[OCI_DIGEST_SIZE];
    sm_code rc = oci_sha256_buffer(ref, strlen(ref), h, err);
    if (!rc && snprintf(out, cap, "%s/refs/%s", p->store, oci_digest_hex(h)) >= (int)cap)
        rc = error_set(err, SM_E_LIMIT, "path too long");
    return rc;
}

/* The digest ref resolved to when last pulled, or false. */
static bool ref_lookup(const struct oci_paths *p, const char *ref, char digest[OCI_DIGEST_SIZE])
{
    char path[PATH_MAX];
    if (ref_file(p, ref, path, sizeof path, NULL))
        return false;
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(digest, OCI_DIGEST_SIZE, f) != NULL;
    fclose(f);
    if (ok)
        digest[strcspn(digest, "\n")] = 0;
    return ok && oci_digest_valid(digest);
}

static sm_code write_atomic(const char *path, const void *data, size_t len, sm_error *err)
{
    if (!write_file_atomic(path, data, len, 0600))
        return error_set_errno(err, SM_E_IO, errno, "cannot write %s", path);
    return SM_OK;
}

static sm_code ref_remember(const struct oci_paths *p, const char *ref, const char *digest, sm_error *err)
{
    char path[PATH_MAX], line[OCI_DIGEST_SIZE + 1];
    sm_code rc = ref_file(p, ref, path, sizeof path, err);
    snprintf(line, sizeof line, "%s\n", digest);
    return rc ? rc : write_atomic(path, line, strlen(line), err);
}

/* ---- the settings layer ------------------------------------------------------- */

struct strbuf {
    char *data;
    size_t len, cap;
    bool failed;
};

static void sb_put(struct strbuf *b, const char *s)
{
    size_t n = strlen(s) + 1; /* with its NUL: the format's separator */
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

/* image.conf's bytes: pairs of NUL-terminated key and value. */
static sm_code settings_bytes(const struct oci_config *c, struct strbuf *b, sm_error *err)
{
    for (size_t i = 0; i < c->nenv; i++) {
        sb_put(b, "env");
        sb_put(b, c->env[i]);
    }
    if (c->working_dir && *c->working_dir) {
        sb_put(b, "cwd");
        sb_put(b, c->working_dir);
    }
    if (c->user && *c->user) {
        sb_put(b, "user");
        sb_put(b, c->user);
    }
    return b->failed ? error_set(err, SM_E_NOMEM, "out of memory") : SM_OK;
}

static bool add_entry(struct archive *a, const char *path, mode_t type, mode_t perm, const void *data, size_t len)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return false;
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_size(e, (la_int64_t)len);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_mtime(e, 0, 0);
    bool ok = archive_write_header(a, e) == ARCHIVE_OK && (!len || archive_write_data(a, data, len) == (la_ssize_t)len);
    archive_entry_free(e);
    return ok;
}

/* Writes the settings layer (a tar) to path. */
static sm_code write_settings_layer(const char *path, const struct oci_config *c, sm_error *err)
{
    struct strbuf b = { 0 };
    sm_code rc = settings_bytes(c, &b, err);
    struct archive *a = rc ? NULL : archive_write_new();
    if (!rc && !a)
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    if (!rc && (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
                archive_write_open_filename(a, path) != ARCHIVE_OK))
        rc = error_set(err, SM_E_IO, "cannot write %s: %s", path, archive_error_string(a));
    if (!rc && (!add_entry(a, ".supermachine", AE_IFDIR, 0755, NULL, 0) ||
                !add_entry(a, SETTINGS_PATH, AE_IFREG, 0644, b.data, b.len) || archive_write_close(a) != ARCHIVE_OK))
        rc = error_set(err, SM_E_IO, "cannot write %s: %s", path, archive_error_string(a));
    if (a)
        archive_write_free(a);
    free(b.data);
    return rc;
}

/* ---- the root filesystem ------------------------------------------------------ */

/* The layers, then the settings layer, into the squashfs `out`: first
 * whether its folder has room (rootfs_check_space), then the build within
 * the cap on unpacked bytes. */
static sm_code build_rootfs(const struct oci_paths *p, const struct oci_fetched *f, const struct oci_config *c,
                            uint64_t max_unpacked, const char *out, sm_error *err)
{
    char settings[PATH_MAX + 32];
    snprintf(settings, sizeof settings, "%s/rootfs/.settings.%d.tar", p->store, (int)getpid());
    const char **paths = calloc(f->nlayers + 1, sizeof *paths);
    if (!paths)
        return error_set(err, SM_E_NOMEM, "out of memory");
    sm_code rc = SM_OK;
    for (size_t i = 0; i < f->nlayers && !rc; i++)
        if (!(paths[i] = oci_blob_path(p->store, f->layers[i].digest)))
            rc = error_set(err, SM_E_NOMEM, "out of memory");
    if (!rc)
        rc = rootfs_check_space(paths, f->nlayers, out, err);
    if (!rc)
        rc = write_settings_layer(settings, c, err);
    paths[f->nlayers] = settings;
    if (!rc)
        rc = rootfs_build(paths, f->nlayers + 1, out, max_unpacked, NULL, err);
    unlink(settings);
    for (size_t i = 0; i < f->nlayers; i++)
        free((char *)paths[i]);
    free(paths);
    if (rc)
        error_prefix(err, "building the root filesystem of %s", f->canonical_ref ? f->canonical_ref : "the image");
    return rc;
}

/* ---- pull and bake -------------------------------------------------------------- */

static sm_code fetch(const char *ref, const sm_pull_options *opt, const struct oci_paths *p, struct oci_fetched *f,
                     sm_error *err)
{
    struct oci_fetch_options fo = {
        .store_dir = p->store,
        .plain_http = opt && opt->plain_http,
        .ca_file = opt ? opt->ca_file : NULL,
        .username = opt ? opt->username : NULL,
        .password = opt ? opt->password : NULL,
        .progress = opt ? opt->progress : NULL,
        .progress_ctx = opt ? opt->progress_ctx : NULL,
        .max_compressed = opt ? opt->max_compressed : SM_PULL_DEFAULT_MAX_COMPRESSED,
    };
    return oci_fetch(ref, &fo, f, err);
}

static void say(const sm_pull_options *opt, const char *what)
{
    if (opt && opt->progress)
        opt->progress(opt->progress_ctx, what, 0, 0);
}

static sm_code bake(const sm_store *store, const char *ref, const sm_pull_options *opt, const struct oci_paths *p,
                    const struct oci_fetched *f, const sm_vm_config *cfg, const char *name, sm_image **out,
                    sm_error *err)
{
    struct oci_config c;
    char rootfs[PATH_MAX];
    struct stat st;
    sm_code rc = oci_config_parse(f->config_json, f->config_len, &c, err);
    if (rc)
        return rc;
    if (snprintf(rootfs, sizeof rootfs, "%s/rootfs/%s.sqfs", p->store, oci_digest_hex(f->manifest_digest)) >=
        (int)sizeof rootfs)
        rc = error_set(err, SM_E_LIMIT, "path too long");
    if (!rc && stat(rootfs, &st) < 0) {
        say(opt, "building the root filesystem");
        rc = build_rootfs(p, f, &c, opt ? opt->max_unpacked : SM_PULL_DEFAULT_MAX_UNPACKED, rootfs, err);
    }
    oci_config_free(&c);
    if (rc)
        return rc;
    say(opt, "baking (boot, then snapshot)");
    struct image_bake_extra x = { .disk = rootfs, .cmdline = ROOT_CMDLINE, .ref = ref,
                                  .digest = f->manifest_digest, .config_json = f->config_json,
                                  .config_len = f->config_len };
    rc = image_bake(store, name, cfg, &x, out, err);
    if (rc)
        error_prefix(err, "baking %s", ref);
    return rc;
}

sm_code sm_image_from_oci(const sm_store *store, const char *ref, const sm_pull_options *opt,
                          const sm_vm_config *cfg, sm_image **out, sm_error *err)
{
    if (!ref || !*ref)
        return error_set(err, SM_E_INVALID, "no image reference given");
    sm_vm_config *own = NULL;
    if (!cfg && !(cfg = own = sm_vm_config_new()))
        return error_set(err, SM_E_NOMEM, "out of memory");
    struct oci_paths p;
    char digest[OCI_DIGEST_SIZE], name[96];
    sm_code rc = store_paths(store, &p, err);
    /* Pulled and baked before with these settings: no network at all. */
    if (!rc && !(opt && opt->refresh) && ref_lookup(&p, ref, digest)) {
        baked_name(digest, cfg, name, sizeof name);
        if (sm_image_open(store, name, out, NULL) == SM_OK) {
            sm_vm_config_free(own);
            return SM_OK;
        }
    }
    /* From the first blob to the baked image, no prune may take them. */
    int lock = -1;
    if (!rc)
        rc = oci_store_lock(p.store, false, &lock, err);
    struct oci_fetched f;
    memset(&f, 0, sizeof f);
    if (!rc)
        rc = fetch(ref, opt, &p, &f, err);
    if (!rc)
        rc = ref_remember(&p, ref, f.manifest_digest, err);
    if (!rc) {
        baked_name(f.manifest_digest, cfg, name, sizeof name);
        if (sm_image_open(store, name, out, NULL) != SM_OK)
            rc = bake(store, ref, opt, &p, &f, cfg, name, out, err);
    }
    oci_fetched_free(&f);
    if (lock >= 0)
        close(lock);
    sm_vm_config_free(own);
    return rc;
}

/* ---- the image's command --------------------------------------------------------- */

void sm_argv_free(char **argv)
{
    if (!argv)
        return;
    for (size_t i = 0; argv[i]; i++)
        free(argv[i]);
    free(argv);
}

static sm_code read_small_file(const char *path, char **out, size_t *len, sm_error *err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno, "cannot open %s", path);
    size_t cap = 4u << 20;
    char *buf = malloc(cap + 1);
    size_t n = buf ? fread(buf, 1, cap, f) : 0;
    fclose(f);
    if (!buf)
        return error_set(err, SM_E_NOMEM, "out of memory");
    buf[n] = 0;
    *out = buf;
    *len = n;
    return SM_OK;
}

sm_code sm_image_default_argv(const sm_image *img, char ***argv, sm_error *err)
{
    char path[PATH_MAX], *json = NULL;
    size_t len = 0;
    *argv = NULL;
    if (snprintf(path, sizeof path, "%s/oci-config.json", sm_image_dir(img)) >= (int)sizeof path)
        return error_set(err, SM_E_LIMIT, "path too long");
    sm_code rc = read_small_file(path, &json, &len, err);
    if (rc == SM_E_NOTFOUND)
        return error_set(err, SM_E_NOTFOUND, "image %s is not an OCI image: it has no default command; give one "
                       "after --", sm_image_dir(img));
    struct oci_config c;
    if (!rc)
        rc = oci_config_parse(json, len, &c, err);
    free(json);
    if (rc)
        return rc;
    size_t n = c.nentrypoint + c.ncmd;
    char **v = n ? calloc(n + 1, sizeof *v) : NULL;
    if (!n)
        rc = error_set(err, SM_E_NOTFOUND, "the image has neither Entrypoint nor Cmd: give a command after --");
    else if (!v)
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++)
        if (!(v[i] = strdup(i < c.nentrypoint ? c.entrypoint[i] : c.cmd[i - c.nentrypoint])))
            rc = error_set(err, SM_E_NOMEM, "out of memory");
    oci_config_free(&c);
    if (rc) {
        sm_argv_free(v);
        return rc;
    }
    *argv = v;
    return SM_OK;
}
