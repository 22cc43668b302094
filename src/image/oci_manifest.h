/*
 * Image manifests and indexes (manifest lists), parsed from hostile JSON.
 *
 * What is read (everything else is ignored):
 *
 *   field                  image manifest          index / manifest list
 *   schemaVersion          2 (1: refused, see below)
 *   mediaType              optional in OCI; must match the kind when present
 *   config                 descriptor (required)   -
 *   layers                 descriptors (required)  -
 *   manifests              -                       descriptors (required)
 *
 *   descriptor: mediaType (string), digest ("sha256:<hex>"), size (integer
 *               >= 0), platform {os, architecture, variant} in indexes only,
 *               annotations["org.opencontainers.image.ref.name"] (oci layouts)
 *
 * Media types:
 *   application/vnd.oci.image.manifest.v1+json                  image (OCI)
 *   application/vnd.docker.distribution.manifest.v2+json        image (Docker v2 schema 2)
 *   application/vnd.oci.image.index.v1+json                     index (OCI)
 *   application/vnd.docker.distribution.manifest.list.v2+json   index (Docker)
 *   application/vnd.docker.distribution.manifest.v1(+prettyjws) refused: schema 1
 *   layers: application/vnd.oci.image.layer.v1.tar[+gzip|+zstd],
 *           application/vnd.docker.image.rootfs.diff.tar.gzip, and the
 *           nondistributable / foreign variants of these
 *   config: application/vnd.oci.image.config.v1+json,
 *           application/vnd.docker.container.image.v1+json
 *
 * Bounds: a document of at most OCI_JSON_MAX bytes, at most OCI_MAX_LAYERS
 * layers and OCI_MAX_MANIFESTS index entries, strings within their fields.
 */
#ifndef SM_IMAGE_OCI_MANIFEST_H
#define SM_IMAGE_OCI_MANIFEST_H

#include "image/digest.h"
#include "image/oci_fetch.h"
#include "supermachine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OCI_JSON_MAX (4u << 20)   /* manifest, index, config */
#define OCI_MAX_LAYERS 1000
#define OCI_MAX_MANIFESTS 1000
#define OCI_MAX_LAYER_SIZE (64ull << 30) /* a layer's declared size */

#define OCI_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OCI_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_MT_DOCKER_V1 "application/vnd.docker.distribution.manifest.v1+json"
#define OCI_MT_DOCKER_V1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define OCI_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define OCI_MT_LAYER_TAR "application/vnd.oci.image.layer.v1.tar"
#define OCI_MT_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define OCI_MT_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define OCI_MT_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar.gzip"

/* What the Accept header of a manifest request lists. */
#define OCI_MANIFEST_ACCEPT                                                                 \
    OCI_MT_OCI_INDEX ", " OCI_MT_DOCKER_LIST ", " OCI_MT_OCI_MANIFEST ", " OCI_MT_DOCKER_MANIFEST

enum oci_manifest_kind { OCI_KIND_IMAGE = 1, OCI_KIND_INDEX = 2 };
enum oci_layer_compression { OCI_LAYER_TAR, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER_UNKNOWN };

struct oci_descriptor {
    char media_type[128];
    char digest[OCI_DIGEST_SIZE];
    uint64_t size;
    char os[32], architecture[32], variant[32]; /* index entries; "" when absent */
    char ref_name[129];                         /* org.opencontainers.image.ref.name */
};

struct oci_manifest {
    enum oci_manifest_kind kind;
    char media_type[128];               /* the document's, or the kind's default */
    struct oci_descriptor config;       /* image */
    size_t nlayers;                     /* image */
    struct oci_layer *layers;
    size_t nmanifests;                  /* index */
    struct oci_descriptor *manifests;
};

/* Parses a manifest or an index. content_type (an HTTP Content-Type, may be
 * NULL or "") is a hint used when the document has no mediaType. */
sm_code oci_manifest_parse(const char *json, size_t len, const char *content_type,
                           struct oci_manifest *out, sm_error *err);
void oci_manifest_free(struct oci_manifest *m);

/* Picks from an index the entry for os/architecture (e.g. "linux",
 * "amd64"), skipping attestation entries; with ref_name (non-NULL, non-empty)
 * only entries with that ref name count. When no entry has a platform and
 * exactly one is left, it is chosen. SM_E_NOTFOUND names the platforms
 * offered. */
sm_code oci_index_select(const struct oci_manifest *index, const char *os,
                         const char *architecture, const char *ref_name,
                         const struct oci_descriptor **out, sm_error *err);

/* Layer compression by media type (OCI_LAYER_UNKNOWN when not a layer type). */
enum oci_layer_compression oci_layer_compression_of(const char *media_type);

/* ---- JSON helpers shared by the image code (json-c underneath). */
struct json_object;
/* Parses exactly len bytes (trailing whitespace allowed) of at most max
 * bytes into one JSON value; `what` names the document in errors. */
sm_code oci_json_parse(const char *buf, size_t len, size_t max, const char *what,
                       struct json_object **out, sm_error *err);
/* A string member of obj of at most max_len bytes with no NUL, or NULL when
 * absent. *bad is set when present but not such a string. */
const char *oci_json_string(struct json_object *obj, const char *key, size_t max_len, bool *bad);

#endif
