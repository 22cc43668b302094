/* The exec builder: plain data describing one request; every setter copies. */
#include "lib/exec_internal.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

static sm_code record(sm_exec_builder *b, sm_code code, const char *what)
{
    if (b && !b->failed) {
        b->failed = true;
        error_set(&b->first_error, code, "exec builder: %s", what);
    }
    return code;
}

static void argv_free(exec_argv *a)
{
    for (int i = 0; i < a->argc; i++)
        free(a->argv[i]);
    free(a->argv);
    a->argv = NULL;
    a->argc = 0;
}

static bool argv_copy(exec_argv *dst, int argc, const char *const *argv)
{
    dst->argc = 0;
    dst->argv = calloc((size_t)argc + 1, sizeof *dst->argv);
    if (!dst->argv)
        return false;
    for (int i = 0; i < argc; i++) {
        dst->argv[i] = strdup(argv[i]);
        if (!dst->argv[i]) {
            argv_free(dst);
            return false;
        }
        dst->argc++;
    }
    return true;
}

static sm_code check_argv(sm_exec_builder *b, int argc, const char *const *argv)
{
    if (argc <= 0 || !argv)
        return record(b, SM_E_INVALID, "argv needs at least the program name");
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return record(b, SM_E_INVALID, "argv has a NULL entry");
    if (!argv[0][0])
        return record(b, SM_E_INVALID, "the program name (argv[0]) is empty");
    return SM_OK;
}

sm_exec_builder *sm_exec_builder_new(const char *exec_socket_path)
{
    if (!exec_socket_path || !exec_socket_path[0])
        return NULL;
    sm_exec_builder *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->socket_path = strdup(exec_socket_path);
    if (!b->socket_path) {
        free(b);
        return NULL;
    }
    b->max_output = SM_EXEC_MAX_OUTPUT_DEFAULT;
    return b;
}

void sm_exec_builder_free(sm_exec_builder *b)
{
    if (!b)
        return;
    free(b->socket_path);
    argv_free(&b->argv);
    for (size_t i = 0; i < b->nenv; i++)
        free(b->env[i]);
    free(b->env);
    free(b->cwd);
    free(b->groups);
    for (size_t i = 0; i < b->nfiles; i++) {
        free(b->files[i].path);
        free(b->files[i].data);
    }
    free(b->files);
    for (size_t i = 0; i < b->nchain; i++)
        argv_free(&b->chain[i]);
    free(b->chain);
    free(b);
}

sm_code sm_exec_builder_argv(sm_exec_builder *b, int argc, const char *const *argv)
{
    if (!b)
        return SM_E_INVALID;
    sm_code rc = check_argv(b, argc, argv);
    if (rc)
        return rc;
    exec_argv copy;
    if (!argv_copy(&copy, argc, argv))
        return record(b, SM_E_NOMEM, "out of memory copying argv");
    argv_free(&b->argv);
    b->argv = copy;
    return SM_OK;
}

sm_code sm_exec_builder_env(sm_exec_builder *b, const char *key, const char *value)
{
    if (!b)
        return SM_E_INVALID;
    if (!key || !key[0] || strchr(key, '=') || !value)
        return record(b, SM_E_INVALID, "env key must be non-empty without '=', value non-NULL");
    size_t klen = strlen(key), vlen = strlen(value);
    char *kv = malloc(klen + vlen + 2);
    if (!kv)
        return record(b, SM_E_NOMEM, "out of memory copying env");
    memcpy(kv, key, klen);
    kv[klen] = '=';
    memcpy(kv + klen + 1, value, vlen + 1);
    for (size_t i = 0; i < b->nenv; i++) {
        if (!strncmp(b->env[i], kv, klen + 1)) { /* same KEY= : replace */
            free(b->env[i]);
            b->env[i] = kv;
            return SM_OK;
        }
    }
    char **grown = realloc(b->env, (b->nenv + 1) * sizeof *grown);
    if (!grown) {
        free(kv);
        return record(b, SM_E_NOMEM, "out of memory copying env");
    }
    b->env = grown;
    b->env[b->nenv++] = kv;
    return SM_OK;
}

