/*
 * mkinitramfs: builds a newc cpio archive (what the kernel unpacks as its
 * initramfs) from a list file, without root and reproducibly: every entry is
 * owned by 0:0 and has mtime 0, and entries appear in list order.
 *
 *   usage: mkinitramfs -o OUT [-C DIR] LIST
 *
 * The list: one entry per line; blank lines and lines starting with '#' are
 * ignored; fields are separated by spaces or tabs (so no field holds one).
 *
 *   line                                   meaning
 *   dir   PATH MODE                        a directory
 *   file  PATH SOURCE MODE                 a regular file with SOURCE's bytes;
 *                                          SOURCE is relative to -C DIR unless
 *                                          it starts with '/'
 *   nod   PATH MODE c|b MAJOR MINOR        a character or block device node
 *   slink PATH TARGET                      a symbolic link to TARGET
 *
 * PATH is absolute ("/bin/sh"), with no "." or ".." components, and its parent
 * must be "/" or a dir listed on an earlier line (the kernel does not create
 * parents). MODE is octal permission bits (at most 07777). MAJOR and MINOR are
 * decimal. A bad line or a missing source stops the build with "LIST:LINE: why";
 * OUT is written to a temporary file beside it and replaces OUT only when
 * complete (src/base/file.h).
 *
 * libarchive writes the newc format. What makes the bytes the same on every
 * run is what each entry is given here, not anything the host has: inode
 * numbers count from 721 in list order (the trailer, written by libarchive,
 * has 0), nlink is 2 for a dir and 1 otherwise, uid, gid, mtime and st_dev
 * are 0, and a name has no leading '/'. The archive ends right after the
 * trailer, with no block padding. (libarchive writes the header's hex digits
 * in lower case, the hand-written writer before it in upper case: the
 * kernel and cpio read either.)
 */
#include "base/file.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LINE   4096
#define MAX_PATH   1024
#define MAX_FIELDS 8
#define MAX_DIRS   4096
#define FIRST_INO  721

struct builder {
    struct archive *out;
    const char *out_name;
    const char *source_dir;
    const char *list_name;
    unsigned line_no;
    uint32_t next_ino;
    char *dirs[MAX_DIRS];   /* directories listed so far, for parent checks */
    size_t ndirs;
};

static void __attribute__((format(printf, 2, 3)))
line_error(const struct builder *b, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "mkinitramfs: %s:%u: ", b->list_name, b->line_no);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* --- output ------------------------------------------------------------ */

/* "writing OUT: WHY", WHY being libarchive's words and, when a system call
 * failed (its errno is then positive), strerror's: libarchive says only
 * "Write error" for a full disk. */
static void say_write_failed(struct archive *a, const char *out_name)
{
    const char *why = archive_error_string(a);
    int e = archive_errno(a);
    fprintf(stderr, "mkinitramfs: writing %s: %s%s%s\n", out_name, why ? why : "unknown error",
            e > 0 ? ": " : "", e > 0 ? strerror(e) : "");
}

static bool write_failed(const struct builder *b)
{
    say_write_failed(b->out, b->out_name);
    return false;
}

/* An entry with what every entry shares (see the top of this file); name
 * is PATH without its leading '/'. NULL when out of memory. */
static struct archive_entry *new_entry(struct builder *b, const char *path, mode_t mode)
{
    struct archive_entry *e = archive_entry_new();
    if (!e) {
        line_error(b, "out of memory");
        return NULL;
    }
    archive_entry_set_pathname(e, path + 1);
    archive_entry_set_mode(e, mode);
    archive_entry_set_ino(e, b->next_ino++);
    archive_entry_set_nlink(e, S_ISDIR(mode) ? 2 : 1);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_size(e, 0); /* libarchive wants it set; a file's comes later */
    return e;
}

/* Writes e's header and frees e. Anything short of ARCHIVE_OK (a warning
 * too: a field that did not fit) fails, as the entry would not be the one
 * asked for. */
