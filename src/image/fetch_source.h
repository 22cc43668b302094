/*
 * Inside oci_fetch: what one source of images provides, and the shared steps
 * oci_fetch.c offers the sources (naming, progress, platform choice, digest
 * checks, and the final checks that fill struct oci_fetched).
 *
 * A source gets the reference without its prefix ("oci:", "docker-archive:",
 * "docker://"), a store that exists (blob_store_init done) and a zeroed *out.
 * On success it has put the config and every layer into the store, verified,
 * and filled *out through fetch_finish plus manifest_digest and
 * canonical_ref. On failure oci_fetch frees *out.
 */
#ifndef SM_IMAGE_FETCH_SOURCE_H
#define SM_IMAGE_FETCH_SOURCE_H

#include "image/digest.h"
#include "image/oci_fetch.h"
#include "image/oci_manifest.h"
#include "supermachine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The one platform an image is fetched for. */
#define FETCH_WANT_OS "linux"
#define FETCH_WANT_ARCH "amd64"
#define FETCH_MAX_INDEX_DEPTH 4 /* index -> index -> ... -> manifest */

typedef sm_code fetch_source_fn(const char *spec, const struct oci_fetch_options *opt,
                                struct oci_fetched *out, sm_error *err);

/* The sources, one file each. */
fetch_source_fn fetch_registry;       /* fetch_registry.c */
fetch_source_fn fetch_oci_layout;     /* fetch_oci_layout.c */
fetch_source_fn fetch_docker_archive; /* fetch_docker_archive.c */

/* ---- shared steps (oci_fetch.c) ---- */

/* "layer sha256:0123456789ab…", the name progress and errors use. */
void fetch_blob_name(const char *kind, const char *digest, char *out, size_t cap);

/* Calls opt->progress, if any. */
void fetch_report(const struct oci_fetch_options *opt, const char *what, uint64_t done,
                  uint64_t total);

/* Names the blob into name (as fetch_blob_name); true when the store already
 * holds it, reported then as done. */
bool fetch_blob_stored(const struct oci_fetch_options *opt, const char *kind, const char *digest,
                       uint64_t size, char *name, size_t cap);

/* One step down an image index, the depth-th (0 for the first index): the
 * linux/amd64 entry, or the one tagged ref_name when not NULL. */
sm_code fetch_pick_platform(const struct oci_manifest *index, int depth, const char *ref_name,
                            struct oci_descriptor *chosen, sm_error *err);

/* Computes the sha256 of a manifest's bytes into got; when want is not ""
 * it must be that digest ("manifest sha256:… is corrupt: digest mismatch"). */
sm_code fetch_verify_manifest(const char *buf, size_t len, const char *want,
                              char got[OCI_DIGEST_SIZE], sm_error *err);

/* Stores a verified manifest (or index) under its digest. */
sm_code fetch_store_manifest(const struct oci_fetch_options *opt, const char *digest,
                             const char *buf, size_t len, sm_error *err);

/* The cap on compressed bytes opt sets (its default when 0). */
uint64_t fetch_max_compressed(const struct oci_fetch_options *opt);

/* Before fetching layers: SM_E_LIMIT when total, the layers' sizes added up,
 * is more than the cap, or when the store's file system has less than need
 * bytes free (what is still to be written of the layers). */
sm_code fetch_check_cap(const struct oci_fetch_options *opt, uint64_t total, sm_error *err);
sm_code fetch_check_room(const struct oci_fetch_options *opt, uint64_t need, sm_error *err);

/* Both, for layers named by digest: the room needed is the size of each
 * distinct layer not in the store yet, less what its .partial holds. */
sm_code fetch_preflight(const struct oci_fetch_options *opt, const struct oci_layer *layers,
                        size_t nlayers, sm_error *err);

/* Fills out from the config (already in the store, verified) and the layers:
 * the config is read back and checked for linux/amd64 and its diff_ids. */
sm_code fetch_finish(const struct oci_fetch_options *opt, const char *config_digest,
                     const struct oci_layer *layers, size_t nlayers, struct oci_fetched *out,
                     sm_error *err);

#endif
