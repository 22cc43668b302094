/*
 * Distribution API v2 client. The requests, in the order a pull makes them
 * (HOST is the reference's registry, registry-1.docker.io for docker.io;
 * NAME its repository; scheme https, or http with plain_http):
 *
 *   #  request                                        headers sent              answers used
 *   1  GET /v2/NAME/manifests/TAG|DIGEST              Accept: the 4 manifest    200: body (<= 4 MiB), Content-Type;
 *                                                     and index media types     the body must hash to its
 *                                                                               Docker-Content-Digest, if any
 *                                                                               401: WWW-Authenticate -> 2, then 1 again
 *                                                     Authorization when known  404/403/other: error from the body's
 *                                                                                 {"errors":[{"code","message"}]}
 *   2  GET REALM?service=SERVICE&scope=SCOPE          Authorization: Basic      200: {"token"|"access_token": ...}
 *      (from "WWW-Authenticate: Bearer realm=...,     (only with credentials)   (<= 64 KiB; printable ASCII only)
 *      service=...,scope=..."; the scope defaults                               401: authentication failed
 *      to repository:NAME:pull)
 *      or, on "WWW-Authenticate: Basic", request 1 again with Authorization: Basic user:pass
 *   3  GET /v2/NAME/manifests/DIGEST                  as 1                      the linux/amd64 manifest of an index
 *   4  GET /v2/NAME/blobs/DIGEST (config, layers)     Authorization; Range:     200: the whole blob (a .partial is
 *      (redirects to storage followed, up to 5, the   bytes=N- when N bytes     emptied first); 206 with Content-Range
 *      Authorization header is not sent to another    of a .partial exist       "bytes N-...": appended; 416: start
 *      host; https only unless plain_http)                                      over without Range; 401: as in 1
 *                                                                               Before the first byte is kept: the
 *                                                                               Docker-Content-Digest, if any, is the
 *                                                                               one asked for; Content-Length, if any,
 *                                                                               is within what is left of the blob
 *                                                                               and of the cap; a 206's total is the
 *                                                                               blob's size
 *
 * The headers are parsed in registry_headers.c (fuzzed apart from libcurl).
 * A request is tried with the current credentials; a 401 makes us get new
 * ones from its challenge (a token, or Basic) and try once more; a second
 * 401 is "authentication failed". Tokens are reused for later requests (a
 * 401 on an expired one gets a fresh one). A blob download that breaks
 * after receiving bytes is resumed up to 3 times (not one we stopped: a
 * failed write, a cap). Bodies are bounded: a manifest 4 MiB, a token
 * reply or an error body 64 KiB, a blob its size, the layers of one image
 * together the cap on its compressed bytes (registry_budget).
 * Time is bounded too: 30 s to connect; less than 1 KiB/s for 60 s ends a
 * transfer; a manifest or token request has 120 s in all.
 */
#include "image/registry.h"

#include "image/blob_store.h"
#include "image/disk_space.h"
#include "image/oci_manifest.h"
#include "base/error.h"

#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define USER_AGENT "supermachine/0.1"
#define CONNECT_TIMEOUT_S 30L
#define STALL_SPEED 1024L       /* abort below this many bytes/s ... */
#define STALL_TIMEOUT_S 60L     /* ... for this long */
#define SMALL_REPLY_TIMEOUT_S 120L /* the whole of a manifest or token request */
#define MAX_REDIRECTS 5L
#define BLOB_RESUME_TRIES 3

struct registry_client {
    CURL *curl;
    struct oci_reference ref;
    char host[OCI_REF_NAME_MAX + 1];
    const char *scheme;
    bool plain_http;
    bool tls_handshake_failed; /* the last request's TLS handshake failed (plain HTTP there?) */
    char *ca_file;
    char *user, *password;
    char *authorization; /* "Authorization: ..." header, or NULL */
    void (*progress)(void *ctx, const char *what, uint64_t done, uint64_t total);
    void *progress_ctx;
};

