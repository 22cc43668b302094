/* A small file system for tests of a full disk: a tmpfs of a few bytes,
 * mounted in a child process's own mount namespace, so that nothing of the
 * host's mounts changes and the tmpfs goes away with the child. */
#ifndef SM_TESTS_HELPERS_SMALL_FS_H
#define SM_TESTS_HELPERS_SMALL_FS_H

#include <stdint.h>

/* What small_fs_run returns when this host cannot give a child a mount of
 * its own (neither root nor user namespaces): the caller skips. */
#define SMALL_FS_UNAVAILABLE 77

/* Runs fn(arg) in a child that sees a tmpfs of `bytes` at dir (an existing
 * folder). fn must not use cmocka's asserts (they would unwind into the
 * child's copy of the test runner): it prints what went wrong and returns
 * non-zero. The result: fn's value, SMALL_FS_UNAVAILABLE, or 1 for a child
 * that died. */
int small_fs_run(const char *dir, uint64_t bytes, int (*fn)(void *arg), void *arg);

#endif
