/*
 * The flags that shape a VM, for the commands that make one through the
 * public API: `start` takes them all, `pull` and `bake` the size ones
 * (src/cli/vm_flags.c). One table, one apply function, so each flag means
 * and checks the same everywhere.
 */
#ifndef SM_CLI_VM_FLAGS_H
#define SM_CLI_VM_FLAGS_H

#include <stdbool.h>

#include "cli/flags.h"
#include "supermachine.h"

enum vm_flag {
    VM_FLAG_MEMORY = FLAG_BLOCK_VM,
    VM_FLAG_CPUS,
    VM_FLAG_KERNEL,
    VM_FLAG_INITRD,
    VM_FLAG_CONSOLE,
    VM_FLAG_BOOT_TIMEOUT,
    VM_FLAG_LAST = VM_FLAG_BOOT_TIMEOUT,
};

/* --memory MIB, --cpus N: what an image is baked with, too. */
#define VM_FLAGS_SIZE                                           \
    { "memory", required_argument, NULL, VM_FLAG_MEMORY },      \
    { "cpus", required_argument, NULL, VM_FLAG_CPUS }
/* --kernel FILE, --initrd FILE, --console FILE, and --timeout S for the
 * boot (`run` has no VM flags: its --timeout is the command's). */
#define VM_FLAGS_BOOT                                                   \
    { "kernel", required_argument, NULL, VM_FLAG_KERNEL },              \
    { "initrd", required_argument, NULL, VM_FLAG_INITRD },              \
    { "console", required_argument, NULL, VM_FLAG_CONSOLE },            \
    { "timeout", required_argument, NULL, VM_FLAG_BOOT_TIMEOUT }

static inline bool is_vm_flag(int c)
{
    return c >= VM_FLAG_MEMORY && c <= VM_FLAG_LAST;
}

/* Sets the VM flag c with its value arg on cfg; false after saying on
 * stderr which flag had a bad value (prog names the command). */
bool vm_flag_apply(const char *prog, sm_vm_config *cfg, int c, const char *arg);

#endif
