/*
 * A registry's HTTP response headers, as the registry client reads them
 * (src/image/registry_headers.c): hostile input, parsed here apart from
 * libcurl's callbacks so that the parsers can be tested and fuzzed
 * (fuzz/fuzz_registry_headers.c).
 *
 *   header                  kept as                   used for
 *   status line             status                    every answer (a new one, after a
 *                                                     redirect or a 100, forgets the rest)
 *   Content-Type            content_type              a manifest's media type
 *   Content-Length          content_length            a blob announcing more than its
 *                                                     descriptor or the cap is refused
 *                                                     before its first byte
 *   Content-Range           content_range (text),     a resumed download: the range asked
 *                           registry_parse_content_range for, of the blob's size
 *   Docker-Content-Digest   docker_digest             a manifest must hash to it; a blob
 *                                                     answering with another is refused
 *   WWW-Authenticate        challenge, then           the first Bearer one, else the first:
 *                           registry_parse_challenge  how to get credentials after a 401
 *
 * Location is libcurl's own (redirects are followed there, within the
 * protocols and count registry.c sets). A header whose value does not parse
 * is kept as absent (length, digest) or refused where it is used (range,
 * challenge).
 */
#ifndef SM_IMAGE_REGISTRY_HEADERS_H
#define SM_IMAGE_REGISTRY_HEADERS_H

#include "image/digest.h"
#include "supermachine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REGISTRY_CHALLENGE_MAX 4096

struct registry_headers {
    long status;          /* of the last status line: 100-599, or 0 (none, or not a number) */
    char content_type[128];
    char content_range[128];
    char challenge[REGISTRY_CHALLENGE_MAX];
    char docker_digest[OCI_DIGEST_SIZE]; /* a valid "sha256:<hex>", else "" */
    bool has_length;
    bool length_conflict; /* two different Content-Lengths: neither is believed */
    uint64_t content_length;
};

void registry_headers_reset(struct registry_headers *h);

/* One header line as libcurl passes it: n bytes, CRLF included, no NUL. */
void registry_header_line(struct registry_headers *h, const char *line, size_t n);

/* "bytes FIRST-LAST/TOTAL" (RFC 9110; TOTAL may be "*", unknown), decimal
 * digits only, FIRST <= LAST, LAST < TOTAL; false for anything else. */
struct content_range {
    uint64_t first, last, total;
    bool total_known;
};
bool registry_parse_content_range(const char *value, struct content_range *out);

/* A WWW-Authenticate challenge: the scheme ("Bearer" / "Basic") and the
 * realm, service and scope parameters (others are skipped). */
struct auth_challenge {
    char scheme[16];
    char realm[1024];
    char service[1024];
    char scope[1024];
};
sm_code registry_parse_challenge(const char *header, struct auth_challenge *out, sm_error *err);

#endif
