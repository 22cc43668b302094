/*
 * libFuzzer target: a registry's response headers (src/image/
 * registry_headers.c), as libcurl hands them to the client one line at a
 * time. The input is the header block: lines end at '\n' (kept, as libcurl
 * keeps CRLF; a last line without one counts too). After it: the kept
 * Content-Range through its parser, the kept challenge through
 * registry_parse_challenge, and every line through both on its own.
 * Checked: kept values within their fields, a status of 0 or 100-599, a
 * digest that is "" or valid, a parsed range that is ordered, failures
 * that say why.
 *
 *   build/fuzz/fuzz_registry_headers -max_total_time=20 fuzz/corpus/fuzz_registry_headers
 */
#include "image/registry_headers.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_range(const char *value)
{
    struct content_range cr;
    if (registry_parse_content_range(value, &cr) &&
        (cr.first > cr.last || (cr.total_known && cr.last >= cr.total) ||
         strncmp(value, "bytes ", 6) != 0))
        abort();
}

static void check_challenge(const char *value)
{
    struct auth_challenge ch;
    sm_error err = {0};
    sm_code rc = registry_parse_challenge(value, &ch, &err);
    if (rc != SM_OK && !err.message[0])
        abort();
    if (rc == SM_OK && (strlen(ch.scheme) >= sizeof ch.scheme || strlen(ch.realm) >= sizeof ch.realm ||
                        strlen(ch.service) >= sizeof ch.service || strlen(ch.scope) >= sizeof ch.scope))
        abort();
}

static void check_kept(const struct registry_headers *h)
{
    if ((h->status != 0 && (h->status < 100 || h->status > 599)) ||
        strnlen(h->content_type, sizeof h->content_type) == sizeof h->content_type ||
        strnlen(h->content_range, sizeof h->content_range) == sizeof h->content_range ||
        strnlen(h->challenge, sizeof h->challenge) == sizeof h->challenge ||
        (h->docker_digest[0] && !oci_digest_valid(h->docker_digest)) ||
        (h->has_length && h->length_conflict))
        abort();
}

/* One line on its own, NUL-terminated, through the value parsers. */
static void check_line(const uint8_t *line, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        return;
    memcpy(s, line, n);
    s[n] = 0;
    check_range(s);
    check_challenge(s);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (64u << 10))
        return 0;
    struct registry_headers h;
    registry_headers_reset(&h);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n')
            continue;
        size_t end = i < size ? i + 1 : i;
        if (end > start) {
            /* A copy of exactly the line: libcurl's buffer has no NUL after it. */
            uint8_t *line = malloc(end - start);
            if (!line)
                return 0;
            memcpy(line, data + start, end - start);
            registry_header_line(&h, (const char *)line, end - start);
            check_line(line, end - start);
            free(line);
            check_kept(&h);
        }
        start = end;
    }
    if (h.content_range[0])
        check_range(h.content_range);
    if (h.challenge[0])
        check_challenge(h.challenge);
    return 0;
}
