/*
 * The registry client against a scripted registry served by this test on
 * 127.0.0.1 (a thread; loopback only, no network): bearer and basic auth,
 * indexes resolved to linux/amd64, caching (a second pull fetches no blob),
 * resumed downloads (Range), servers that ignore Range, corrupt, truncated
 * and overlong blobs, 404s, schema 1. Checks the store after each failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "image/blob_store.h"
#include "image/digest.h"
#include "image/oci_fetch.h"
#include "image/oci_manifest.h"
#include "image/registry_headers.h"

#define LAYER_SIZE 200000
#define BASIC_ALICE "Basic YWxpY2U6czNjcmV0" /* alice:s3cret */
#define TOKEN "tok-123"

enum auth_mode { AUTH_NONE, AUTH_BEARER, AUTH_BASIC };

struct fake {
    int listen_fd;
    int port;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t idle; /* signalled when a connection handler ends */
    int handlers;        /* connection handlers running */
    /* content */
    char config[512];
    size_t config_len;
    char config_digest[OCI_DIGEST_SIZE];
    char *layer;
    const char *layer_copy; /* the buffer serve_layer is sending */
    char layer_digest[OCI_DIGEST_SIZE];
    char manifest[1024];
    size_t manifest_len;
    char manifest_digest[OCI_DIGEST_SIZE];
    /* behaviour (set by tests between pulls) */
    enum auth_mode auth;
    bool token_needs_credentials;
    bool ignore_range;
    size_t cut_after;   /* >0: close the layer's body after this many bytes */
    size_t cut_first;   /* >0: the same, for the first layer request only */
    bool corrupt_layer; /* flip a byte */
    bool long_layer;    /* send bytes past its size */
    bool no_length;     /* blobs without Content-Length (the end of the connection ends them) */
    int wrong_digest;   /* a Docker-Content-Digest not the body's: 1 for manifests, 2 for blobs */
    bool wrong_total;   /* a Content-Range whose total is not the blob's size */
    bool slow_layer;    /* send it in 16 KiB pieces, 3 ms apart */
    int layer_gets;
    /* what happened */
    int manifest_gets, blob_gets, token_gets, range_gets, unauthorized;
    char store[64];
};

static struct fake *fk; /* the one server of this process */
static uint64_t pull_cap; /* the pulls' cap on compressed bytes (0: the default) */

/* ---- the scripted server --------------------------------------------------- */

/* What a handler answers: built under the server's lock, sent after it. */
struct reply {
    char *data;
    size_t len;
    bool slow;
};
static __thread struct reply *cur_reply;

static void send_all(int fd, const void *buf, size_t len)
{
    (void)fd;
    struct reply *r = cur_reply;
    char *grown = realloc(r->data, r->len + len + 1);
    assert_non_null(grown);
    r->data = grown;
    memcpy(r->data + r->len, buf, len);
    r->len += len;
}

static void send_reply(int fd, const struct reply *r)
{
    size_t off = 0;
    while (off < r->len) {
        size_t n = r->len - off;
        if (r->slow && n > 16384)
            n = 16384;
        ssize_t w = send(fd, r->data + off, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        off += (size_t)w;
        if (r->slow)
            usleep(3000);
    }
}

static void respond(int fd, int status, const char *ctype, const char *extra, const void *body,
                    size_t len, size_t send_only)
{
    char head[1024], length[64] = "";
    if (!(fk->no_length && strcmp(ctype, "application/octet-stream") == 0))
        snprintf(length, sizeof length, "Content-Length: %zu\r\n", len);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: %s\r\n%sConnection: close\r\n%s\r\n",
                     status, ctype, length, extra ? extra : "");
    send_all(fd, head, (size_t)n);
    send_all(fd, body, send_only < len ? send_only : len);
    if (fk->slow_layer && body == fk->layer_copy)
        cur_reply->slow = true;
}

/* A blob or manifest with its Docker-Content-Digest, as registries send
 * them (a wrong one when the test says). */
static void digest_header(char *out, size_t cap, const char *digest, bool manifest)
{
    bool wrong = fk->wrong_digest == (manifest ? 1 : 2);
    snprintf(out, cap, "Docker-Content-Digest: %s\r\n",
             wrong ? "sha256:0000000000000000000000000000000000000000000000000000000000000000" : digest);
}

