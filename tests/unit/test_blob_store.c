/* Unit tests of the blob store (src/image/blob_store.c): verify, rename,
 * resume, corrupt and oversize .partial files, imports of unknown digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "image/blob_store.h"
#include "image/oci_fetch.h"

struct fixture {
    char dir[64];
    char data[100000];
    char digest[OCI_DIGEST_SIZE];
};

static void remove_tree(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sm-test-blobs-XXXXXX");
    if (!f || !mkdtemp(f->dir))
        return -1;
    for (size_t i = 0; i < sizeof f->data; i++)
        f->data[i] = (char)(i * 7 + i / 251);
    sm_error err;
    if (oci_sha256_buffer(f->data, sizeof f->data, f->digest, &err))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    remove_tree(f->dir);
    free(f);
    return 0;
}

/* Names in STORE/blobs/sha256, sorted, joined by spaces ("" when empty). */
static void listing(const struct fixture *f, char *out, size_t cap)
{
    char path[128];
    snprintf(path, sizeof path, "%s/blobs/sha256", f->dir);
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.' || strncmp(names[i]->d_name, ".import", 7) == 0) {
            size_t used = strlen(out);
            snprintf(out + used, cap - used, "%s%.12s%s", used ? " " : "", names[i]->d_name,
                     strstr(names[i]->d_name, ".partial") ? ".partial" : "");
        }
        free(names[i]);
    }
    if (n >= 0)
        free(names);
}

static void write_partial(const struct fixture *f, const void *bytes, size_t len)
{
    sm_error err;
    assert_int_equal(blob_store_init(f->dir, &err), SM_OK);
    char *p = blob_store_partial_path(f->dir, f->digest);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, len, fp), len);
    fclose(fp);
    free(p);
}

