/*
 * Getting an image's manifest, config and layers into the local blob store,
 * every blob verified against its digest and size.
 *
 *   ref                                   where it comes from
 *   [docker://]REGISTRY/NAME[:TAG|@DIGEST] a registry (distribution API v2, see registry.c)
 *   oci:PATH[:TAG]                        an OCI image layout folder
 *   docker-archive:PATH                   a `docker save` tar (optionally compressed)
 *
 * The image chosen is the linux/amd64 one. After a success every layer and
 * the config are in STORE/blobs/sha256/ (see blob_store.c), so a second
 * fetch downloads no blob again (a tag's manifest is asked for again: it is
 * small, and the tag may have moved).
 */
#ifndef SM_IMAGE_OCI_FETCH_H
#define SM_IMAGE_OCI_FETCH_H

#include "supermachine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct oci_layer {
    char digest[72];       /* "sha256:<hex>": the blob's digest (of the compressed bytes) */
    char media_type[128];  /* the layer's media type; tells its compression */
    uint64_t size;         /* the blob's size in bytes */
};

struct oci_fetched {
    char manifest_digest[72]; /* "sha256:<hex>" of the linux/amd64 image manifest used (for
                                 docker-archive: the config's digest, as there is no manifest) */
    char config_digest[72];
    char *config_json;        /* the config blob, NUL-terminated (at most 4 MiB) */
    size_t config_len;
    size_t nlayers;
    struct oci_layer *layers; /* bottom first; each blob is in the store, verified */
    uint64_t compressed_size; /* sum of layer sizes */
    char *canonical_ref;      /* e.g. "docker.io/library/debian:bookworm" or "oci:/path" */
    uint64_t downloaded;      /* bytes of blobs fetched by this call (0: all cached) */
};

struct oci_fetch_options {
    const char *store_dir;      /* the store root (blobs under store_dir/blobs/sha256/) */
    bool plain_http;            /* talk http:// to the registry (a local test registry) */
    const char *ca_file;        /* extra CA bundle for HTTPS, or NULL (system CAs) */
    const char *username, *password; /* basic auth; when NULL, credentials from
                                        $DOCKER_CONFIG/config.json or ~/.docker/config.json
                                        ("auths" -> "auth": base64 of user:pass) */
    /* Called while blobs arrive: what is "layer sha256:0123456789ab…" (or
     * "config ...", or a path inside a docker-archive), done and total in
     * bytes (done counts a resumed .partial's bytes too); once with
     * done == total for a blob already in the store. May be NULL. */
    void (*progress)(void *ctx, const char *what, uint64_t done, uint64_t total);
    void *progress_ctx;
    /* The cap on the image's compressed bytes: the sum of its layers' sizes
     * (checked before any layer is fetched) and the layer bytes received
     * (a registry sending more is stopped). 0: SM_PULL_DEFAULT_MAX_COMPRESSED. */
    uint64_t max_compressed;
};

/* Fetches ref into opt->store_dir and describes it in *out (free with
 * oci_fetched_free, also after a failure). On failure nothing half-written
 * is left in the store but a resumable .partial download. Before the first
 * layer: SM_E_LIMIT when the layers add up to more than the cap, or when
 * the store's file system has no room for those not stored yet. Several calls may
 * run at once, in threads or processes, on one store: a blob being written
 * by one is waited for by the others. Credential helpers ("credsStore",
 * "credHelpers") of the docker config are not used: such registries are
 * reached anonymously unless username/password are given. */
sm_code oci_fetch(const char *ref, const struct oci_fetch_options *opt, struct oci_fetched *out,
                  sm_error *err);
void oci_fetched_free(struct oci_fetched *f);

/* The path of a blob in the store (malloc'd), NULL when digest is not a
 * valid "sha256:<hex>" or out of memory. The blob exists only if fetched. */
char *oci_blob_path(const char *store_dir, const char *digest);

#endif
