/*
 * config.json, the OCI runtime spec's container configuration, read as
 * hostile input: strict JSON, at most RT_CONFIG_MAX_BYTES and
 * RT_CONFIG_MAX_DEPTH deep, every field's type checked, every count and
 * length bounded (config.h), and an error that names the field.
 *
 * The container is a VM, so the kernel-isolation fields of the spec
 * (namespaces, capabilities, seccomp, AppArmor, SELinux, masked paths) have
 * nothing to configure: the VM is the boundary. They are accepted and not
 * read. Fields that would change what the container's program sees, and
 * that this runtime cannot honour, are refused.
 *
 *   field                              here
 *   ---------------------------------  -----------------------------------------
 *   ociVersion                         REQUIRED, "1.x[.y...]"; other majors refused
 *   process                            required by create (start runs it)
 *     .terminal                        bool
 *     .consoleSize.height/.width       0..65535
 *     .user.uid/.gid                   REQUIRED, 0..4294967295
 *     .user.additionalGids             <= RT_CONFIG_MAX_GIDS
 *     .user.umask, .user.username      accepted, not read
 *     .args                            REQUIRED, 1..RT_CONFIG_MAX_ARGS strings
 *     .commandLine                     refused (Windows only)
 *     .env                             <= RT_CONFIG_MAX_ENV, each KEY=VALUE
 *     .cwd                             REQUIRED, absolute
 *     .rlimits[].type/.soft/.hard      RLIMIT_* names, soft <= hard
 *     .capabilities, .noNewPrivileges,
 *     .apparmorProfile, .oomScoreAdj,
 *     .selinuxLabel, .ioPriority,
 *     .scheduler, .execCPUAffinity     accepted, not read (the VM isolates)
 *   root.path                          REQUIRED, relative to the bundle or absolute
 *   root.readonly                      bool
 *   hostname                           <= RT_CONFIG_MAX_HOSTNAME
 *   domainname                         accepted, not read
 *   mounts[].destination               REQUIRED, absolute
 *   mounts[].type/.source              strings
 *   mounts[].options                   <= RT_CONFIG_MAX_MOUNT_OPTIONS strings
 *   mounts[].uidMappings/.gidMappings  refused (id-mapped mounts)
 *   hooks                              refused when any hook is given: hooks
 *                                      run host programs against the
 *                                      container's namespaces, which a VM has not
 *   annotations                        string -> string, <= RT_CONFIG_MAX_ANNOTATIONS
 *   linux.resources.memory.limit       int64 (-1: unlimited)
 *   linux.resources.cpu.quota          int64 (-1: unlimited)
 *   linux.resources.cpu.period/.shares uint64
 *   linux.namespaces[].type/.path      <= RT_CONFIG_MAX_NAMESPACES; "network"
 *                                      read (the namespace the VM's NAT sends
 *                                      from), the other kinds not
 *   linux.uidMappings,
 *   .gidMappings, .devices, .seccomp,
 *   .maskedPaths, .readonlyPaths,
 *   .cgroupsPath, .sysctl, the other
 *   linux.resources, ...               accepted, not read
 *   anything else                      ignored, as the spec requires of
 *                                      unknown properties
 */
#include "runtime/config.h"

#include "base/error.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define FIELD_MAX 160 /* a field's name in messages, "mounts[12].options[3]" */

