#include "image/oci_manifest.h"

#include "base/error.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 32
#define ATTESTATION_KEY "vnd.docker.reference.type"
#define REF_NAME_KEY "org.opencontainers.image.ref.name"

sm_code oci_json_parse(const char *buf, size_t len, size_t max, const char *what,
                       struct json_object **out, sm_error *err)
{
    *out = NULL;
    if (len > max)
        return error_set(err, SM_E_LIMIT, "%s is %zu bytes, more than the limit of %zu", what, len,
                       max);
    if (len > INT32_MAX)
        return error_set(err, SM_E_LIMIT, "%s is too large", what);
    struct json_tokener *tok = json_tokener_new_ex(JSON_MAX_DEPTH);
    if (!tok)
        return error_set(err, SM_E_NOMEM, "%s: out of memory", what);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *obj = json_tokener_parse_ex(tok, buf, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!obj || jerr != json_tokener_success) {
        json_object_put(obj);
        return error_set(err, SM_E_PROTOCOL, "%s is not valid JSON: %s", what,
                       jerr == json_tokener_continue ? "it ends too early"
                                                     : json_tokener_error_desc(jerr));
    }
    for (size_t i = used; i < len; i++) {
        char c = buf[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            json_object_put(obj);
            return error_set(err, SM_E_PROTOCOL, "%s is not valid JSON: data after the end", what);
        }
    }
    *out = obj;
    return SM_OK;
}

const char *oci_json_string(struct json_object *obj, const char *key, size_t max_len, bool *bad)
{
    struct json_object *v;
    if (!obj || !json_object_is_type(obj, json_type_object) ||
        !json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
        return NULL;
    if (!json_object_is_type(v, json_type_string)) {
        *bad = true;
        return NULL;
    }
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (n > max_len || strlen(s) != n) {
        *bad = true;
        return NULL;
    }
    return s;
}

enum oci_layer_compression oci_layer_compression_of(const char *mt)
{
    static const struct {
        const char *media_type;
        enum oci_layer_compression c;
    } table[] = {
        {OCI_MT_LAYER_TAR, OCI_LAYER_TAR},
        {OCI_MT_LAYER_GZIP, OCI_LAYER_GZIP},
        {OCI_MT_LAYER_ZSTD, OCI_LAYER_ZSTD},
        {OCI_MT_DOCKER_LAYER, OCI_LAYER_GZIP},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar", OCI_LAYER_TAR},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", OCI_LAYER_GZIP},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", OCI_LAYER_ZSTD},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", OCI_LAYER_GZIP},
    };
    for (size_t i = 0; mt && i < sizeof table / sizeof table[0]; i++)
        if (strcmp(mt, table[i].media_type) == 0)
            return table[i].c;
    return OCI_LAYER_UNKNOWN;
}

static sm_code copy_string_field(struct json_object *o, const char *key, char *dst, size_t cap,
                                 bool required, const char *what, sm_error *err)
{
    bool bad = false;
    const char *s = oci_json_string(o, key, cap - 1, &bad);
    if (bad)
        return error_set(err, SM_E_PROTOCOL, "%s: \"%s\" is not a string of at most %zu bytes", what,
                       key, cap - 1);
    if (!s) {
        if (required)
            return error_set(err, SM_E_PROTOCOL, "%s has no \"%s\"", what, key);
        dst[0] = '\0';
        return SM_OK;
    }
    snprintf(dst, cap, "%s", s);
    return SM_OK;
}

static sm_code parse_platform(struct json_object *o, struct oci_descriptor *d, const char *what,
                              sm_error *err)
{
    struct json_object *p;
    if (!json_object_object_get_ex(o, "platform", &p) || json_object_is_type(p, json_type_null))
        return SM_OK;
    if (!json_object_is_type(p, json_type_object))
        return error_set(err, SM_E_PROTOCOL, "%s: \"platform\" is not an object", what);
    sm_code rc = copy_string_field(p, "os", d->os, sizeof d->os, false, what, err);
    if (!rc)
        rc = copy_string_field(p, "architecture", d->architecture, sizeof d->architecture, false,
                               what, err);
    if (!rc)
        rc = copy_string_field(p, "variant", d->variant, sizeof d->variant, false, what, err);
    return rc;
}

