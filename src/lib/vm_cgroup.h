/*
 * A VMM's resource limits in a cgroup of its own (cgroup v2), where this
 * process has been delegated a part of the tree.
 *
 * Where: the nearest cgroup at or above ours (/proc/self/cgroup, under the
 * cgroup2 mount of /proc/self/mountinfo) that we may write into and whose
 * children get the memory, cpu and pids controllers. In it, a folder
 * "supermachine" (no processes, controllers passed on), and in that one
 * cgroup per VM, "<id>-<8 hex>", with:
 *
 *   file            value
 *   memory.max      the memory limit in bytes (VMM and guest RAM together)
 *   memory.swap.max 0 with a memory limit, where swap is accounted
 *   cpu.max         "<quota> 100000": millicpus * 100 us per 100 ms
 *   pids.max        VM_CGROUP_PIDS_MAX (the VMM's threads and stand-in)
 *
 * The VMM moves itself in first thing (--cgroup, before its cell), so every
 * page it touches is charged there. Its path is kept in the VM folder's
 * "cgroup" file, and the folder's removal removes the cgroup.
 */
#ifndef SM_LIB_VM_CGROUP_H
#define SM_LIB_VM_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "supermachine.h"

#define VM_CGROUP_FILE "cgroup"   /* in the VM folder: the cgroup's path */
#define VM_CGROUP_PIDS_MAX 64     /* 32 vCPUs at most, and a few threads more */

struct vm_limits {
    uint64_t memory_bytes;   /* 0: none */
    uint32_t cpu_millis;     /* 0: none; 1000 is one CPU */
};

/* Where this process's /proc files are (tests point them at a fake tree). */
struct cgroup_sources {
    const char *mountinfo;   /* default /proc/self/mountinfo */
    const char *self;        /* default /proc/self/cgroup */
};

/* The folder under which VM cgroups are made (the delegated parent plus
 * "/supermachine"), or SM_E_UNSUPPORTED with why there is none. With
 * create, it is made (and controllers passed on) as needed; without, this
 * only looks (doctor). src may be NULL. */
sm_code vm_cgroup_home(const struct cgroup_sources *src, bool create, char *out, size_t cap, sm_error *err);

/* Makes home/<id>-<random>, sets the limits, and writes its path to out. */
sm_code vm_cgroup_create(const char *home, const char *id, const struct vm_limits *l, char *out,
                         size_t cap, sm_error *err);

/* The cgroup path the VM folder (dir_fd) records; false when none. */
bool vm_cgroup_recorded(int dir_fd, char *out, size_t cap);

/* How many times the kernel killed a process of the cgroup for being over
 * its memory limit (memory.events oom_kill). */
uint64_t vm_cgroup_oom_kills(const char *path);

/* Removes a VM's cgroup once its processes are gone (a few tries while the
 * last of them ends). Only a path whose parent folder is "supermachine". */
void vm_cgroup_remove(const char *path);

#endif