static void respond_content(int fd, const char *ctype, const char *digest, const void *body, size_t len)
{
    char extra[160];
    digest_header(extra, sizeof extra, digest, strcmp(ctype, "application/octet-stream") != 0);
    respond(fd, 200, ctype, extra, body, len, SIZE_MAX);
}

static void respond_json(int fd, int status, const char *extra, const char *json)
{
    respond(fd, status, "application/json", extra, json, strlen(json), SIZE_MAX);
}

static const char *header_value(const char *req, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(req, "\r\n"); p; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':')
            return p + 3 + n + (p[3 + n] == ' ');
    return NULL;
}

static bool header_is(const char *req, const char *name, const char *value)
{
    const char *v = header_value(req, name);
    return v && strncmp(v, value, strlen(value)) == 0 && v[strlen(value)] == '\r';
}

static char *index_json(bool with_amd64)
{
    char *s = NULL;
    char amd64[400] = "";
    if (with_amd64)
        snprintf(amd64, sizeof amd64,
                 ",{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,"
                 "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}",
                 fk->manifest_digest, fk->manifest_len);
    assert_true(asprintf(&s,
                         "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_INDEX "\","
                         "\"manifests\":[{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\","
                         "\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"os\":\"linux\","
                         "\"architecture\":\"arm64\",\"variant\":\"v8\"}}%s]}",
                         fk->manifest_digest, fk->manifest_len, amd64) > 0);
    return s;
}

/* false when the request may not pass (a 401 was sent). */
static bool authorized(int fd, const char *req)
{
    char extra[300];
    if (fk->auth == AUTH_BEARER && !header_is(req, "Authorization", "Bearer " TOKEN)) {
        snprintf(extra, sizeof extra,
                 "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\",service=\"fake\","
                 "scope=\"repository:t:pull\"\r\n",
                 fk->port);
    } else if (fk->auth == AUTH_BASIC && !header_is(req, "Authorization", BASIC_ALICE)) {
        snprintf(extra, sizeof extra, "WWW-Authenticate: Basic realm=\"fake\"\r\n");
    } else {
        return true;
    }
    fk->unauthorized++;
    respond_json(fd, 401, extra, "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"no\"}]}");
    return false;
}

static void serve_layer(int fd, const char *req)
{
    char *body = malloc(LAYER_SIZE + 16);
    memcpy(body, fk->layer, LAYER_SIZE);
    size_t len = LAYER_SIZE;
    if (fk->corrupt_layer)
        body[LAYER_SIZE / 2] ^= 1;
    if (fk->long_layer) {
        memcpy(body + LAYER_SIZE, "0123456789abcdef", 16);
        len += 16;
    }
    fk->layer_gets++;
    fk->layer_copy = body;
    size_t cut = fk->cut_after ? fk->cut_after
                 : fk->cut_first && fk->layer_gets == 1 ? fk->cut_first
                                                        : SIZE_MAX;
    const char *range = header_value(req, "Range");
    unsigned long long start = 0;
    if (range) {
        fk->range_gets++;
        assert_int_equal(sscanf(range, "bytes=%llu-", &start), 1);
    }
    char extra[300];
    digest_header(extra, sizeof extra, fk->layer_digest, false);
    if (range && !fk->ignore_range && start < len) {
        size_t used = strlen(extra);
        snprintf(extra + used, sizeof extra - used, "Content-Range: bytes %llu-%zu/%zu\r\n", start,
                 len - 1, len + (fk->wrong_total ? 1 : 0));
        respond(fd, 206, "application/octet-stream", extra, body + start, len - start, cut);
    } else {
        respond(fd, 200, "application/octet-stream", extra, body, len, cut);
    }
    free(body);
}