/* Attestation manifests (BuildKit) sit in indexes as "unknown/unknown". */
static bool is_attestation(struct json_object *o, const struct oci_descriptor *d)
{
    struct json_object *ann;
    bool bad = false;
    if (strcmp(d->os, "unknown") == 0)
        return true;
    return json_object_object_get_ex(o, "annotations", &ann) &&
           oci_json_string(ann, ATTESTATION_KEY, 256, &bad) != NULL;
}

static sm_code parse_descriptor(struct json_object *o, const char *what, bool need_media_type,
                                struct oci_descriptor *d, sm_error *err)
{
    memset(d, 0, sizeof *d);
    if (!o || !json_object_is_type(o, json_type_object))
        return error_set(err, SM_E_PROTOCOL, "%s is not a JSON object", what);
    sm_code rc = copy_string_field(o, "mediaType", d->media_type, sizeof d->media_type,
                                   need_media_type, what, err);
    if (rc)
        return rc;
    bool bad = false;
    const char *digest = oci_json_string(o, "digest", 256, &bad);
    if (!digest || bad)
        return error_set(err, SM_E_PROTOCOL, "%s has no \"digest\" string", what);
    if (!oci_digest_valid(digest)) {
        if (strncmp(digest, "sha256:", 7) != 0 && strchr(digest, ':'))
            return error_set(err, SM_E_UNSUPPORTED, "%s: digest \"%.80s\" is not sha256", what,
                           digest);
        return error_set(err, SM_E_PROTOCOL, "%s: \"%.80s\" is not a sha256 digest", what, digest);
    }
    strcpy(d->digest, digest);
    struct json_object *size;
    if (!json_object_object_get_ex(o, "size", &size) || !json_object_is_type(size, json_type_int))
        return error_set(err, SM_E_PROTOCOL, "%s has no integer \"size\"", what);
    int64_t sz = json_object_get_int64(size); /* saturates: huge values fail below */
    if (sz < 0 || (uint64_t)sz > OCI_MAX_LAYER_SIZE)
        return error_set(err, SM_E_PROTOCOL, "%s: size %lld is out of range", what, (long long)sz);
    d->size = (uint64_t)sz;
    rc = parse_platform(o, d, what, err);
    struct json_object *ann;
    if (!rc && json_object_object_get_ex(o, "annotations", &ann))
        rc = copy_string_field(ann, REF_NAME_KEY, d->ref_name, sizeof d->ref_name, false, what,
                               err);
    return rc;
}

/* The array member key of root with at most max entries. */
static sm_code get_array(struct json_object *root, const char *key, size_t max,
                         struct json_object **arr, size_t *n, sm_error *err)
{
    if (!json_object_object_get_ex(root, key, arr) || !json_object_is_type(*arr, json_type_array))
        return error_set(err, SM_E_PROTOCOL, "the manifest has no \"%s\" array", key);
    *n = json_object_array_length(*arr);
    if (*n > max)
        return error_set(err, SM_E_LIMIT, "the manifest lists %zu %s, more than the limit of %zu",
                       *n, key, max);
    return SM_OK;
}

static sm_code parse_image(struct json_object *root, struct oci_manifest *m, sm_error *err)
{
    struct json_object *cfg, *arr;
    if (!json_object_object_get_ex(root, "config", &cfg))
        return error_set(err, SM_E_PROTOCOL, "the image manifest has no \"config\"");
    sm_code rc = parse_descriptor(cfg, "the manifest's config", true, &m->config, err);
    if (rc)
        return rc;
    if (strcmp(m->config.media_type, OCI_MT_OCI_CONFIG) != 0 &&
        strcmp(m->config.media_type, OCI_MT_DOCKER_CONFIG) != 0)
        return error_set(err, SM_E_UNSUPPORTED,
                       "not a container image: its config has media type \"%s\"",
                       m->config.media_type);
    size_t n;
    rc = get_array(root, "layers", OCI_MAX_LAYERS, &arr, &n, err);
    if (rc)
        return rc;
    m->layers = calloc(n ? n : 1, sizeof *m->layers);
    if (!m->layers)
        return error_set(err, SM_E_NOMEM, "manifest: out of memory");
    for (size_t i = 0; i < n; i++) {
        char what[48];
        struct oci_descriptor d;
        snprintf(what, sizeof what, "layer %zu of the manifest", i + 1);
        rc = parse_descriptor(json_object_array_get_idx(arr, i), what, true, &d, err);
        if (rc)
            return rc;
        if (oci_layer_compression_of(d.media_type) == OCI_LAYER_UNKNOWN)
            return error_set(err, SM_E_UNSUPPORTED,
                           "%s has media type \"%s\", not a tar layer (plain, gzip or zstd)", what,
                           d.media_type);
        memcpy(m->layers[i].digest, d.digest, sizeof d.digest);
        memcpy(m->layers[i].media_type, d.media_type, sizeof d.media_type);
        m->layers[i].size = d.size;
        m->nlayers = i + 1;
    }
    return SM_OK;
}

