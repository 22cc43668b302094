/* Unit tests of manifest / index parsing and platform choice
 * (src/image/oci_manifest.c), image configs (oci_config.c), and the
 * registry client's pure parts: docker config.json credentials and
 * WWW-Authenticate challenges (registry.c). No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "image/oci_config.h"
#include "image/oci_manifest.h"
#include "image/registry.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static sm_code parse(const char *json, const char *ctype, struct oci_manifest *m, sm_error *err)
{
    memset(err, 0, sizeof *err);
    return oci_manifest_parse(json, strlen(json), ctype, m, err);
}

static void expect_error(const char *json, const char *ctype, sm_code code, const char *piece)
{
    struct oci_manifest m;
    sm_error err;
    sm_code rc = parse(json, ctype, &m, &err);
    if (rc != code || !strstr(err.message, piece))
        fail_msg("%s\n-> %d \"%s\", wanted %d with \"%s\"", json, rc, err.message, code, piece);
}

static const char docker_v2[] =
    "{\"schemaVersion\":2,"
    "\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
    "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
    "\"size\":1469,\"digest\":\"" DA "\"},"
    "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
    "\"size\":29124181,\"digest\":\"" DB "\"},"
    "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
    "\"size\":0,\"digest\":\"" DC "\"}]}";

static void test_docker_v2_manifest(void **state)
{
    (void)state;
    struct oci_manifest m;
    sm_error err;
    assert_int_equal(parse(docker_v2, NULL, &m, &err), SM_OK);
    assert_int_equal(m.kind, OCI_KIND_IMAGE);
    assert_string_equal(m.media_type, OCI_MT_DOCKER_MANIFEST);
    assert_string_equal(m.config.digest, DA);
    assert_int_equal(m.config.size, 1469);
    assert_int_equal(m.nlayers, 2);
    assert_string_equal(m.layers[0].digest, DB);
    assert_int_equal(m.layers[0].size, 29124181);
    assert_string_equal(m.layers[1].media_type, OCI_MT_DOCKER_LAYER);
    assert_int_equal(oci_layer_compression_of(m.layers[0].media_type), OCI_LAYER_GZIP);
    oci_manifest_free(&m);
}

static void test_oci_manifest_without_media_type(void **state)
{
    (void)state;
    /* OCI manifests may leave mediaType out; zstd and plain tar layers. */
    const char *json = "{\"schemaVersion\":2,"
                       "\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG "\",\"size\":7,"
                       "\"digest\":\"" DA "\"},"
                       "\"layers\":[{\"mediaType\":\"" OCI_MT_LAYER_ZSTD "\",\"size\":1,"
                       "\"digest\":\"" DB "\"},{\"mediaType\":\"" OCI_MT_LAYER_TAR "\","
                       "\"size\":2,\"digest\":\"" DC "\",\"annotations\":{\"x\":\"y\"}}],"
                       "\"annotations\":{\"a\":\"b\"}}  \n";
    struct oci_manifest m;
    sm_error err;
    assert_int_equal(parse(json, "", &m, &err), SM_OK);
    assert_int_equal(m.kind, OCI_KIND_IMAGE);
    assert_string_equal(m.media_type, OCI_MT_OCI_MANIFEST);
    assert_int_equal(oci_layer_compression_of(m.layers[0].media_type), OCI_LAYER_ZSTD);
    assert_int_equal(oci_layer_compression_of(m.layers[1].media_type), OCI_LAYER_TAR);
    oci_manifest_free(&m);
    /* the server's Content-Type (with parameters) is recorded when it fits */
    assert_int_equal(parse(json, OCI_MT_OCI_MANIFEST "; charset=utf-8", &m, &err), SM_OK);
    assert_string_equal(m.media_type, OCI_MT_OCI_MANIFEST);
    oci_manifest_free(&m);
}

static const char index_json[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_DOCKER_LIST "\",\"manifests\":["
    "{\"mediaType\":\"" OCI_MT_DOCKER_MANIFEST "\",\"size\":529,\"digest\":\"" DA "\","
    " \"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}},"
    "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":566,\"digest\":\"" DC "\","
    " \"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"}},"
    "{\"mediaType\":\"" OCI_MT_DOCKER_MANIFEST "\",\"size\":530,\"digest\":\"" DB "\","
    " \"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}";

