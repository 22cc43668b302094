/*
 * oci_fetch: one entry point for the three sources of an image (see
 * oci_fetch.h). Whatever the source, the result is the same: the config
 * and every layer are blobs in the store, checked against their digests,
 * and *out lists them bottom first.
 *
 *   reference                      source                 file
 *   oci:PATH[:TAG]                 OCI image layout       fetch_oci_layout.c
 *   docker-archive:PATH            `docker save` tar      fetch_docker_archive.c
 *   [docker://]REGISTRY/NAME...    registry (API v2)      fetch_registry.c (with registry.c)
 *
 * Each source is one function of fetch_source.h, chosen here by the
 * reference's prefix. What they share stays here: the choice of the
 * linux/amd64 manifest in an index, checking a manifest's digest, storing
 * it, progress names, and the final check of the config that fills *out.
 */
#include "image/oci_fetch.h"

#include "image/blob_store.h"
#include "image/digest.h"
#include "image/disk_space.h"
#include "image/fetch_source.h"
#include "image/oci_config.h"
#include "image/oci_manifest.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* By prefix, first match wins: the last, "", takes a plain reference. */
static const struct {
    const char *prefix;
    fetch_source_fn *fetch;
} sources[] = {
    {"oci:", fetch_oci_layout},
    {"docker-archive:", fetch_docker_archive},
    {"docker://", fetch_registry},
    {"", fetch_registry},
};

char *oci_blob_path(const char *store_dir, const char *digest)
{
    return blob_store_path(store_dir, digest);
}

void oci_fetched_free(struct oci_fetched *f)
{
    if (!f)
        return;
    free(f->config_json);
    free(f->layers);
    free(f->canonical_ref);
    memset(f, 0, sizeof *f);
}

/* ---- shared steps (fetch_source.h) ------------------------------------------ */

void fetch_blob_name(const char *kind, const char *digest, char *out, size_t cap)
{
    char s[32];
    oci_digest_short(digest, s);
    snprintf(out, cap, "%s %s…", kind, s);
}

void fetch_report(const struct oci_fetch_options *opt, const char *what, uint64_t done,
                  uint64_t total)
{
    if (opt->progress)
        opt->progress(opt->progress_ctx, what, done, total);
}

bool fetch_blob_stored(const struct oci_fetch_options *opt, const char *kind, const char *digest,
                       uint64_t size, char *name, size_t cap)
{
    fetch_blob_name(kind, digest, name, cap);
    if (!blob_store_has(opt->store_dir, digest, size))
        return false;
    fetch_report(opt, name, size, size);
    return true;
}

sm_code fetch_pick_platform(const struct oci_manifest *index, int depth, const char *ref_name,
                            struct oci_descriptor *chosen, sm_error *err)
{
    if (depth == FETCH_MAX_INDEX_DEPTH)
        return error_set(err, SM_E_LIMIT, "indexes nested more than %d deep",
                         FETCH_MAX_INDEX_DEPTH);
    const struct oci_descriptor *d;
    sm_code rc = oci_index_select(index, FETCH_WANT_OS, FETCH_WANT_ARCH, ref_name, &d, err);
    if (!rc)
        *chosen = *d; /* a copy: the caller frees the index next */
    return rc;
}

sm_code fetch_verify_manifest(const char *buf, size_t len, const char *want,
                              char got[OCI_DIGEST_SIZE], sm_error *err)
{
    sm_code rc = oci_sha256_buffer(buf, len, got, err);
    if (rc || !want[0] || strcmp(got, want) == 0)
        return rc;
    char s[32], name[64];
    oci_digest_short(got, s);
    fetch_blob_name("manifest", want, name, sizeof name);
    return error_set(err, SM_E_PROTOCOL, "%s is corrupt: digest mismatch (got %s…)", name, s);
}

sm_code fetch_store_manifest(const struct oci_fetch_options *opt, const char *digest,
                             const char *buf, size_t len, sm_error *err)
{
    return blob_store_put_buffer(opt->store_dir, digest, buf, len, "manifest", err);
}

uint64_t fetch_max_compressed(const struct oci_fetch_options *opt)
{
    return opt->max_compressed ? opt->max_compressed : SM_PULL_DEFAULT_MAX_COMPRESSED;
}

sm_code fetch_check_cap(const struct oci_fetch_options *opt, uint64_t total, sm_error *err)
{
    uint64_t cap = fetch_max_compressed(opt);
    if (total <= cap)
        return SM_OK;
    char total_text[SIZE_TEXT_MAX], cap_text[SIZE_TEXT_MAX];
    size_text_exact(total, total_text);
    size_text_exact(cap, cap_text);
    return error_set(err, SM_E_LIMIT,
                     "the image's layers are %s compressed, more than the cap of %s on an "
                     "image's compressed bytes; raise the cap to pull it",
                     total_text, cap_text);
}