static sm_code parse_index(struct json_object *root, struct oci_manifest *m, sm_error *err)
{
    struct json_object *arr;
    size_t n;
    sm_code rc = get_array(root, "manifests", OCI_MAX_MANIFESTS, &arr, &n, err);
    if (rc)
        return rc;
    m->manifests = calloc(n ? n : 1, sizeof *m->manifests);
    if (!m->manifests)
        return error_set(err, SM_E_NOMEM, "index: out of memory");
    for (size_t i = 0; i < n; i++) {
        char what[48];
        struct json_object *e = json_object_array_get_idx(arr, i);
        snprintf(what, sizeof what, "entry %zu of the index", i + 1);
        rc = parse_descriptor(e, what, false, &m->manifests[i], err);
        if (rc)
            return rc;
        if (is_attestation(e, &m->manifests[i]))
            snprintf(m->manifests[i].os, sizeof m->manifests[i].os, "unknown");
        m->nmanifests = i + 1;
    }
    return SM_OK;
}

/* "application/json; charset=utf-8" -> "application/json" */
static void strip_parameters(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    while (in && in[n] && in[n] != ';' && in[n] != ' ' && n + 1 < cap)
        n++;
    memcpy(out, in ? in : "", n);
    out[n] = '\0';
}

static bool is_schema1(const char *mt)
{
    return strcmp(mt, OCI_MT_DOCKER_V1) == 0 || strcmp(mt, OCI_MT_DOCKER_V1_SIGNED) == 0;
}

static sm_code decide_kind(struct json_object *root, const char *doc_mt, const char *hint_mt,
                           struct oci_manifest *m, sm_error *err)
{
    struct json_object *v;
    if (is_schema1(doc_mt) || is_schema1(hint_mt) ||
        json_object_object_get_ex(root, "fsLayers", &v))
        goto schema1;
    if (!json_object_object_get_ex(root, "schemaVersion", &v) ||
        !json_object_is_type(v, json_type_int))
        return error_set(err, SM_E_PROTOCOL, "the manifest has no integer \"schemaVersion\"");
    int64_t version = json_object_get_int64(v);
    if (version == 1)
        goto schema1;
    if (version != 2)
        return error_set(err, SM_E_UNSUPPORTED, "manifest schemaVersion %lld is not supported",
                       (long long)version);

    const char *mt = doc_mt[0] ? doc_mt : hint_mt;
    if (strcmp(mt, OCI_MT_OCI_INDEX) == 0 || strcmp(mt, OCI_MT_DOCKER_LIST) == 0)
        m->kind = OCI_KIND_INDEX;
    else if (strcmp(mt, OCI_MT_OCI_MANIFEST) == 0 || strcmp(mt, OCI_MT_DOCKER_MANIFEST) == 0)
        m->kind = OCI_KIND_IMAGE;
    else if (doc_mt[0])
        return error_set(err, SM_E_UNSUPPORTED, "unsupported manifest media type \"%s\"", doc_mt);
    else if (json_object_object_get_ex(root, "manifests", &v))
        m->kind = OCI_KIND_INDEX; /* OCI allows leaving mediaType out */
    else
        m->kind = OCI_KIND_IMAGE;
    /* Record what the document is: its own mediaType, else the server's
     * Content-Type when that names the same kind, else the OCI name. */
    const char *fallback = m->kind == OCI_KIND_INDEX ? OCI_MT_OCI_INDEX : OCI_MT_OCI_MANIFEST;
    bool hint_same_kind =
        m->kind == OCI_KIND_INDEX
            ? strcmp(hint_mt, OCI_MT_OCI_INDEX) == 0 || strcmp(hint_mt, OCI_MT_DOCKER_LIST) == 0
            : strcmp(hint_mt, OCI_MT_OCI_MANIFEST) == 0 ||
                  strcmp(hint_mt, OCI_MT_DOCKER_MANIFEST) == 0;
    snprintf(m->media_type, sizeof m->media_type, "%s",
             doc_mt[0] ? doc_mt : hint_same_kind ? hint_mt : fallback);
    return SM_OK;
schema1:
    return error_set(err, SM_E_UNSUPPORTED,
                   "the image has a Docker schema 1 manifest, which is deprecated and not "
                   "supported: push it again with a current Docker or skopeo (schema 2 / OCI)");
}

