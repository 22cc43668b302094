/* OCI layer flattening (src/image/layers.c) and the squashfs build
 * (src/image/rootfs.c). Layers are written with libarchive's writer into a
 * temporary folder (plain, gzip, zstd); the merged tar is read back with
 * libarchive and checked entry by entry. The squashfs tests run tar2sqfs and
 * rdsquashfs (squashfs-tools-ng) and skip, saying so, when it is missing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "helpers/small_fs.h"
#include "image/layers.h"
#include "image/rootfs.h"

/* ---- writing layers ------------------------------------------------------ */

enum filter { PLAIN, GZIP, ZSTD };

/* One entry of a test layer. type 0 means a regular file. */
struct ent {
    const char *path;
    unsigned type;
    unsigned perm;
    int64_t uid, gid;
    const char *data;     /* regular files */
    const char *target;   /* symlinks; hard links with .hard */
    bool hard;
    unsigned major, minor;
    const char *xname[3]; /* xattrs: names and NUL-free values */
    const char *xvalue[3];
    int64_t mtime;
};

#define END { .path = NULL }

static char tmpdir[256];

static void setup_dir(void)
{
    if (tmpdir[0])
        return;
    snprintf(tmpdir, sizeof tmpdir, "%s/sm-test-layers.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(tmpdir));
}

static void put_entry(struct archive *a, const struct ent *x)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, x->path);
    if (x->hard) {
        archive_entry_set_hardlink(e, x->target);
    } else {
        unsigned type = x->type ? x->type : AE_IFREG;
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, x->perm ? x->perm : (type == AE_IFDIR ? 0755 : 0644));
        archive_entry_set_uid(e, x->uid);
        archive_entry_set_gid(e, x->gid);
        archive_entry_set_mtime(e, x->mtime ? x->mtime : 1700000000, 0);
        if (type == AE_IFLNK)
            archive_entry_set_symlink(e, x->target);
        if (type == AE_IFCHR || type == AE_IFBLK)
            archive_entry_set_rdev(e, makedev(x->major, x->minor));
        if (type == AE_IFREG)
            archive_entry_set_size(e, x->data ? (la_int64_t)strlen(x->data) : 0);
        for (int i = 0; i < 3 && x->xname[i]; i++)
            archive_entry_xattr_add_entry(e, x->xname[i], x->xvalue[i], strlen(x->xvalue[i]));
    }
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    if (!x->hard && x->data && x->data[0])
        assert_int_equal(archive_write_data(a, x->data, strlen(x->data)), (la_ssize_t)strlen(x->data));
    archive_entry_free(e);
}

static struct archive *layer_open(const char *path, enum filter f)
{
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_set_options(a, "hdrcharset=BINARY"), ARCHIVE_OK); /* names as bytes */
    if (f == GZIP)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    if (f == ZSTD)
        assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    return a;
}

static void layer_close(struct archive *a)
{
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* Writes a layer file named `name` in tmpdir; returns its path (static slots). */
static const char *make_layer(const char *name, enum filter f, const struct ent *ents)
{
    static char paths[8][512];
    static int next;
    setup_dir();
    char *path = paths[next++ % 8];
    snprintf(path, 512, "%s/%s", tmpdir, name);
    struct archive *a = layer_open(path, f);
    for (const struct ent *x = ents; x->path; x++)
        put_entry(a, x);
    layer_close(a);
    return path;
}

/* ---- reading the merged tar back ---------------------------------------- */

struct got {
    char path[512];
    unsigned type;
    unsigned perm;
    int64_t uid, gid, mtime;
    char data[64];
    int64_t size;
    char target[256];
    char hardlink[256];
    dev_t rdev;
    char xattrs[256]; /* "name=value;" ... */
};

struct tree {
    struct got *e;
    size_t n;
    struct layers_stats st;
    sm_code rc;
    sm_error err;
};

static void tree_free(struct tree *t)
{
    free(t->e);
    memset(t, 0, sizeof *t);
}

/* "./a/b/" -> "a/b"; "./" -> "." */
static void clean_path(const char *raw, char *out, size_t cap)
{
    while (raw[0] == '.' && raw[1] == '/')
        raw += 2;
    snprintf(out, cap, "%s", raw);
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == '/')
        out[--len] = 0;
    if (!out[0])
        snprintf(out, cap, ".");
}

static void read_back(int fd, struct tree *t)
{
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    assert_int_equal(archive_read_open_fd(a, fd, 10240), ARCHIVE_OK);
    struct archive_entry *e;
    int r;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        t->e = realloc(t->e, (t->n + 1) * sizeof *t->e);
        assert_non_null(t->e);
        struct got *g = &t->e[t->n++];
        memset(g, 0, sizeof *g);
        clean_path(archive_entry_pathname(e), g->path, sizeof g->path);
        g->type = archive_entry_filetype(e);
        g->perm = archive_entry_perm(e);
        g->uid = archive_entry_uid(e);
        g->gid = archive_entry_gid(e);
        g->mtime = archive_entry_mtime(e);
        g->size = archive_entry_size(e);
        g->rdev = archive_entry_rdev(e);
        if (archive_entry_symlink(e))
            snprintf(g->target, sizeof g->target, "%s", archive_entry_symlink(e));
        if (archive_entry_hardlink(e))
            clean_path(archive_entry_hardlink(e), g->hardlink, sizeof g->hardlink);
        const char *name;
        const void *value;
        size_t size;
        archive_entry_xattr_reset(e);
        while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
            /* libarchive's pax writer stores each xattr as LIBARCHIVE.xattr
             * and as SCHILY.xattr, and its reader returns both. */
            char key[128];
            snprintf(key, sizeof key, "%s=", name);
            if (strstr(g->xattrs, key))
                continue;
            size_t used = strlen(g->xattrs);
            snprintf(g->xattrs + used, sizeof g->xattrs - used, "%s=%.*s;", name, (int)size, (const char *)value);
        }
        la_ssize_t got = archive_read_data(a, g->data, sizeof g->data - 1);
        assert_true(got >= 0);
        g->data[got] = 0;
    }
    assert_int_equal(r, ARCHIVE_EOF);
    archive_read_free(a);
    /* Every path once; no whiteout markers. */
    for (size_t i = 0; i < t->n; i++) {
        assert_null(strstr(t->e[i].path, ".wh."));
        for (size_t j = i + 1; j < t->n; j++)
            assert_string_not_equal(t->e[i].path, t->e[j].path);
    }
}