static void test_index_selects_linux_amd64(void **state)
{
    (void)state;
    struct oci_manifest m;
    sm_error err;
    assert_int_equal(parse(index_json, NULL, &m, &err), SM_OK);
    assert_int_equal(m.kind, OCI_KIND_INDEX);
    assert_int_equal(m.nmanifests, 3);
    const struct oci_descriptor *d;
    assert_int_equal(oci_index_select(&m, "linux", "amd64", NULL, &d, &err), SM_OK);
    assert_string_equal(d->digest, DB);
    assert_int_equal(d->size, 530);
    assert_int_equal(oci_index_select(&m, "linux", "arm", NULL, &d, &err), SM_OK);
    assert_string_equal(d->digest, DA);
    assert_string_equal(d->variant, "v7");
    /* nothing for s390x: the message names what is offered, not the attestation */
    assert_int_equal(oci_index_select(&m, "linux", "s390x", NULL, &d, &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "no linux/s390x image"));
    assert_non_null(strstr(err.message, "linux/arm/v7, linux/amd64"));
    assert_null(strstr(err.message, "unknown"));
    oci_manifest_free(&m);
}

static void test_index_ref_names_and_single_entry(void **state)
{
    (void)state;
    /* An image layout's index.json: no platforms, ref.name annotations. */
    const char *json = "{\"schemaVersion\":2,\"manifests\":["
                       "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":5,\"digest\":\"" DA
                       "\",\"annotations\":{\"org.opencontainers.image.ref.name\":\"one\"}},"
                       "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":6,\"digest\":\"" DB
                       "\",\"annotations\":{\"org.opencontainers.image.ref.name\":\"two\"}}]}";
    struct oci_manifest m;
    sm_error err;
    const struct oci_descriptor *d;
    assert_int_equal(parse(json, OCI_MT_OCI_INDEX, &m, &err), SM_OK);
    assert_int_equal(m.kind, OCI_KIND_INDEX);
    assert_int_equal(oci_index_select(&m, "linux", "amd64", "two", &d, &err), SM_OK);
    assert_string_equal(d->digest, DB);
    assert_int_equal(oci_index_select(&m, "linux", "amd64", "three", &d, &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "no image named \"three\""));
    /* two entries without platforms and no name: ambiguous */
    assert_int_equal(oci_index_select(&m, "linux", "amd64", NULL, &d, &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "without a platform"));
    oci_manifest_free(&m);
    /* an empty index */
    assert_int_equal(parse("{\"schemaVersion\":2,\"manifests\":[]}", NULL, &m, &err), SM_OK);
    assert_int_equal(oci_index_select(&m, "linux", "amd64", NULL, &d, &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "lists no image"));
    oci_manifest_free(&m);
}

static void test_schema1_and_unknown_types(void **state)
{
    (void)state;
    expect_error("{\"schemaVersion\":1,\"name\":\"x\",\"tag\":\"t\",\"fsLayers\":[]}", NULL,
                 SM_E_UNSUPPORTED, "schema 1");
    expect_error("{\"schemaVersion\":2}", OCI_MT_DOCKER_V1_SIGNED, SM_E_UNSUPPORTED, "schema 1");
    expect_error("{\"schemaVersion\":3,\"layers\":[]}", NULL, SM_E_UNSUPPORTED, "schemaVersion 3");
    expect_error("{\"layers\":[]}", NULL, SM_E_PROTOCOL, "schemaVersion");
    expect_error("{\"schemaVersion\":2,\"mediaType\":\"application/x-helm\"}", NULL,
                 SM_E_UNSUPPORTED, "unsupported manifest media type");
    /* an artifact, not a container image */
    expect_error("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.cncf.helm."
                 "config.v1+json\",\"size\":1,\"digest\":\"" DA "\"},\"layers\":[]}",
                 NULL, SM_E_UNSUPPORTED, "not a container image");
    expect_error("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG
                 "\",\"size\":1,\"digest\":\"" DA "\"},\"layers\":[{\"mediaType\":\"text/plain\","
                 "\"size\":1,\"digest\":\"" DB "\"}]}",
                 NULL, SM_E_UNSUPPORTED, "layer 1 of the manifest has media type \"text/plain\"");
}

