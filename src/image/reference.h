/*
 * Image references, as `docker pull` reads them:
 *
 *   [registry[:port]/]name[:tag][@sha256:<64 hex>]
 *
 *   registry  the first path component, when it has a '.' or a ':', is
 *             "localhost", or has an upper-case letter; else docker.io.
 *             A host is DNS labels, an IPv4 address, or [IPv6]; an
 *             optional :port is 1-65535.
 *   name      path components of [a-z0-9]+ joined by '.', '_', '__' or
 *             runs of '-', separated by '/'; at most 255 bytes with the
 *             registry. On docker.io a one-component name gets "library/".
 *   tag       [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; "latest" when neither a
 *             tag nor a digest is given.
 *   digest    sha256 only. With both a tag and a digest, the digest decides
 *             what is fetched (the tag is kept for display).
 *
 * docker.io (and its aliases index.docker.io, registry-1.docker.io) is
 * spoken to at registry-1.docker.io.
 */
#ifndef SM_IMAGE_REFERENCE_H
#define SM_IMAGE_REFERENCE_H

#include "image/digest.h"
#include "supermachine.h"

#include <stddef.h>

#define OCI_REF_NAME_MAX 255  /* registry + '/' + repository */
#define OCI_REF_TAG_MAX 128
#define OCI_REF_INPUT_MAX 1024

struct oci_reference {
    char registry[OCI_REF_NAME_MAX + 1];   /* "docker.io", "127.0.0.1:5000", "[::1]:5000" */
    char repository[OCI_REF_NAME_MAX + 1]; /* "library/debian" */
    char tag[OCI_REF_TAG_MAX + 1];         /* "bookworm"; "" with only a digest */
    char digest[OCI_DIGEST_SIZE];          /* "sha256:..." or "" */
};

/* Parses ref (see above). SM_E_INVALID with the reason on a bad reference. */
sm_code oci_reference_parse(const char *ref, struct oci_reference *out, sm_error *err);

/* The host[:port] to send API requests to (registry-1.docker.io for docker.io). */
const char *oci_reference_api_host(const struct oci_reference *r);

/* The full form, "docker.io/library/debian:bookworm", "...@sha256:..." or
 * "...:tag@sha256:...", into buf; returns what snprintf returns. */
int oci_reference_format(const struct oci_reference *r, char *buf, size_t cap);

/* What the manifest request asks for: the digest when there is one, else the tag. */
const char *oci_reference_target(const struct oci_reference *r);

#endif