/* The rlimits Linux has (getrlimit(2)), by the names the spec uses. */
static const struct {
    const char *name;
    int resource;
} rlimit_names[] = {
    { "RLIMIT_AS", RLIMIT_AS },         { "RLIMIT_CORE", RLIMIT_CORE },
    { "RLIMIT_CPU", RLIMIT_CPU },       { "RLIMIT_DATA", RLIMIT_DATA },
    { "RLIMIT_FSIZE", RLIMIT_FSIZE },   { "RLIMIT_LOCKS", RLIMIT_LOCKS },
    { "RLIMIT_MEMLOCK", RLIMIT_MEMLOCK }, { "RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE },
    { "RLIMIT_NICE", RLIMIT_NICE },     { "RLIMIT_NOFILE", RLIMIT_NOFILE },
    { "RLIMIT_NPROC", RLIMIT_NPROC },   { "RLIMIT_RSS", RLIMIT_RSS },
    { "RLIMIT_RTPRIO", RLIMIT_RTPRIO }, { "RLIMIT_RTTIME", RLIMIT_RTTIME },
    { "RLIMIT_SIGPENDING", RLIMIT_SIGPENDING }, { "RLIMIT_STACK", RLIMIT_STACK },
};

static sm_code bad(sm_error *err, const char *field, const char *what)
{
    return error_set(err, SM_E_INVALID, "config.json: %s: %s", field, what);
}

static sm_code nomem(sm_error *err)
{
    return error_set(err, SM_E_NOMEM, "config.json: out of memory");
}

/* The member key of obj, or NULL when absent or null (the spec's optional
 * fields may be written as null by some generators). */
static struct json_object *member(struct json_object *obj, const char *key)
{
    struct json_object *v = NULL;
    if (!obj || !json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
        return NULL;
    return v;
}

static sm_code want_object(struct json_object *v, const char *field, sm_error *err)
{
    return json_object_is_type(v, json_type_object) ? SM_OK : bad(err, field, "not an object");
}

/* A copy of a JSON string of at most max bytes without NUL. */
static sm_code copy_string(struct json_object *v, const char *field, size_t max, char **out,
                           sm_error *err)
{
    *out = NULL;
    if (!json_object_is_type(v, json_type_string))
        return bad(err, field, "not a string");
    size_t len = (size_t)json_object_get_string_len(v);
    const char *s = json_object_get_string(v);
    if (len > max)
        return error_set(err, SM_E_LIMIT, "config.json: %s: %zu bytes long, more than %zu", field,
                         len, max);
    if (strlen(s) != len)
        return bad(err, field, "holds a NUL byte");
    if (!(*out = strdup(s)))
        return nomem(err);
    return SM_OK;
}

static sm_code member_string(struct json_object *obj, const char *key, const char *field,
                             size_t max, bool required, char **out, sm_error *err)
{
    struct json_object *v = member(obj, key);
    *out = NULL;
    if (!v)
        return required ? bad(err, field, "missing") : SM_OK;
    return copy_string(v, field, max, out, err);
}

static sm_code member_bool(struct json_object *obj, const char *key, const char *field, bool *out,
                           sm_error *err)
{
    struct json_object *v = member(obj, key);
    if (!v)
        return SM_OK;
    if (!json_object_is_type(v, json_type_boolean))
        return bad(err, field, "not true or false");
    *out = json_object_get_boolean(v);
    return SM_OK;
}

/* An integer in [min, max]. json-c holds integers as int64 or, above
 * INT64_MAX, uint64; a number with a fraction or exponent is a double. */
static sm_code get_int(struct json_object *v, const char *field, int64_t min, int64_t max,
                       int64_t *out, sm_error *err)
{
    char what[96];
    snprintf(what, sizeof what, "not an integer from %lld to %lld", (long long)min, (long long)max);
    if (!json_object_is_type(v, json_type_int))
        return bad(err, field, what);
    int64_t x = json_object_get_int64(v);
    /* Above INT64_MAX json-c keeps a uint64 and get_int64 clamps. */
    if (x == INT64_MAX && json_object_get_uint64(v) != (uint64_t)INT64_MAX)
        return bad(err, field, what);
    if (x < min || x > max)
        return bad(err, field, what);
    *out = x;
    return SM_OK;
}

static sm_code get_uint64(struct json_object *v, const char *field, uint64_t *out, sm_error *err)
{
    if (!json_object_is_type(v, json_type_int))
        return bad(err, field, "not an integer from 0 to 18446744073709551615");
    if (json_object_get_int64(v) < 0)
        return bad(err, field, "not an integer from 0 to 18446744073709551615");
    *out = json_object_get_uint64(v);
    return SM_OK;
}

static sm_code member_u32(struct json_object *obj, const char *key, const char *field,
                          bool required, uint32_t *out, sm_error *err)
{
    struct json_object *v = member(obj, key);
    if (!v)
        return required ? bad(err, field, "missing") : SM_OK;
    int64_t x;
    sm_code rc = get_int(v, field, 0, UINT32_MAX, &x, err);
    if (rc == SM_OK)
        *out = (uint32_t)x;
    return rc;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* An array of strings, NULL-terminated; at most max entries. */
static sm_code member_strings(struct json_object *obj, const char *key, const char *field,
                              size_t max, size_t max_len, char ***out, size_t *n, sm_error *err)
{
    struct json_object *arr = member(obj, key);
    *out = NULL;
    *n = 0;
    if (!arr)
        return SM_OK;
    if (!json_object_is_type(arr, json_type_array))
        return bad(err, field, "not an array of strings");
    size_t len = json_object_array_length(arr);
    if (len > max)
        return error_set(err, SM_E_LIMIT, "config.json: %s: %zu entries, more than %zu", field, len,
                         max);
    char **v = calloc(len + 1, sizeof *v);
    if (!v)
        return nomem(err);
    for (size_t i = 0; i < len; i++) {
        char f[FIELD_MAX];
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        sm_code rc = copy_string(json_object_array_get_idx(arr, i), f, max_len, &v[i], err);
        if (rc) {
            free_strings(v, i);
            return rc;
        }
    }
    *out = v;
    *n = len;
    return SM_OK;
}

static bool is_absolute(const char *p)
{
    return p && p[0] == '/';
}

/* ---- process ------------------------------------------------------------ */

static sm_code parse_user(struct json_object *user, struct rt_config *c, sm_error *err)
{
    if (!user)
        return bad(err, "process.user", "missing");
    sm_code rc = want_object(user, "process.user", err);
    if (!rc)
        rc = member_u32(user, "uid", "process.user.uid", true, &c->uid, err);
    if (!rc)
        rc = member_u32(user, "gid", "process.user.gid", true, &c->gid, err);
    if (rc)
        return rc;
    struct json_object *gids = member(user, "additionalGids");
    if (!gids)
        return SM_OK;
    if (!json_object_is_type(gids, json_type_array))
        return bad(err, "process.user.additionalGids", "not an array of integers");
    size_t n = json_object_array_length(gids);
    if (n > RT_CONFIG_MAX_GIDS)
        return error_set(err, SM_E_LIMIT,
                         "config.json: process.user.additionalGids: %zu entries, more than %d", n,
                         RT_CONFIG_MAX_GIDS);
    if (n && !(c->additional_gids = calloc(n, sizeof *c->additional_gids)))
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        char f[FIELD_MAX];
        int64_t x;
        snprintf(f, sizeof f, "process.user.additionalGids[%zu]", i);
        if ((rc = get_int(json_object_array_get_idx(gids, i), f, 0, UINT32_MAX, &x, err)))
            return rc;
        c->additional_gids[i] = (uint32_t)x;
        c->ngids = i + 1;
    }
    return SM_OK;
}

static sm_code parse_rlimits(struct json_object *arr, struct rt_config *c, sm_error *err)
{
    if (!arr)
        return SM_OK;
    if (!json_object_is_type(arr, json_type_array))
        return bad(err, "process.rlimits", "not an array");
    size_t n = json_object_array_length(arr);
    if (n > RT_CONFIG_MAX_RLIMITS)
        return error_set(err, SM_E_LIMIT, "config.json: process.rlimits: %zu entries, more than %d",
                         n, RT_CONFIG_MAX_RLIMITS);
    if (n && !(c->rlimits = calloc(n, sizeof *c->rlimits)))
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        struct json_object *r = json_object_array_get_idx(arr, i);
        struct rt_rlimit *rl = &c->rlimits[i];
        char f[FIELD_MAX], g[FIELD_MAX + 8];
        snprintf(f, sizeof f, "process.rlimits[%zu]", i);
        c->nrlimits = i + 1;
        sm_code rc = want_object(r, f, err);
        snprintf(g, sizeof g, "%s.type", f);
        if (!rc)
            rc = member_string(r, "type", g, RT_CONFIG_MAX_SHORT, true, &rl->type, err);
        if (rc)
            return rc;
        rl->resource = -1;
        for (size_t k = 0; k < sizeof rlimit_names / sizeof rlimit_names[0]; k++)
            if (!strcmp(rl->type, rlimit_names[k].name))
                rl->resource = rlimit_names[k].resource;
        if (rl->resource < 0)
            return bad(err, g, "not an RLIMIT_* name Linux has");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->rlimits[j].type, rl->type))
                return bad(err, g, "given twice");
        struct json_object *soft = member(r, "soft"), *hard = member(r, "hard");
        snprintf(g, sizeof g, "%s.soft", f);
        if (!soft)
            return bad(err, g, "missing");
        if ((rc = get_uint64(soft, g, &rl->soft, err)))
            return rc;
        snprintf(g, sizeof g, "%s.hard", f);
        if (!hard)
            return bad(err, g, "missing");
        if ((rc = get_uint64(hard, g, &rl->hard, err)))
            return rc;
        if (rl->soft > rl->hard)
            return bad(err, f, "soft is above hard");
    }
    return SM_OK;
}