/* One response, as the callbacks see it (redirects reset the headers). */
struct response {
    struct registry_headers hdr;   /* registry_headers.c */
    char *body;                    /* bodies kept in memory */
    size_t len, max;
    bool too_long;
    struct blob_writer *blob;      /* 2xx bodies of blob requests go here */
    struct registry_budget *budget; /* ... and count against this, when set */
    uint64_t range_start;          /* >0: we asked for bytes range_start- */
    bool blob_started;
    sm_error write_err;            /* why a callback stopped the transfer */
    bool write_failed;
    uint64_t received;
    /* progress */
    struct registry_client *client;
    const char *what;
    uint64_t total;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small helpers ----------------------------------------------------- */

static void copy_bounded(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Printable ASCII without spaces: safe inside a header line. */
static bool is_header_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* A copy of s for messages: printable ASCII only, at most cap-1 bytes. */
static void sanitize(char *dst, size_t cap, const char *s)
{
    size_t j = 0;
    for (size_t i = 0; s && s[i] && j + 1 < cap; i++)
        dst[j++] = ((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f) ? s[i] : '?';
    dst[j] = '\0';
}

/* ---- callbacks ----------------------------------------------------------- */

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
    struct response *r = ud;
    registry_header_line(&r->hdr, line, size * nitems);
    return size * nitems;
}

/* Would n more bytes of blob pass the budget (if any)? */
static bool over_budget(const struct response *r, uint64_t n)
{
    const struct registry_budget *b = r->budget;
    return b && n > b->limit - b->used;
}

static sm_code budget_error(struct response *r)
{
    char cap[SIZE_TEXT_MAX];
    size_text_exact(r->budget->limit, cap);
    return error_set(&r->write_err, SM_E_LIMIT,
                     "%s: stopped: %s sent more than %s for the image's layers, the cap on its "
                     "compressed bytes",
                     r->what, r->client->host, cap);
}

/* Counts n more bytes of blob against the budget, if any. */
static sm_code spend(struct response *r, size_t n)
{
    if (over_budget(r, n))
        return budget_error(r);
    if (r->budget)
        r->budget->used += n;
    return SM_OK;
}

/* A 206's Content-Range must be the rest of the blob from where we asked. */
static sm_code check_range(struct response *r)
{
    struct content_range cr;
    char shown[64];
    if (!registry_parse_content_range(r->hdr.content_range, &cr) || cr.first != r->range_start) {
        snprintf(shown, sizeof shown, "%.60s", r->hdr.content_range);
        return error_set(&r->write_err, SM_E_PROTOCOL,
                         "%s: the registry answered a resumed download with the wrong range "
                         "(\"%s\")",
                         r->what, shown);
    }
    if (cr.total_known && cr.total != r->total)
        return error_set(&r->write_err, SM_E_PROTOCOL,
                         "%s: the registry's blob is %llu bytes, not the %llu its descriptor gives",
                         r->what, (unsigned long long)cr.total, (unsigned long long)r->total);
    return SM_OK;
}

/* What the headers announce, before a byte is written: the blob asked for
 * (Docker-Content-Digest), no more bytes than are left of it, and no more
 * than the budget. */
static sm_code check_announced(struct response *r, uint64_t from)
{
    const struct registry_headers *h = &r->hdr;
    if (h->docker_digest[0] && strcmp(h->docker_digest, r->blob->digest) != 0) {
        char got[32];
        oci_digest_short(h->docker_digest, got);
        return error_set(&r->write_err, SM_E_PROTOCOL,
                         "%s: the registry answered with another blob (Docker-Content-Digest %s…)",
                         r->what, got);
    }
    if (!h->has_length)
        return SM_OK;
    uint64_t left = r->total > from ? r->total - from : 0;
    if (h->content_length > left)
        return error_set(&r->write_err, SM_E_PROTOCOL,
                         "%s is corrupt: the registry announces %llu bytes, more than the %llu "
                         "left of the %llu its descriptor gives",
                         r->what, (unsigned long long)h->content_length, (unsigned long long)left,
                         (unsigned long long)r->total);
    return over_budget(r, h->content_length) ? budget_error(r) : SM_OK;
}

/* The first bytes of a 2xx blob body: is it what we asked for? */
static sm_code start_blob_body(struct response *r)
{
    r->blob_started = true;
    if (r->hdr.status == 206 && r->range_start > 0) {
        sm_code rc = check_range(r);
        return rc ? rc : check_announced(r, r->range_start);
    }
    if (r->hdr.status != 200)
        return error_set(&r->write_err, SM_E_PROTOCOL, "%s: unexpected HTTP %ld", r->what,
                       r->hdr.status);
    /* The server ignored Range (or none was asked): the whole blob follows. */
    sm_code rc = check_announced(r, 0);
    if (!rc && r->blob->written)
        rc = blob_writer_restart(r->blob, &r->write_err);
    return rc;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct response *r = ud;
    size_t n = size * nmemb;
    r->received += n;
    if (r->blob && r->hdr.status >= 200 && r->hdr.status < 300) {
        if ((!r->blob_started && start_blob_body(r)) || spend(r, n) ||
            blob_writer_write(r->blob, data, n, &r->write_err)) {
            r->write_failed = true;
            return 0;
        }
        return n;
    }
    if (n > r->max - r->len) {
        r->too_long = true;
        if (r->hdr.status >= 200 && r->hdr.status < 300) {
            r->write_failed = true;
            return 0;
        }
        n = r->max - r->len; /* keep the start of an error body */
    }
    if (n) {
        char *grown = realloc(r->body, r->len + n + 1);
        if (!grown) {
            error_set(&r->write_err, SM_E_NOMEM, "out of memory");
            r->write_failed = true;
            return 0;
        }
        r->body = grown;
        memcpy(r->body + r->len, data, n);
        r->len += n;
        r->body[r->len] = '\0';
    }
    return size * nmemb;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)ultotal;
    (void)ulnow;
    struct response *r = ud;
    struct registry_client *c = r->client;
    if (c->progress && r->blob && r->hdr.status >= 200 && r->hdr.status < 300 && dlnow > 0)
        c->progress(c->progress_ctx, r->what, r->blob->written, r->total);
    return 0;
}

/* ---- one request --------------------------------------------------------- */

static sm_code set_common(struct registry_client *c, const char *url, struct curl_slist *headers,
                          struct response *r, sm_error *err)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    const char *protocols = c->plain_http ? "http,https" : "https";
    CURLcode e = curl_easy_setopt(h, CURLOPT_URL, url);
    e |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protocols);
    e |= curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    e |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    e |= curl_easy_setopt(h, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    e |= curl_easy_setopt(h, CURLOPT_USERAGENT, USER_AGENT);
    e |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    e |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    e |= curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, STALL_SPEED);
    e |= curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, STALL_TIMEOUT_S);
    e |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    e |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    e |= curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    e |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    e |= curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    e |= curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    e |= curl_easy_setopt(h, CURLOPT_XFERINFODATA, r);
    e |= curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    /* Blobs may take long on a slow link; a manifest or a token may not (a
     * registry dribbling a 4 MiB reply must not hold us for hours). */
    if (!r->blob)
        e |= curl_easy_setopt(h, CURLOPT_TIMEOUT, SMALL_REPLY_TIMEOUT_S);
    if (c->ca_file) {
        /* CAINFO alone would replace the system bundle: keep the system's
         * folder of CAs as well. */
        curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
        e |= curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
        e |= curl_easy_setopt(h, CURLOPT_CAPATH, v->capath ? v->capath : "/etc/ssl/certs");
    }
    if (e != CURLE_OK)
        return error_set(err, SM_E_UNSUPPORTED, "libcurl refused an option (too old a libcurl?)");
    return SM_OK;
}

