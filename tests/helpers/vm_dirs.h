/* Folders and processes as the VM tests (tests/vm) count them: what a VM
 * leaves behind is a folder in its store and a VMM process. */
#ifndef SM_TESTS_HELPERS_VM_DIRS_H
#define SM_TESTS_HELPERS_VM_DIRS_H

#include <stdbool.h>

/* Entries of a folder whose names do not start with '.'; 0 when it cannot
 * be opened (a VM folder not made yet holds no VM). */
int count_visible_entries(const char *dir);
/* Entries of a folder, "." and ".." aside; -1 when it cannot be opened. */
int count_entries(const char *dir);
/* A process exists (zombies included: an unreaped VMM is left behind too). */
bool process_exists(int pid);

#endif
