/*
 * A bundle's config.json (the OCI runtime spec's configuration), as the
 * runtime reads it: parsed into plain data, every field bounded and its type
 * checked. The table of what is read, and what is refused, is at the top of
 * config.c.
 */
#ifndef SM_RUNTIME_CONFIG_H
#define SM_RUNTIME_CONFIG_H

#include "supermachine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits: a config past one is refused, naming the field. Generous beside
 * what engines write (podman's configs are a few KiB; its env tens of
 * entries), small beside what a hostile file could make us allocate. */
#define RT_CONFIG_MAX_BYTES    (4u << 20) /* config.json itself */
#define RT_CONFIG_MAX_DEPTH    32         /* JSON nesting */
#define RT_CONFIG_MAX_ARGS     4096       /* process.args */
#define RT_CONFIG_MAX_ENV      4096       /* process.env */
#define RT_CONFIG_MAX_STRING   (128u << 10) /* one argument, variable, annotation value */
#define RT_CONFIG_MAX_PATH     4095       /* paths: cwd, root.path, mount source/destination */
#define RT_CONFIG_MAX_GIDS     256        /* process.user.additionalGids */
#define RT_CONFIG_MAX_RLIMITS  32         /* process.rlimits (Linux has 16) */
#define RT_CONFIG_MAX_MOUNTS   256        /* mounts */
#define RT_CONFIG_MAX_MOUNT_OPTIONS 64    /* mounts[].options */
#define RT_CONFIG_MAX_SHORT    255        /* mount types and options, rlimit types, annotation keys */
#define RT_CONFIG_MAX_ANNOTATIONS 1024
#define RT_CONFIG_MAX_HOSTNAME 64         /* HOST_NAME_MAX */
#define RT_CONFIG_MAX_NAMESPACES 16       /* linux.namespaces (Linux has 8 kinds) */

struct rt_rlimit {
    char *type;     /* "RLIMIT_NOFILE"... */
    int resource;   /* its number, RLIMIT_NOFILE... */
    uint64_t soft;
    uint64_t hard;
};

struct rt_mount {
    char *destination; /* absolute, in the container */
    char *type;        /* NULL when absent (a bind mount) */
    char *source;      /* NULL when absent */
    char **options;
    size_t noptions;
};

struct rt_annotation {
    char *key;
    char *value;
};

struct rt_config {
    char *oci_version;

    bool has_process;
    bool terminal;
    uint16_t console_height, console_width; /* 0: not given */
    uint32_t uid, gid;
    uint32_t *additional_gids;
    size_t ngids;
    char **args;       /* NULL-terminated, nargs entries */
    size_t nargs;
    char **env;        /* NULL-terminated, KEY=VALUE each */
    size_t nenv;
    char *cwd;         /* absolute */
    struct rt_rlimit *rlimits;
    size_t nrlimits;

    char *root_path;   /* as written: relative to the bundle, or absolute */
    bool root_readonly;
    char *hostname;    /* NULL when absent */

    struct rt_mount *mounts;
    size_t nmounts;
    struct rt_annotation *annotations;
    size_t nannotations;

    /* linux.resources: has_* say whether the field was given. */
    bool has_memory_limit;
    int64_t memory_limit;  /* bytes; -1 is unlimited */
    bool has_cpu_quota, has_cpu_period, has_cpu_shares;
    int64_t cpu_quota;     /* microseconds per period; -1 is unlimited */
    uint64_t cpu_period;   /* microseconds */
    uint64_t cpu_shares;

    /* linux.namespaces' "network" entry: the network the VM's NAT sends
     * from. Absent: the runtime's own; a path: that namespace (the
     * engine's); no path: a new, empty one (no network). */
    bool has_net_namespace;
    char *net_namespace_path; /* NULL: a new namespace */
};

/* Parses len bytes of JSON into *out (zeroed first, so that rt_config_free
 * is always safe). SM_E_INVALID names the field and says what is wrong;
 * SM_E_LIMIT names the limit passed; SM_E_UNSUPPORTED names a field this
 * runtime refuses. On failure *out holds nothing. */
sm_code rt_config_parse(const char *json, size_t len, struct rt_config *out, sm_error *err);
/* A process object alone (exec --process FILE), into the process fields
 * of *out; its messages name the fields as config.json's ("process.args"). */
sm_code rt_process_parse(const char *json, size_t len, struct rt_config *out, sm_error *err);
void rt_config_free(struct rt_config *c);

/* The value of an annotation, or NULL. */
const char *rt_config_annotation(const struct rt_config *c, const char *key);

#endif