static sm_code parse_process(struct json_object *p, struct rt_config *c, sm_error *err)
{
    sm_code rc = want_object(p, "process", err);
    if (rc)
        return rc;
    c->has_process = true;
    if (member(p, "commandLine"))
        return error_set(err, SM_E_UNSUPPORTED,
                         "config.json: process.commandLine: not supported (Windows only); give "
                         "process.args");
    if ((rc = member_bool(p, "terminal", "process.terminal", &c->terminal, err)))
        return rc;
    struct json_object *cs = member(p, "consoleSize");
    if (cs) {
        if ((rc = want_object(cs, "process.consoleSize", err)))
            return rc;
        uint32_t h = 0, w = 0;
        if ((rc = member_u32(cs, "height", "process.consoleSize.height", true, &h, err)) ||
            (rc = member_u32(cs, "width", "process.consoleSize.width", true, &w, err)))
            return rc;
        if (h > UINT16_MAX)
            return bad(err, "process.consoleSize.height", "more than 65535");
        if (w > UINT16_MAX)
            return bad(err, "process.consoleSize.width", "more than 65535");
        c->console_height = (uint16_t)h;
        c->console_width = (uint16_t)w;
    }
    if ((rc = parse_user(member(p, "user"), c, err)))
        return rc;
    if ((rc = member_strings(p, "args", "process.args", RT_CONFIG_MAX_ARGS, RT_CONFIG_MAX_STRING,
                             &c->args, &c->nargs, err)))
        return rc;
    if (c->nargs == 0)
        return bad(err, "process.args", "missing or empty: the program to run");
    if (!c->args[0][0])
        return bad(err, "process.args[0]", "empty: the program to run");
    if ((rc = member_strings(p, "env", "process.env", RT_CONFIG_MAX_ENV, RT_CONFIG_MAX_STRING,
                             &c->env, &c->nenv, err)))
        return rc;
    for (size_t i = 0; i < c->nenv; i++) {
        const char *eq = strchr(c->env[i], '=');
        if (!eq || eq == c->env[i]) {
            char f[FIELD_MAX];
            snprintf(f, sizeof f, "process.env[%zu]", i);
            return bad(err, f, "not KEY=VALUE");
        }
    }
    if ((rc = member_string(p, "cwd", "process.cwd", RT_CONFIG_MAX_PATH, true, &c->cwd, err)))
        return rc;
    if (!is_absolute(c->cwd))
        return bad(err, "process.cwd", "not an absolute path");
    return parse_rlimits(member(p, "rlimits"), c, err);
}