static void route(int fd, const char *req)
{
    char path[512];
    if (sscanf(req, "GET %511s ", path) != 1)
        return respond_json(fd, 400, NULL, "{}");
    if (strncmp(path, "/token?", 7) == 0) {
        fk->token_gets++;
        if (fk->token_needs_credentials && !header_is(req, "Authorization", BASIC_ALICE))
            return respond_json(fd, 401, NULL, "{\"details\":\"bad credentials\"}");
        return respond_json(fd, 200, NULL, "{\"token\":\"" TOKEN "\",\"expires_in\":300}");
    }
    if (!authorized(fd, req))
        return;
    if (strncmp(path, "/v2/t/manifests/", 16) == 0) {
        const char *ref = path + 16;
        fk->manifest_gets++;
        if (strcmp(ref, "multi") == 0 || strcmp(ref, "armonly") == 0) {
            char *idx = index_json(strcmp(ref, "multi") == 0);
            respond(fd, 200, OCI_MT_OCI_INDEX, NULL, idx, strlen(idx), SIZE_MAX);
            free(idx);
        } else if (strcmp(ref, "single") == 0 || strcmp(ref, fk->manifest_digest) == 0) {
            respond_content(fd, OCI_MT_OCI_MANIFEST, fk->manifest_digest, fk->manifest, fk->manifest_len);
        } else if (strcmp(ref, "private") == 0) {
            char extra[300];
            snprintf(extra, sizeof extra,
                     "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\","
                     "service=\"fake\",scope=\"repository:t:pull\",error=\"insufficient_scope\"\r\n",
                     fk->port);
            respond_json(fd, 401, extra, "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}");
        } else if (strcmp(ref, "old") == 0) {
            respond_json(fd, 200, NULL, "{\"schemaVersion\":1,\"fsLayers\":[]}");
        } else {
            respond_json(fd, 404, NULL,
                         "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest "
                         "unknown\",\"detail\":{}}]}");
        }
        return;
    }
    if (strncmp(path, "/v2/t/blobs/", 12) == 0) {
        fk->blob_gets++;
        if (strcmp(path + 12, fk->config_digest) == 0)
            return respond_content(fd, "application/octet-stream", fk->config_digest, fk->config,
                                   fk->config_len);
        if (strcmp(path + 12, fk->layer_digest) == 0)
            return serve_layer(fd, req);
        return respond_json(fd, 404, NULL, "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}");
    }
    respond_json(fd, 404, NULL, "{}");
}

static void *handle_connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char req[16384];
    size_t got = 0;
    while (got + 1 < sizeof req) {
        ssize_t n = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[got] = '\0';
    struct reply reply = {0};
    cur_reply = &reply;
    pthread_mutex_lock(&fk->lock);
    route(fd, req);
    pthread_mutex_unlock(&fk->lock);
    send_reply(fd, &reply);
    free(reply.data);
    shutdown(fd, SHUT_WR);
    close(fd);
    pthread_mutex_lock(&fk->lock);
    fk->handlers--;
    pthread_cond_broadcast(&fk->idle);
    pthread_mutex_unlock(&fk->lock);
    return NULL;
}

/* One thread per connection, so that two clients overlap. */
static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(fk->listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL; /* shut down */
        }
        pthread_t t;
        pthread_mutex_lock(&fk->lock);
        fk->handlers++;
        pthread_mutex_unlock(&fk->lock);
        if (pthread_create(&t, NULL, handle_connection, (void *)(intptr_t)fd) == 0) {
            pthread_detach(t);
        } else {
            close(fd);
            pthread_mutex_lock(&fk->lock);
            fk->handlers--;
            pthread_mutex_unlock(&fk->lock);
        }
    }
}

/* ---- fixture ------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    fk = calloc(1, sizeof *fk);
    sm_error err;
    pthread_mutex_init(&fk->lock, NULL);
    pthread_cond_init(&fk->idle, NULL);
    fk->layer = malloc(LAYER_SIZE);
    for (size_t i = 0; i < LAYER_SIZE; i++)
        fk->layer[i] = (char)((i * 2654435761u) >> 13);
    oci_sha256_buffer(fk->layer, LAYER_SIZE, fk->layer_digest, &err);
    fk->config_len = (size_t)snprintf(fk->config, sizeof fk->config,
                                      "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":"
                                      "{\"Cmd\":[\"true\"]},\"rootfs\":{\"type\":\"layers\","
                                      "\"diff_ids\":[\"%s\"]}}",
                                      fk->layer_digest);
    oci_sha256_buffer(fk->config, fk->config_len, fk->config_digest, &err);
    fk->manifest_len = (size_t)snprintf(
        fk->manifest, sizeof fk->manifest,
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":"
        "\"" OCI_MT_OCI_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
        "\"" OCI_MT_LAYER_GZIP "\",\"digest\":\"%s\",\"size\":%d}]}",
        fk->config_digest, fk->config_len, fk->layer_digest, LAYER_SIZE);
    oci_sha256_buffer(fk->manifest, fk->manifest_len, fk->manifest_digest, &err);

    fk->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (fk->listen_fd < 0 || bind(fk->listen_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(fk->listen_fd, 16) < 0 || getsockname(fk->listen_fd, (struct sockaddr *)&a, &alen))
        return -1;
    fk->port = ntohs(a.sin_port);
    snprintf(fk->store, sizeof fk->store, "/tmp/sm-test-registry-XXXXXX");
    if (!mkdtemp(fk->store))
        return -1;
    /* no credentials from the user's own docker config */
    setenv("DOCKER_CONFIG", fk->store, 1);
    return pthread_create(&fk->thread, NULL, serve, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    shutdown(fk->listen_fd, SHUT_RDWR);
    pthread_join(fk->thread, NULL);
    pthread_mutex_lock(&fk->lock);
    while (fk->handlers > 0)
        pthread_cond_wait(&fk->idle, &fk->lock);
    pthread_mutex_unlock(&fk->lock);
    close(fk->listen_fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fk->store);
    assert_int_equal(system(cmd), 0);
    free(fk->layer);
    free(fk);
    return 0;
}