static bool write_header(struct builder *b, struct archive_entry *e)
{
    int r = archive_write_header(b->out, e);
    archive_entry_free(e);
    return r == ARCHIVE_OK || write_failed(b);
}

static bool write_data(struct builder *b, const void *data, size_t len)
{
    la_ssize_t n = archive_write_data(b->out, data, len);
    return (n >= 0 && (size_t)n == len) || write_failed(b);
}

/* --- checks ------------------------------------------------------------- */

static bool parse_mode(const struct builder *b, const char *s, uint32_t *mode)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 8);
    if (errno || end == s || *end || v > 07777) {
        line_error(b, "bad MODE '%s': want octal permission bits, at most 07777", s);
        return false;
    }
    *mode = (uint32_t)v;
    return true;
}

static bool parse_number(const struct builder *b, const char *what, const char *s,
                         unsigned long max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max) {
        line_error(b, "bad %s '%s': want a decimal number up to %lu", what, s, max);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* PATH: absolute, no empty, "." or ".." components, no trailing '/'. */
static bool check_path(const struct builder *b, const char *path)
{
    size_t len = strlen(path);
    if (path[0] != '/' || len < 2 || len >= MAX_PATH || path[len - 1] == '/') {
        line_error(b, "bad PATH '%s': want an absolute path like /bin/sh (under %d bytes)",
                   path, MAX_PATH);
        return false;
    }
    for (const char *c = path; *c; ) {
        const char *next = strchr(c + 1, '/');
        size_t clen = (size_t)((next ? next : path + len) - (c + 1));
        if (clen == 0 || (clen == 1 && c[1] == '.') || (clen == 2 && c[1] == '.' && c[2] == '.')) {
            line_error(b, "bad PATH '%s': empty, '.' or '..' component", path);
            return false;
        }
        if (!next)
            break;
        c = next;
    }
    return true;
}

static bool parent_listed(const struct builder *b, const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t plen = (size_t)(slash - path);
    if (plen == 0)
        return true;   /* parent is "/" */
    for (size_t i = 0; i < b->ndirs; i++)
        if (strlen(b->dirs[i]) == plen && !memcmp(b->dirs[i], path, plen))
            return true;
    line_error(b, "the parent of '%s' is not a dir listed above (add `dir %.*s 0755` first)",
               path, (int)plen, path);
    return false;
}

static bool check_new_path(const struct builder *b, const char *path)
{
    return check_path(b, path) && parent_listed(b, path);
}

static bool remember_dir(struct builder *b, const char *path)
{
    if (b->ndirs == MAX_DIRS) {
        line_error(b, "too many dirs (at most %d)", MAX_DIRS);
        return false;
    }
    b->dirs[b->ndirs] = strdup(path);
    if (!b->dirs[b->ndirs]) {
        line_error(b, "out of memory");
        return false;
    }
    b->ndirs++;
    return true;
}

/* --- entries ------------------------------------------------------------ */

static bool add_dir(struct builder *b, char **f)
{
    uint32_t perm;
    if (!check_new_path(b, f[1]) || !parse_mode(b, f[2], &perm))
        return false;
    struct archive_entry *e = new_entry(b, f[1], S_IFDIR | perm);
    return e && write_header(b, e) && remember_dir(b, f[1]);
}

static bool parse_device_type(const struct builder *b, const char *s, mode_t *type)
{
    if (!strcmp(s, "c"))
        *type = S_IFCHR;
    else if (!strcmp(s, "b"))
        *type = S_IFBLK;
    else {
        line_error(b, "bad device type '%s': want c or b", s);
        return false;
    }
    return true;
}

static bool add_nod(struct builder *b, char **f)
{
    uint32_t perm, major, minor;
    mode_t type;
    if (!check_new_path(b, f[1]) || !parse_mode(b, f[2], &perm) ||
        !parse_device_type(b, f[3], &type) ||
        !parse_number(b, "MAJOR", f[4], 4095, &major) ||
        !parse_number(b, "MINOR", f[5], 1048575, &minor))
        return false;
    struct archive_entry *e = new_entry(b, f[1], type | perm);
    if (!e)
        return false;
    archive_entry_set_rdevmajor(e, major);
    archive_entry_set_rdevminor(e, minor);
    return write_header(b, e);
}

/* libarchive writes the target as the entry's data. */
static bool add_slink(struct builder *b, char **f)
{
    if (!check_new_path(b, f[1]))
        return false;
    if (strlen(f[2]) >= MAX_PATH) {
        line_error(b, "symlink TARGET longer than %d bytes", MAX_PATH - 1);
        return false;
    }
    struct archive_entry *e = new_entry(b, f[1], S_IFLNK | 0777);
    if (!e)
        return false;
    archive_entry_set_symlink(e, f[2]);
    return write_header(b, e);
}

/* Exactly size bytes of fd: the header already promised that many. */
static bool copy_data(struct builder *b, int fd, const char *source, uint32_t size)
{
    char buf[65536];
    uint32_t left = size;
    while (left > 0) {
        size_t want = left < sizeof buf ? left : sizeof buf;
        ssize_t got = read(fd, buf, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            line_error(b, "reading %s: %s", source, got < 0 ? strerror(errno) : "it shrank while being read");
            return false;
        }
        if (!write_data(b, buf, (size_t)got))
            return false;
        left -= (uint32_t)got;
    }
    return true;
}

/* SOURCE's path: relative to -C DIR unless absolute. */
static bool source_path(const struct builder *b, const char *source, char *out, size_t cap)
{
    int n = source[0] == '/' ? snprintf(out, cap, "%s", source)
                             : snprintf(out, cap, "%s/%s", b->source_dir, source);
    if (n < 0 || (size_t)n >= cap) {
        line_error(b, "SOURCE path too long");
        return false;
    }
    return true;
}

/* The header (type, permissions, size) and data of the open SOURCE fd. */
static bool add_file_data(struct builder *b, const char *path, uint32_t perm, int fd,
                          const char *source)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        line_error(b, "stat %s: %s", source, strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        line_error(b, "SOURCE %s is not a regular file", source);
        return false;
    }
    if ((uint64_t)st.st_size > UINT32_MAX) {
        line_error(b, "SOURCE %s is over 4 GiB, more than newc can hold", source);
        return false;
    }
    struct archive_entry *e = new_entry(b, path, S_IFREG | perm);
    if (!e)
        return false;
    archive_entry_set_size(e, st.st_size);
    return write_header(b, e) && copy_data(b, fd, source, (uint32_t)st.st_size);
}

