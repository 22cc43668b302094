#include "image/oci_config.h"

#include "image/digest.h"
#include "image/oci_manifest.h"
#include "base/error.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* A string array member of obj (absent or null: none). */
static sm_code get_string_array(struct json_object *obj, const char *key, char ***out, size_t *n,
                                sm_error *err)
{
    struct json_object *arr;
    *out = NULL;
    *n = 0;
    if (!obj || !json_object_object_get_ex(obj, key, &arr) ||
        json_object_is_type(arr, json_type_null))
        return SM_OK;
    if (!json_object_is_type(arr, json_type_array))
        return error_set(err, SM_E_PROTOCOL, "image config: %s is not an array", key);
    size_t len = json_object_array_length(arr);
    if (len > OCI_CONFIG_MAX_ITEMS)
        return error_set(err, SM_E_LIMIT, "image config: %s has %zu entries, more than %d", key, len,
                       OCI_CONFIG_MAX_ITEMS);
    char **v = calloc(len + 1, sizeof *v);
    if (!v)
        return error_set(err, SM_E_NOMEM, "image config: out of memory");
    for (size_t i = 0; i < len; i++) {
        struct json_object *s = json_object_array_get_idx(arr, i);
        size_t slen = s ? (size_t)json_object_get_string_len(s) : 0;
        if (!s || !json_object_is_type(s, json_type_string) || slen > OCI_CONFIG_MAX_STRING ||
            strlen(json_object_get_string(s)) != slen) {
            free_strings(v, i);
            return error_set(err, SM_E_PROTOCOL,
                           "image config: entry %zu of %s is not a string of at most %u bytes "
                           "without NUL",
                           i + 1, key, OCI_CONFIG_MAX_STRING);
        }
        v[i] = strdup(json_object_get_string(s));
        if (!v[i]) {
            free_strings(v, i);
            return error_set(err, SM_E_NOMEM, "image config: out of memory");
        }
    }
    *out = v;
    *n = len;
    return SM_OK;
}

/* An optional string member, copied; NULL when absent or empty. */
static sm_code get_string(struct json_object *obj, const char *key, char **out, sm_error *err)
{
    bool bad = false;
    const char *s = oci_json_string(obj, key, OCI_CONFIG_MAX_STRING, &bad);
    *out = NULL;
    if (bad)
        return error_set(err, SM_E_PROTOCOL,
                       "image config: %s is not a string of at most %u bytes without NUL", key,
                       OCI_CONFIG_MAX_STRING);
    if (s && s[0] && !(*out = strdup(s)))
        return error_set(err, SM_E_NOMEM, "image config: out of memory");
    return SM_OK;
}

static sm_code get_short(struct json_object *obj, const char *key, char *dst, size_t cap,
                         sm_error *err)
{
    bool bad = false;
    const char *s = oci_json_string(obj, key, cap - 1, &bad);
    if (bad)
        return error_set(err, SM_E_PROTOCOL, "image config: %s is not a short string", key);
    snprintf(dst, cap, "%s", s ? s : "");
    return SM_OK;
}

static sm_code check_env(const struct oci_config *c, sm_error *err)
{
    for (size_t i = 0; i < c->nenv; i++) {
        const char *eq = strchr(c->env[i], '=');
        if (!eq || eq == c->env[i])
            return error_set(err, SM_E_PROTOCOL,
                           "image config: Env entry %zu (\"%.60s\") is not KEY=VALUE", i + 1,
                           c->env[i]);
    }
    return SM_OK;
}

static sm_code check_diff_ids(const struct oci_config *c, sm_error *err)
{
    for (size_t i = 0; i < c->ndiff_ids; i++)
        if (!oci_digest_valid(c->diff_ids[i]))
            return error_set(err, SM_E_PROTOCOL,
                           "image config: rootfs.diff_ids entry %zu is not a sha256 digest", i + 1);
    return SM_OK;
}

static sm_code parse_root(struct json_object *root, struct oci_config *out, sm_error *err)
{
    if (!json_object_is_type(root, json_type_object))
        return error_set(err, SM_E_PROTOCOL, "image config is not a JSON object");
    struct json_object *cfg = NULL, *rootfs = NULL;
    if (json_object_object_get_ex(root, "config", &cfg) &&
        !json_object_is_type(cfg, json_type_null) && !json_object_is_type(cfg, json_type_object))
        return error_set(err, SM_E_PROTOCOL, "image config: \"config\" is not an object");
    if (cfg && json_object_is_type(cfg, json_type_null))
        cfg = NULL;
    if (json_object_object_get_ex(root, "rootfs", &rootfs) &&
        !json_object_is_type(rootfs, json_type_object))
        return error_set(err, SM_E_PROTOCOL, "image config: \"rootfs\" is not an object");
    sm_code rc = get_string_array(cfg, "Env", &out->env, &out->nenv, err);
    if (!rc)
        rc = get_string(cfg, "WorkingDir", &out->working_dir, err);
    if (!rc)
        rc = get_string(cfg, "User", &out->user, err);
    if (!rc)
        rc = get_string_array(cfg, "Entrypoint", &out->entrypoint, &out->nentrypoint, err);
    if (!rc)
        rc = get_string_array(cfg, "Cmd", &out->cmd, &out->ncmd, err);
    if (!rc)
        rc = get_short(root, "architecture", out->architecture, sizeof out->architecture, err);
    if (!rc)
        rc = get_short(root, "os", out->os, sizeof out->os, err);
    if (!rc)
        rc = get_short(root, "variant", out->variant, sizeof out->variant, err);
    if (!rc)
        rc = get_string_array(rootfs, "diff_ids", &out->diff_ids, &out->ndiff_ids, err);
    if (!rc)
        rc = check_env(out, err);
    if (!rc)
        rc = check_diff_ids(out, err);
    return rc;
}

sm_code oci_config_parse(const char *json, size_t len, struct oci_config *out, sm_error *err)
{
    memset(out, 0, sizeof *out);
    struct json_object *root;
    sm_code rc = oci_json_parse(json, len, OCI_JSON_MAX, "the image config", &root, err);
    if (rc)
        return rc;
    rc = parse_root(root, out, err);
    json_object_put(root);
    if (rc)
        oci_config_free(out);
    return rc;
}

void oci_config_free(struct oci_config *c)
{
    if (!c)
        return;
    free_strings(c->env, c->nenv);
    free(c->working_dir);
    free(c->user);
    free_strings(c->entrypoint, c->nentrypoint);
    free_strings(c->cmd, c->ncmd);
    free_strings(c->diff_ids, c->ndiff_ids);
    memset(c, 0, sizeof *c);
}