/* Between tests: a fresh store and default behaviour. */
static int reset(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/blobs'", fk->store);
    assert_int_equal(system(cmd), 0);
    pthread_mutex_lock(&fk->lock);
    fk->auth = AUTH_NONE;
    fk->token_needs_credentials = fk->ignore_range = fk->corrupt_layer = fk->long_layer = false;
    fk->no_length = fk->wrong_total = false;
    fk->wrong_digest = 0;
    fk->slow_layer = false;
    fk->layer_gets = 0;
    fk->cut_after = fk->cut_first = 0;
    pull_cap = 0;
    fk->manifest_gets = fk->blob_gets = fk->token_gets = fk->range_gets = fk->unauthorized = 0;
    pthread_mutex_unlock(&fk->lock);
    return 0;
}

static sm_code pull(const char *tag, const char *user, const char *password,
                    struct oci_fetched *out, sm_error *err)
{
    char ref[128];
    snprintf(ref, sizeof ref, "127.0.0.1:%d/t%s%s", fk->port, tag[0] == '@' ? "" : ":", tag);
    struct oci_fetch_options opt = {.store_dir = fk->store,
                                    .plain_http = true,
                                    .username = user,
                                    .password = password,
                                    .max_compressed = pull_cap};
    memset(err, 0, sizeof *err);
    return oci_fetch(ref, &opt, out, err);
}