static int temp_file(void)
{
    setup_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/out.XXXXXX", tmpdir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

/* The cap on unpacked bytes flatten() passes. */
static uint64_t flatten_cap = SM_PULL_DEFAULT_MAX_UNPACKED;

/* Flattens the layers; on success reads the result into t. */
static sm_code flatten(struct tree *t, size_t n, ...)
{
    const char *paths[8];
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        paths[i] = va_arg(ap, const char *);
    va_end(ap);
    memset(t, 0, sizeof *t);
    int fd = temp_file();
    t->rc = layers_flatten(paths, n, fd, flatten_cap, &t->st, &t->err);
    if (t->rc == SM_OK)
        read_back(fd, t);
    else
        printf("     (expected refusal) %s\n", t->err.message);
    close(fd);
    return t->rc;
}

static const struct got *find(const struct tree *t, const char *path)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i].path, path) == 0)
            return &t->e[i];
    return NULL;
}

/* The regular file holding path's data: itself, or its hard link's target. */
static const struct got *file_of(const struct tree *t, const char *path)
{
    const struct got *g = find(t, path);
    if (g && g->hardlink[0])
        g = find(t, g->hardlink);
    return g;
}

static void assert_content(const struct tree *t, const char *path, const char *data)
{
    const struct got *g = file_of(t, path);
    assert_non_null(g);
    assert_int_equal(g->type, AE_IFREG);
    assert_string_equal(g->data, data);
}

/* ---- whiteouts and replacement ---------------------------------------------- */

