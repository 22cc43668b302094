/*
 * A scratch folder for the fuzz targets that read and write files (the
 * image sources, the blob store): on /dev/shm when it is usable (a tmpfs:
 * the store's fsyncs cost nothing), else $TMPDIR or /tmp. Made once per
 * process, emptied between inputs, removed when the process exits.
 */
#ifndef SM_FUZZ_SCRATCH_H
#define SM_FUZZ_SCRATCH_H

#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch_root[256];

static inline int scratch_remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    if (ftw->level > 0)
        remove(path);
    return 0;
}

/* Deletes everything below dir (dir itself stays). */
static inline void scratch_empty(const char *dir)
{
    nftw(dir, scratch_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void scratch_remove(void)
{
    if (scratch_root[0]) {
        scratch_empty(scratch_root);
        rmdir(scratch_root);
    }
}

/* Makes the scratch folder (once) and returns it; NULL when it cannot. */
static inline const char *scratch_dir(const char *name)
{
    if (scratch_root[0])
        return scratch_root;
    const char *tmp = getenv("TMPDIR");
    const char *bases[] = {"/dev/shm", tmp && tmp[0] ? tmp : "/tmp", "/tmp"};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        snprintf(scratch_root, sizeof scratch_root, "%s/sm-%s-XXXXXX", bases[i], name);
        if (mkdtemp(scratch_root)) {
            atexit(scratch_remove);
            return scratch_root;
        }
    }
    scratch_root[0] = 0;
    return NULL;
}

#endif
