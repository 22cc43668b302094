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
 * OUT is written to OUT.tmp and renamed only when complete.
 *
 * The newc format (all numbers are 8 hex digits, ASCII):
 *
 *   offset  size  field
 *   0       6     magic "070701"
 *   6       8     inode number (distinct per entry here)
 *   14      8     mode (file type bits | permissions)
 *   22      8     uid                       30  8  gid
 *   38      8     nlink                     46  8  mtime
 *   54      8     file size (data bytes; for a symlink, its target's length)
 *   62      8     dev major                 70  8  dev minor
 *   78      8     rdev major                86  8  rdev minor (device nodes)
 *   94      8     name size (with the NUL)  102 8  check (0)
 *   110           name, NUL, padded to a multiple of 4; then data, padded to 4
 *
 * The archive ends with an entry named "TRAILER!!!".
 */
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

struct builder {
    FILE *out;
    const char *out_name;
    const char *source_dir;
    const char *list_name;
    unsigned line_no;
    uint32_t next_ino;
    uint64_t written;
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

static bool write_bytes(struct builder *b, const void *data, size_t len)
{
    if (len && fwrite(data, 1, len, b->out) != len) {
        fprintf(stderr, "mkinitramfs: writing %s: %s\n", b->out_name, strerror(errno));
        return false;
    }
    b->written += len;
    return true;
}

static bool pad4(struct builder *b)
{
    static const char zeros[4];
    size_t rem = (size_t)(b->written % 4);
    return rem == 0 || write_bytes(b, zeros, 4 - rem);
}

struct entry {
    const char *name;    /* without the leading '/' */
    uint32_t mode;       /* type bits | permissions */
    uint32_t size;
    uint32_t rdev_major, rdev_minor;
};

static bool write_header(struct builder *b, const struct entry *e)
{
    char hdr[111];
    size_t name_size = strlen(e->name) + 1;
    uint32_t nlink = S_ISDIR(e->mode) ? 2 : 1;
    int n = snprintf(hdr, sizeof hdr,
                     "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
                     b->next_ino++, e->mode, 0u, 0u, nlink, 0u, e->size,
                     0u, 0u, e->rdev_major, e->rdev_minor, (uint32_t)name_size, 0u);
    if (n != 110) {
        fprintf(stderr, "mkinitramfs: internal error: header of %d bytes\n", n);
        return false;
    }
    return write_bytes(b, hdr, 110) && write_bytes(b, e->name, name_size) && pad4(b);
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
    struct entry e = { .name = f[1] + 1 };
    if (!check_new_path(b, f[1]) || !parse_mode(b, f[2], &e.mode))
        return false;
    e.mode |= S_IFDIR;
    return write_header(b, &e) && remember_dir(b, f[1]);
}

static bool add_nod(struct builder *b, char **f)
{
    struct entry e = { .name = f[1] + 1 };
    if (!check_new_path(b, f[1]) || !parse_mode(b, f[2], &e.mode))
        return false;
    if (!strcmp(f[3], "c"))
        e.mode |= S_IFCHR;
    else if (!strcmp(f[3], "b"))
        e.mode |= S_IFBLK;
    else {
        line_error(b, "bad device type '%s': want c or b", f[3]);
        return false;
    }
    return parse_number(b, "MAJOR", f[4], 4095, &e.rdev_major) &&
           parse_number(b, "MINOR", f[5], 1048575, &e.rdev_minor) &&
           write_header(b, &e);
}

static bool add_slink(struct builder *b, char **f)
{
    struct entry e = { .name = f[1] + 1, .mode = S_IFLNK | 0777 };
    size_t tlen = strlen(f[2]);
    if (!check_new_path(b, f[1]))
        return false;
    if (tlen >= MAX_PATH) {
        line_error(b, "symlink TARGET longer than %d bytes", MAX_PATH - 1);
        return false;
    }
    e.size = (uint32_t)tlen;
    return write_header(b, &e) && write_bytes(b, f[2], tlen) && pad4(b);
}

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
        if (!write_bytes(b, buf, (size_t)got))
            return false;
        left -= (uint32_t)got;
    }
    return pad4(b);
}

static bool add_file(struct builder *b, char **f)
{
    struct entry e = { .name = f[1] + 1 };
    char source[PATH_MAX];
    struct stat st;
    if (!check_new_path(b, f[1]) || !parse_mode(b, f[3], &e.mode))
        return false;
    int n = f[2][0] == '/' ? snprintf(source, sizeof source, "%s", f[2])
                           : snprintf(source, sizeof source, "%s/%s", b->source_dir, f[2]);
    if (n < 0 || (size_t)n >= sizeof source) {
        line_error(b, "SOURCE path too long");
        return false;
    }
    int fd = open(source, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        line_error(b, "cannot open SOURCE %s: %s", source, strerror(errno));
        return false;
    }
    bool ok = false;
    if (fstat(fd, &st) < 0)
        line_error(b, "stat %s: %s", source, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        line_error(b, "SOURCE %s is not a regular file", source);
    else if ((uint64_t)st.st_size > UINT32_MAX)
        line_error(b, "SOURCE %s is over 4 GiB, more than newc can hold", source);
    else {
        e.mode |= S_IFREG;
        e.size = (uint32_t)st.st_size;
        ok = write_header(b, &e) && copy_data(b, fd, source, e.size);
    }
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
    struct entry trailer = { .name = "TRAILER!!!" };
    b->next_ino = 0;
    return write_header(b, &trailer);
}

static int usage(void)
{
    fprintf(stderr, "usage: mkinitramfs -o OUT [-C DIR] LIST\n"
                    "  builds a newc cpio archive from LIST (see the top of tools/mkinitramfs.c)\n");
    return 2;
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
                         .list_name = argv[optind], .next_ino = 721 };
    FILE *list = fopen(b.list_name, "r");
    if (!list) {
        fprintf(stderr, "mkinitramfs: cannot open list %s: %s\n", b.list_name, strerror(errno));
        return 1;
    }
    char tmp_name[PATH_MAX];
    if (snprintf(tmp_name, sizeof tmp_name, "%s.tmp", out_name) >= (int)sizeof tmp_name) {
        fprintf(stderr, "mkinitramfs: output path too long\n");
        fclose(list);
        return 1;
    }
    b.out = fopen(tmp_name, "wb");
    if (!b.out) {
        fprintf(stderr, "mkinitramfs: cannot create %s: %s\n", tmp_name, strerror(errno));
        fclose(list);
        return 1;
    }
    bool ok = add_list(&b, list);
    fclose(list);
    if (fclose(b.out) != 0 && ok) {
        fprintf(stderr, "mkinitramfs: writing %s: %s\n", tmp_name, strerror(errno));
        ok = false;
    }
    if (ok && rename(tmp_name, out_name) != 0) {
        fprintf(stderr, "mkinitramfs: rename %s to %s: %s\n", tmp_name, out_name, strerror(errno));
        ok = false;
    }
    if (!ok)
        unlink(tmp_name);
    for (size_t i = 0; i < b.ndirs; i++)
        free(b.dirs[i]);
    return ok ? 0 : 1;
}
