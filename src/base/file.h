/*
 * Writing files whole, and replacing them atomically.
 *
 * Durability rule, the same for every file we replace (the image store, VM
 * state folders, snapshots, files the agent writes in the guest): the new
 * contents are fsync'd before the rename, and the folder after it. After a
 * crash a reader finds the old file or the whole new one, never a mix or an
 * empty file. On tmpfs, where most runtime state lives, fsync costs nothing.
 *
 * These functions report failure as false with errno set, so that the host
 * (sm_error) and the agent (its own replies) word their messages themselves.
 */
#ifndef SM_BASE_FILE_H
#define SM_BASE_FILE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Writes all of buf, through short writes and EINTR. */
bool write_all(int fd, const void *buf, size_t len);

/* A file being replaced: written to a temporary name beside it, made
 * visible under its name by atomic_file_commit. */
struct atomic_file {
    int fd;
    int dir_fd; /* paths are relative to this folder (AT_FDCWD: the usual) */
    char path[PATH_MAX];
    char tmp_path[PATH_MAX];
};

/* Creates the temporary file (exclusive, close-on-exec) with the given mode;
 * false (ENAMETOOLONG for a path too long) if it cannot. */
bool atomic_file_begin(struct atomic_file *f, const char *path, mode_t mode);
/* The same, path relative to the open folder dir_fd (a process that can no
 * longer name the folder, such as the VMM in its cell, is handed one). */
bool atomic_file_begin_at(struct atomic_file *f, int dir_fd, const char *path, mode_t mode);
/* fsync, close, rename over the path, fsync the folder. On failure the
 * temporary file is removed and errno says why. Always closes. */
bool atomic_file_commit(struct atomic_file *f);
/* Closes and removes the temporary file, keeping errno. */
void atomic_file_abort(struct atomic_file *f);

/* The whole of data as path's new contents, by the rule above. */
bool write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
bool write_file_atomic_at(int dir_fd, const char *path, const void *data, size_t len, mode_t mode);

/* fsyncs the folder holding path, so that a rename or create in it lasts. */
bool fsync_parent_dir(const char *path);

/* Whether path is a folder (not a link) of this user that nobody else may
 * write into (no group or other write bit; with private_only, no access at
 * all for others). False with errno when it cannot be examined, or with
 * errno 0 when it fails the test (*st then says how). */
bool dir_is_ours(const char *path, bool private_only, struct stat *st);

/* Creates (or truncates) path for writing, mode 0600, not through a link:
 * the files of our stores are the user's alone. NULL with errno. */
FILE *file_create_private(const char *path);

/* Opens an existing file to read, without hanging on what may have been
 * planted in its place: O_NONBLOCK for the open (a FIFO's would wait for a
 * writer forever), fstat, then the flag cleared. follow false adds
 * O_NOFOLLOW, for files that a link is never meant to stand for. Only a
 * regular file, or a block device when block_ok, is accepted. Returns the
 * fd (close-on-exec) and fills *st, or -1 with errno: ELOOP for a link,
 * EINVAL for any other kind of file. */
int file_open_read(const char *path, bool follow, bool block_ok, struct stat *st);

/* Kernel interface files (sysfs, cgroupfs, /proc): a few bytes in one
 * read(2) or write(2), which is how such files want to be used. The read
 * takes at most cap - 1 bytes and ends them with a NUL; both open with
 * O_NONBLOCK and keep errno on failure. */
bool file_read_text(const char *path, char *buf, size_t cap);
bool file_write_text(const char *path, const char *text);

#endif
