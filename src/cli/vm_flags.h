/*
 * The flags that shape a VM, for the commands that make one through the
 * public API: `start` takes them all, `run` the network ones, `pull` and
 * `bake` the size ones (src/cli/vm_flags.c). One table, one apply function,
 * so each flag means and checks the same everywhere.
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
    VM_FLAG_ALLOW,
    VM_FLAG_DENY,
    VM_FLAG_NET,
    VM_FLAG_MEMORY_LIMIT,
    VM_FLAG_CPU_LIMIT,
    VM_FLAG_VOLUME,
    VM_FLAG_VOLUME_SIZE,
    VM_FLAG_PUBLISH = 'p',
    VM_FLAG_LAST = VM_FLAG_VOLUME_SIZE,
};

/* --memory MIB, --cpus N: what an image is baked with, too. */
#define VM_FLAGS_SIZE                                           \
    { "memory", required_argument, NULL, VM_FLAG_MEMORY },      \
    { "cpus", required_argument, NULL, VM_FLAG_CPUS }
/* --kernel FILE, --initrd FILE, --console FILE, and --timeout S for the
 * boot (`run` has none of these: its --timeout is the command's). */
#define VM_FLAGS_BOOT                                                   \
    { "kernel", required_argument, NULL, VM_FLAG_KERNEL },              \
    { "initrd", required_argument, NULL, VM_FLAG_INITRD },              \
    { "console", required_argument, NULL, VM_FLAG_CONSOLE },            \
    { "timeout", required_argument, NULL, VM_FLAG_BOOT_TIMEOUT }

/* The guest's network, for `run` and `start`: --allow RULE, --deny RULE
 * (repeatable, in order), --net on|off, -p/--publish [HOSTIP:]HOSTPORT:GUESTPORT. */
#define VM_FLAGS_NET                                                    \
    { "allow", required_argument, NULL, VM_FLAG_ALLOW },                \
    { "deny", required_argument, NULL, VM_FLAG_DENY },                  \
    { "net", required_argument, NULL, VM_FLAG_NET },                    \
    { "publish", required_argument, NULL, VM_FLAG_PUBLISH }
#define VM_SHORT_FLAGS_NET "p:"
#define VM_FLAGS_NET_HELP                                                                     \
    "  --allow ADDR[/PREFIX][:PORT]|NAME[:PORT]  let the guest reach it (first match wins;\n"  \
    "                       the host's loopback is 10.0.2.2, e.g. --allow 10.0.2.2:8080)\n"    \
    "  --deny ...           keep the guest from it (the host, private and link-local\n"       \
    "                       ranges are denied unless allowed; the internet is not)\n"        \
    "  --net on|off         off: no network, only lo (default on)\n"                         \
    "  -p, --publish [HOSTIP:]HOSTPORT:GUESTPORT  the guest's port on the host\n"             \
    "                       (HOSTIP default 127.0.0.1; append /udp for UDP)\n"

/* The VMM's resource limits, for `run` and `start`: --memory-limit SIZE,
 * --cpu-limit CPUS (a cgroup v2 of its own, sm_vm_config_memory_limit). */
#define VM_FLAGS_LIMITS                                                  \
    { "memory-limit", required_argument, NULL, VM_FLAG_MEMORY_LIMIT },   \
    { "cpu-limit", required_argument, NULL, VM_FLAG_CPU_LIMIT }
#define VM_FLAGS_LIMITS_HELP                                                                  \
    "  --memory-limit SIZE  the VMM's memory, guest RAM included (bytes or K/M/G; at\n"      \
    "                       least 64M); past it the VM is killed\n"                         \
    "  --cpu-limit CPUS     the CPU time it may use, e.g. 0.5 or 2\n"                       \
    "                       (both: a cgroup v2 of its own, where one is delegated to us;\n" \
    "                       `supermachine doctor` says where, or why not)\n"

/* Volumes, for `run` and `start`: --volume SOURCE:GUEST_PATH[:ro]
 * (repeatable), --volume-size SIZE (sm_vm_config_volume). */
#define VM_FLAGS_VOLUMES                                                 \
    { "volume", required_argument, NULL, VM_FLAG_VOLUME },               \
    { "volume-size", required_argument, NULL, VM_FLAG_VOLUME_SIZE }
#define VM_FLAGS_VOLUMES_HELP                                                                 \
    "  --volume NAME|FILE:GUEST_PATH[:ro]  mount a volume (an ext4 disk that outlives\n"      \
    "                       the VM; a NAME is made on first use, see supermachine volume)\n" \
    "                       at GUEST_PATH, read-write unless :ro; at most 4\n"              \
    "  --volume-size SIZE   the size of a named volume made on first use (default 1G)\n"

static inline bool is_vm_flag(int c)
{
    return (c >= VM_FLAG_MEMORY && c <= VM_FLAG_LAST) || c == VM_FLAG_PUBLISH;
}

/* The flags only a boot uses: a VM restored from an image has the image's
 * memory, vCPUs, kernel and initramfs, so `start IMAGE` refuses them. */
static inline bool is_vm_boot_only_flag(int c)
{
    return c == VM_FLAG_MEMORY || c == VM_FLAG_CPUS || c == VM_FLAG_KERNEL || c == VM_FLAG_INITRD;
}

/* "--memory" for VM_FLAG_MEMORY, and so on, for messages. */
const char *vm_flag_name(int c);

/* Sets the VM flag c with its value arg on cfg; false after saying on
 * stderr which flag had a bad value (prog names the command). */
bool vm_flag_apply(const char *prog, sm_vm_config *cfg, int c, const char *arg);

#endif