static void test_hostile_manifests(void **state)
{
    (void)state;
    const char *cfg = "\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG "\",\"size\":1,"
                      "\"digest\":\"" DA "\"}";
    char buf[512];
    expect_error("", NULL, SM_E_PROTOCOL, "not valid JSON");
    expect_error("{", NULL, SM_E_PROTOCOL, "ends too early");
    expect_error("{} x", NULL, SM_E_PROTOCOL, "not valid JSON");
    expect_error("{}{}", NULL, SM_E_PROTOCOL, "not valid JSON");
    expect_error("[1]", NULL, SM_E_PROTOCOL, "not a JSON object");
    expect_error("{\"schemaVersion\":\"2\"}", NULL, SM_E_PROTOCOL, "schemaVersion");
    snprintf(buf, sizeof buf, "{\"schemaVersion\":2,%s}", cfg);
    expect_error(buf, NULL, SM_E_PROTOCOL, "no \"layers\" array");
    expect_error("{\"schemaVersion\":2,\"layers\":[]}", NULL, SM_E_PROTOCOL, "no \"config\"");
    snprintf(buf, sizeof buf, "{\"schemaVersion\":2,%s,\"layers\":{}}", cfg);
    expect_error(buf, NULL, SM_E_PROTOCOL, "no \"layers\" array");
    snprintf(buf, sizeof buf, "{\"schemaVersion\":2,%s,\"layers\":[7]}", cfg);
    expect_error(buf, NULL, SM_E_PROTOCOL, "not a JSON object");
    /* bad digests and sizes */
    expect_error("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG
                 "\",\"size\":1,\"digest\":\"sha256:abc\"},\"layers\":[]}",
                 NULL, SM_E_PROTOCOL, "not a sha256 digest");
    expect_error("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG
                 "\",\"size\":1,\"digest\":\"sha512:abc\"},\"layers\":[]}",
                 NULL, SM_E_UNSUPPORTED, "is not sha256");
    expect_error("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG
                 "\",\"size\":-1,\"digest\":\"" DA "\"},\"layers\":[]}",
                 NULL, SM_E_PROTOCOL, "out of range");
    expect_error("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG
                 "\",\"size\":1e3,\"digest\":\"" DA "\"},\"layers\":[]}",
                 NULL, SM_E_PROTOCOL, "integer \"size\"");
    expect_error("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG
                 "\",\"size\":99999999999999999999999,\"digest\":\"" DA "\"},\"layers\":[]}",
                 NULL, SM_E_PROTOCOL, "size");
    /* a NUL inside a string */
    expect_error("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.oci.image."
                 "config.v1+json\\u0000x\",\"size\":1,\"digest\":\"" DA "\"},\"layers\":[]}",
                 NULL, SM_E_PROTOCOL, "mediaType");
    /* nesting deeper than the parser allows */
    char deep[200];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    expect_error(deep, NULL, SM_E_PROTOCOL, "not valid JSON");
}

static void test_manifest_bounds(void **state)
{
    (void)state;
    /* OCI_MAX_LAYERS layers parse, one more does not */
    const char *layer = "{\"mediaType\":\"" OCI_MT_LAYER_GZIP "\",\"size\":1,\"digest\":\"" DB "\"}";
    size_t cap = (OCI_MAX_LAYERS + 2) * (strlen(layer) + 1) + 512;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int n = OCI_MAX_LAYERS; n <= OCI_MAX_LAYERS + 1; n++) {
        size_t len = (size_t)snprintf(buf, cap,
                                      "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG
                                      "\",\"size\":1,\"digest\":\"" DA "\"},\"layers\":[");
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? "," : "", layer);
        snprintf(buf + len, cap - len, "]}");
        struct oci_manifest m;
        sm_error err;
        sm_code rc = parse(buf, NULL, &m, &err);
        if (n == OCI_MAX_LAYERS) {
            assert_int_equal(rc, SM_OK);
            assert_int_equal(m.nlayers, OCI_MAX_LAYERS);
            oci_manifest_free(&m);
        } else {
            assert_int_equal(rc, SM_E_LIMIT);
            assert_non_null(strstr(err.message, "more than the limit"));
        }
    }
    free(buf);
    /* a document over 4 MiB is refused before parsing */
    struct oci_manifest m;
    sm_error err;
    assert_int_equal(oci_manifest_parse("{}", OCI_JSON_MAX + 1, NULL, &m, &err), SM_E_LIMIT);
}

