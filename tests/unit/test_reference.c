/* Unit tests of image references (src/image/reference.c) and digests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "image/digest.h"
#include "image/reference.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct good_case {
    const char *in;
    const char *registry, *repository, *tag, *digest;
    const char *api_host;
    const char *canonical;
};

static const struct good_case good[] = {
    {"debian", "docker.io", "library/debian", "latest", "", "registry-1.docker.io",
     "docker.io/library/debian:latest"},
    {"debian:bookworm", "docker.io", "library/debian", "bookworm", "", "registry-1.docker.io",
     "docker.io/library/debian:bookworm"},
    {"python:3.12-slim", "docker.io", "library/python", "3.12-slim", "", "registry-1.docker.io",
     "docker.io/library/python:3.12-slim"},
    {"user/app", "docker.io", "user/app", "latest", "", "registry-1.docker.io",
     "docker.io/user/app:latest"},
    {"docker.io/debian", "docker.io", "library/debian", "latest", "", "registry-1.docker.io",
     "docker.io/library/debian:latest"},
    {"index.docker.io/library/alpine:3", "docker.io", "library/alpine", "3", "",
     "registry-1.docker.io", "docker.io/library/alpine:3"},
    {"127.0.0.1:5000/debian:test", "127.0.0.1:5000", "debian", "test", "", "127.0.0.1:5000",
     "127.0.0.1:5000/debian:test"},
    {"localhost/a/b/c", "localhost", "a/b/c", "latest", "", "localhost", "localhost/a/b/c:latest"},
    {"localhost:5000/x", "localhost:5000", "x", "latest", "", "localhost:5000",
     "localhost:5000/x:latest"},
    {"ghcr.io/o-r/my_repo.x__y:v1.2.3", "ghcr.io", "o-r/my_repo.x__y", "v1.2.3", "", "ghcr.io",
     "ghcr.io/o-r/my_repo.x__y:v1.2.3"},
    {"Registry.Example/app", "Registry.Example", "app", "latest", "", "Registry.Example",
     "Registry.Example/app:latest"},
    {"[::1]:5000/app:t", "[::1]:5000", "app", "t", "", "[::1]:5000", "[::1]:5000/app:t"},
    {"debian@sha256:" D64, "docker.io", "library/debian", "", "sha256:" D64,
     "registry-1.docker.io", "docker.io/library/debian@sha256:" D64},
    {"r.io/a:tag@sha256:" D64, "r.io", "a", "tag", "sha256:" D64, "r.io",
     "r.io/a:tag@sha256:" D64},
    {"a---b", "docker.io", "library/a---b", "latest", "", "registry-1.docker.io",
     "docker.io/library/a---b:latest"},
    {"x:_tag", "docker.io", "library/x", "_tag", "", "registry-1.docker.io",
     "docker.io/library/x:_tag"},
};

static void test_good_references(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const struct good_case *c = &good[i];
        struct oci_reference r;
        sm_error err = {0};
        if (oci_reference_parse(c->in, &r, &err) != SM_OK)
            fail_msg("%s: %s", c->in, err.message);
        assert_string_equal(r.registry, c->registry);
        assert_string_equal(r.repository, c->repository);
        assert_string_equal(r.tag, c->tag);
        assert_string_equal(r.digest, c->digest);
        assert_string_equal(oci_reference_api_host(&r), c->api_host);
        char buf[1200];
        oci_reference_format(&r, buf, sizeof buf);
        assert_string_equal(buf, c->canonical);
        assert_string_equal(oci_reference_target(&r), c->digest[0] ? c->digest : c->tag);
        /* The canonical form reads back as the same reference. */
        struct oci_reference again;
        assert_int_equal(oci_reference_parse(buf, &again, &err), SM_OK);
        assert_memory_equal(&again, &r, sizeof r);
    }
}

struct bad_case {
    const char *in;
    const char *why; /* a piece of the message */
};

