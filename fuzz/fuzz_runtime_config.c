/*
 * libFuzzer target: a bundle's config.json (src/runtime/config.c) and exec's
 * process file, hostile JSON. Checked: failures say why, naming config.json,
 * and leave nothing allocated; what parses keeps its bounds (counts, string
 * lengths, KEY=VALUE env, absolute paths, soft <= hard rlimits).
 *
 *   build/fuzz/fuzz_runtime_config -max_total_time=20 fuzz/corpus/fuzz_runtime_config
 */
#include "runtime/config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_strings(char **v, size_t n, size_t max_n, size_t max_len)
{
    if (n > max_n || (n && !v) || (v && v[n]))
        abort();
    for (size_t i = 0; i < n; i++)
        if (!v[i] || strlen(v[i]) > max_len)
            abort();
}

static void check_empty(const struct rt_config *c)
{
    if (c->oci_version || c->args || c->env || c->cwd || c->mounts || c->annotations ||
        c->rlimits || c->additional_gids || c->root_path || c->hostname)
        abort();
}

static void check_process(const struct rt_config *c)
{
    check_strings(c->args, c->nargs, RT_CONFIG_MAX_ARGS, RT_CONFIG_MAX_STRING);
    check_strings(c->env, c->nenv, RT_CONFIG_MAX_ENV, RT_CONFIG_MAX_STRING);
    if (c->nargs < 1 || !c->args[0][0] || !c->cwd || c->cwd[0] != '/' ||
        c->ngids > RT_CONFIG_MAX_GIDS || c->nrlimits > RT_CONFIG_MAX_RLIMITS)
        abort();
    for (size_t i = 0; i < c->nenv; i++) {
        const char *eq = strchr(c->env[i], '=');
        if (!eq || eq == c->env[i])
            abort();
    }
    for (size_t i = 0; i < c->nrlimits; i++)
        if (strncmp(c->rlimits[i].type, "RLIMIT_", 7) || c->rlimits[i].soft > c->rlimits[i].hard)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > RT_CONFIG_MAX_BYTES + 1)
        return 0;
    struct rt_config c;
    sm_error err = {0};
    if (rt_config_parse((const char *)data, size, &c, &err) != SM_OK) {
        if (!strstr(err.message, "config.json"))
            abort();
        check_empty(&c);
    } else {
        if (!c.oci_version || strncmp(c.oci_version, "1.", 2) || !c.root_path || !c.root_path[0] ||
            (c.hostname && strlen(c.hostname) > RT_CONFIG_MAX_HOSTNAME) ||
            c.nmounts > RT_CONFIG_MAX_MOUNTS || c.nannotations > RT_CONFIG_MAX_ANNOTATIONS ||
            (c.has_memory_limit && c.memory_limit < -1) || (c.has_cpu_quota && c.cpu_quota < -1))
            abort();
        if (c.has_process)
            check_process(&c);
        for (size_t i = 0; i < c.nmounts; i++) {
            if (!c.mounts[i].destination || c.mounts[i].destination[0] != '/')
                abort();
            check_strings(c.mounts[i].options, c.mounts[i].noptions, RT_CONFIG_MAX_MOUNT_OPTIONS,
                          RT_CONFIG_MAX_SHORT);
        }
        for (size_t i = 0; i < c.nannotations; i++)
            if (!c.annotations[i].key[0] || strlen(c.annotations[i].key) > RT_CONFIG_MAX_SHORT ||
                strlen(c.annotations[i].value) > RT_CONFIG_MAX_STRING ||
                rt_config_annotation(&c, c.annotations[i].key) == NULL)
                abort();
        rt_config_free(&c);
    }
    /* The same bytes as exec's --process file. */
    memset(&err, 0, sizeof err);
    if (rt_process_parse((const char *)data, size, &c, &err) != SM_OK) {
        check_empty(&c);
    } else {
        check_process(&c);
        rt_config_free(&c);
    }
    return 0;
}