/* Performs the transfer; SM_OK means an HTTP answer arrived (any status). */
static sm_code perform(struct registry_client *c, const char *url, const char *accept,
                       const char *authorization, struct response *r, sm_error *err)
{
    struct curl_slist *headers = NULL, *tmp;
    char accept_line[512], range_line[64];
    bool ok = true;
    if (accept) {
        snprintf(accept_line, sizeof accept_line, "Accept: %s", accept);
        ok = ok && (tmp = curl_slist_append(headers, accept_line)) && (headers = tmp);
    }
    if (authorization)
        ok = ok && (tmp = curl_slist_append(headers, authorization)) && (headers = tmp);
    if (r->range_start) {
        snprintf(range_line, sizeof range_line, "Range: bytes=%llu-",
                 (unsigned long long)r->range_start);
        ok = ok && (tmp = curl_slist_append(headers, range_line)) && (headers = tmp);
    }
    if (!ok) {
        curl_slist_free_all(headers);
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    sm_code rc = set_common(c, url, headers, r, err);
    if (!rc)
        curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cr = rc ? CURLE_OK : curl_easy_perform(c->curl);
    c->tls_handshake_failed = cr == CURLE_SSL_CONNECT_ERROR;
    curl_slist_free_all(headers);
    if (rc)
        return rc;
    if (r->write_failed) {
        if (err)
            *err = r->write_err;
        return r->write_err.code ? r->write_err.code : SM_E_PROTOCOL;
    }
    if (r->too_long && r->hdr.status >= 200 && r->hdr.status < 300)
        return error_set(err, SM_E_LIMIT, "%s: the reply is longer than %zu bytes", r->what,
                       r->max);
    if (cr != CURLE_OK) {
        const char *why = errbuf[0] ? errbuf : curl_easy_strerror(cr);
        sm_code code = (cr == CURLE_OPERATION_TIMEDOUT) ? SM_E_TIMEOUT : SM_E_IO;
        if (cr == CURLE_PEER_FAILED_VERIFICATION || cr == CURLE_SSL_CACERT_BADFILE)
            return error_set(err, SM_E_IO,
                           "%s: TLS certificate of %s not trusted (%s): give its CA with the CA "
                           "file option, or use plain HTTP for a local test registry",
                           r->what, c->host, why);
        if (cr == CURLE_SSL_CONNECT_ERROR && c->plain_http == false)
            return error_set(err, SM_E_IO,
                           "%s: TLS handshake with %s failed (%s); is it a plain-HTTP registry?",
                           r->what, c->host, why);
        if (r->received)
            return error_set(err, code, "%s: the connection to %s broke: %s", r->what, c->host,
                           why);
        return error_set(err, code, "%s: cannot reach %s: %s", r->what, c->host, why);
    }
    return SM_OK;
}

static void response_reset(struct response *r, size_t max)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->max = max;
    registry_headers_reset(&r->hdr);
    r->too_long = false;
    r->write_failed = false;
    r->blob_started = false;
    r->received = 0;
    memset(&r->write_err, 0, sizeof r->write_err);
}