/* ---- image config ---------------------------------------------------------- */

static void test_config_fields(void **state)
{
    (void)state;
    const char *json =
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
        "\"Env\":[\"PATH=/usr/local/bin:/usr/bin\",\"LANG=C.UTF-8\",\"EMPTY=\"],"
        "\"WorkingDir\":\"/app\",\"User\":\"1000:1000\","
        "\"Entrypoint\":[\"/docker-entrypoint.sh\"],\"Cmd\":[\"python3\",\"-c\",\"print(1)\"],"
        "\"Labels\":{\"a\":\"b\"},\"ExposedPorts\":{\"80/tcp\":{}}},"
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DA "\",\"" DB "\"]},"
        "\"history\":[{\"created_by\":\"x\"}]}";
    struct oci_config c;
    sm_error err;
    assert_int_equal(oci_config_parse(json, strlen(json), &c, &err), SM_OK);
    assert_int_equal(c.nenv, 3);
    assert_string_equal(c.env[0], "PATH=/usr/local/bin:/usr/bin");
    assert_string_equal(c.env[2], "EMPTY=");
    assert_string_equal(c.working_dir, "/app");
    assert_string_equal(c.user, "1000:1000");
    assert_int_equal(c.nentrypoint, 1);
    assert_string_equal(c.entrypoint[0], "/docker-entrypoint.sh");
    assert_int_equal(c.ncmd, 3);
    assert_string_equal(c.cmd[2], "print(1)");
    assert_string_equal(c.architecture, "amd64");
    assert_string_equal(c.os, "linux");
    assert_int_equal(c.ndiff_ids, 2);
    assert_string_equal(c.diff_ids[1], DB);
    oci_config_free(&c);
}

static void test_config_empty_and_null(void **state)
{
    (void)state;
    const char *docs[] = {
        "{}",
        "{\"config\":null}",
        "{\"config\":{\"Env\":null,\"Cmd\":null,\"Entrypoint\":null,\"WorkingDir\":\"\","
        "\"User\":\"\"}}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        struct oci_config c;
        sm_error err;
        assert_int_equal(oci_config_parse(docs[i], strlen(docs[i]), &c, &err), SM_OK);
        assert_int_equal(c.nenv + c.ncmd + c.nentrypoint + c.ndiff_ids, 0);
        assert_null(c.working_dir);
        assert_null(c.user);
        assert_string_equal(c.architecture, "");
        oci_config_free(&c);
    }
}

