/*
 * Room on the image store's file system (src/image/disk_space.c): checked
 * before an image's layers are fetched and before its root filesystem is
 * packed, and asked again after a write failed, to tell a full disk from
 * other failures. And sizes worded for messages.
 */
#ifndef SM_IMAGE_DISK_SPACE_H
#define SM_IMAGE_DISK_SPACE_H

#include "supermachine.h"

#include <stdbool.h>
#include <stdint.h>

/* After a write failed, less free space than this means the disk was full:
 * the largest single write of the image code (a squashfs block with its
 * tables, a 256 KiB copy chunk) is far below it. */
#define DISK_SPACE_FULL_BELOW (1u << 20)

#define SIZE_TEXT_MAX 48

/* "8 GiB", "1.5 MiB", "1000 bytes": the largest binary unit n reaches, with
 * one decimal when n is not a whole number of it. */
void size_text(uint64_t n, char out[SIZE_TEXT_MAX]);
/* The same, with the exact count after a rounded one: "1.1 MiB (1231872
 * bytes)"; "71 bytes" alone. For caps, where the last byte matters. */
void size_text_exact(uint64_t n, char out[SIZE_TEXT_MAX]);

/* Bytes an unprivileged writer may still put on the file system of path
 * (statvfs: f_bavail blocks of f_frsize; root may have a little more). */
sm_code disk_space_free(const char *path, uint64_t *free_bytes, sm_error *err);

/* SM_E_LIMIT, "not enough free space in DIR for WHAT: it needs N, only
 * M free: No space left on device", when the file system of dir has less
 * than need bytes free; SM_E_IO when it cannot be asked. */
sm_code disk_space_check(const char *dir, uint64_t need, const char *what, sm_error *err);

/* Is the file system of the open file fd (nearly) full? For a write that
 * failed where no errno reached us (a child process's). */
bool disk_space_full(int fd);

#endif