/* The registry's own words for an error: errors[0].message (or code). */
static void error_detail(const struct response *r, char *out, size_t cap)
{
    out[0] = '\0';
    struct json_object *root = NULL, *arr, *first;
    if (!r->body || oci_json_parse(r->body, r->len, REGISTRY_ERROR_BODY_MAX, "error", &root, NULL))
        return;
    bool bad = false;
    if (json_object_is_type(root, json_type_object) &&
        json_object_object_get_ex(root, "errors", &arr) &&
        json_object_is_type(arr, json_type_array) && json_object_array_length(arr) > 0 &&
        (first = json_object_array_get_idx(arr, 0))) {
        const char *m = oci_json_string(first, "message", 4096, &bad);
        if (!m || !m[0])
            m = oci_json_string(first, "code", 4096, &bad);
        if (m)
            sanitize(out, cap, m);
    }
    json_object_put(root);
}

/* ---- authentication ------------------------------------------------------ */

static char *basic_header(const char *user, const char *password)
{
    char *plain = NULL;
    int plain_len = asprintf(&plain, "%s:%s", user, password);
    if (plain_len < 0)
        return NULL;
    char *h = NULL;
    unsigned char *enc = plain_len <= 8192 ? malloc(4 * ((size_t)plain_len / 3 + 2)) : NULL;
    if (enc) {
        EVP_EncodeBlock(enc, (const unsigned char *)plain, plain_len);
        if (asprintf(&h, "Authorization: Basic %s", enc) < 0)
            h = NULL;
    }
    memset(plain, 0, (size_t)plain_len);
    free(plain);
    free(enc);
    return h;
}

static void set_authorization(struct registry_client *c, char *header)
{
    free(c->authorization);
    c->authorization = header;
}

static sm_code auth_failed(struct registry_client *c, long status, sm_error *err)
{
    if (c->user)
        return error_set(err, SM_E_SETUP,
                       "authentication failed for %s (HTTP %ld): check the user name and password",
                       c->host, status);
    return error_set(err, SM_E_SETUP,
                   "%s requires authentication (HTTP %ld): give a user name and password, or "
                   "log in with `docker login %s`",
                   c->host, status, c->host);
}

/* Picks the token out of the token service's reply. */
static sm_code token_from_reply(struct registry_client *c, const struct response *r,
                                sm_error *err)
{
    struct json_object *root;
    sm_code rc = oci_json_parse(r->body ? r->body : "", r->len, REGISTRY_TOKEN_MAX,
                                "the token service's reply", &root, err);
    if (rc)
        return rc;
    bool bad = false;
    const char *tok = oci_json_string(root, "token", REGISTRY_TOKEN_MAX, &bad);
    if (!tok || !tok[0])
        tok = oci_json_string(root, "access_token", REGISTRY_TOKEN_MAX, &bad);
    char *h = NULL;
    if (!tok || !is_header_token(tok, strlen(tok)))
        rc = error_set(err, SM_E_PROTOCOL, "the token service of %s sent no usable token", c->host);
    else if (asprintf(&h, "Authorization: Bearer %s", tok) < 0)
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    else
        set_authorization(c, h);
    json_object_put(root);
    return rc;
}