sm_code fetch_check_room(const struct oci_fetch_options *opt, uint64_t need, sm_error *err)
{
    return need ? disk_space_check(opt->store_dir, need, "the image's layers", err) : SM_OK;
}

/* Bytes a resumable download of digest already holds. */
static uint64_t partial_bytes(const struct oci_fetch_options *opt, const char *digest)
{
    char *path = blob_store_partial_path(opt->store_dir, digest);
    struct stat st;
    uint64_t n = path && stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    free(path);
    return n;
}

static bool listed_before(const struct oci_layer *layers, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(layers[j].digest, layers[i].digest) == 0)
            return true;
    return false;
}

sm_code fetch_preflight(const struct oci_fetch_options *opt, const struct oci_layer *layers,
                        size_t nlayers, sm_error *err)
{
    uint64_t total = 0, need = 0;
    for (size_t i = 0; i < nlayers; i++) {
        /* Each size is at most OCI_MAX_LAYER_SIZE (64 GiB), 1000 of them at
         * most: the sums cannot wrap. */
        total += layers[i].size;
        if (listed_before(layers, i) || blob_store_has(opt->store_dir, layers[i].digest,
                                                       layers[i].size))
            continue;
        uint64_t held = partial_bytes(opt, layers[i].digest);
        need += held < layers[i].size ? layers[i].size - held : 0;
    }
    sm_code rc = fetch_check_cap(opt, total, err);
    return rc ? rc : fetch_check_room(opt, need, err);
}

/* The config must be a parseable image config for linux/amd64 whose
 * diff_ids (when listed) are as many as the layers. */
static sm_code check_config(const char *json, size_t len, size_t nlayers, sm_error *err)
{
    struct oci_config cfg;
    sm_code rc = oci_config_parse(json, len, &cfg, err);
    if (rc)
        return rc;
    if ((cfg.os[0] && strcmp(cfg.os, FETCH_WANT_OS) != 0) ||
        (cfg.architecture[0] && strcmp(cfg.architecture, FETCH_WANT_ARCH) != 0))
        rc = error_set(err, SM_E_UNSUPPORTED,
                       "the image is for %s/%s%s%s, not " FETCH_WANT_OS "/" FETCH_WANT_ARCH,
                       cfg.os[0] ? cfg.os : "?", cfg.architecture[0] ? cfg.architecture : "?",
                       cfg.variant[0] ? "/" : "", cfg.variant);
    else if (cfg.ndiff_ids && cfg.ndiff_ids != nlayers)
        rc = error_set(err, SM_E_PROTOCOL,
                       "the image config lists %zu layers (rootfs.diff_ids) but the manifest %zu",
                       cfg.ndiff_ids, nlayers);
    oci_config_free(&cfg);
    return rc;
}

sm_code fetch_finish(const struct oci_fetch_options *opt, const char *config_digest,
                     const struct oci_layer *layers, size_t nlayers, struct oci_fetched *out,
                     sm_error *err)
{
    sm_code rc = blob_store_read(opt->store_dir, config_digest, OCI_JSON_MAX, &out->config_json,
                                 &out->config_len, err);
    if (rc)
        return rc;
    rc = check_config(out->config_json, out->config_len, nlayers, err);
    if (rc)
        return rc;
    snprintf(out->config_digest, sizeof out->config_digest, "%s", config_digest);
    out->layers = calloc(nlayers ? nlayers : 1, sizeof *out->layers);
    if (!out->layers)
        return error_set(err, SM_E_NOMEM, "out of memory");
    memcpy(out->layers, layers, nlayers * sizeof *layers);
    out->nlayers = nlayers;
    out->compressed_size = 0;
    for (size_t i = 0; i < nlayers; i++)
        out->compressed_size += layers[i].size; /* each <= 64 GiB, at most 1000 */
    return SM_OK;
}

/* ---- the entry point --------------------------------------------------------- */

sm_code oci_fetch(const char *ref, const struct oci_fetch_options *opt, struct oci_fetched *out,
                  sm_error *err)
{
    if (!out)
        return error_set(err, SM_E_INVALID, "oci_fetch: no result to fill");
    memset(out, 0, sizeof *out);
    if (!ref || !ref[0])
        return error_set(err, SM_E_INVALID, "no image reference given");
    if (!opt || !opt->store_dir || !opt->store_dir[0])
        return error_set(err, SM_E_INVALID, "oci_fetch: no store folder given");
    sm_code rc = blob_store_init(opt->store_dir, err);
    if (rc)
        return rc;
    size_t i = 0;
    while (strncmp(ref, sources[i].prefix, strlen(sources[i].prefix)) != 0)
        i++;
    rc = sources[i].fetch(ref + strlen(sources[i].prefix), opt, out, err);
    if (rc)
        oci_fetched_free(out);
    return rc;
}