static const struct bad_case bad[] = {
    {"", "empty"},
    {"Debian", "name is lowercase"},
    {"debian:", "a tag is"},
    {"debian:-x", "a tag is"},
    {"debian:a/b", "registry must be"},
    {"a:b:c", "unexpected ':'"},
    {"/debian", "name is lowercase"},
    {"debian/", "name is lowercase"},
    {"a//b", "name is lowercase"},
    {"a..b", "name is lowercase"},
    {"a___b", "name is lowercase"},
    {"-a", "name is lowercase"},
    {"a-", "name is lowercase"},
    {"r.io:0/a", "registry must be"},
    {"r.io:65536/a", "registry must be"},
    {"r.io:x/a", "registry must be"},
    {"-r.io/a", "registry must be"},
    {"r..io/a", "registry must be"},
    {"[zz]:5/a", "registry must be"},
    {"r.io/", "name is lowercase"},
    {"debian@sha256:" "0123", "64 lowercase hex"},
    {"debian@sha256:" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
     "64 lowercase hex"},
    {"debian@sha512:" D64 D64, "only sha256"},
    {"debian@", "64 lowercase hex"},
    {"@sha256:" D64, "no name"},
    {"deb ian", "name is lowercase"},
    {"debian:t\n", "a tag is"},
};

static void test_bad_references(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct oci_reference r;
        sm_error err = {0};
        sm_code rc = oci_reference_parse(bad[i].in, &r, &err);
        if (rc != SM_E_INVALID)
            fail_msg("\"%s\" was accepted (%s/%s:%s)", bad[i].in, r.registry, r.repository, r.tag);
        if (!strstr(err.message, bad[i].why))
            fail_msg("\"%s\": message \"%s\" lacks \"%s\"", bad[i].in, err.message, bad[i].why);
    }
}

static void test_length_limits(void **state)
{
    (void)state;
    char buf[2048];
    struct oci_reference r;
    sm_error err = {0};
    /* a tag of 128 is fine, 129 is not */
    snprintf(buf, sizeof buf, "a:%0128d", 0);
    assert_int_equal(oci_reference_parse(buf, &r, &err), SM_OK);
    snprintf(buf, sizeof buf, "a:%0129d", 0);
    assert_int_equal(oci_reference_parse(buf, &r, &err), SM_E_INVALID);
    /* "docker.io/library/" + name must fit 255 */
    memset(buf, 'a', 237);
    buf[237] = '\0';
    assert_int_equal(oci_reference_parse(buf, &r, &err), SM_OK);
    assert_int_equal(strlen(r.repository), 8 + 237);
    memset(buf, 'a', 238);
    buf[238] = '\0';
    assert_int_equal(oci_reference_parse(buf, &r, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "longer than 255"));
    /* a registry longer than the whole name may be (found by fuzzing) */
    memset(buf, 'r', 300);
    memcpy(buf + 300, ".io/a", 6);
    assert_int_equal(oci_reference_parse(buf, &r, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "longer than 255"));
    memset(buf, 'a', 1500);
    buf[1500] = '\0';
    assert_int_equal(oci_reference_parse(buf, &r, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "longer than 1024"));
    assert_int_equal(oci_reference_parse(NULL, &r, &err), SM_E_INVALID);
}

static void test_digests(void **state)
{
    (void)state;
    assert_true(oci_digest_valid("sha256:" D64));
    assert_false(oci_digest_valid("sha256:" D64 "0"));
    assert_false(oci_digest_valid("sha256:" "0123"));
    assert_false(oci_digest_valid("SHA256:" D64));
    assert_false(oci_digest_valid("sha256:g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(oci_digest_valid(NULL));
    char d[OCI_DIGEST_SIZE];
    sm_error err;
    /* Known answers (FIPS 180-2): "" and "abc". */
    assert_int_equal(oci_sha256_buffer("", 0, d, &err), SM_OK);
    assert_string_equal(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(oci_sha256_buffer("abc", 3, d, &err), SM_OK);
    assert_string_equal(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* Incremental == whole; reset starts over. */
    oci_sha256 h;
    assert_int_equal(oci_sha256_init(&h, &err), SM_OK);
    oci_sha256_update(&h, "zzz", 3);
    oci_sha256_reset(&h);
    oci_sha256_update(&h, "a", 1);
    oci_sha256_update(&h, "bc", 2);
    char d2[OCI_DIGEST_SIZE];
    oci_sha256_final(&h, d2);
    oci_sha256_free(&h);
    assert_string_equal(d2, d);
    char s[32];
    oci_digest_short(d, s);
    assert_string_equal(s, "sha256:ba7816bf8f01");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_references),
        cmocka_unit_test(test_bad_references),
        cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_digests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