static sm_code fetch_token(struct registry_client *c, const struct auth_challenge *ch,
                           sm_error *err)
{
    bool https = strncasecmp(ch->realm, "https://", 8) == 0;
    bool http = strncasecmp(ch->realm, "http://", 7) == 0;
    if (!https && !(http && c->plain_http))
        return error_set(err, SM_E_PROTOCOL,
                       "%s sent a token realm that is not an https:// URL (\"%.100s\")", c->host,
                       ch->realm);
    char default_scope[OCI_REF_NAME_MAX + 32];
    snprintf(default_scope, sizeof default_scope, "repository:%s:pull", c->ref.repository);
    char *service = curl_easy_escape(c->curl, ch->service, 0);
    char *scope = curl_easy_escape(c->curl, ch->scope[0] ? ch->scope : default_scope, 0);
    char *url = NULL;
    bool has_query = strchr(ch->realm, '?') != NULL;
    int n = (service && scope)
                ? asprintf(&url, "%s%sservice=%s&scope=%s", ch->realm, has_query ? "&" : "?",
                           service, scope)
                : -1;
    curl_free(service);
    curl_free(scope);
    if (n < 0)
        return error_set(err, SM_E_NOMEM, "out of memory");
    char *basic = c->user ? basic_header(c->user, c->password) : NULL;
    struct response r = {.client = c, .what = "token request"};
    response_reset(&r, REGISTRY_TOKEN_MAX);
    sm_code rc = perform(c, url, "application/json", basic, &r, err);
    free(basic);
    free(url);
    if (!rc && (r.hdr.status == 401 || r.hdr.status == 403))
        rc = auth_failed(c, r.hdr.status, err);
    else if (!rc && r.hdr.status != 200)
        rc = error_set(err, SM_E_PROTOCOL, "the token service of %s answered HTTP %ld", c->host,
                     r.hdr.status);
    else if (!rc)
        rc = token_from_reply(c, &r, err);
    free(r.body);
    return rc;
}

/* After a 401: new credentials from its challenge. */
static sm_code answer_challenge(struct registry_client *c, const struct response *r,
                                sm_error *err)
{
    struct auth_challenge ch;
    if (!r->hdr.challenge[0])
        return error_set(err, SM_E_PROTOCOL, "%s answered HTTP 401 without a WWW-Authenticate",
                       c->host);
    sm_code rc = registry_parse_challenge(r->hdr.challenge, &ch, err);
    if (rc)
        return rc;
    if (strcasecmp(ch.scheme, "Bearer") == 0)
        return fetch_token(c, &ch, err);
    if (strcasecmp(ch.scheme, "Basic") == 0) {
        if (!c->user)
            return auth_failed(c, 401, err);
        char *h = basic_header(c->user, c->password);
        if (!h)
            return error_set(err, SM_E_INVALID, "the user name and password are too long");
        set_authorization(c, h);
        return SM_OK;
    }
    char scheme[20];
    sanitize(scheme, sizeof scheme, ch.scheme);
    return error_set(err, SM_E_UNSUPPORTED, "%s asks for \"%s\" authentication, which is not supported",
                   c->host, scheme);
}

/* A request with authentication: on 401, answer the challenge, try again once. */
static sm_code request(struct registry_client *c, const char *url, const char *accept,
                       struct response *r, sm_error *err)
{
    for (int attempt = 0;; attempt++) {
        size_t max = r->max;
        response_reset(r, max);
        sm_code rc = perform(c, url, accept, c->authorization, r, err);
        if (rc || r->hdr.status != 401)
            return rc;
        if (attempt == 1 && strstr(r->hdr.challenge, "insufficient_scope"))
            /* A token, but not for this repository (Docker Hub answers so
             * for repositories that do not exist, too). */
            return error_set(err, SM_E_SETUP,
                           "%s: access denied (HTTP 401): the repository %s does not exist on "
                           "%s, or it needs credentials",
                           r->what, c->ref.repository, c->ref.registry);
        if (attempt == 1)
            return auth_failed(c, r->hdr.status, err);
        rc = answer_challenge(c, r, err);
        if (rc)
            return rc;
    }
}

/* An error for a non-2xx answer to a request about `subject`. */
static sm_code status_error(struct registry_client *c, const struct response *r,
                            const char *subject, sm_error *err)
{
    char detail[256];
    error_detail(r, detail, sizeof detail);
    if (r->hdr.status == 404)
        return error_set(err, SM_E_NOTFOUND, "%s: %s (HTTP 404)", subject,
                       detail[0] ? detail : "not found");
    if (r->hdr.status == 403)
        return error_set(err, SM_E_SETUP, "%s: access denied by %s (HTTP 403)%s%s", subject,
                       c->host, detail[0] ? ": " : "", detail);
    if (r->hdr.status == 429)
        return error_set(err, SM_E_SETUP, "%s: %s limits the request rate (HTTP 429); try later",
                       subject, c->host);
    return error_set(err, SM_E_PROTOCOL, "%s: %s answered HTTP %ld%s%s", subject, c->host,
                   r->hdr.status, detail[0] ? ": " : "", detail);
}

