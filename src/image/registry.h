/*
 * A client of the OCI distribution API v2 (Docker Registry HTTP API v2)
 * over libcurl: manifests into memory, blobs into the blob store, both
 * verified. The requests it makes are listed in registry.c.
 */
#ifndef SM_IMAGE_REGISTRY_H
#define SM_IMAGE_REGISTRY_H

#include "image/digest.h"
#include "image/reference.h"
#include "image/registry_headers.h" /* the header parsers; registry_parse_challenge */
#include "supermachine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REGISTRY_TOKEN_MAX (64u << 10)   /* a token reply */
#define REGISTRY_ERROR_BODY_MAX (64u << 10)
#define DOCKER_CONFIG_MAX (1u << 20)

struct registry_options {
    bool plain_http;        /* http:// instead of https:// */
    const char *ca_file;    /* also trust these CAs (PEM), or NULL */
    const char *username;   /* basic credentials, or NULL: look in the docker config */
    const char *password;
    void (*progress)(void *ctx, const char *what, uint64_t done, uint64_t total);
    void *progress_ctx;
};

struct registry_client;

/* A client for ref's registry and repository. Credentials are the given
 * ones, else those docker_config_lookup finds, else none (anonymous). */
sm_code registry_open(const struct oci_reference *ref, const struct registry_options *opt,
                      struct registry_client **out, sm_error *err);
void registry_close(struct registry_client *c);

/* GET /v2/<name>/manifests/<target> (a tag or a digest): the body (at most
 * OCI_JSON_MAX bytes, NUL-terminated, malloc'd) and its Content-Type. */
sm_code registry_get_manifest(struct registry_client *c, const char *target, char **body,
                              size_t *len, char content_type[128], sm_error *err);

/* Bytes of blobs a pull may still receive (the cap on an image's
 * compressed bytes): every body byte of a blob counts, bytes sent again
 * (a server ignoring Range) too. */
struct registry_budget {
    uint64_t limit;
    uint64_t used;
};

/* GET /v2/<name>/blobs/<digest> into the store, resuming a .partial with a
 * Range request, verified against digest and size; `what` names the blob
 * in messages ("layer sha256:0123..."). A blob already in the store is not
 * fetched. With a budget (may be NULL), bytes past budget->limit stop the
 * transfer: SM_E_LIMIT. *downloaded (may be NULL) gets the bytes received. */
sm_code registry_fetch_blob(struct registry_client *c, const char *store_dir, const char *digest,
                            uint64_t size, const char *what, struct registry_budget *budget,
                            uint64_t *downloaded, sm_error *err);

/* ---- credentials from a docker config.json ("auths" -> host -> "auth",
 * base64 of "user:password"). Keys may carry a scheme and a path
 * ("https://index.docker.io/v1/" is Docker Hub's). */

/* Looks registry up in a config document. SM_E_NOTFOUND when it has no
 * entry; *user and *password are malloc'd. */
sm_code docker_config_credentials(const char *json, size_t len, const char *registry,
                                  char **user, char **password, sm_error *err);
/* The same from $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
 * SM_E_NOTFOUND when there is no file or no entry. */
sm_code docker_config_lookup(const char *registry, char **user, char **password, sm_error *err);

#endif
