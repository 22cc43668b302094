#include "image/reference.h"

#include "base/error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOCKER_HUB "docker.io"
#define DOCKER_HUB_API "registry-1.docker.io"

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One path component of a name: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)* */
static bool valid_path_component(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    while (i < n) {
        while (i < n && is_lower_alnum(s[i]))
            i++;
        if (i == n)
            break;
        size_t sep = i;
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < n && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < n && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == sep || i == n || !is_lower_alnum(s[i]))
            return false;
    }
    return true;
}

/* A DNS label: [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])? */
static bool valid_label(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-')
            return false;
    return true;
}

static bool valid_port(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* host[:port] where host is DNS labels / IPv4 (labels of digits) / [IPv6]. */
static bool valid_registry(const char *s, size_t n)
{
    size_t host_end;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close == s + 1)
            return false;
        for (const char *p = s + 1; p < close; p++)
            if (!is_hex(*p) && *p != ':' && *p != '.')
                return false;
        host_end = (size_t)(close - s) + 1;
        if (host_end < n && s[host_end] != ':')
            return false;
    } else {
        const char *colon = memchr(s, ':', n);
        host_end = colon ? (size_t)(colon - s) : n;
        size_t start = 0;
        for (size_t i = 0; i <= host_end; i++) {
            if (i == host_end || s[i] == '.') {
                if (!valid_label(s + start, i - start))
                    return false;
                start = i + 1;
            }
        }
    }
    if (host_end == n)
        return true;
    return valid_port(s + host_end + 1, n - host_end - 1);
}

/* Does the first component name a registry rather than a Docker Hub user? */
static bool looks_like_registry(const char *s, size_t n)
{
    if (n == 9 && memcmp(s, "localhost", 9) == 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '.' || s[i] == ':' || s[i] == '[' || (s[i] >= 'A' && s[i] <= 'Z'))
            return true;
    return false;
}

static bool valid_tag(const char *s, size_t n)
{
    if (n == 0 || n > OCI_REF_TAG_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool word = is_alnum(c) || c == '_';
        if (!word && (i == 0 || (c != '.' && c != '-')))
            return false;
    }
    return true;
}

static bool is_docker_hub(const char *s, size_t n)
{
    static const char *const aliases[] = {DOCKER_HUB, "index.docker.io", DOCKER_HUB_API};
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strlen(aliases[i]) == n && memcmp(s, aliases[i], n) == 0)
            return true;
    return false;
}

static sm_code bad(sm_error *err, const char *ref, const char *why)
{
    return error_set(err, SM_E_INVALID, "invalid image reference \"%.300s\": %s", ref, why);
}

/* Splits off "@digest" and ":tag" from the end of ref; *name_len is what is left. */
static sm_code split_suffixes(const char *ref, size_t len, struct oci_reference *out,
                              size_t *name_len, sm_error *err)
{
    const char *at = memchr(ref, '@', len);
    size_t rest = len;
    if (at) {
        size_t dlen = len - (size_t)(at - ref) - 1;
        if (dlen > 7 && memcmp(at + 1, "sha256:", 7) != 0 && memchr(at + 1, ':', dlen))
            return bad(err, ref, "only sha256 digests are supported");
        if (!oci_digest_valid_n(at + 1, dlen))
            return bad(err, ref, "the digest must be sha256: and 64 lowercase hex digits");
        memcpy(out->digest, at + 1, dlen);
        out->digest[dlen] = '\0';
        rest = (size_t)(at - ref);
    }
    /* A tag is after the last ':' that follows the last '/'. */
    size_t colon = 0;
    bool have_colon = false;
    for (size_t i = 0; i < rest; i++) {
        if (ref[i] == '/') {
            have_colon = false;
        } else if (ref[i] == ':') {
            colon = i;
            have_colon = true;
        }
    }
    if (have_colon) {
        size_t tlen = rest - colon - 1;
        if (!valid_tag(ref + colon + 1, tlen))
            return bad(err, ref,
                       "a tag is 1 to 128 of A-Z a-z 0-9 _ . - and does not start with . or -");
        memcpy(out->tag, ref + colon + 1, tlen);
        out->tag[tlen] = '\0';
        rest = colon;
    }
    *name_len = rest;
    return SM_OK;
}

/* Checks each '/'-separated component of the repository path. */
static sm_code check_repository(const char *ref, const char *path, size_t n, sm_error *err)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || path[i] == '/') {
            if (!valid_path_component(path + start, i - start))
                return bad(err, ref,
                           "a name is lowercase letters, digits and single . _ __ or - between "
                           "them, in components separated by /");
            start = i + 1;
        }
    }
    return SM_OK;
}

sm_code oci_reference_parse(const char *ref, struct oci_reference *out, sm_error *err)
{
    if (!ref || !out)
        return error_set(err, SM_E_INVALID, "invalid image reference: NULL");
    memset(out, 0, sizeof *out);
    size_t len = strnlen(ref, OCI_REF_INPUT_MAX + 1);
    if (len == 0)
        return error_set(err, SM_E_INVALID, "invalid image reference: empty");
    if (len > OCI_REF_INPUT_MAX)
        return error_set(err, SM_E_INVALID, "invalid image reference: longer than %d bytes",
                       OCI_REF_INPUT_MAX);
    size_t name_len = 0;
    sm_code rc = split_suffixes(ref, len, out, &name_len, err);
    if (rc)
        return rc;
    if (name_len == 0)
        return bad(err, ref, "no name");

    const char *slash = memchr(ref, '/', name_len);
    const char *path = ref;
    size_t path_len = name_len;
    bool hub = true;
    if (slash && looks_like_registry(ref, (size_t)(slash - ref))) {
        size_t rlen = (size_t)(slash - ref);
        if (rlen + 2 > OCI_REF_NAME_MAX)
            return bad(err, ref, "the name is longer than 255 bytes");
        if (!valid_registry(ref, rlen))
            return bad(err, ref, "the registry must be host[:port] (a DNS name, IPv4 or [IPv6])");
        hub = is_docker_hub(ref, rlen);
        if (!hub) {
            memcpy(out->registry, ref, rlen);
            out->registry[rlen] = '\0';
        }
        path = slash + 1;
        path_len = name_len - rlen - 1;
    } else if (!slash && memchr(ref, ':', name_len)) {
        return bad(err, ref, "unexpected ':'");
    }
    if (hub)
        strcpy(out->registry, DOCKER_HUB);
    rc = check_repository(ref, path, path_len, err);
    if (rc)
        return rc;
    bool add_library = hub && !memchr(path, '/', path_len);
    size_t repo_len = path_len + (add_library ? 8 : 0);
    if (strlen(out->registry) + 1 + repo_len > OCI_REF_NAME_MAX)
        return bad(err, ref, "the name is longer than 255 bytes");
    snprintf(out->repository, sizeof out->repository, "%s%.*s", add_library ? "library/" : "",
             (int)path_len, path);
    if (!out->tag[0] && !out->digest[0])
        strcpy(out->tag, "latest");
    return SM_OK;
}

const char *oci_reference_api_host(const struct oci_reference *r)
{
    return strcmp(r->registry, DOCKER_HUB) == 0 ? DOCKER_HUB_API : r->registry;
}

int oci_reference_format(const struct oci_reference *r, char *buf, size_t cap)
{
    return snprintf(buf, cap, "%s/%s%s%s%s%s", r->registry, r->repository, r->tag[0] ? ":" : "",
                    r->tag, r->digest[0] ? "@" : "", r->digest);
}

const char *oci_reference_target(const struct oci_reference *r)
{
    return r->digest[0] ? r->digest : r->tag;
}