static uint64_t partial_size(const struct fixture *f)
{
    char *p = blob_store_partial_path(f->dir, f->digest);
    struct stat st;
    uint64_t size = stat(p, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
    free(p);
    return size;
}

static void test_paths(void **state)
{
    struct fixture *f = *state;
    char *p = blob_store_path("/s", f->digest);
    char want[128];
    snprintf(want, sizeof want, "/s/blobs/sha256/%s", f->digest + 7);
    assert_string_equal(p, want);
    free(p);
    p = oci_blob_path("/s", f->digest);
    assert_string_equal(p, want);
    free(p);
    p = blob_store_partial_path("/s", f->digest);
    strcat(want, ".partial");
    assert_string_equal(p, want);
    free(p);
    assert_null(blob_store_path("/s", "sha256:../../etc/passwd"));
    assert_null(oci_blob_path("/s", "sha256:ABC"));
}

static void test_write_verify_rename(void **state)
{
    struct fixture *f = *state;
    struct blob_writer w;
    bool present;
    sm_error err;
    char list[512];
    assert_false(blob_store_has(f->dir, f->digest, sizeof f->data));
    assert_int_equal(blob_writer_open(f->dir, f->digest, sizeof f->data, "layer x", &w, &present,
                                      &err),
                     SM_OK);
    assert_false(present);
    assert_int_equal(w.written, 0);
    assert_int_equal(blob_writer_write(&w, f->data, 4000, &err), SM_OK);
    /* while unfinished, only a .partial exists */
    listing(f, list, sizeof list);
    assert_non_null(strstr(list, ".partial"));
    assert_false(blob_store_has(f->dir, f->digest, BLOB_SIZE_UNKNOWN));
    assert_int_equal(blob_writer_write(&w, f->data + 4000, sizeof f->data - 4000, &err), SM_OK);
    assert_int_equal(blob_writer_commit(&w, &err), SM_OK);
    listing(f, list, sizeof list);
    char want[32];
    snprintf(want, sizeof want, "%.12s", f->digest + 7);
    assert_string_equal(list, want);
    assert_true(blob_store_has(f->dir, f->digest, sizeof f->data));
    assert_false(blob_store_has(f->dir, f->digest, sizeof f->data - 1));
    /* present: open says so, nothing to write */
    assert_int_equal(blob_writer_open(f->dir, f->digest, sizeof f->data, "layer x", &w, &present,
                                      &err),
                     SM_OK);
    assert_true(present);
    char *buf;
    size_t len;
    assert_int_equal(blob_store_read(f->dir, f->digest, sizeof f->data, &buf, &len, &err), SM_OK);
    assert_int_equal(len, sizeof f->data);
    assert_memory_equal(buf, f->data, len);
    assert_int_equal(buf[len], '\0');
    free(buf);
    assert_int_equal(blob_store_read(f->dir, f->digest, 10, &buf, &len, &err), SM_E_LIMIT);
}

static void test_digest_mismatch_deletes_partial(void **state)
{
    struct fixture *f = *state;
    struct blob_writer w;
    bool present;
    sm_error err;
    char list[512];
    assert_int_equal(blob_writer_open(f->dir, f->digest, sizeof f->data, "layer sha256:abc…", &w,
                                      &present, &err),
                     SM_OK);
    char *copy = malloc(sizeof f->data);
    memcpy(copy, f->data, sizeof f->data);
    copy[5000] ^= 1;
    assert_int_equal(blob_writer_write(&w, copy, sizeof f->data, &err), SM_OK);
    free(copy);
    assert_int_equal(blob_writer_commit(&w, &err), SM_E_PROTOCOL);
    assert_non_null(strstr(err.message, "layer sha256:abc… is corrupt: digest mismatch (got sha256:"));
    listing(f, list, sizeof list);
    assert_string_equal(list, "");
}

static void test_too_long_is_refused(void **state)
{
    struct fixture *f = *state;
    struct blob_writer w;
    bool present;
    sm_error err;
    assert_int_equal(blob_writer_open(f->dir, f->digest, 100, "config c", &w, &present, &err),
                     SM_OK);
    assert_int_equal(blob_writer_write(&w, f->data, 60, &err), SM_OK);
    assert_int_equal(blob_writer_write(&w, f->data, 41, &err), SM_E_PROTOCOL);
    assert_non_null(strstr(err.message, "more bytes than the 100"));
    assert_int_equal(w.written, 60);
    blob_writer_discard(&w);
    assert_int_equal(partial_size(f), UINT64_MAX);
}

static void test_truncated_keeps_partial_and_resumes(void **state)
{
    struct fixture *f = *state;
    struct blob_writer w;
    bool present;
    sm_error err;
    assert_int_equal(blob_writer_open(f->dir, f->digest, sizeof f->data, "layer l", &w, &present,
                                      &err),
                     SM_OK);
    assert_int_equal(blob_writer_write(&w, f->data, 30000, &err), SM_OK);
    assert_int_equal(blob_writer_commit(&w, &err), SM_E_PROTOCOL);
    assert_non_null(strstr(err.message, "truncated: got 30000 of 100000 bytes"));
    assert_int_equal(partial_size(f), 30000);
    /* the next open resumes from 30000, and the result verifies */
    assert_int_equal(blob_writer_open(f->dir, f->digest, sizeof f->data, "layer l", &w, &present,
                                      &err),
                     SM_OK);
    assert_false(present);
    assert_int_equal(w.written, 30000);
    assert_int_equal(blob_writer_write(&w, f->data + 30000, sizeof f->data - 30000, &err), SM_OK);
    assert_int_equal(blob_writer_commit(&w, &err), SM_OK);
    assert_true(blob_store_has(f->dir, f->digest, sizeof f->data));
    assert_int_equal(partial_size(f), UINT64_MAX);
}

static void test_restart_after_ignored_range(void **state)
{
    struct fixture *f = *state;
    struct blob_writer w;
    bool present;
    sm_error err;
    write_partial(f, f->data, 500);
    assert_int_equal(blob_writer_open(f->dir, f->digest, sizeof f->data, "l", &w, &present, &err),
                     SM_OK);
    assert_int_equal(w.written, 500);
    /* the source sends everything again from byte 0 */
    assert_int_equal(blob_writer_restart(&w, &err), SM_OK);
    assert_int_equal(w.written, 0);
    assert_int_equal(blob_writer_write(&w, f->data, sizeof f->data, &err), SM_OK);
    assert_int_equal(blob_writer_commit(&w, &err), SM_OK);
    assert_true(blob_store_has(f->dir, f->digest, sizeof f->data));
}

static void test_corrupt_partial_prefix_is_caught(void **state)
{
    struct fixture *f = *state;
    struct blob_writer w;
    bool present;
    sm_error err;
    char junk[700];
    memset(junk, 'j', sizeof junk);
    write_partial(f, junk, sizeof junk);
    assert_int_equal(blob_writer_open(f->dir, f->digest, sizeof f->data, "layer j", &w, &present,
                                      &err),
                     SM_OK);
    assert_int_equal(w.written, sizeof junk);
    assert_int_equal(blob_writer_write(&w, f->data + sizeof junk, sizeof f->data - sizeof junk,
                                       &err),
                     SM_OK);
    assert_int_equal(blob_writer_commit(&w, &err), SM_E_PROTOCOL);
    assert_non_null(strstr(err.message, "digest mismatch"));
    assert_int_equal(partial_size(f), UINT64_MAX); /* deleted: the next try starts clean */
}

static void test_complete_partial_committed_on_open(void **state)
{
    struct fixture *f = *state;
    struct blob_writer w;
    bool present;
    sm_error err;
    write_partial(f, f->data, sizeof f->data);
    assert_int_equal(blob_writer_open(f->dir, f->digest, sizeof f->data, "l", &w, &present, &err),
                     SM_OK);
    assert_true(present);
    assert_true(blob_store_has(f->dir, f->digest, sizeof f->data));
    assert_int_equal(partial_size(f), UINT64_MAX);
}

static void test_complete_wrong_or_oversize_partial_emptied(void **state)
{
    struct fixture *f = *state;
    struct blob_writer w;
    bool present;
    sm_error err;
    char *junk = calloc(1, sizeof f->data + 10);
    write_partial(f, junk, sizeof f->data); /* complete length, wrong bytes */
    assert_int_equal(blob_writer_open(f->dir, f->digest, sizeof f->data, "l", &w, &present, &err),
                     SM_OK);
    assert_false(present);
    assert_int_equal(w.written, 0);
    assert_int_equal(partial_size(f), 0);
    blob_writer_close(&w);
    write_partial(f, junk, sizeof f->data + 10); /* longer than the blob */
    free(junk);
    assert_int_equal(blob_writer_open(f->dir, f->digest, sizeof f->data, "l", &w, &present, &err),
                     SM_OK);
    assert_int_equal(w.written, 0);
    assert_int_equal(partial_size(f), 0);
    blob_writer_discard(&w);
    assert_int_equal(partial_size(f), UINT64_MAX);
}

static void test_put_buffer_and_fd(void **state)
{
    struct fixture *f = *state;
    sm_error err;
    char list[512];
    assert_int_equal(blob_store_put_buffer(f->dir, f->digest, f->data, sizeof f->data - 1, "m",
                                           &err),
                     SM_E_PROTOCOL);
    listing(f, list, sizeof list);
    assert_string_equal(list, "");
    assert_int_equal(blob_store_put_buffer(f->dir, f->digest, f->data, sizeof f->data, "m", &err),
                     SM_OK);
    assert_true(blob_store_has(f->dir, f->digest, sizeof f->data));
    /* a file of unknown digest: named by its own */
    char src[128];
    snprintf(src, sizeof src, "%s/src", f->dir);
    FILE *fp = fopen(src, "w");
    fputs("hello", fp);
    fclose(fp);
    fp = fopen(src, "r");
    char got[OCI_DIGEST_SIZE];
    uint64_t size;
    assert_int_equal(blob_store_put_fd(f->dir, fileno(fp), "", BLOB_SIZE_UNKNOWN, "h", got, &size,
                                       &err),
                     SM_OK);
    fclose(fp);
    assert_string_equal(got, "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_int_equal(size, 5);
    assert_true(blob_store_has(f->dir, got, 5));
    /* a wrong expected digest leaves nothing behind (no .partial, no .import) */
    fp = fopen(src, "r");
    assert_int_equal(blob_store_put_fd(f->dir, fileno(fp),
                                       "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                                       5, "h", got, &size, &err),
                     SM_E_PROTOCOL);
    fclose(fp);
    listing(f, list, sizeof list);
    assert_int_equal(strlen(list), 12 + 1 + 12); /* the two blobs only */
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    struct blob_writer w;
    bool present;
    sm_error err;
    assert_int_equal(blob_writer_open(f->dir, "sha256:nothex", 1, "x", &w, &present, &err),
                     SM_E_INVALID);
    assert_int_equal(blob_store_init("", &err), SM_E_INVALID);
    char *buf;
    size_t len;
    assert_int_equal(blob_store_read(f->dir, f->digest, 10, &buf, &len, &err), SM_E_NOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_verify_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_mismatch_deletes_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_long_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_keeps_partial_and_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_after_ignored_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_partial_prefix_is_caught, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complete_partial_committed_on_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complete_wrong_or_oversize_partial_emptied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_put_buffer_and_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