static bool add_file(struct builder *b, char **f)
{
    char source[PATH_MAX];
    uint32_t perm;
    if (!check_new_path(b, f[1]) || !parse_mode(b, f[3], &perm) ||
        !source_path(b, f[2], source, sizeof source))
        return false;
    int fd = open(source, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        line_error(b, "cannot open SOURCE %s: %s", source, strerror(errno));
        return false;
    }
    bool ok = add_file_data(b, f[1], perm, fd, source);
    close(fd);
    return ok;
}

/* --- the list ------------------------------------------------------------ */

struct kind {
    const char *word;
    int nfields;          /* including the word */
    const char *syntax;
    bool (*add)(struct builder *b, char **fields);
};

static const struct kind kinds[] = {
    { "dir",   3, "dir PATH MODE",                 add_dir },
    { "file",  4, "file PATH SOURCE MODE",         add_file },
    { "nod",   6, "nod PATH MODE c|b MAJOR MINOR", add_nod },
    { "slink", 3, "slink PATH TARGET",             add_slink },
};

static bool add_line(struct builder *b, char *line)
{
    char *fields[MAX_FIELDS + 1];
    int n = 0;
    char *save = NULL;
    line += strspn(line, " \t");
    if (line[0] == '#')
        return true;
    for (char *tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == MAX_FIELDS) {
            line_error(b, "too many fields");
            return false;
        }
        fields[n++] = tok;
    }
    if (n == 0)
        return true;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(fields[0], kinds[i].word))
            continue;
        if (n != kinds[i].nfields) {
            line_error(b, "'%s' takes %d fields: %s", kinds[i].word, kinds[i].nfields - 1, kinds[i].syntax);
            return false;
        }
        return kinds[i].add(b, fields);
    }
    line_error(b, "unknown entry type '%s' (want dir, file, nod or slink)", fields[0]);
    return false;
}

