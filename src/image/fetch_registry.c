/*
 * fetch_registry: an image from a registry ([docker://]REGISTRY/NAME[:TAG|
 * @DIGEST], see reference.c), over the distribution API v2 (registry.c).
 * The reference's manifest may be an index: the linux/amd64 manifest is
 * chosen from it. Manifests met on the way are kept in the store, so a
 * digest already stored is not asked for again (a tag always is: it may
 * have moved).
 */
#include "image/fetch_source.h"

#include "image/blob_store.h"
#include "image/oci_manifest.h"
#include "image/reference.h"
#include "image/registry.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A manifest's bytes and Content-Type: from the store when the digest is
 * known and stored (*stored true), else from the registry. */
static sm_code manifest_bytes(struct registry_client *c, const struct oci_fetch_options *opt,
                              const char *target, const char *want_digest, uint64_t want_size,
                              const char *hint_type, char **body, size_t *len, char *ctype,
                              size_t ctype_cap, bool *stored, sm_error *err)
{
    *stored = want_digest[0] && blob_store_has(opt->store_dir, want_digest, want_size);
    if (!*stored)
        return registry_get_manifest(c, target, body, len, ctype, err);
    snprintf(ctype, ctype_cap, "%s", hint_type);
    return blob_store_read(opt->store_dir, want_digest, OCI_JSON_MAX, body, len, err);
}

/* A manifest by tag or digest, then stored if it came from the registry.
 * want_digest/want_size ("" / BLOB_SIZE_UNKNOWN when unknown) are checked. */
static sm_code load_manifest(struct registry_client *c, const struct oci_fetch_options *opt,
                             const char *target, const char *want_digest, uint64_t want_size,
                             const char *hint_type, struct oci_manifest *m,
                             char digest[OCI_DIGEST_SIZE], sm_error *err)
{
    char *body = NULL, ctype[128] = "";
    size_t len = 0;
    bool stored;
    sm_code rc = manifest_bytes(c, opt, target, want_digest, want_size, hint_type, &body, &len,
                                ctype, sizeof ctype, &stored, err);
    if (!rc)
        rc = fetch_verify_manifest(body, len, want_digest, digest, err);
    if (!rc && want_size != BLOB_SIZE_UNKNOWN && len != want_size)
        rc = error_set(err, SM_E_PROTOCOL,
                       "manifest %s is corrupt: %zu bytes where its descriptor says %llu", digest,
                       len, (unsigned long long)want_size);
    if (!rc)
        rc = oci_manifest_parse(body, len, ctype[0] ? ctype : hint_type, m, err);
    if (!rc && !stored)
        rc = fetch_store_manifest(opt, digest, body, len, err);
    free(body);
    return rc;
}

/* From whatever the reference names down to the linux/amd64 image manifest. */
static sm_code resolve_manifest(struct registry_client *c, const struct oci_fetch_options *opt,
                                const struct oci_reference *ref, struct oci_manifest *m,
                                char digest[OCI_DIGEST_SIZE], sm_error *err)
{
    sm_code rc = load_manifest(c, opt, oci_reference_target(ref), ref->digest, BLOB_SIZE_UNKNOWN,
                               "", m, digest, err);
    for (int depth = 0; !rc && m->kind == OCI_KIND_INDEX; depth++) {
        struct oci_descriptor chosen;
        rc = fetch_pick_platform(m, depth, NULL, &chosen, err);
        if (rc)
            return rc;
        if (chosen.size > OCI_JSON_MAX)
            return error_set(err, SM_E_LIMIT, "the %s/%s manifest is %llu bytes, more than %u",
                             FETCH_WANT_OS, FETCH_WANT_ARCH, (unsigned long long)chosen.size,
                             OCI_JSON_MAX);
        oci_manifest_free(m);
        rc = load_manifest(c, opt, chosen.digest, chosen.digest, chosen.size, chosen.media_type,
                           m, digest, err);
    }
    return rc;
}

/* The config, then each layer not yet in the store. Layer bytes count
 * against the cap as they arrive: the sizes were checked against it, so
 * only a registry sending more (bytes again, past a layer's end) meets it. */
static sm_code fetch_blobs(struct registry_client *c, const struct oci_fetch_options *opt,
                           const struct oci_manifest *m, struct oci_fetched *out, sm_error *err)
{
    char name[64];
    uint64_t got = 0;
    if (m->config.size > OCI_JSON_MAX)
        return error_set(err, SM_E_LIMIT, "the image config is %llu bytes, more than %u",
                         (unsigned long long)m->config.size, OCI_JSON_MAX);
    sm_code rc = fetch_preflight(opt, m->layers, m->nlayers, err);
    if (rc)
        return rc;
    fetch_blob_name("config", m->config.digest, name, sizeof name);
    rc = registry_fetch_blob(c, opt->store_dir, m->config.digest, m->config.size, name, NULL,
                             &got, err);
    out->downloaded += got;
    struct registry_budget layers = {.limit = fetch_max_compressed(opt)};
    for (size_t i = 0; !rc && i < m->nlayers; i++) {
        const struct oci_layer *l = &m->layers[i];
        if (fetch_blob_stored(opt, "layer", l->digest, l->size, name, sizeof name))
            continue;
        rc = registry_fetch_blob(c, opt->store_dir, l->digest, l->size, name, &layers, &got, err);
        out->downloaded += got;
    }
    return rc;
}

static sm_code open_client(const struct oci_reference *ref, const struct oci_fetch_options *opt,
                           struct registry_client **c, sm_error *err)
{
    struct registry_options ro = {
        .plain_http = opt->plain_http,
        .ca_file = opt->ca_file,
        .username = opt->username,
        .password = opt->password,
        .progress = opt->progress,
        .progress_ctx = opt->progress_ctx,
    };
    return registry_open(ref, &ro, c, err);
}

/* Manifest errors already name the repository; blob errors do not, so they
 * get the canonical reference in front. */
static void name_the_reference(const struct oci_reference *ref, const char *canonical,
                               sm_error *err)
{
    char name[OCI_REF_NAME_MAX * 2 + 2];
    snprintf(name, sizeof name, "%s/%s", ref->registry, ref->repository);
    if (err && strncmp(err->message, name, strlen(name)) != 0)
        error_prefix(err, "%s", canonical);
}

sm_code fetch_registry(const char *refstr, const struct oci_fetch_options *opt,
                       struct oci_fetched *out, sm_error *err)
{
    struct oci_reference ref;
    sm_code rc = oci_reference_parse(refstr, &ref, err);
    if (rc)
        return rc;
    struct registry_client *c;
    rc = open_client(&ref, opt, &c, err);
    if (rc)
        return rc;
    struct oci_manifest m = {0};
    rc = resolve_manifest(c, opt, &ref, &m, out->manifest_digest, err);
    if (!rc)
        rc = fetch_blobs(c, opt, &m, out, err);
    if (!rc)
        rc = fetch_finish(opt, m.config.digest, m.layers, m.nlayers, out, err);
    char canonical[OCI_REF_INPUT_MAX];
    oci_reference_format(&ref, canonical, sizeof canonical);
    if (!rc && !(out->canonical_ref = strdup(canonical)))
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    if (rc)
        name_the_reference(&ref, canonical, err);
    oci_manifest_free(&m);
    registry_close(c);
    return rc;
}