sm_code sm_exec_builder_cwd(sm_exec_builder *b, const char *guest_dir)
{
    if (!b)
        return SM_E_INVALID;
    if (!guest_dir)
        return record(b, SM_E_INVALID, "cwd is NULL");
    char *copy = strdup(guest_dir);
    if (!copy)
        return record(b, SM_E_NOMEM, "out of memory copying cwd");
    free(b->cwd);
    b->cwd = copy;
    return SM_OK;
}

sm_code sm_exec_builder_user(sm_exec_builder *b, uint32_t uid, uint32_t gid, size_t ngroups,
                             const uint32_t *groups)
{
    if (!b)
        return SM_E_INVALID;
    if (ngroups > WIRE_MAX_GROUPS)
        return record(b, SM_E_LIMIT, "more than 256 supplementary groups");
    if (ngroups && !groups)
        return record(b, SM_E_INVALID, "supplementary groups are NULL");
    uint32_t *copy = NULL;
    if (ngroups) {
        copy = malloc(ngroups * sizeof *copy);
        if (!copy)
            return record(b, SM_E_NOMEM, "out of memory copying supplementary groups");
        memcpy(copy, groups, ngroups * sizeof *copy);
    }
    free(b->groups);
    b->groups = copy;
    b->ngroups = ngroups;
    b->uid = uid;
    b->gid = gid;
    b->has_user = true;
    return SM_OK;
}

sm_code sm_exec_builder_rlimit(sm_exec_builder *b, int resource, uint64_t soft, uint64_t hard)
{
    if (!b)
        return SM_E_INVALID;
    if (resource < 0 || resource >= (int)WIRE_RLIMIT_COUNT)
        return record(b, SM_E_INVALID, "rlimit resource is not an RLIMIT_* (0..15)");
    if (soft > hard)
        return record(b, SM_E_INVALID, "rlimit soft limit is above the hard limit");
    size_t i = 0;
    while (i < b->nrlimits && b->rlimits[i].resource != (uint32_t)resource)
        i++;
    if (i == b->nrlimits) /* resources are 0..15: a new one always has room */
        b->nrlimits++;
    b->rlimits[i] = (wire_rlimit){ (uint32_t)resource, soft, hard };
    return SM_OK;
}

sm_code sm_exec_builder_hostname(sm_exec_builder *b, const char *name)
{
    if (!b)
        return SM_E_INVALID;
    if (!wire_hostname_ok(name))
        return record(b, SM_E_INVALID, "hostname must be 1..64 bytes of letters, digits, '.' and '-'");
    memcpy(b->hostname, name, strlen(name) + 1);
    return SM_OK;
}

sm_code sm_exec_builder_clear_env(sm_exec_builder *b, bool on)
{
    if (!b)
        return SM_E_INVALID;
    b->clear_env = on;
    return SM_OK;
}

sm_code sm_exec_builder_tty(sm_exec_builder *b, bool on)
{
    if (!b)
        return SM_E_INVALID;
    b->tty = on;
    return SM_OK;
}

sm_code sm_exec_builder_winsize(sm_exec_builder *b, uint16_t cols, uint16_t rows)
{
    if (!b)
        return SM_E_INVALID;
    b->cols = cols;
    b->rows = rows;
    return SM_OK;
}

sm_code sm_exec_builder_timeout_ms(sm_exec_builder *b, uint32_t ms)
{
    if (!b)
        return SM_E_INVALID;
    b->timeout_ms = ms;
    return SM_OK;
}

sm_code sm_exec_builder_max_output(sm_exec_builder *b, size_t bytes)
{
    if (!b)
        return SM_E_INVALID;
    b->max_output = bytes;
    return SM_OK;
}

sm_code sm_exec_builder_agent_timeout_ms(sm_exec_builder *b, uint32_t ms)
{
    if (!b)
        return SM_E_INVALID;
    b->agent_timeout_ms = ms;
    return SM_OK;
}