/* ---- mounts, hooks, annotations ------------------------------------------ */

static sm_code parse_mounts(struct json_object *arr, struct rt_config *c, sm_error *err)
{
    if (!arr)
        return SM_OK;
    if (!json_object_is_type(arr, json_type_array))
        return bad(err, "mounts", "not an array");
    size_t n = json_object_array_length(arr);
    if (n > RT_CONFIG_MAX_MOUNTS)
        return error_set(err, SM_E_LIMIT, "config.json: mounts: %zu entries, more than %d", n,
                         RT_CONFIG_MAX_MOUNTS);
    if (n && !(c->mounts = calloc(n, sizeof *c->mounts)))
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        struct json_object *m = json_object_array_get_idx(arr, i);
        struct rt_mount *mt = &c->mounts[i];
        char f[FIELD_MAX], g[FIELD_MAX + 16];
        snprintf(f, sizeof f, "mounts[%zu]", i);
        c->nmounts = i + 1;
        sm_code rc = want_object(m, f, err);
        if (rc)
            return rc;
        snprintf(g, sizeof g, "%s.destination", f);
        if ((rc = member_string(m, "destination", g, RT_CONFIG_MAX_PATH, true, &mt->destination,
                                err)))
            return rc;
        if (!is_absolute(mt->destination))
            return bad(err, g, "not an absolute path");
        snprintf(g, sizeof g, "%s.type", f);
        if ((rc = member_string(m, "type", g, RT_CONFIG_MAX_SHORT, false, &mt->type, err)))
            return rc;
        snprintf(g, sizeof g, "%s.source", f);
        if ((rc = member_string(m, "source", g, RT_CONFIG_MAX_PATH, false, &mt->source, err)))
            return rc;
        snprintf(g, sizeof g, "%s.options", f);
        if ((rc = member_strings(m, "options", g, RT_CONFIG_MAX_MOUNT_OPTIONS, RT_CONFIG_MAX_SHORT,
                                 &mt->options, &mt->noptions, err)))
            return rc;
        if (member(m, "uidMappings") || member(m, "gidMappings"))
            return error_set(err, SM_E_UNSUPPORTED,
                             "config.json: %s: id-mapped mounts (uidMappings, gidMappings) are not "
                             "supported",
                             f);
    }
    return SM_OK;
}

