/* libFuzzer: layers_flatten must refuse any damage cleanly. The input is
 * one layer (any bytes: a tar, gzip or zstd, or noise), flattened alone and
 * as the second layer over a fixed base layer (folders, files, a symlink, a
 * hard link), so that whiteouts, replacements and links in the input meet
 * a real tree. The merged tar goes to /dev/null. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image/layers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int input_fd = -1, base_fd = -1, null_fd = -1;
static char input_path[64], base_path[64];

static void base_entry(struct archive *a, const char *path, unsigned type, const char *body, const char *link,
                       bool hard)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, path);
    if (hard) {
        archive_entry_set_hardlink(e, link);
    } else {
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, 0755);
        if (link)
            archive_entry_set_symlink(e, link);
        archive_entry_set_size(e, body ? (la_int64_t)strlen(body) : 0);
    }
    archive_write_header(a, e);
    if (body)
        archive_write_data(a, body, strlen(body));
    archive_entry_free(e);
}

static int setup(void)
{
    input_fd = memfd_create("fuzz-layer", 0);
    base_fd = memfd_create("fuzz-base", 0);
    null_fd = open("/dev/null", O_WRONLY);
    if (input_fd < 0 || base_fd < 0 || null_fd < 0)
        return -1;
    snprintf(input_path, sizeof input_path, "/proc/self/fd/%d", input_fd);
    snprintf(base_path, sizeof base_path, "/proc/self/fd/%d", base_fd);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_fd(a, base_fd);
    base_entry(a, "etc", AE_IFDIR, NULL, NULL, false);
    base_entry(a, "etc/passwd", AE_IFREG, "root:x:0:0\n", NULL, false);
    base_entry(a, "etc/hosts", AE_IFREG, "127.0.0.1 localhost\n", NULL, false);
    base_entry(a, "bin", AE_IFDIR, NULL, NULL, false);
    base_entry(a, "bin/sh", AE_IFREG, "#!", NULL, false);
    base_entry(a, "bin/bash", 0, NULL, "bin/sh", true);
    base_entry(a, "link", AE_IFLNK, NULL, "/etc", false);
    base_entry(a, "a/b/c/d", AE_IFREG, "deep", NULL, false);
    archive_write_close(a);
    archive_write_free(a);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (input_fd < 0 && setup() != 0)
        return 0;
    if (ftruncate(input_fd, 0) != 0 || pwrite(input_fd, data, size, 0) != (ssize_t)size)
        return 0;
    struct layers_stats st;
    sm_error err;
    const char *one[] = { input_path };
    layers_flatten(one, 1, null_fd, SM_PULL_DEFAULT_MAX_UNPACKED, &st, &err);
    /* A small cap too: the count that stops a bomb meets every kind of entry. */
    const char *two[] = { base_path, input_path };
    layers_flatten(two, 2, null_fd, 4096, &st, &err);
    return 0;
}