static void test_config_hostile(void **state)
{
    (void)state;
    struct {
        const char *json;
        const char *piece;
    } cases[] = {
        {"[]", "not a JSON object"},
        {"{\"config\":[]}", "\"config\" is not an object"},
        {"{\"config\":{\"Env\":\"A=B\"}}", "Env is not an array"},
        {"{\"config\":{\"Env\":[\"NOEQUALS\"]}}", "not KEY=VALUE"},
        {"{\"config\":{\"Env\":[\"=x\"]}}", "not KEY=VALUE"},
        {"{\"config\":{\"Cmd\":[1]}}", "entry 1 of Cmd"},
        {"{\"config\":{\"Cmd\":[\"a\",null]}}", "entry 2 of Cmd"},
        {"{\"config\":{\"Entrypoint\":[\"a\\u0000b\"]}}", "without NUL"},
        {"{\"config\":{\"WorkingDir\":5}}", "WorkingDir"},
        {"{\"config\":{\"User\":{}}}", "User"},
        {"{\"architecture\":\"amd64amd64amd64amd64amd64amd64amd64\"}", "architecture"},
        {"{\"rootfs\":{\"diff_ids\":[\"sha256:x\"]}}", "diff_ids entry 1"},
        {"{\"rootfs\":7}", "rootfs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct oci_config c;
        sm_error err = {0};
        sm_code rc = oci_config_parse(cases[i].json, strlen(cases[i].json), &c, &err);
        if (rc == SM_OK || !strstr(err.message, cases[i].piece))
            fail_msg("%s -> %d \"%s\"", cases[i].json, rc, err.message);
        assert_null(c.env); /* nothing is left allocated on failure */
    }
}

static void test_config_bounds(void **state)
{
    (void)state;
    /* OCI_CONFIG_MAX_ITEMS + 1 Cmd entries are refused */
    size_t cap = (OCI_CONFIG_MAX_ITEMS + 1) * 4 + 64;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t len = (size_t)snprintf(buf, cap, "{\"config\":{\"Cmd\":[");
    for (int i = 0; i <= OCI_CONFIG_MAX_ITEMS; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s\"x\"", i ? "," : "");
    len += (size_t)snprintf(buf + len, cap - len, "]}}");
    struct oci_config c;
    sm_error err;
    assert_int_equal(oci_config_parse(buf, len, &c, &err), SM_E_LIMIT);
    free(buf);
    /* one string over OCI_CONFIG_MAX_STRING */
    cap = OCI_CONFIG_MAX_STRING + 64;
    buf = malloc(cap);
    assert_non_null(buf);
    len = (size_t)snprintf(buf, cap, "{\"config\":{\"WorkingDir\":\"");
    memset(buf + len, 'a', OCI_CONFIG_MAX_STRING + 1);
    len += OCI_CONFIG_MAX_STRING + 1;
    len += (size_t)snprintf(buf + len, cap - len, "\"}}");
    assert_int_equal(oci_config_parse(buf, len, &c, &err), SM_E_PROTOCOL);
    free(buf);
}

/* ---- credentials and challenges -------------------------------------------- */

static void expect_creds(const char *json, const char *registry, const char *user,
                         const char *pass)
{
    char *u, *p;
    sm_error err = {0};
    sm_code rc = docker_config_credentials(json, strlen(json), registry, &u, &p, &err);
    if (!user) {
        if (rc != SM_E_NOTFOUND)
            fail_msg("%s in %s: %d %s", registry, json, rc, err.message);
        assert_null(u);
        return;
    }
    if (rc != SM_OK)
        fail_msg("%s in %s: %d %s", registry, json, rc, err.message);
    assert_string_equal(u, user);
    assert_string_equal(p, pass);
    free(u);
    free(p);
}

static void test_docker_config_credentials(void **state)
{
    (void)state;
    /* "alice:s3cret", "bob:pa:ss" (the password may hold ':'), "hub:x" */
    const char *cfg = "{\"auths\":{"
                      "\"https://127.0.0.1:5443\":{\"auth\":\"YWxpY2U6czNjcmV0\"},"
                      "\"registry.example:5000/v2/\":{\"auth\":\"Ym9iOnBhOnNz\"},"
                      "\"https://index.docker.io/v1/\":{\"auth\":\"aHViOng=\"},"
                      "\"helper.example\":{}},"
                      "\"credsStore\":\"desktop\"}";
    expect_creds(cfg, "127.0.0.1:5443", "alice", "s3cret");
    expect_creds(cfg, "registry.example:5000", "bob", "pa:ss");
    expect_creds(cfg, "docker.io", "hub", "x");
    expect_creds(cfg, "127.0.0.1:5000", NULL, NULL);
    expect_creds(cfg, "helper.example", NULL, NULL);
    expect_creds("{}", "docker.io", NULL, NULL);
    expect_creds("{\"auths\":[]}", "docker.io", NULL, NULL);
    /* unpadded base64 too */
    expect_creds("{\"auths\":{\"r.io\":{\"auth\":\"aHViOng\"}}}", "r.io", "hub", "x");

    char *u, *p;
    sm_error err = {0};
    const char *broken = "{\"auths\":{\"r.io\":{\"auth\":\"!!!\"}}}";
    assert_int_equal(docker_config_credentials(broken, strlen(broken), "r.io", &u, &p, &err),
                     SM_E_INVALID);
    assert_non_null(strstr(err.message, "not base64 of user:password"));
    const char *nocolon = "{\"auths\":{\"r.io\":{\"auth\":\"YWxpY2U=\"}}}"; /* "alice" */
    assert_int_equal(docker_config_credentials(nocolon, strlen(nocolon), "r.io", &u, &p, &err),
                     SM_E_INVALID);
    assert_int_equal(docker_config_credentials("{", 1, "r.io", &u, &p, &err), SM_E_PROTOCOL);
}

static void test_docker_config_file_lookup(void **state)
{
    (void)state;
    char dir[] = "/tmp/sm-test-dockercfg-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *old_cfg = getenv("DOCKER_CONFIG") ? strdup(getenv("DOCKER_CONFIG")) : NULL;
    setenv("DOCKER_CONFIG", dir, 1);
    char *u, *p;
    sm_error err = {0};
    /* no file: not found (anonymous), not an error */
    assert_int_equal(docker_config_lookup("r.io", &u, &p, &err), SM_E_NOTFOUND);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"auths\":{\"r.io\":{\"auth\":\"YWxpY2U6czNjcmV0\"}}}", f);
    fclose(f);
    assert_int_equal(docker_config_lookup("r.io", &u, &p, &err), SM_OK);
    assert_string_equal(u, "alice");
    assert_string_equal(p, "s3cret");
    free(u);
    free(p);
    assert_int_equal(docker_config_lookup("other.io", &u, &p, &err), SM_E_NOTFOUND);
    /* a broken file names itself */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"auths\":", f);
    fclose(f);
    assert_int_equal(docker_config_lookup("r.io", &u, &p, &err), SM_E_PROTOCOL);
    assert_non_null(strstr(err.message, path));
    unlink(path);
    rmdir(dir);
    if (old_cfg) {
        setenv("DOCKER_CONFIG", old_cfg, 1);
        free(old_cfg);
    } else {
        unsetenv("DOCKER_CONFIG");
    }
}