/* Any hook at all is refused (see the table). */
static sm_code check_hooks(struct json_object *hooks, sm_error *err)
{
    if (!hooks)
        return SM_OK;
    sm_code rc = want_object(hooks, "hooks", err);
    if (rc)
        return rc;
    json_object_object_foreach(hooks, name, list)
    {
        if (!list)
            continue;
        char f[FIELD_MAX];
        snprintf(f, sizeof f, "hooks.%.64s", name);
        if (!json_object_is_type(list, json_type_array))
            return bad(err, f, "not an array");
        if (json_object_array_length(list) > 0)
            return error_set(err, SM_E_UNSUPPORTED,
                             "config.json: %s: hooks are not supported (the container is a VM: "
                             "there are no namespaces for a host program to join)",
                             f);
    }
    return SM_OK;
}

static sm_code parse_annotations(struct json_object *obj, struct rt_config *c, sm_error *err)
{
    if (!obj)
        return SM_OK;
    sm_code rc = want_object(obj, "annotations", err);
    if (rc)
        return rc;
    size_t n = (size_t)json_object_object_length(obj);
    if (n > RT_CONFIG_MAX_ANNOTATIONS)
        return error_set(err, SM_E_LIMIT, "config.json: annotations: %zu entries, more than %d", n,
                         RT_CONFIG_MAX_ANNOTATIONS);
    if (n && !(c->annotations = calloc(n, sizeof *c->annotations)))
        return nomem(err);
    json_object_object_foreach(obj, key, val)
    {
        char f[FIELD_MAX];
        snprintf(f, sizeof f, "annotations[\"%.64s\"]", key);
        size_t klen = strlen(key);
        if (klen == 0)
            return bad(err, "annotations", "an empty key");
        if (klen > RT_CONFIG_MAX_SHORT)
            return error_set(err, SM_E_LIMIT, "config.json: %s: key longer than %d bytes", f,
                             RT_CONFIG_MAX_SHORT);
        if (!val)
            return bad(err, f, "not a string");
        struct rt_annotation *a = &c->annotations[c->nannotations];
        if ((rc = copy_string(val, f, RT_CONFIG_MAX_STRING, &a->value, err)))
            return rc;
        c->nannotations++;
        if (!(a->key = strdup(key)))
            return nomem(err);
    }
    return SM_OK;
}

/* ---- linux.namespaces ----------------------------------------------------- */

/* Only the network namespace means anything to a VM: it is where the VMM's
 * NAT opens its sockets, so the container's traffic leaves through the
 * engine's network (or none). The other kinds are the guest kernel's. */
