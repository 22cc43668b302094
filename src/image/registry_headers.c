/*
 * The registry's response headers (see registry_headers.h). Every parser
 * here works on bounded input: a header line is n bytes without a NUL, a
 * kept value is cut to its field, numbers are read digit by digit with
 * overflow refused (strtoull would take signs and blanks, and read past a
 * line that has no NUL).
 */
#include "image/registry_headers.h"

#include "base/error.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

void registry_headers_reset(struct registry_headers *h)
{
    memset(h, 0, sizeof *h);
}

/* Is line "NAME: value"? Then *value and *vlen give the value without the
 * blanks around it and the line's CRLF. */
static bool header_is(const char *line, size_t n, const char *name, const char **value,
                      size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return false;
    const char *v = line + k + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *value = v;
    *vlen = (size_t)(end - v);
    return true;
}

static void copy_bounded(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Decimal digits at *p (at least one, before end), as a number that fits;
 * *p moves past them. */
static bool read_decimal(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        s++;
    }
    if (s == *p)
        return false;
    *p = s;
    *out = v;
    return true;
}

/* "HTTP/1.1 200 OK", "HTTP/2 401": the three digits after the first blank. */
static long status_of(const char *line, size_t n)
{
    const char *sp = memchr(line, ' ', n);
    const char *end = line + n;
    uint64_t code;
    if (!sp)
        return 0;
    const char *p = sp + 1;
    if (!read_decimal(&p, end, &code) || p - sp != 4 || code < 100 || code > 599)
        return 0;
    return (long)code;
}

static void take_length(struct registry_headers *h, const char *v, size_t vlen)
{
    uint64_t len;
    const char *p = v;
    /* A bad one, or two different ones: none is believed (libcurl refuses
     * such a body anyway). */
    bool ok = read_decimal(&p, v + vlen, &len) && p == v + vlen;
    if (ok && !h->length_conflict && (!h->has_length || h->content_length == len)) {
        h->has_length = true;
        h->content_length = len;
    } else {
        h->has_length = false;
        h->length_conflict = true;
    }
}

static void take_digest(struct registry_headers *h, const char *v, size_t vlen)
{
    char d[OCI_DIGEST_SIZE + 1];
    if (h->docker_digest[0] || vlen >= sizeof d)
        return;
    copy_bounded(d, sizeof d, v, vlen);
    if (oci_digest_valid(d))
        memcpy(h->docker_digest, d, OCI_DIGEST_SIZE);
}

/* Keeps the first Bearer challenge, else the first one (Bearer is the
 * scheme tokens come from; a registry may offer Basic too). */
static void take_challenge(struct registry_headers *h, const char *v, size_t vlen)
{
    bool bearer = vlen >= 6 && strncasecmp(v, "Bearer", 6) == 0;
    bool have_bearer = strncasecmp(h->challenge, "Bearer", 6) == 0;
    if (vlen < sizeof h->challenge && memchr(v, '\0', vlen) == NULL &&
        (!h->challenge[0] || (bearer && !have_bearer)))
        copy_bounded(h->challenge, sizeof h->challenge, v, vlen);
}

void registry_header_line(struct registry_headers *h, const char *line, size_t n)
{
    const char *v;
    size_t vlen;
    if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new response (after a redirect or a 100): forget the last one's. */
        registry_headers_reset(h);
        h->status = status_of(line, n);
    } else if (header_is(line, n, "Content-Type", &v, &vlen)) {
        copy_bounded(h->content_type, sizeof h->content_type, v, vlen);
    } else if (header_is(line, n, "Content-Range", &v, &vlen)) {
        copy_bounded(h->content_range, sizeof h->content_range, v, vlen);
    } else if (header_is(line, n, "Content-Length", &v, &vlen)) {
        take_length(h, v, vlen);
    } else if (header_is(line, n, "Docker-Content-Digest", &v, &vlen)) {
        take_digest(h, v, vlen);
    } else if (header_is(line, n, "WWW-Authenticate", &v, &vlen)) {
        take_challenge(h, v, vlen);
    }
}

bool registry_parse_content_range(const char *value, struct content_range *out)
{
    const char *p = value, *end = value + strlen(value);
    memset(out, 0, sizeof *out);
    if (strncmp(p, "bytes ", 6) != 0)
        return false;
    p += 6;
    if (!read_decimal(&p, end, &out->first) || *p++ != '-' || !read_decimal(&p, end, &out->last) ||
        *p++ != '/' || out->first > out->last)
        return false;
    if (p[0] == '*' && p[1] == '\0')
        return true;
    out->total_known = true;
    return read_decimal(&p, end, &out->total) && p == end && out->last < out->total;
}

/* ---- WWW-Authenticate ---------------------------------------------------- */

/* Reads one token or quoted-string; returns the position after it. */
static const char *read_param_value(const char *p, char *out, size_t cap, bool *ok)
{
    size_t n = 0;
    if (*p == '"') {
        p++;
        while (*p && *p != '"') {
            if (*p == '\\' && p[1])
                p++;
            if (n + 1 >= cap)
                *ok = false;
            else
                out[n++] = *p;
            p++;
        }
        if (*p != '"')
            *ok = false;
        else
            p++;
    } else {
        while (*p && *p != ',' && *p != ' ') {
            if (n + 1 >= cap)
                *ok = false;
            else
                out[n++] = *p;
            p++;
        }
    }
    out[n] = '\0';
    return p;
}

sm_code registry_parse_challenge(const char *header, struct auth_challenge *out, sm_error *err)
{
    memset(out, 0, sizeof *out);
    const char *p = header;
    size_t n = 0;
    while (*p && *p != ' ' && n + 1 < sizeof out->scheme)
        out->scheme[n++] = *p++;
    if (*p && *p != ' ')
        return error_set(err, SM_E_PROTOCOL, "the registry's WWW-Authenticate has an odd scheme");
    bool ok = true;
    while (*p && ok) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        char key[32], val[1024];
        size_t k = 0;
        while (*p && *p != '=' && *p != ' ' && *p != ',' && k + 1 < sizeof key)
            key[k++] = *p++;
        key[k] = '\0';
        if (*p != '=') {
            ok = false;
            break;
        }
        p = read_param_value(p + 1, val, sizeof val, &ok);
        if (strcasecmp(key, "realm") == 0)
            snprintf(out->realm, sizeof out->realm, "%s", val);
        else if (strcasecmp(key, "service") == 0)
            snprintf(out->service, sizeof out->service, "%s", val);
        else if (strcasecmp(key, "scope") == 0)
            snprintf(out->scope, sizeof out->scope, "%s", val);
    }
    if (!ok)
        return error_set(err, SM_E_PROTOCOL, "the registry's WWW-Authenticate header is malformed");
    if (strcasecmp(out->scheme, "Bearer") == 0 && !out->realm[0])
        return error_set(err, SM_E_PROTOCOL, "the registry's Bearer challenge has no realm");
    return SM_OK;
}