/* ---- the client ---------------------------------------------------------- */

/* localhost, 127.0.0.0/8 or [::1], with or without a port. */
static bool host_is_loopback(const char *host)
{
    size_t n = strcspn(host, host[0] == '[' ? "]" : ":");
    if (host[0] == '[')
        return n == 4 && !strncmp(host, "[::1", 4);
    return (n == 9 && !strncmp(host, "localhost", 9)) || !strncmp(host, "127.", 4);
}

sm_code registry_open(const struct oci_reference *ref, const struct registry_options *opt,
                      struct registry_client **out, sm_error *err)
{
    *out = NULL;
    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK)
        return error_set(err, SM_E_IO, "libcurl failed to initialise");
    struct registry_client *c = calloc(1, sizeof *c);
    if (!c)
        return error_set(err, SM_E_NOMEM, "out of memory");
    c->ref = *ref;
    snprintf(c->host, sizeof c->host, "%s", oci_reference_api_host(ref));
    c->plain_http = opt && opt->plain_http;
    c->scheme = c->plain_http ? "http" : "https";
    if (opt) {
        c->progress = opt->progress;
        c->progress_ctx = opt->progress_ctx;
    }
    c->curl = curl_easy_init();
    sm_code rc = c->curl ? SM_OK : error_set(err, SM_E_NOMEM, "libcurl: out of memory");
    if (!rc && opt && opt->ca_file && access(opt->ca_file, R_OK) != 0)
        rc = error_set_errno(err, errno == ENOENT ? SM_E_NOTFOUND : SM_E_IO, errno,
                           "cannot read the CA file %s", opt->ca_file);
    if (!rc && opt && opt->ca_file && !(c->ca_file = strdup(opt->ca_file)))
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    if (!rc && opt && opt->username) {
        c->user = strdup(opt->username);
        c->password = strdup(opt->password ? opt->password : "");
        if (!c->user || !c->password)
            rc = error_set(err, SM_E_NOMEM, "out of memory");
    } else if (!rc) {
        sm_error lookup_err;
        sm_code lrc = docker_config_lookup(ref->registry, &c->user, &c->password, &lookup_err);
        if (lrc && lrc != SM_E_NOTFOUND)
            rc = error_set(err, lrc, "%s", lookup_err.message);
    }
    if (rc) {
        registry_close(c);
        return rc;
    }
    *out = c;
    return SM_OK;
}

void registry_close(struct registry_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->ca_file);
    free(c->user);
    if (c->password) {
        memset(c->password, 0, strlen(c->password));
        free(c->password);
    }
    free(c->authorization);
    free(c);
}

/* A manifest must hash to the Docker-Content-Digest sent with it, when one
 * is. Not a schema 1 manifest's: its digest leaves the signatures out (and
 * it is refused later, for what it is). */
static sm_code check_manifest_digest(const struct response *r, const char *subject, sm_error *err)
{
    static const char schema1[] = "application/vnd.docker.distribution.manifest.v1";
    if (!r->hdr.docker_digest[0] || strncmp(r->hdr.content_type, schema1, sizeof schema1 - 1) == 0)
        return SM_OK;
    char got[OCI_DIGEST_SIZE], said[32], is[32];
    sm_code rc = oci_sha256_buffer(r->body ? r->body : "", r->len, got, err);
    if (rc || strcmp(got, r->hdr.docker_digest) == 0)
        return rc;
    oci_digest_short(r->hdr.docker_digest, said);
    oci_digest_short(got, is);
    return error_set(err, SM_E_PROTOCOL,
                     "%s: the manifest is corrupt: it hashes to %s…, not to the %s… the registry "
                     "gives (Docker-Content-Digest)",
                     subject, is, said);
}