static sm_code parse_namespaces(struct json_object *arr, struct rt_config *c, sm_error *err)
{
    if (!arr)
        return SM_OK;
    if (!json_object_is_type(arr, json_type_array))
        return bad(err, "linux.namespaces", "not an array");
    size_t n = json_object_array_length(arr);
    if (n > RT_CONFIG_MAX_NAMESPACES)
        return error_set(err, SM_E_LIMIT, "config.json: linux.namespaces: %zu entries, more than %d",
                         n, RT_CONFIG_MAX_NAMESPACES);
    for (size_t i = 0; i < n; i++) {
        struct json_object *ns = json_object_array_get_idx(arr, i);
        char f[FIELD_MAX], *type = NULL, *path = NULL;
        snprintf(f, sizeof f, "linux.namespaces[%zu]", i);
        sm_code rc = want_object(ns, f, err);
        if (!rc)
            rc = member_string(ns, "type", f, RT_CONFIG_MAX_SHORT, true, &type, err);
        if (!rc)
            rc = member_string(ns, "path", f, RT_CONFIG_MAX_PATH, false, &path, err);
        if (!rc && strcmp(type, "network") == 0) {
            if (c->has_net_namespace)
                rc = bad(err, f, "a second network namespace");
            else if (path && !is_absolute(path))
                rc = bad(err, f, "path: not an absolute path");
            else {
                c->has_net_namespace = true;
                c->net_namespace_path = path;
                path = NULL;
            }
        }
        free(type);
        free(path);
        if (rc)
            return rc;
    }
    return SM_OK;
}

/* ---- linux.resources ------------------------------------------------------ */

static sm_code parse_resources(struct json_object *linux_, struct rt_config *c, sm_error *err)
{
    if (!linux_)
        return SM_OK;
    sm_code rc = want_object(linux_, "linux", err);
    struct json_object *res = member(linux_, "resources");
    if (rc || !res)
        return rc;
    if ((rc = want_object(res, "linux.resources", err)))
        return rc;
    struct json_object *mem = member(res, "memory"), *cpu = member(res, "cpu"), *v;
    if (mem) {
        if ((rc = want_object(mem, "linux.resources.memory", err)))
            return rc;
        if ((v = member(mem, "limit"))) {
            if ((rc = get_int(v, "linux.resources.memory.limit", -1, INT64_MAX, &c->memory_limit,
                              err)))
                return rc;
            c->has_memory_limit = true;
        }
    }
    if (cpu) {
        if ((rc = want_object(cpu, "linux.resources.cpu", err)))
            return rc;
        if ((v = member(cpu, "quota"))) {
            if ((rc = get_int(v, "linux.resources.cpu.quota", -1, INT64_MAX, &c->cpu_quota, err)))
                return rc;
            c->has_cpu_quota = true;
        }
        if ((v = member(cpu, "period"))) {
            if ((rc = get_uint64(v, "linux.resources.cpu.period", &c->cpu_period, err)))
                return rc;
            c->has_cpu_period = true;
        }
        if ((v = member(cpu, "shares"))) {
            if ((rc = get_uint64(v, "linux.resources.cpu.shares", &c->cpu_shares, err)))
                return rc;
            c->has_cpu_shares = true;
        }
    }
    return SM_OK;
}

/* ---- the whole file -------------------------------------------------------- */

/* "1", then one or more ".N": 1.0.0, 1.2.0, 1.0.2-dev (a suffix after the
 * numbers is allowed, as runc's own specs carry one). */
static bool version_supported(const char *v)
{
    if (strncmp(v, "1.", 2) != 0)
        return false;
    const char *p = v + 2;
    if (*p < '0' || *p > '9')
        return false;
    while ((*p >= '0' && *p <= '9') || *p == '.')
        p++;
    return *p == 0 || *p == '-' || *p == '+';
}

static sm_code parse_doc(struct json_object *root, struct rt_config *c, sm_error *err)
{
    if (!json_object_is_type(root, json_type_object))
        return error_set(err, SM_E_INVALID, "config.json: not a JSON object");
    sm_code rc = member_string(root, "ociVersion", "ociVersion", RT_CONFIG_MAX_SHORT, true,
                               &c->oci_version, err);
    if (rc)
        return rc;
    if (!version_supported(c->oci_version))
        return error_set(err, SM_E_UNSUPPORTED,
                         "config.json: ociVersion: '%s' is not supported (this runtime reads "
                         "version 1 of the runtime spec)",
                         c->oci_version);
    struct json_object *p = member(root, "process");
    if (p && (rc = parse_process(p, c, err)))
        return rc;
    struct json_object *r = member(root, "root");
    if (!r)
        return bad(err, "root", "missing (root.path: the container's root filesystem)");
    if ((rc = want_object(r, "root", err)) ||
        (rc = member_string(r, "path", "root.path", RT_CONFIG_MAX_PATH, true, &c->root_path, err)) ||
        (rc = member_bool(r, "readonly", "root.readonly", &c->root_readonly, err)))
        return rc;
    if (!c->root_path[0])
        return bad(err, "root.path", "empty");
    if ((rc = member_string(root, "hostname", "hostname", RT_CONFIG_MAX_HOSTNAME, false,
                            &c->hostname, err)))
        return rc;
    if ((rc = parse_mounts(member(root, "mounts"), c, err)) ||
        (rc = check_hooks(member(root, "hooks"), err)) ||
        (rc = parse_annotations(member(root, "annotations"), c, err)))
        return rc;
    struct json_object *linux_ = member(root, "linux");
    if ((rc = parse_resources(linux_, c, err)))
        return rc;
    return linux_ ? parse_namespaces(member(linux_, "namespaces"), c, err) : SM_OK;
}

