/*
 * config.json's bind mounts, as a VM can take them. A VM shares no file
 * system with the host, so a bind mount of a single file (what engines add
 * for /etc/hosts, /etc/hostname, /etc/resolv.conf, /run/.containerenv,
 * secrets) is copied into the guest when the process starts: the container
 * reads the file as it was then, and what it writes there stays in the VM.
 *
 *   mounts[] entry                               here
 *   -------------------------------------------  ---------------------------------
 *   bind (type "bind", or option bind/rbind) of  copied in at start, mode kept,
 *     a regular file, <= RT_BIND_FILE_MAX        all together <= RT_BIND_TOTAL_MAX
 *   bind of a folder on /dev/shm (the engine's   the guest's own /dev/shm
 *     shared memory)
 *   bind of a folder, a device, a socket         refused at create, naming it
 *   proc, sysfs, devpts, mqueue, cgroup, tmpfs   the guest's own (its agent mounts
 *     (any other type)                           /proc, /sys, /dev, /tmp, /run)
 */
#ifndef SM_RUNTIME_BINDS_H
#define SM_RUNTIME_BINDS_H

#include "runtime/config.h"
#include "supermachine.h"

#define RT_BIND_FILE_MAX  (1u << 20)
#define RT_BIND_TOTAL_MAX (16u << 20)

/* SM_E_UNSUPPORTED naming the first bind mount that is not a regular file
 * (or is too large); SM_E_NOTFOUND when a source is missing. */
sm_code rt_binds_check(const struct rt_config *cfg, sm_error *err);

/* Stages each bind-mounted file in b, at its destination. */
sm_code rt_binds_stage(sm_exec_builder *b, const struct rt_config *cfg, sm_error *err);

#endif