sm_code oci_manifest_parse(const char *json, size_t len, const char *content_type,
                           struct oci_manifest *out, sm_error *err)
{
    memset(out, 0, sizeof *out);
    struct json_object *root;
    sm_code rc = oci_json_parse(json, len, OCI_JSON_MAX, "the manifest", &root, err);
    if (rc)
        return rc;
    char doc_mt[128], hint_mt[128];
    if (!json_object_is_type(root, json_type_object)) {
        rc = error_set(err, SM_E_PROTOCOL, "the manifest is not a JSON object");
        goto out;
    }
    rc = copy_string_field(root, "mediaType", doc_mt, sizeof doc_mt, false, "the manifest", err);
    if (rc)
        goto out;
    strip_parameters(content_type, hint_mt, sizeof hint_mt);
    rc = decide_kind(root, doc_mt, hint_mt, out, err);
    if (!rc)
        rc = out->kind == OCI_KIND_INDEX ? parse_index(root, out, err) : parse_image(root, out, err);
out:
    json_object_put(root);
    if (rc)
        oci_manifest_free(out);
    return rc;
}

void oci_manifest_free(struct oci_manifest *m)
{
    if (!m)
        return;
    free(m->layers);
    free(m->manifests);
    memset(m, 0, sizeof *m);
}

static void platform_name(const struct oci_descriptor *d, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s%s%s", d->os[0] ? d->os : "?",
             d->architecture[0] ? d->architecture : "?", d->variant[0] ? "/" : "", d->variant);
}

/* Appends ", name" to list (bounded, "..." once full). */
static void list_append(char *list, size_t cap, const char *name)
{
    size_t used = strlen(list);
    if (used + strlen(name) + 8 >= cap) {
        if (used + 5 < cap && !strstr(list, "..."))
            strcat(list, ", ...");
        return;
    }
    if (strstr(list, name)) /* each platform once */
        return;
    snprintf(list + used, cap - used, "%s%s", used ? ", " : "", name);
}

sm_code oci_index_select(const struct oci_manifest *index, const char *os,
                         const char *architecture, const char *ref_name,
                         const struct oci_descriptor **out, sm_error *err)
{
    *out = NULL;
    const struct oci_descriptor *only = NULL;
    size_t candidates = 0, without_platform = 0;
    char offered[256] = "";
    bool by_name = ref_name && ref_name[0];
    for (size_t i = 0; i < index->nmanifests; i++) {
        const struct oci_descriptor *d = &index->manifests[i];
        if (by_name && strcmp(d->ref_name, ref_name) != 0)
            continue;
        if (strcmp(d->os, "unknown") == 0)
            continue;
        candidates++;
        only = d;
        if (!d->os[0] && !d->architecture[0]) {
            without_platform++;
            continue;
        }
        if (strcmp(d->os, os) == 0 && strcmp(d->architecture, architecture) == 0) {
            *out = d;
            return SM_OK;
        }
        char name[100];
        platform_name(d, name, sizeof name);
        list_append(offered, sizeof offered, name);
    }
    if (candidates == 1 && without_platform == 1) {
        *out = only;
        return SM_OK;
    }
    if (candidates == 0 && by_name)
        return error_set(err, SM_E_NOTFOUND, "no image named \"%s\" in the index", ref_name);
    if (candidates == 0)
        return error_set(err, SM_E_NOTFOUND, "the index lists no image");
    if (without_platform)
        list_append(offered, sizeof offered, "(entries without a platform)");
    return error_set(err, SM_E_NOTFOUND, "no %s/%s image: the index offers %s", os, architecture,
                   offered);
}