/* Strict JSON, no deeper than RT_CONFIG_MAX_DEPTH, nothing after it. */
static sm_code parse_json(const char *json, size_t len, const char *what, struct json_object **out,
                          sm_error *err)
{
    *out = NULL;
    if (!json)
        return error_set(err, SM_E_INVALID, "%s: no data", what);
    if (len > RT_CONFIG_MAX_BYTES)
        return error_set(err, SM_E_LIMIT, "%s: %zu bytes, more than %u", what, len,
                         RT_CONFIG_MAX_BYTES);
    struct json_tokener *tok = json_tokener_new_ex(RT_CONFIG_MAX_DEPTH);
    if (!tok)
        return nomem(err);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        json_object_put(root);
        return error_set(err, SM_E_INVALID, "%s: not valid JSON: %s", what,
                         jerr == json_tokener_continue ? "it ends too early"
                                                       : json_tokener_error_desc(jerr));
    }
    for (size_t i = used; i < len; i++)
        if (json[i] != ' ' && json[i] != '\n' && json[i] != '\r' && json[i] != '\t') {
            json_object_put(root);
            return error_set(err, SM_E_INVALID, "%s: not valid JSON: more after the value, at "
                                                "byte %zu",
                             what, i);
        }
    *out = root;
    return SM_OK;
}

sm_code rt_config_parse(const char *json, size_t len, struct rt_config *out, sm_error *err)
{
    memset(out, 0, sizeof *out);
    struct json_object *root;
    sm_code rc = parse_json(json, len, "config.json", &root, err);
    if (rc)
        return rc;
    rc = parse_doc(root, out, err);
    json_object_put(root);
    if (rc)
        rt_config_free(out);
    return rc;
}

sm_code rt_process_parse(const char *json, size_t len, struct rt_config *out, sm_error *err)
{
    memset(out, 0, sizeof *out);
    struct json_object *root;
    sm_code rc = parse_json(json, len, "process.json", &root, err);
    if (rc)
        return rc;
    rc = parse_process(root, out, err);
    json_object_put(root);
    if (rc)
        rt_config_free(out);
    return rc;
}

void rt_config_free(struct rt_config *c)
{
    if (!c)
        return;
    free(c->oci_version);
    free(c->additional_gids);
    free_strings(c->args, c->nargs);
    free_strings(c->env, c->nenv);
    free(c->cwd);
    for (size_t i = 0; i < c->nrlimits; i++)
        free(c->rlimits[i].type);
    free(c->rlimits);
    free(c->root_path);
    free(c->hostname);
    free(c->net_namespace_path);
    for (size_t i = 0; i < c->nmounts; i++) {
        free(c->mounts[i].destination);
        free(c->mounts[i].type);
        free(c->mounts[i].source);
        free_strings(c->mounts[i].options, c->mounts[i].noptions);
    }
    free(c->mounts);
    for (size_t i = 0; i < c->nannotations; i++) {
        free(c->annotations[i].key);
        free(c->annotations[i].value);
    }
    free(c->annotations);
    memset(c, 0, sizeof *c);
}

const char *rt_config_annotation(const struct rt_config *c, const char *key)
{
    for (size_t i = 0; c && i < c->nannotations; i++)
        if (!strcmp(c->annotations[i].key, key))
            return c->annotations[i].value;
    return NULL;
}