static bool add_list(struct builder *b, FILE *list)
{
    char line[MAX_LINE];
    while (fgets(line, sizeof line, list)) {
        b->line_no++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(list)) {
            line_error(b, "line longer than %d bytes", MAX_LINE - 2);
            return false;
        }
        if (!add_line(b, line))
            return false;
    }
    if (ferror(list)) {
        fprintf(stderr, "mkinitramfs: reading %s: %s\n", b->list_name, strerror(errno));
        return false;
    }
    return true; /* the trailer: archive_write_close writes it */
}

static int usage(void)
{
    fprintf(stderr, "usage: mkinitramfs -o OUT [-C DIR] LIST\n"
                    "  builds a newc cpio archive from LIST (see the top of tools/mkinitramfs.c)\n");
    return 2;
}

/* A newc writer onto fd, or NULL (said on stderr). */
static struct archive *open_archive(int fd, const char *out_name)
{
    struct archive *a = archive_write_new();
    if (!a) {
        fprintf(stderr, "mkinitramfs: out of memory\n");
        return NULL;
    }
    /* Bytes in the last block 1: the archive ends at its trailer instead of
     * being padded with zeros to a whole 10 KiB block, as it always has. */
    if (archive_write_set_format_cpio_newc(a) != ARCHIVE_OK ||
        archive_write_add_filter_none(a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open_fd(a, fd) != ARCHIVE_OK) {
        say_write_failed(a, out_name);
        archive_write_free(a);
        return NULL;
    }
    return a;
}

/* The whole archive of the list into fd (the temporary file). */
static bool write_archive(struct builder *b, FILE *list, int fd)
{
    b->out = open_archive(fd, b->out_name);
    if (!b->out)
        return false;
    bool ok = add_list(b, list);
    if (ok && archive_write_close(b->out) != ARCHIVE_OK)
        ok = write_failed(b);
    /* After a failure this also closes the archive, writing to a file that
     * is removed next; it must come before fd is closed. */
    archive_write_free(b->out);
    b->out = NULL;
    return ok;
}

static bool begin_output(struct atomic_file *f, const char *out_name)
{
    f->tmp_path[0] = '\0';
    if (atomic_file_begin(f, out_name, 0666))
        return true;
    if (!f->tmp_path[0])
        fprintf(stderr, "mkinitramfs: output path too long\n");
    else
        fprintf(stderr, "mkinitramfs: cannot create %s: %s\n", f->tmp_path, strerror(errno));
    return false;
}

int main(int argc, char **argv)
{
    const char *out_name = NULL, *source_dir = ".";
    int opt;
    while ((opt = getopt(argc, argv, "o:C:h")) != -1) {
        switch (opt) {
        case 'o': out_name = optarg; break;
        case 'C': source_dir = optarg; break;
        default: return usage();
        }
    }
    if (!out_name || optind != argc - 1)
        return usage();

    struct builder b = { .out_name = out_name, .source_dir = source_dir,
                         .list_name = argv[optind], .next_ino = FIRST_INO };
    FILE *list = fopen(b.list_name, "r");
    if (!list) {
        fprintf(stderr, "mkinitramfs: cannot open list %s: %s\n", b.list_name, strerror(errno));
        return 1;
    }
    struct atomic_file f;
    bool ok = begin_output(&f, out_name) && write_archive(&b, list, f.fd);
    fclose(list);
    if (ok && !atomic_file_commit(&f)) {
        fprintf(stderr, "mkinitramfs: rename %s to %s: %s\n", f.tmp_path, out_name, strerror(errno));
        ok = false;
    } else if (!ok) {
        atomic_file_abort(&f);
    }
    for (size_t i = 0; i < b.ndirs; i++)
        free(b.dirs[i]);
    return ok ? 0 : 1;
}