sm_code sm_exec_builder_stage_file_mode(sm_exec_builder *b, const char *guest_path,
                                        const void *bytes, size_t len, uint32_t mode)
{
    if (!b)
        return SM_E_INVALID;
    if (!guest_path || guest_path[0] != '/')
        return record(b, SM_E_INVALID, "a staged file needs an absolute guest path");
    if (!bytes && len)
        return record(b, SM_E_INVALID, "staged file bytes are NULL");
    if (mode > 07777)
        return record(b, SM_E_INVALID, "staged file mode is beyond 07777");
    if (len > WIRE_MAX_REQUEST)
        return record(b, SM_E_LIMIT, "a staged file is over the 64 MiB request limit: "
                      "use sm_exec_write_file");
    exec_staged f = { .path = strdup(guest_path), .data = malloc(len ? len : 1), .len = len,
                      .mode = mode };
    exec_staged *grown = f.path && f.data ? realloc(b->files, (b->nfiles + 1) * sizeof *grown)
                                          : NULL;
    if (!grown) {
        free(f.path);
        free(f.data);
        return record(b, SM_E_NOMEM, "out of memory copying a staged file");
    }
    if (len)
        memcpy(f.data, bytes, len);
    b->files = grown;
    b->files[b->nfiles++] = f;
    return SM_OK;
}

sm_code sm_exec_builder_stage_file(sm_exec_builder *b, const char *guest_path, const void *bytes,
                                   size_t len)
{
    return sm_exec_builder_stage_file_mode(b, guest_path, bytes, len, 0644);
}

sm_code sm_exec_builder_chain(sm_exec_builder *b, int argc, const char *const *argv)
{
    if (!b)
        return SM_E_INVALID;
    sm_code rc = check_argv(b, argc, argv);
    if (rc)
        return rc;
    exec_argv *grown = realloc(b->chain, (b->nchain + 1) * sizeof *grown);
    if (!grown)
        return record(b, SM_E_NOMEM, "out of memory copying a chained argv");
    b->chain = grown;
    if (!argv_copy(&b->chain[b->nchain], argc, argv))
        return record(b, SM_E_NOMEM, "out of memory copying a chained argv");
    b->nchain++;
    return SM_OK;
}

sm_exec_builder *sm_exec_builder_copy(const sm_exec_builder *b)
{
    if (!b)
        return NULL;
    sm_exec_builder *c = sm_exec_builder_new(b->socket_path);
    if (!c)
        return NULL;
    bool ok = true;
    if (b->argv.argc)
        ok = sm_exec_builder_argv(c, b->argv.argc, (const char *const *)b->argv.argv) == SM_OK;
    for (size_t i = 0; ok && i < b->nenv; i++) {
        char *eq = strchr(b->env[i], '=');
        char *key = strndup(b->env[i], (size_t)(eq - b->env[i]));
        ok = key && sm_exec_builder_env(c, key, eq + 1) == SM_OK;
        free(key);
    }
    if (ok && b->cwd)
        ok = sm_exec_builder_cwd(c, b->cwd) == SM_OK;
    if (ok && b->has_user)
        ok = sm_exec_builder_user(c, b->uid, b->gid, b->ngroups, b->groups) == SM_OK;
    for (size_t i = 0; ok && i < b->nfiles; i++)
        ok = sm_exec_builder_stage_file_mode(c, b->files[i].path, b->files[i].data,
                                             b->files[i].len, b->files[i].mode) == SM_OK;
    for (size_t i = 0; ok && i < b->nchain; i++)
        ok = sm_exec_builder_chain(c, b->chain[i].argc,
                                   (const char *const *)b->chain[i].argv) == SM_OK;
    if (!ok) {
        sm_exec_builder_free(c);
        return NULL;
    }
    c->clear_env = b->clear_env;
    memcpy(c->rlimits, b->rlimits, sizeof c->rlimits);
    c->nrlimits = b->nrlimits;
    memcpy(c->hostname, b->hostname, sizeof c->hostname);
    c->tty = b->tty;
    c->cols = b->cols;
    c->rows = b->rows;
    c->timeout_ms = b->timeout_ms;
    c->max_output = b->max_output;
    c->agent_timeout_ms = b->agent_timeout_ms;
    c->failed = b->failed;
    c->first_error = b->first_error;
    return c;
}