static void test_challenges(void **state)
{
    (void)state;
    struct auth_challenge ch;
    sm_error err;
    assert_int_equal(registry_parse_challenge("Bearer realm=\"https://auth.docker.io/token\","
                                              "service=\"registry.docker.io\","
                                              "scope=\"repository:library/debian:pull\"",
                                              &ch, &err),
                     SM_OK);
    assert_string_equal(ch.scheme, "Bearer");
    assert_string_equal(ch.realm, "https://auth.docker.io/token");
    assert_string_equal(ch.service, "registry.docker.io");
    assert_string_equal(ch.scope, "repository:library/debian:pull");
    assert_int_equal(registry_parse_challenge("Basic realm=\"Registry Realm\"", &ch, &err), SM_OK);
    assert_string_equal(ch.scheme, "Basic");
    assert_string_equal(ch.realm, "Registry Realm");
    /* unquoted values, spaces after commas, escapes */
    assert_int_equal(registry_parse_challenge("Bearer realm=https://a/t, service=\"s\\\"x\"",
                                              &ch, &err),
                     SM_OK);
    assert_string_equal(ch.realm, "https://a/t");
    assert_string_equal(ch.service, "s\"x");
    assert_int_equal(registry_parse_challenge("Bearer service=\"s\"", &ch, &err), SM_E_PROTOCOL);
    assert_int_equal(registry_parse_challenge("Bearer realm=\"unterminated", &ch, &err),
                     SM_E_PROTOCOL);
    assert_int_equal(registry_parse_challenge("Bearer realm", &ch, &err), SM_E_PROTOCOL);
    char longv[3000] = "Bearer realm=\"";
    memset(longv + strlen(longv), 'a', 2000);
    assert_int_equal(registry_parse_challenge(longv, &ch, &err), SM_E_PROTOCOL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_docker_v2_manifest),
        cmocka_unit_test(test_oci_manifest_without_media_type),
        cmocka_unit_test(test_index_selects_linux_amd64),
        cmocka_unit_test(test_index_ref_names_and_single_entry),
        cmocka_unit_test(test_schema1_and_unknown_types),
        cmocka_unit_test(test_hostile_manifests),
        cmocka_unit_test(test_manifest_bounds),
        cmocka_unit_test(test_config_fields),
        cmocka_unit_test(test_config_empty_and_null),
        cmocka_unit_test(test_config_hostile),
        cmocka_unit_test(test_config_bounds),
        cmocka_unit_test(test_docker_config_credentials),
        cmocka_unit_test(test_docker_config_file_lookup),
        cmocka_unit_test(test_challenges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