static void test_whiteout_of_a_file(void **state)
{
    (void)state;
    const char *l0 = make_layer("wf0.tar", PLAIN, (struct ent[]){
        { .path = "etc", .type = AE_IFDIR }, { .path = "etc/a", .data = "A" }, { .path = "etc/b", .data = "B" }, END });
    const char *l1 = make_layer("wf1.tar", PLAIN, (struct ent[]){ { .path = "etc/.wh.a" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 2, l0, l1), SM_OK);
    assert_null(find(&t, "etc/a"));
    assert_content(&t, "etc/b", "B");
    assert_int_equal(t.st.whiteouts, 1);
    assert_int_equal(t.n, 3); /* ., etc, etc/b */
    tree_free(&t);
}

static void test_whiteout_of_a_folder(void **state)
{
    (void)state;
    const char *l0 = make_layer("wd0.tar", PLAIN, (struct ent[]){
        { .path = "d", .type = AE_IFDIR }, { .path = "d/x", .data = "x" }, { .path = "d/sub", .type = AE_IFDIR },
        { .path = "d/sub/y", .data = "y" }, { .path = "keep", .data = "k" }, END });
    const char *l1 = make_layer("wd1.tar", PLAIN, (struct ent[]){ { .path = "./.wh.d" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 2, l0, l1), SM_OK);
    assert_null(find(&t, "d"));
    assert_null(find(&t, "d/x"));
    assert_null(find(&t, "d/sub"));
    assert_null(find(&t, "d/sub/y"));
    assert_content(&t, "keep", "k");
    tree_free(&t);
}

/* The spec: a whiteout applies to lower layers only, even when it comes
 * after its own layer's entries in the stream. */
static void test_whiteout_spares_its_own_layer(void **state)
{
    (void)state;
    const char *l0 = make_layer("ws0.tar", PLAIN, (struct ent[]){
        { .path = "d", .type = AE_IFDIR }, { .path = "d/old", .data = "o" }, END });
    const char *l1 = make_layer("ws1.tar", PLAIN, (struct ent[]){
        { .path = "d/new", .data = "n" }, { .path = ".wh.d" }, { .path = "f", .data = "f1" },
        { .path = ".wh.f" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 2, l0, l1), SM_OK);
    assert_null(find(&t, "d/old"));
    assert_content(&t, "d/new", "n");
    assert_non_null(find(&t, "d"));
    assert_content(&t, "f", "f1");
    tree_free(&t);
}

static void test_opaque_folder(void **state)
{
    (void)state;
    const char *l0 = make_layer("op0.tar", PLAIN, (struct ent[]){
        { .path = "d", .type = AE_IFDIR, .perm = 0700, .uid = 1, .gid = 1 }, { .path = "d/x", .data = "x" },
        { .path = "d/sub", .type = AE_IFDIR }, { .path = "d/sub/y", .data = "y" },
        { .path = "other", .type = AE_IFDIR }, { .path = "other/z", .data = "z" }, END });
    const char *l1 = make_layer("op1.tar", PLAIN, (struct ent[]){
        { .path = "d", .type = AE_IFDIR, .perm = 0750, .uid = 2, .gid = 3 }, { .path = "d/early", .data = "e" },
        { .path = "d/.wh..wh..opq" }, { .path = "d/new", .data = "n" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 2, l0, l1), SM_OK);
    const struct got *d = find(&t, "d");
    assert_non_null(d);
    assert_int_equal(d->type, AE_IFDIR);
    assert_int_equal(d->perm, 0750);
    assert_int_equal(d->uid, 2);
    assert_int_equal(d->gid, 3);
    assert_null(find(&t, "d/x"));
    assert_null(find(&t, "d/sub"));
    assert_null(find(&t, "d/sub/y"));
    assert_content(&t, "d/new", "n");
    assert_content(&t, "d/early", "e"); /* its own layer's, before the marker */
    assert_content(&t, "other/z", "z");
    assert_int_equal(t.st.whiteouts, 1);
    tree_free(&t);
}

static void test_replace_file_by_folder_and_folder_by_file(void **state)
{
    (void)state;
    const char *l0 = make_layer("rp0.tar", PLAIN, (struct ent[]){
        { .path = "p", .data = "was a file" }, { .path = "d", .type = AE_IFDIR }, { .path = "d/x", .data = "x" },
        { .path = "d/s", .type = AE_IFDIR }, { .path = "d/s/y", .data = "y" }, END });
    const char *l1 = make_layer("rp1.tar", PLAIN, (struct ent[]){
        { .path = "p", .type = AE_IFDIR, .perm = 0711 }, { .path = "p/q", .data = "q" },
        { .path = "d", .data = "now a file" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 2, l0, l1), SM_OK);
    const struct got *p = find(&t, "p");
    assert_non_null(p);
    assert_int_equal(p->type, AE_IFDIR);
    assert_int_equal(p->perm, 0711);
    assert_content(&t, "p/q", "q");
    assert_content(&t, "d", "now a file");
    assert_null(find(&t, "d/x"));
    assert_null(find(&t, "d/s"));
    assert_null(find(&t, "d/s/y"));
    tree_free(&t);
}

static void test_folder_over_folder_merges(void **state)
{
    (void)state;
    const char *l0 = make_layer("mg0.tar", PLAIN, (struct ent[]){
        { .path = "d", .type = AE_IFDIR, .perm = 0700, .uid = 1 }, { .path = "d/x", .data = "x" }, END });
    const char *l1 = make_layer("mg1.tar", PLAIN, (struct ent[]){
        { .path = "d/", .type = AE_IFDIR, .perm = 0755, .uid = 3, .mtime = 1600000000 },
        { .path = "d/y", .data = "y" }, { .path = "d/x", .data = "x2" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 2, l0, l1), SM_OK);
    const struct got *d = find(&t, "d");
    assert_int_equal(d->perm, 0755);
    assert_int_equal(d->uid, 3);
    assert_int_equal(d->mtime, 1600000000);
    assert_content(&t, "d/x", "x2");
    assert_content(&t, "d/y", "y");
    tree_free(&t);
}

static void test_duplicate_in_one_layer_the_later_wins(void **state)
{
    (void)state;
    const char *l0 = make_layer("dup0.tar", PLAIN, (struct ent[]){
        { .path = "f", .data = "first" }, { .path = "./f", .data = "second", .perm = 0600 }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 1, l0), SM_OK);
    assert_content(&t, "f", "second");
    assert_int_equal(find(&t, "f")->perm, 0600);
    tree_free(&t);
}

static void test_paths_normalised_root_and_implicit_parents(void **state)
{
    (void)state;
    const char *l0 = make_layer("np0.tar", PLAIN, (struct ent[]){
        { .path = "./", .type = AE_IFDIR, .perm = 0700, .uid = 5 }, { .path = "/abs", .data = "a" },
        { .path = "./x//./y/z", .data = "z" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 1, l0), SM_OK);
    const struct got *root = find(&t, ".");
    assert_non_null(root);
    assert_int_equal(root->perm, 0700);
    assert_int_equal(root->uid, 5);
    assert_content(&t, "abs", "a");
    assert_content(&t, "x/y/z", "z");
    const struct got *x = find(&t, "x");
    assert_non_null(x);
    assert_int_equal(x->type, AE_IFDIR);
    assert_int_equal(x->perm, 0755);
    assert_int_equal(x->uid, 0);
    assert_non_null(find(&t, "x/y"));
    /* Folders come before what is in them. */
    assert_string_equal(t.e[0].path, ".");
    for (size_t i = 0; i < t.n; i++)
        if (strcmp(t.e[i].path, "x/y/z") == 0)
            assert_true(find(&t, "x/y") < &t.e[i]);
    tree_free(&t);
}

/* ---- links, nodes, owners, xattrs --------------------------------------------- */

static void test_hard_links(void **state)
{
    (void)state;
    const char *l0 = make_layer("hl0.tar", PLAIN, (struct ent[]){
        { .path = "bin", .type = AE_IFDIR }, { .path = "bin/f", .data = "one", .perm = 0755, .uid = 7 },
        { .path = "bin/g", .hard = true, .target = "bin/f" }, { .path = "t", .data = "tee" },
        { .path = "u", .hard = true, .target = "./t" }, END });
    /* Replaces f (g keeps the old data), deletes t (u keeps it), links h to g across layers. */
    const char *l1 = make_layer("hl1.tar", GZIP, (struct ent[]){
        { .path = "bin/f", .data = "two" }, { .path = ".wh.t" }, { .path = "h", .hard = true, .target = "bin/g" },
        END });
    struct tree t;
    assert_int_equal(flatten(&t, 2, l0, l1), SM_OK);
    assert_content(&t, "bin/f", "two");
    assert_content(&t, "bin/g", "one");
    assert_content(&t, "h", "one");
    assert_int_equal(file_of(&t, "bin/g")->perm, 0755);
    assert_int_equal(file_of(&t, "bin/g")->uid, 7);
    /* g and h are one file: one carries the data, the other links to it. */
    const struct got *g = find(&t, "bin/g"), *h = find(&t, "h");
    assert_true((g->hardlink[0] && strcmp(g->hardlink, "h") == 0) ||
                (h->hardlink[0] && strcmp(h->hardlink, "bin/g") == 0));
    assert_null(find(&t, "t"));
    assert_content(&t, "u", "tee");
    assert_string_equal(find(&t, "u")->hardlink, "");
    tree_free(&t);
    /* A folder replaced by a hard link to a file inside it: the file lives on
     * under the folder's name only. */
    const char *l2 = make_layer("hl2.tar", PLAIN, (struct ent[]){
        { .path = "d", .type = AE_IFDIR }, { .path = "d/x", .data = "inner" }, { .path = "d", .hard = true, .target = "d/x" },
        END });
    assert_int_equal(flatten(&t, 1, l2), SM_OK);
    assert_content(&t, "d", "inner");
    assert_string_equal(find(&t, "d")->hardlink, "");
    assert_null(find(&t, "d/x"));
    assert_int_equal(t.n, 2);
    tree_free(&t);
}

static void test_hard_link_to_a_deleted_file_refused(void **state)
{
    (void)state;
    const char *l0 = make_layer("hd0.tar", PLAIN, (struct ent[]){ { .path = "t", .data = "t" }, END });
    const char *l1 = make_layer("hd1.tar", PLAIN, (struct ent[]){ { .path = ".wh.t" }, END });
    const char *l2 = make_layer("hd2.tar", PLAIN, (struct ent[]){ { .path = "l", .hard = true, .target = "t" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 3, l0, l1, l2), SM_E_INVALID);
    assert_non_null(strstr(t.err.message, "layer 3 of 3 (hd2.tar): entry 'l'"));
    assert_non_null(strstr(t.err.message, "not in the merged tree"));
    /* A link before its target in the same layer is refused too. */
    const char *l3 = make_layer("hd3.tar", PLAIN, (struct ent[]){
        { .path = "l", .hard = true, .target = "later" }, { .path = "later", .data = "x" }, END });
    assert_int_equal(flatten(&t, 1, l3), SM_E_INVALID);
    const char *l4 = make_layer("hd4.tar", PLAIN, (struct ent[]){
        { .path = "d", .type = AE_IFDIR }, { .path = "l", .hard = true, .target = "d" }, END });
    assert_int_equal(flatten(&t, 1, l4), SM_E_INVALID);
    assert_non_null(strstr(t.err.message, "folder"));
}

static void test_symlinks_devices_owners_kept(void **state)
{
    (void)state;
    const char *l0 = make_layer("dv0.tar", ZSTD, (struct ent[]){
        { .path = "dev", .type = AE_IFDIR }, { .path = "dev/null", .type = AE_IFCHR, .perm = 0666, .major = 1, .minor = 3 },
        { .path = "dev/sda", .type = AE_IFBLK, .perm = 0660, .gid = 6, .major = 8, .minor = 0 },
        { .path = "dev/fifo", .type = AE_IFIFO, .perm = 0600 },
        { .path = "abs", .type = AE_IFLNK, .target = "/etc/passwd" },
        { .path = "rel", .type = AE_IFLNK, .target = "../../lib/x" },
        { .path = "suid", .data = "s", .perm = 04755, .uid = 1000, .gid = 1001, .mtime = 1234567890 },
        { .path = "big", .data = "u", .uid = 4000000000, .gid = 3000000000 }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 1, l0), SM_OK);
    const struct got *g = find(&t, "dev/null");
    assert_int_equal(g->type, AE_IFCHR);
    assert_int_equal(g->perm, 0666);
    assert_int_equal(g->rdev, makedev(1, 3));
    g = find(&t, "dev/sda");
    assert_int_equal(g->type, AE_IFBLK);
    assert_int_equal(g->rdev, makedev(8, 0));
    assert_int_equal(g->gid, 6);
    assert_int_equal(find(&t, "dev/fifo")->type, AE_IFIFO);
    assert_int_equal(find(&t, "abs")->type, AE_IFLNK);
    assert_string_equal(find(&t, "abs")->target, "/etc/passwd");
    assert_string_equal(find(&t, "rel")->target, "../../lib/x");
    g = find(&t, "suid");
    assert_int_equal(g->perm, 04755);
    assert_int_equal(g->uid, 1000);
    assert_int_equal(g->gid, 1001);
    assert_int_equal(g->mtime, 1234567890);
    g = find(&t, "big");
    assert_int_equal(g->uid, 4000000000);
    assert_int_equal(g->gid, 3000000000);
    tree_free(&t);
}

static void test_xattrs_kept(void **state)
{
    (void)state;
    const char *l0 = make_layer("xa0.tar", GZIP, (struct ent[]){
        { .path = "d", .type = AE_IFDIR, .xname = { "trusted.overlay.x", "system.nfs4_acl" }, .xvalue = { "y", "z" } },
        { .path = "d/ping", .data = "p", .xname = { "security.capability", "user.note" }, .xvalue = { "cap", "hi" } },
        END });
    struct tree t;
    assert_int_equal(flatten(&t, 1, l0), SM_OK);
    assert_string_equal(find(&t, "d")->xattrs, "trusted.overlay.x=y;");
    assert_string_equal(find(&t, "d/ping")->xattrs, "security.capability=cap;user.note=hi;");
    assert_int_equal(t.st.xattrs_dropped, 1);
    tree_free(&t);
}

/* ---- hostile layers ------------------------------------------------------------ */

static void test_oversized_metadata_refused(void **state)
{
    (void)state;
    static char big[LAYERS_MAX_XATTR_VALUE + 2];
    memset(big, 'v', sizeof big - 1);
    const char *l0 = make_layer("big0.tar", PLAIN, (struct ent[]){
        { .path = "f", .data = "f", .xname = { "user.big" }, .xvalue = { big } }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 1, l0), SM_E_LIMIT);
    assert_non_null(strstr(t.err.message, "user.big"));
    char name[300];
    memset(name, 'n', 256);
    name[256] = 0;
    const char *l1 = make_layer("big1.tar", PLAIN, (struct ent[]){ { .path = name, .data = "x" }, END });
    assert_int_equal(flatten(&t, 1, l1), SM_E_INVALID);
    assert_non_null(strstr(t.err.message, "longer than 255"));
}

static void test_dotdot_refused(void **state)
{
    (void)state;
    const char *l0 = make_layer("dd0.tar", PLAIN, (struct ent[]){ { .path = "ok", .data = "o" }, END });
    const char *l1 = make_layer("dd1.tar", PLAIN, (struct ent[]){ { .path = "../x", .data = "x" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 2, l0, l1), SM_E_INVALID);
    assert_non_null(strstr(t.err.message, "layer 2 of 2 (dd1.tar): entry '../x': a path that leaves the root"));
    const char *l2 = make_layer("dd2.tar", PLAIN, (struct ent[]){ { .path = "a/../../etc/x", .data = "x" }, END });
    assert_int_equal(flatten(&t, 1, l2), SM_E_INVALID);
    const char *l3 = make_layer("dd3.tar", PLAIN, (struct ent[]){
        { .path = "ok", .data = "o" }, { .path = "l", .hard = true, .target = "../etc/shadow" }, END });
    assert_int_equal(flatten(&t, 1, l3), SM_E_INVALID);
    assert_non_null(strstr(t.err.message, "leaves the root"));
    const char *l4 = make_layer("dd4.tar", PLAIN, (struct ent[]){ { .path = "./.wh..." }, END });
    assert_int_equal(flatten(&t, 1, l4), SM_E_INVALID);
    const char *l5 = make_layer("dd5.tar", PLAIN, (struct ent[]){ { .path = "a/.wh.b/c", .data = "c" }, END });
    assert_int_equal(flatten(&t, 1, l5), SM_E_INVALID);
    assert_non_null(strstr(t.err.message, "whiteout name used as a folder"));
}

static void test_write_through_symlink_refused(void **state)
{
    (void)state;
    const char *l0 = make_layer("ws0s.tar", PLAIN, (struct ent[]){ { .path = "link", .type = AE_IFLNK, .target = "/etc" }, END });
    const char *l1 = make_layer("ws1s.tar", PLAIN, (struct ent[]){ { .path = "link/passwd", .data = "root::0:0" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 2, l0, l1), SM_E_INVALID);
    assert_non_null(strstr(t.err.message, "layer 2 of 2 (ws1s.tar): entry 'link/passwd'"));
    assert_non_null(strstr(t.err.message, "'link' is not a folder"));
    assert_non_null(strstr(t.err.message, "symlink from layer 1"));
    /* The same within one layer, and through a regular file. */
    const char *l2 = make_layer("ws2s.tar", PLAIN, (struct ent[]){
        { .path = "f", .data = "f" }, { .path = "f/g/h", .data = "x" }, END });
    assert_int_equal(flatten(&t, 1, l2), SM_E_INVALID);
    /* A symlink replaced by a folder in a later layer is fine. */
    const char *l3 = make_layer("ws3s.tar", PLAIN, (struct ent[]){
        { .path = "link", .type = AE_IFDIR }, { .path = "link/passwd", .data = "p" }, END });
    assert_int_equal(flatten(&t, 2, l0, l3), SM_OK);
    assert_content(&t, "link/passwd", "p");
    tree_free(&t);
}

static void cut_file(const char *path, off_t keep)
{
    assert_int_equal(truncate(path, keep), 0);
}

static off_t file_size(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_size;
}

static const char *big_layer(const char *name, enum filter f, size_t size)
{
    char *data = malloc(size + 1);
    assert_non_null(data);
    uint32_t x = 12345;
    for (size_t i = 0; i < size; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (char)('a' + (x >> 16) % 26);
    }
    data[size] = 0;
    const char *p = make_layer(name, f, (struct ent[]){
        { .path = "small", .data = "s" }, { .path = "big", .data = data }, { .path = "after", .data = "a" }, END });
    free(data);
    return p;
}

static void test_truncated_layers_refused(void **state)
{
    (void)state;
    const char *gz = big_layer("cut.tar.gz", GZIP, 300000);
    cut_file(gz, file_size(gz) / 2);
    struct tree t;
    assert_int_equal(flatten(&t, 1, gz), SM_E_INVALID);
    assert_non_null(strstr(t.err.message, "layer 1 of 1 (cut.tar.gz)"));
    const char *zs = big_layer("cut.tar.zst", ZSTD, 300000);
    cut_file(zs, file_size(zs) - 7);
    assert_int_equal(flatten(&t, 1, zs), SM_E_INVALID);
    const char *tar = big_layer("cut.tar", PLAIN, 300000);
    cut_file(tar, 100000);
    assert_int_equal(flatten(&t, 1, tar), SM_E_INVALID);
    /* Not a tar at all, and a bad gzip header. */
    char path[512];
    snprintf(path, sizeof path, "%s/garbage", tmpdir);
    FILE *f = fopen(path, "w");
    fputs("\x1f\x8b\x08garbage that is no gzip stream at all........", f);
    fclose(f);
    assert_int_equal(flatten(&t, 1, path), SM_E_INVALID);
    snprintf(path, sizeof path, "%s/missing", tmpdir);
    assert_int_equal(flatten(&t, 1, path), SM_E_NOTFOUND);
}

static void test_gzip_zstd_plain_and_big_data(void **state)
{
    (void)state;
    const char *l0 = big_layer("mix0.tar.gz", GZIP, 1 << 20);
    const char *l1 = make_layer("mix1.tar.zst", ZSTD, (struct ent[]){ { .path = "small", .data = "zstd" }, END });
    const char *l2 = make_layer("mix2.tar", PLAIN, (struct ent[]){ { .path = "plain", .data = "p" }, END });
    struct tree t;
    assert_int_equal(flatten(&t, 3, l0, l1, l2), SM_OK);
    assert_content(&t, "small", "zstd");
    assert_content(&t, "plain", "p");
    assert_content(&t, "after", "a");
    assert_int_equal(find(&t, "big")->size, 1 << 20);
    assert_int_equal(t.st.bytes, (1 << 20) + 4 + 1 + 1);
    assert_int_equal(t.st.entries, t.n);
    tree_free(&t);
}

/* The message names a layer kept as blobs/sha256/<hex> by its digest. */
static void test_message_names_the_digest(void **state)
{
    (void)state;
    setup_dir();
    char dir[512], path[700];
    snprintf(dir, sizeof dir, "%s/sha256", tmpdir);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/0123456789abcdef0123456789abcdef", dir);
    struct archive *a = layer_open(path, PLAIN);
    put_entry(a, &(struct ent){ .path = "../evil", .data = "e" });
    layer_close(a);
    struct tree t;
    assert_int_equal(flatten(&t, 1, path), SM_E_INVALID);
    assert_non_null(strstr(t.err.message, "layer 1 of 1 (sha256:0123456789ab): entry '../evil'"));
}

/* A layer as libFuzzer would give it: arbitrary bytes never crash. */
static void test_arbitrary_bytes_are_refused_cleanly(void **state)
{
    (void)state;
    setup_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/noise", tmpdir);
    uint32_t x = 99;
    for (int round = 0; round < 20; round++) {
        FILE *f = fopen(path, "w");
        for (int i = 0; i < 2048; i++) {
            x = x * 1103515245u + 12345u;
            fputc((int)(x >> 16) & 0xff, f);
        }
        fclose(f);
        struct tree t;
        sm_code rc = flatten(&t, 1, path);
        assert_true(rc == SM_E_INVALID || rc == SM_OK);
        tree_free(&t);
    }
}

/* ---- rootfs_build ------------------------------------------------------------------ */

static bool have_tools(void)
{
    if (system("command -v tar2sqfs >/dev/null 2>&1 && command -v rdsquashfs >/dev/null 2>&1") == 0)
        return true;
    printf("     SKIPPED: tar2sqfs/rdsquashfs not installed (apt-get install squashfs-tools-ng)\n");
    skip();
    return false;
}

/* rdsquashfs's output for args, in buf. */
static void run_capture(char *buf, size_t cap, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(buf, 1, cap - 1, p);
    buf[n] = 0;
    assert_int_equal(pclose(p), 0);
}

static bool no_leftovers(const char *out)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls '%s'.tmp.* >/dev/null 2>&1", out);
    return system(cmd) != 0;
}

/* 3 x 90 bytes of folders, then a UTF-8 name: needs pax path records. */
#define NAME90 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl"
#define LONG_NAME NAME90 "/" NAME90 "/" NAME90 "/caf\xc3\xa9"

static void test_rootfs_build_squashfs(void **state)
{
    (void)state;
    if (!have_tools())
        return;
    const char *l0 = make_layer("rf0.tar.gz", GZIP, (struct ent[]){
        { .path = "./", .type = AE_IFDIR, .perm = 0755 },
        { .path = "etc", .type = AE_IFDIR }, { .path = "etc/a", .data = "A" }, { .path = "etc/b", .data = "bee\n" },
        { .path = "dev", .type = AE_IFDIR }, { .path = "dev/null", .type = AE_IFCHR, .perm = 0666, .major = 1, .minor = 3 },
        { .path = "bin", .type = AE_IFDIR, .uid = 2 }, { .path = "bin/sh", .data = "#!", .perm = 0755, .uid = 1000, .gid = 1000 },
        { .path = "bin/sh2", .hard = true, .target = "bin/sh" },
        { .path = "lnk", .type = AE_IFLNK, .target = "/etc/b" },
        { .path = "cap", .data = "c", .xname = { "security.capability" }, .xvalue = { "xyz" } },
        { .path = LONG_NAME, .data = "long" }, END });
    const char *l1 = make_layer("rf1.tar.zst", ZSTD, (struct ent[]){ { .path = "etc/.wh.a" }, END });
    char out[600], buf[4096];
    snprintf(out, sizeof out, "%s/root.sqfs", tmpdir);
    const char *layers[] = { l0, l1 };
    struct layers_stats st;
    sm_error err = { 0 };
    assert_int_equal(rootfs_build(layers, 2, out, SM_PULL_DEFAULT_MAX_UNPACKED, &st, &err), SM_OK);
    assert_true(no_leftovers(out));
    run_capture(buf, sizeof buf, "rdsquashfs -d '%s'", out);
    printf("%s", buf);
    assert_non_null(strstr(buf, "file etc/b 0644 0 0"));
    assert_null(strstr(buf, "etc/a"));
    assert_null(strstr(buf, ".wh."));
    assert_non_null(strstr(buf, "nod dev/null 0666 0 0 c 1 3"));
    assert_non_null(strstr(buf, "slink lnk 0777 0 0 /etc/b"));
    assert_non_null(strstr(buf, "dir bin 0755 2 0"));
    assert_non_null(strstr(buf, "file bin/sh 0755 1000 1000"));
    assert_non_null(strstr(buf, "file bin/sh2 0755 1000 1000"));
    run_capture(buf, sizeof buf, "rdsquashfs -c /etc/b '%s'", out);
    assert_string_equal(buf, "bee\n");
    run_capture(buf, sizeof buf, "rdsquashfs -x /cap '%s'", out);
    assert_non_null(strstr(buf, "security.capability=xyz"));
    run_capture(buf, sizeof buf, "rdsquashfs -s /bin/sh2 '%s'", out);
    assert_non_null(strstr(buf, "Hard link count: 2"));
    run_capture(buf, sizeof buf, "rdsquashfs -c '/%s' '%s'", LONG_NAME, out);
    assert_string_equal(buf, "long");
    /* A second build replaces the first atomically. */
    assert_int_equal(rootfs_build(layers, 1, out, SM_PULL_DEFAULT_MAX_UNPACKED, NULL, &err), SM_OK);
    run_capture(buf, sizeof buf, "rdsquashfs -d '%s'", out);
    assert_non_null(strstr(buf, "file etc/a 0644"));
    unlink(out);
}

static void test_rootfs_build_failures_leave_nothing(void **state)
{
    (void)state;
    if (!have_tools())
        return;
    char out[600];
    snprintf(out, sizeof out, "%s/bad.sqfs", tmpdir);
    const char *gz = big_layer("rfcut.tar.gz", GZIP, 300000);
    cut_file(gz, file_size(gz) / 2);
    const char *good = make_layer("rfgood.tar", PLAIN, (struct ent[]){ { .path = "x", .data = "x" }, END });
    const char *layers[] = { good, gz };
    sm_error err = { 0 };
    assert_int_equal(rootfs_build(layers, 2, out, SM_PULL_DEFAULT_MAX_UNPACKED, NULL, &err), SM_E_INVALID);
    printf("     (expected refusal) %s\n", err.message);
    assert_non_null(strstr(err.message, "layer 2 of 2 (rfcut.tar.gz)"));
    assert_int_equal(access(out, F_OK), -1);
    assert_true(no_leftovers(out));
    const char *evil = make_layer("rfevil.tar", PLAIN, (struct ent[]){ { .path = "../x", .data = "x" }, END });
    layers[1] = evil;
    assert_int_equal(rootfs_build(layers, 2, out, SM_PULL_DEFAULT_MAX_UNPACKED, NULL, &err), SM_E_INVALID);
    assert_int_equal(access(out, F_OK), -1);
    assert_true(no_leftovers(out));
    /* No such folder for the image. */
    char nodir[700];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.sqfs", tmpdir);
    layers[1] = big_layer("rfbig.tar", PLAIN, 1 << 20);
    assert_int_equal(rootfs_build(layers, 2, nodir, SM_PULL_DEFAULT_MAX_UNPACKED, NULL, &err), SM_E_IO);
    printf("     (expected refusal) %s\n", err.message);
    assert_non_null(strstr(err.message, "No such file or directory"));
    /* tar2sqfs itself fails: its message, then the flattening's. */
    char bin[600], cmd[2000];
    snprintf(bin, sizeof bin, "%s/fakebin", tmpdir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && printf '#!/bin/sh\\necho \"it broke\" >&2\\nexit 3\\n' >'%s/tar2sqfs' && chmod +x '%s/tar2sqfs'",
             bin, bin, bin);
    assert_int_equal(system(cmd), 0);
    char *path_was = strdup(getenv("PATH") ? getenv("PATH") : "");
    setenv("PATH", bin, 1);
    sm_code rc = rootfs_build(layers, 2, out, SM_PULL_DEFAULT_MAX_UNPACKED, NULL, &err);
    setenv("PATH", path_was, 1);
    free(path_was);
    assert_int_equal(rc, SM_E_IO);
    printf("     (expected refusal) %s\n", err.message);
    assert_non_null(strstr(err.message, "tar2sqfs failed (exit status 3): it broke"));
    assert_null(strstr(err.message, "No space left"));
    assert_int_equal(access(out, F_OK), -1);
    assert_true(no_leftovers(out));
    /* No tar2sqfs on PATH: a clear error naming the package. */
    char *saved = strdup(getenv("PATH") ? getenv("PATH") : "");
    setenv("PATH", tmpdir, 1);
    assert_int_equal(rootfs_build(layers, 1, out, SM_PULL_DEFAULT_MAX_UNPACKED, NULL, &err), SM_E_UNSUPPORTED);
    setenv("PATH", saved, 1);
    free(saved);
    assert_non_null(strstr(err.message, "squashfs-tools-ng"));
    assert_int_equal(access(out, F_OK), -1);
    assert_true(no_leftovers(out));
}

/* ---- caps and a full disk ---------------------------------------------------------- */

/* A plain tar of one ustar header (a regular file `name` of `size` bytes)
 * and the first `data` bytes of its contents: a bomb whose header is read
 * before its data would be. */
static const char *header_only_layer(const char *name, uint64_t size, size_t data)
{
    static char path[512];
    setup_dir();
    snprintf(path, sizeof path, "%s/%s.tar", tmpdir, name);
    char h[512] = { 0 };
    snprintf(h, 100, "%s", name);
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    snprintf(h + 124, 12, "%011llo", (unsigned long long)size);
    memcpy(h + 136, "14540000000", 12);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(h, 1, sizeof h, f), sizeof h);
    for (size_t i = 0; i < data; i++)
        fputc(0, f);
    fclose(f);
    return path;
}

static void test_unpacked_cap(void **state)
{
    (void)state;
    struct tree t;
    /* A header claiming 7 GiB, cut after 4 KiB, against a 1 GiB cap:
     * refused for the cap at the header (reading on would have found the
     * tar cut short). */
    const char *bomb = header_only_layer("bomb", 7ull << 30, 4096);
    flatten_cap = 1u << 30;
    assert_int_equal(flatten(&t, 1, bomb), SM_E_LIMIT);
    assert_non_null(strstr(t.err.message, "layer 1 of 1 (bomb.tar): entry 'bomb': the layers unpack to more "
                                          "than 1 GiB (1073741824 bytes), the cap on an image's unpacked bytes"));
    /* Under the default cap, the same layer is only cut short. */
    flatten_cap = SM_PULL_DEFAULT_MAX_UNPACKED;
    assert_int_equal(flatten(&t, 1, bomb), SM_E_INVALID);
    /* A gzip bomb: 8 MiB of zeros in a few KiB, against a 1 MiB cap. */
    char *zeros = calloc(1, (8u << 20) + 1);
    assert_non_null(zeros);
    memset(zeros, '0', 8u << 20);
    const char *gz = make_layer("zeros.tar.gz", GZIP, (struct ent[]){ { .path = "z", .data = zeros }, END });
    free(zeros);
    assert_true(file_size(gz) < (64 << 10));
    flatten_cap = 1u << 20;
    assert_int_equal(flatten(&t, 1, gz), SM_E_LIMIT);
    assert_non_null(strstr(t.err.message, "layer 1 of 1 (zeros.tar.gz): entry 'z': the layers unpack to more "
                                          "than 1 MiB (1048576 bytes)"));
    /* The cap is on all the layers together: the second one passes it. */
    const char *a = big_layer("capa.tar", PLAIN, 600000);
    const char *b = big_layer("capb.tar.zst", ZSTD, 600000);
    assert_int_equal(flatten(&t, 2, a, b), SM_E_LIMIT);
    assert_non_null(strstr(t.err.message, "layer 2 of 2 (capb.tar.zst): entry 'big'"));
    assert_non_null(strstr(t.err.message, "600003 bytes of files before this one, and it has 600000"));
    /* Each layer holds 600002 bytes: exactly at the cap, flattened; one
     * byte less, the last file of the second layer is one too many. */
    flatten_cap = 2 * 600002;
    assert_int_equal(flatten(&t, 2, a, b), SM_OK);
    tree_free(&t);
    flatten_cap = 2 * 600002 - 1;
    assert_int_equal(flatten(&t, 2, a, b), SM_E_LIMIT);
    assert_non_null(strstr(t.err.message, "layer 2 of 2 (capb.tar.zst): entry 'after'"));
    flatten_cap = SM_PULL_DEFAULT_MAX_UNPACKED;
}

struct disk_case {
    const char *layer;
    char out[600];
};

/* In a child with a 1 MiB tmpfs at the output's folder: 3 MiB of layer
 * does not fit. Checked before (rootfs_check_space), and when packed all
 * the same: ENOSPC, and nothing left behind. */
static int pack_on_small_fs(void *arg)
{
    struct disk_case *c = arg;
    const char *layers[] = { c->layer };
    sm_error err = { 0 };
    sm_code rc = rootfs_check_space(layers, 1, c->out, &err);
    printf("     (expected refusal) %s\n", err.message);
    if (rc != SM_E_LIMIT || !strstr(err.message, "not enough free space in") ||
        !strstr(err.message, "for the image's root filesystem (2 times its 2.8 MiB of layers): it needs 5.7 MiB")) {
        printf("     rootfs_check_space: %d, wanted SM_E_LIMIT and its message\n", rc);
        return 1;
    }
    rc = rootfs_build(layers, 1, c->out, SM_PULL_DEFAULT_MAX_UNPACKED, NULL, &err);
    printf("     (expected refusal) %s\n", err.message);
    if (rc != SM_E_IO || !strstr(err.message, "the root filesystem does not fit on the file system of") ||
        !strstr(err.message, ": No space left on device")) {
        printf("     rootfs_build: %d, wanted SM_E_IO and ENOSPC\n", rc);
        return 1;
    }
    if (access(c->out, F_OK) == 0 || !no_leftovers(c->out)) {
        printf("     an image or a temporary file was left behind\n");
        return 1;
    }
    /* A small layer fits: the check passes, and the disk is empty again. */
    const char *small[] = { make_layer("fits.tar", PLAIN, (struct ent[]){ { .path = "x", .data = "x" }, END }) };
    if (rootfs_check_space(small, 1, c->out, &err) != SM_OK ||
        rootfs_build(small, 1, c->out, SM_PULL_DEFAULT_MAX_UNPACKED, NULL, &err) != SM_OK) {
        printf("     a small layer: %s\n", err.message);
        return 1;
    }
    return 0;
}

static void test_rootfs_disk_full(void **state)
{
    (void)state;
    if (!have_tools())
        return;
    struct disk_case c = { .layer = big_layer("full.tar", PLAIN, 3000000) };
    char dir[560];
    snprintf(dir, sizeof dir, "%s/small", tmpdir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(c.out, sizeof c.out, "%s/root.sqfs", dir);
    int rc = small_fs_run(dir, 1u << 20, pack_on_small_fs, &c);
    if (rc == SMALL_FS_UNAVAILABLE)
        skip();
    assert_int_equal(rc, 0);
}

static int cleanup(void **state)
{
    (void)state;
    if (tmpdir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whiteout_of_a_file),
        cmocka_unit_test(test_whiteout_of_a_folder),
        cmocka_unit_test(test_whiteout_spares_its_own_layer),
        cmocka_unit_test(test_opaque_folder),
        cmocka_unit_test(test_replace_file_by_folder_and_folder_by_file),
        cmocka_unit_test(test_folder_over_folder_merges),
        cmocka_unit_test(test_duplicate_in_one_layer_the_later_wins),
        cmocka_unit_test(test_paths_normalised_root_and_implicit_parents),
        cmocka_unit_test(test_hard_links),
        cmocka_unit_test(test_hard_link_to_a_deleted_file_refused),
        cmocka_unit_test(test_symlinks_devices_owners_kept),
        cmocka_unit_test(test_xattrs_kept),
        cmocka_unit_test(test_oversized_metadata_refused),
        cmocka_unit_test(test_dotdot_refused),
        cmocka_unit_test(test_write_through_symlink_refused),
        cmocka_unit_test(test_truncated_layers_refused),
        cmocka_unit_test(test_gzip_zstd_plain_and_big_data),
        cmocka_unit_test(test_message_names_the_digest),
        cmocka_unit_test(test_arbitrary_bytes_are_refused_cleanly),
        cmocka_unit_test(test_rootfs_build_squashfs),
        cmocka_unit_test(test_rootfs_build_failures_leave_nothing),
        cmocka_unit_test(test_unpacked_cap),
        cmocka_unit_test(test_rootfs_disk_full),
    };
    return cmocka_run_group_tests(tests, NULL, cleanup);
}