sm_code registry_get_manifest(struct registry_client *c, const char *target, char **body,
                              size_t *len, char content_type[128], sm_error *err)
{
    *body = NULL;
    *len = 0;
    char subject[OCI_REF_NAME_MAX * 2 + 160];
    snprintf(subject, sizeof subject, "%s/%s%s%s", c->ref.registry, c->ref.repository,
             oci_digest_valid(target) ? "@" : ":", target);
    char *url;
    if (asprintf(&url, "%s://%s/v2/%s/manifests/%s", c->scheme, c->host, c->ref.repository,
                 target) < 0)
        return error_set(err, SM_E_NOMEM, "out of memory");
    struct response r = {.client = c, .what = subject};
    response_reset(&r, OCI_JSON_MAX);
    sm_code rc = request(c, url, OCI_MANIFEST_ACCEPT, &r, err);
    free(url);
    if (rc && c->tls_handshake_failed && !c->plain_http && host_is_loopback(c->host)) {
        /* As Docker does: a registry on this machine may speak plain HTTP.
         * Only a failed handshake falls back, never a certificate that
         * does not verify. */
        c->plain_http = true;
        c->scheme = "http";
        if (asprintf(&url, "%s://%s/v2/%s/manifests/%s", c->scheme, c->host, c->ref.repository, target) < 0)
            return error_set(err, SM_E_NOMEM, "out of memory");
        response_reset(&r, OCI_JSON_MAX);
        rc = request(c, url, OCI_MANIFEST_ACCEPT, &r, err);
        free(url);
    }
    if (!rc && r.hdr.status == 404) {
        char detail[256];
        error_detail(&r, detail, sizeof detail);
        rc = error_set(err, SM_E_NOTFOUND, "%s: %s (HTTP 404)", subject,
                     detail[0] ? detail : "manifest unknown");
    } else if (!rc && r.hdr.status != 200) {
        rc = status_error(c, &r, subject, err);
    }
    if (!rc)
        rc = check_manifest_digest(&r, subject, err);
    if (rc) {
        free(r.body);
        return rc;
    }
    if (!r.body && !(r.body = calloc(1, 1))) {
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    *body = r.body;
    *len = r.len;
    snprintf(content_type, 128, "%s", r.hdr.content_type);
    return SM_OK;
}

/* One attempt at the rest of a blob (from w->written). */
static sm_code fetch_blob_once(struct registry_client *c, const char *url, struct blob_writer *w,
                               struct response *r, sm_error *err)
{
    r->range_start = w->written;
    sm_code rc = request(c, url, NULL, r, err);
    if (!rc && r->hdr.status == 416 && r->range_start) {
        /* The .partial does not fit what the server has: start over. */
        rc = blob_writer_restart(w, err);
        r->range_start = 0;
        if (!rc)
            rc = request(c, url, NULL, r, err);
    }
    if (!rc && (r->hdr.status < 200 || r->hdr.status >= 300))
        rc = status_error(c, r, r->what, err);
    return rc;
}

sm_code registry_fetch_blob(struct registry_client *c, const char *store_dir, const char *digest,
                            uint64_t size, const char *what, struct registry_budget *budget,
                            uint64_t *downloaded, sm_error *err)
{
    if (downloaded)
        *downloaded = 0;
    struct blob_writer w;
    bool present;
    sm_code rc = blob_writer_open(store_dir, digest, size, what, &w, &present, err);
    if (rc || present)
        return rc;
    char *url;
    if (asprintf(&url, "%s://%s/v2/%s/blobs/%s", c->scheme, c->host, c->ref.repository, digest) <
        0) {
        blob_writer_close(&w);
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    struct response r = {.client = c, .what = what, .blob = &w, .budget = budget, .total = size};
    response_reset(&r, REGISTRY_ERROR_BODY_MAX);
    for (int tries = 0;; tries++) {
        rc = fetch_blob_once(c, url, &w, &r, err);
        if (downloaded)
            *downloaded += r.received;
        /* A connection that broke after bytes arrived: resume. Not when
         * we stopped it (a write failed: the disk is full, say). */
        bool broke = (rc == SM_E_IO || rc == SM_E_TIMEOUT) && !r.write_failed &&
                     r.received > 0 && w.written < size;
        if (!broke || tries + 1 >= BLOB_RESUME_TRIES)
            break;
    }
    free(url);
    free(r.body);
    if (rc) {
        if (rc == SM_E_PROTOCOL && r.write_failed)
            blob_writer_discard(&w); /* bad bytes: not worth resuming */
        else
            blob_writer_close(&w);   /* keeps the .partial for next time */
        return rc;
    }
    if (c->progress)
        c->progress(c->progress_ctx, what, w.written, size);
    return blob_writer_commit(&w, err);
}

/* ---- docker config credentials ------------------------------------------- */

/* Decodes standard base64 (padding optional) into a NUL-terminated string,
 * with OpenSSL's decoder; NULL for bad base64 or a NUL inside. */
static char *b64_decode(const char *s, size_t n)
{
    while (n && s[n - 1] == '=')
        n--;
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    /* The decoder would skip blanks at the ends; a docker config has none. */
    if (n % 4 == 1 || n > (1u << 20) || strspn(s, alphabet) < n)
        return NULL;
    size_t padded = (n + 3) / 4 * 4;
    unsigned char *in = malloc(padded + 1);
    char *out = malloc(padded / 4 * 3 + 1);
    int len = -1;
    if (in && out) {
        memcpy(in, s, n);
        memset(in + n, '=', padded - n);
        len = EVP_DecodeBlock((unsigned char *)out, in, (int)padded);
    }
    free(in);
    /* The decoder counts each '=' it was given as a zero byte. */
    if (len >= 0)
        len -= (int)(padded - n);
    if (len < 0 || !out) {
        free(out);
        return NULL;
    }
    out[len] = 0;
    if (strlen(out) != (size_t)len) {
        free(out);
        return NULL;
    }
    return out;
}

/* "https://index.docker.io/v1/" -> "index.docker.io" */
static void key_host(const char *key, char *out, size_t cap)
{
    const char *p = strstr(key, "://");
    p = p ? p + 3 : key;
    size_t n = strcspn(p, "/");
    copy_bounded(out, cap, p, n);
}

static bool key_matches(const char *key, const char *registry)
{
    char host[OCI_REF_NAME_MAX + 1];
    key_host(key, host, sizeof host);
    if (strcmp(registry, "docker.io") == 0)
        return strcmp(host, "docker.io") == 0 || strcmp(host, "index.docker.io") == 0 ||
               strcmp(host, "registry-1.docker.io") == 0;
    return strcasecmp(host, registry) == 0;
}

sm_code docker_config_credentials(const char *json, size_t len, const char *registry,
                                  char **user, char **password, sm_error *err)
{
    *user = *password = NULL;
    struct json_object *root, *auths;
    sm_code rc = oci_json_parse(json, len, DOCKER_CONFIG_MAX, "the docker config", &root, err);
    if (rc)
        return rc;
    rc = error_set(err, SM_E_NOTFOUND, "no credentials for %s in the docker config", registry);
    if (json_object_is_type(root, json_type_object) &&
        json_object_object_get_ex(root, "auths", &auths) &&
        json_object_is_type(auths, json_type_object)) {
        json_object_object_foreach(auths, key, entry)
        {
            if (!key_matches(key, registry))
                continue;
            bool bad = false;
            const char *auth = oci_json_string(entry, "auth", 8192, &bad);
            if (!auth || !auth[0])
                continue; /* a credential helper's entry: not supported */
            char *plain = b64_decode(auth, strlen(auth));
            char *colon = plain ? strchr(plain, ':') : NULL;
            if (!colon) {
                free(plain);
                rc = error_set(err, SM_E_INVALID,
                             "the docker config's \"auth\" for %s is not base64 of user:password",
                             registry);
                break;
            }
            *colon = '\0';
            *user = strdup(plain);
            *password = strdup(colon + 1);
            memset(plain, 0, strlen(colon + 1) + (size_t)(colon - plain) + 1);
            free(plain);
            if (!*user || !*password) {
                free(*user);
                free(*password);
                *user = *password = NULL;
                rc = error_set(err, SM_E_NOMEM, "out of memory");
            } else {
                rc = SM_OK;
            }
            break;
        }
    }
    json_object_put(root);
    return rc;
}

sm_code docker_config_lookup(const char *registry, char **user, char **password, sm_error *err)
{
    *user = *password = NULL;
    const char *dir = getenv("DOCKER_CONFIG");
    const char *home = getenv("HOME");
    char *path = NULL;
    int n = (dir && dir[0]) ? asprintf(&path, "%s/config.json", dir)
            : (home && home[0]) ? asprintf(&path, "%s/.docker/config.json", home)
                                : -1;
    if (n < 0)
        return error_set(err, SM_E_NOTFOUND, "no docker config");
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        sm_code rc = e == ENOENT ? error_set(err, SM_E_NOTFOUND, "no docker config at %s", path)
                                 : error_set_errno(err, SM_E_IO, e, "cannot read %s", path);
        free(path);
        return rc;
    }
    char *buf = malloc(DOCKER_CONFIG_MAX + 1);
    size_t len = buf ? fread(buf, 1, DOCKER_CONFIG_MAX + 1, f) : 0;
    fclose(f);
    sm_code rc;
    if (!buf)
        rc = error_set(err, SM_E_NOMEM, "out of memory");
    else if (len > DOCKER_CONFIG_MAX)
        rc = error_set(err, SM_E_LIMIT, "%s is larger than %u bytes", path, DOCKER_CONFIG_MAX);
    else
        rc = docker_config_credentials(buf, len, registry, user, password, err);
    if (rc && rc != SM_E_NOTFOUND)
        error_prefix(err, "%s", path);
    free(buf);
    free(path);
    return rc;
}