static uint64_t partial_size(void)
{
    char *p = blob_store_partial_path(fk->store, fk->layer_digest);
    struct stat st;
    uint64_t size = stat(p, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
    free(p);
    return size;
}

static void expect_pull_fails(const char *tag, sm_code code, const char *piece)
{
    struct oci_fetched out;
    sm_error err;
    sm_code rc = pull(tag, NULL, NULL, &out, &err);
    if (rc != code || !strstr(err.message, piece))
        fail_msg("%s: %d \"%s\", wanted %d with \"%s\"", tag, rc, err.message, code, piece);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_bearer_index_and_cache(void **state)
{
    (void)state;
    fk->auth = AUTH_BEARER;
    struct oci_fetched out;
    sm_error err;
    if (pull("multi", NULL, NULL, &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    assert_string_equal(out.manifest_digest, fk->manifest_digest);
    assert_string_equal(out.config_digest, fk->config_digest);
    assert_int_equal(out.nlayers, 1);
    assert_string_equal(out.layers[0].digest, fk->layer_digest);
    assert_int_equal(out.compressed_size, LAYER_SIZE);
    assert_int_equal(out.downloaded, LAYER_SIZE + fk->config_len);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d/t:multi", fk->port);
    assert_string_equal(out.canonical_ref, want);
    oci_fetched_free(&out);
    assert_int_equal(fk->token_gets, 1); /* one token, reused */
    assert_int_equal(fk->manifest_gets, 2);
    assert_int_equal(fk->blob_gets, 2);
    assert_true(blob_store_has(fk->store, fk->layer_digest, LAYER_SIZE));

    /* again: the tag is asked for, nothing else */
    fk->manifest_gets = fk->blob_gets = 0;
    assert_int_equal(pull("multi", NULL, NULL, &out, &err), SM_OK);
    assert_int_equal(out.downloaded, 0);
    oci_fetched_free(&out);
    assert_int_equal(fk->manifest_gets, 1);
    assert_int_equal(fk->blob_gets, 0);

    /* by digest: everything is in the store, no request at all */
    fk->manifest_gets = 0;
    char at[80];
    snprintf(at, sizeof at, "@%s", fk->manifest_digest);
    assert_int_equal(pull(at, NULL, NULL, &out, &err), SM_OK);
    oci_fetched_free(&out);
    assert_int_equal(fk->manifest_gets + fk->blob_gets, 0);
}

struct racer {
    sm_code rc;
    sm_error err;
    struct oci_fetched out;
};

static void *race_pull(void *arg)
{
    struct racer *r = arg;
    r->rc = pull("single", NULL, NULL, &r->out, &r->err);
    return NULL;
}

/* Two pulls of one image into one store at once: the second waits for the
 * first one's download (flock on the .partial) and then uses its blob. */
static void test_concurrent_pulls(void **state)
{
    (void)state;
    struct racer r[2];
    pthread_t t[2];
    memset(r, 0, sizeof r);
    fk->slow_layer = true; /* so that the second pull finds the first one downloading */
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race_pull, &r[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        if (r[i].rc != SM_OK)
            fail_msg("pull %d: %s", i, r[i].err.message);
        assert_string_equal(r[i].out.layers[0].digest, fk->layer_digest);
        oci_fetched_free(&r[i].out);
    }
    assert_int_equal(fk->layer_gets, 1); /* downloaded once */
    assert_true(blob_store_has(fk->store, fk->layer_digest, LAYER_SIZE));
    assert_int_equal(partial_size(), UINT64_MAX);
    char *buf;
    size_t len;
    char digest[OCI_DIGEST_SIZE];
    sm_error err;
    assert_int_equal(blob_store_read(fk->store, fk->layer_digest, LAYER_SIZE, &buf, &len, &err),
                     SM_OK);
    oci_sha256_buffer(buf, len, digest, &err);
    free(buf);
    assert_string_equal(digest, fk->layer_digest);
}

static void test_token_without_access(void **state)
{
    (void)state;
    fk->auth = AUTH_BEARER;
    char want[128];
    snprintf(want, sizeof want,
             "access denied (HTTP 401): the repository t does not exist on 127.0.0.1:%d, or it "
             "needs credentials",
             fk->port);
    expect_pull_fails("private", SM_E_SETUP, want);
    assert_int_equal(fk->token_gets, 1);
}

static void test_basic_auth(void **state)
{
    (void)state;
    fk->auth = AUTH_BASIC;
    struct oci_fetched out;
    sm_error err;
    char want[128];
    assert_int_equal(pull("single", "alice", "wrong", &out, &err), SM_E_SETUP);
    snprintf(want, sizeof want,
             "authentication failed for 127.0.0.1:%d (HTTP 401): check the user name and password",
             fk->port);
    assert_non_null(strstr(err.message, want));
    assert_int_equal(pull("single", NULL, NULL, &out, &err), SM_E_SETUP);
    assert_non_null(strstr(err.message, "requires authentication"));
    if (pull("single", "alice", "s3cret", &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    oci_fetched_free(&out);
    /* credentials from $DOCKER_CONFIG/config.json */
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", fk->store);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"auths\":{\"http://127.0.0.1:%d\":{\"auth\":\"YWxpY2U6czNjcmV0\"}}}", fk->port);
    fclose(f);
    reset(NULL);
    fk->auth = AUTH_BASIC;
    sm_code rc = pull("single", NULL, NULL, &out, &err);
    unlink(path);
    if (rc != SM_OK)
        fail_msg("%s", err.message);
    oci_fetched_free(&out);
}

static void test_bearer_token_needs_credentials(void **state)
{
    (void)state;
    fk->auth = AUTH_BEARER;
    fk->token_needs_credentials = true;
    struct oci_fetched out;
    sm_error err;
    assert_int_equal(pull("single", NULL, NULL, &out, &err), SM_E_SETUP);
    assert_non_null(strstr(err.message, "requires authentication"));
    assert_int_equal(pull("single", "alice", "nope", &out, &err), SM_E_SETUP);
    assert_non_null(strstr(err.message, "authentication failed"));
    assert_int_equal(pull("single", "alice", "s3cret", &out, &err), SM_OK);
    oci_fetched_free(&out);
}

static void test_resume_after_broken_transfers(void **state)
{
    (void)state;
    fk->cut_after = 30000; /* every answer breaks after 30000 bytes */
    expect_pull_fails("single", SM_E_IO, "broke");
    /* three tries in one pull, each resumed where the last stopped */
    assert_int_equal(partial_size(), 90000);
    assert_int_equal(fk->range_gets, 2);
    assert_false(blob_store_has(fk->store, fk->layer_digest, BLOB_SIZE_UNKNOWN));
    /* the server heals: the next pull asks only for the rest */
    fk->cut_after = 0;
    struct oci_fetched out;
    sm_error err;
    if (pull("single", NULL, NULL, &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    assert_int_equal(out.downloaded, LAYER_SIZE - 90000);
    oci_fetched_free(&out);
    assert_int_equal(partial_size(), UINT64_MAX);
    char *buf;
    size_t len;
    char digest[OCI_DIGEST_SIZE];
    assert_int_equal(blob_store_read(fk->store, fk->layer_digest, LAYER_SIZE, &buf, &len, &err),
                     SM_OK);
    oci_sha256_buffer(buf, len, digest, &err);
    free(buf);
    assert_string_equal(digest, fk->layer_digest);
}

static void test_server_ignoring_range(void **state)
{
    (void)state;
    fk->cut_after = 50000;
    expect_pull_fails("single", SM_E_IO, "broke");
    fk->cut_after = 0;
    fk->ignore_range = true; /* answers 200 with everything */
    struct oci_fetched out;
    sm_error err;
    if (pull("single", NULL, NULL, &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    oci_fetched_free(&out);
    assert_true(fk->range_gets >= 1);
    assert_true(blob_store_has(fk->store, fk->layer_digest, LAYER_SIZE));
}

static void test_bad_blobs(void **state)
{
    (void)state;
    char want[128];
    fk->corrupt_layer = true;
    snprintf(want, sizeof want, "layer sha256:%.12s… is corrupt: digest mismatch (got sha256:",
             oci_digest_hex(fk->layer_digest));
    expect_pull_fails("single", SM_E_PROTOCOL, want);
    assert_int_equal(partial_size(), UINT64_MAX); /* a corrupt download is not kept */
    fk->corrupt_layer = false;
    fk->long_layer = true; /* its Content-Length says so: refused before a byte is written */
    expect_pull_fails("single", SM_E_PROTOCOL,
                      "is corrupt: the registry announces 200016 bytes, more than the 200000 left of "
                      "the 200000 its descriptor gives");
    assert_int_equal(partial_size(), UINT64_MAX);
    fk->no_length = true; /* no Content-Length: refused at the first byte too many */
    expect_pull_fails("single", SM_E_PROTOCOL, "more bytes than the 200000 its descriptor gives");
    assert_int_equal(partial_size(), UINT64_MAX);
    assert_false(blob_store_has(fk->store, fk->layer_digest, BLOB_SIZE_UNKNOWN));
}

/* Docker-Content-Digest: a manifest must hash to it; a blob answered under
 * another digest is refused before it is written. Content-Range: a resumed
 * download's total must be the blob's size. */
static void test_digest_and_range_headers(void **state)
{
    (void)state;
    fk->wrong_digest = 1;
    char want[200];
    snprintf(want, sizeof want,
             "127.0.0.1:%d/t:single: the manifest is corrupt: it hashes to sha256:%.12s…, not to the "
             "sha256:000000000000… the registry gives (Docker-Content-Digest)",
             fk->port, oci_digest_hex(fk->manifest_digest));
    expect_pull_fails("single", SM_E_PROTOCOL, want);
    assert_int_equal(fk->blob_gets, 0);
    fk->wrong_digest = 2;
    snprintf(want, sizeof want, "config sha256:%.12s…: the registry answered with another blob "
                                "(Docker-Content-Digest sha256:000000000000…)",
             oci_digest_hex(fk->config_digest));
    expect_pull_fails("single", SM_E_PROTOCOL, want);
    fk->wrong_digest = 0;
    fk->cut_first = 100000;
    fk->wrong_total = true;
    snprintf(want, sizeof want, "the registry's blob is %d bytes, not the %d its descriptor gives",
             LAYER_SIZE + 1, LAYER_SIZE);
    expect_pull_fails("single", SM_E_PROTOCOL, want);
    assert_false(blob_store_has(fk->store, fk->layer_digest, BLOB_SIZE_UNKNOWN));
    fk->wrong_total = false; /* right headers: the download resumes and completes */
    struct oci_fetched out;
    sm_error err;
    if (pull("single", NULL, NULL, &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    oci_fetched_free(&out);
    assert_true(blob_store_has(fk->store, fk->layer_digest, LAYER_SIZE));
}

/* The header parsers themselves, on lines as libcurl passes them. */
static void header_lines(struct registry_headers *h, const char *const *lines)
{
    registry_headers_reset(h);
    for (size_t i = 0; lines[i]; i++)
        registry_header_line(h, lines[i], strlen(lines[i]));
}

static void test_header_parsers(void **state)
{
    (void)state;
    struct registry_headers h;
    header_lines(&h, (const char *const[]){
        "HTTP/1.1 307 Temporary Redirect\r\n", "Content-Type: text/html\r\n", "Content-Length: 12\r\n",
        "HTTP/2 200 \r\n", "content-type:  application/octet-stream \r\n", "Content-Length: 200000\r\n",
        "Docker-Content-Digest: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        "WWW-Authenticate: Basic realm=\"x\"\r\n", "WWW-Authenticate: Bearer realm=\"https://a/t\"\r\n",
        "WWW-Authenticate: Bearer realm=\"https://b/t\"\r\n", "\r\n", NULL });
    assert_int_equal(h.status, 200); /* the redirect's headers are forgotten */
    assert_string_equal(h.content_type, "application/octet-stream");
    assert_true(h.has_length);
    assert_int_equal(h.content_length, 200000);
    assert_string_equal(h.docker_digest, "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_string_equal(h.challenge, "Bearer realm=\"https://a/t\""); /* the first Bearer */
    /* What does not parse is absent. */
    header_lines(&h, (const char *const[]){ "HTTP/1.1 20 OK\r\n", "Content-Length: -1\r\n",
                                            "Docker-Content-Digest: sha256:AAAA\r\n", NULL });
    assert_int_equal(h.status, 0);
    assert_false(h.has_length);
    assert_string_equal(h.docker_digest, "");
    static const char *const lengths[][3] = {
        { "Content-Length: 18446744073709551616\r\n", NULL }, /* 2^64 */
        { "Content-Length: 1 2\r\n", NULL },
        { "Content-Length: +5\r\n", NULL },
        { "Content-Length: 5\r\n", "Content-Length: 6\r\n", NULL },
    };
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        header_lines(&h, lengths[i]);
        assert_false(h.has_length);
    }
    header_lines(&h, (const char *const[]){ "Content-Length: 18446744073709551615\r\n",
                                            "Content-Length: 18446744073709551615\r\n", NULL });
    assert_true(h.has_length);
    assert_true(h.content_length == UINT64_MAX);

    struct content_range cr;
    assert_true(registry_parse_content_range("bytes 5-9/10", &cr));
    assert_true(cr.first == 5 && cr.last == 9 && cr.total_known && cr.total == 10);
    assert_true(registry_parse_content_range("bytes 0-0/*", &cr));
    assert_false(cr.total_known);
    static const char *const bad[] = {
        "bytes 9-5/10", "bytes 5-10/10", "bytes -5-9/10", "bytes  5-9/10", "bytes 5-9/10 ", "bytes 5-9",
        "bytes 5-/10", "items 5-9/10", "bytes 5-9/*x", "bytes 99999999999999999999-1/2", "", "bytes */10",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (registry_parse_content_range(bad[i], &cr))
            fail_msg("\"%s\" parsed", bad[i]);
}

/* Layers adding up to more than the cap: refused before any blob is asked
 * for; at the cap exactly, pulled. */
static void test_download_cap(void **state)
{
    (void)state;
    pull_cap = LAYER_SIZE - 1;
    char want[160];
    snprintf(want, sizeof want,
             "the image's layers are 195.3 KiB (%d bytes) compressed, more than the cap of "
             "195.3 KiB (%d bytes) on an image's compressed bytes",
             LAYER_SIZE, LAYER_SIZE - 1);
    expect_pull_fails("single", SM_E_LIMIT, want);
    assert_int_equal(fk->blob_gets, 0);
    assert_int_equal(partial_size(), UINT64_MAX);
    pull_cap = LAYER_SIZE;
    struct oci_fetched out;
    sm_error err;
    if (pull("single", NULL, NULL, &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    oci_fetched_free(&out);
}

/* Within the cap by the manifest, past it by what the registry sends: the
 * first answer breaks after 150000 bytes, the resumed one ignores Range and
 * sends the whole layer again. The cap stops it as the bytes arrive. */
static void test_download_cap_counts_what_arrives(void **state)
{
    (void)state;
    pull_cap = LAYER_SIZE + 10000;
    fk->cut_first = 150000;
    fk->ignore_range = true;
    char want[160];
    snprintf(want, sizeof want, "stopped: 127.0.0.1:%d sent more than 205.0 KiB (%d bytes) for the image's layers",
             fk->port, LAYER_SIZE + 10000);
    expect_pull_fails("single", SM_E_LIMIT, want);
    assert_int_equal(fk->layer_gets, 2); /* no third try: the cap is not a broken connection */
    assert_false(blob_store_has(fk->store, fk->layer_digest, BLOB_SIZE_UNKNOWN));
    /* the default cap: the same registry's layer arrives whole */
    pull_cap = 0;
    struct oci_fetched out;
    sm_error err;
    if (pull("single", NULL, NULL, &out, &err) != SM_OK)
        fail_msg("%s", err.message);
    oci_fetched_free(&out);
    assert_true(blob_store_has(fk->store, fk->layer_digest, LAYER_SIZE));
}

static void test_missing_ca_file(void **state)
{
    (void)state;
    char ref[64];
    snprintf(ref, sizeof ref, "127.0.0.1:%d/t:single", fk->port);
    struct oci_fetch_options opt = {.store_dir = fk->store, .ca_file = "/nonexistent/ca.pem"};
    struct oci_fetched out;
    sm_error err;
    assert_int_equal(oci_fetch(ref, &opt, &out, &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "cannot read the CA file /nonexistent/ca.pem"));
    assert_int_equal(fk->manifest_gets, 0);
}

static void test_manifest_errors(void **state)
{
    (void)state;
    char want[128];
    snprintf(want, sizeof want, "127.0.0.1:%d/t:nope: manifest unknown (HTTP 404)", fk->port);
    expect_pull_fails("nope", SM_E_NOTFOUND, want);
    expect_pull_fails("armonly", SM_E_NOTFOUND,
                      "no linux/amd64 image: the index offers linux/arm64/v8");
    expect_pull_fails("old", SM_E_UNSUPPORTED, "schema 1");
    /* a digest reference whose manifest does not hash to it */
    expect_pull_fails("@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                      SM_E_NOTFOUND, "manifest unknown");
    char at[80];
    snprintf(at, sizeof at, "@%s", fk->manifest_digest);
    at[10] = at[10] == 'a' ? 'b' : 'a'; /* served as the manifest? no: 404 */
    expect_pull_fails(at, SM_E_NOTFOUND, "(HTTP 404)");
    /* nothing half-written is in the store: only the armonly index, which
     * verified (a complete blob) before its platform was looked for */
    char path[128];
    snprintf(path, sizeof path, "%s/blobs/sha256", fk->store);
    DIR *d = opendir(path);
    int blobs = 0, others = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        char digest[80];
        snprintf(digest, sizeof digest, "sha256:%.70s", e->d_name);
        if (oci_digest_valid(digest))
            blobs++;
        else
            others += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    if (d)
        closedir(d);
    assert_int_equal(blobs, 1);
    assert_int_equal(others, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_bearer_index_and_cache, reset),
        cmocka_unit_test_setup(test_token_without_access, reset),
        cmocka_unit_test_setup(test_concurrent_pulls, reset),
        cmocka_unit_test_setup(test_basic_auth, reset),
        cmocka_unit_test_setup(test_bearer_token_needs_credentials, reset),
        cmocka_unit_test_setup(test_resume_after_broken_transfers, reset),
        cmocka_unit_test_setup(test_server_ignoring_range, reset),
        cmocka_unit_test_setup(test_bad_blobs, reset),
        cmocka_unit_test_setup(test_digest_and_range_headers, reset),
        cmocka_unit_test(test_header_parsers),
        cmocka_unit_test_setup(test_download_cap, reset),
        cmocka_unit_test_setup(test_download_cap_counts_what_arrives, reset),
        cmocka_unit_test_setup(test_missing_ca_file, reset),
        cmocka_unit_test_setup(test_manifest_errors, reset),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
