/* Unit tests of config.json's bind mounts (src/runtime/binds.c): single
 * files are taken, and every other kind of bind is refused, naming it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <limits.h>
#include <unistd.h>

#include "runtime/binds.h"

static char dir[] = "/tmp/sm-binds.XXXXXX";
static char file[PATH_MAX], big[PATH_MAX];

/* A config whose mounts are the one given (plus a proc mount, never a bind). */
static sm_code check_mount_on(const char *dest, const char *type, const char *source,
                              const char *option, sm_error *err)
{
    char json[2 * PATH_MAX];
    snprintf(json, sizeof json,
             "{\"ociVersion\":\"1.0.2\",\"process\":{\"user\":{\"uid\":0,\"gid\":0},"
             "\"args\":[\"true\"],\"cwd\":\"/\"},\"root\":{\"path\":\"rootfs\"},"
             "\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
             "{\"destination\":\"%s\"%s%s%s,\"source\":\"%s\",\"options\":[\"%s\",\"ro\"]}]}",
             dest, type ? ",\"type\":\"" : "", type ? type : "", type ? "\"" : "", source, option);
    struct rt_config c;
    sm_code rc = rt_config_parse(json, strlen(json), &c, err);
    assert_int_equal(rc, SM_OK);
    rc = rt_binds_check(&c, err);
    if (rc == SM_OK) {
        sm_exec_builder *b = sm_exec_builder_new("/nonexistent/exec.sock");
        assert_non_null(b);
        rc = rt_binds_stage(b, &c, err);
        sm_exec_builder_free(b);
    }
    rt_config_free(&c);
    return rc;
}

static sm_code check_mount(const char *type, const char *source, const char *option,
                           sm_error *err)
{
    return check_mount_on("/etc/x", type, source, option, err);
}

static void test_a_file_is_taken(void **state)
{
    (void)state;
    sm_error err = { 0 };
    assert_int_equal(check_mount("bind", file, "rbind", &err), SM_OK);
    assert_int_equal(check_mount(NULL, file, "bind", &err), SM_OK);
}

static void test_other_binds_are_refused(void **state)
{
    (void)state;
    sm_error err = { 0 };
    assert_int_equal(check_mount("bind", dir, "rbind", &err), SM_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, "mounts[1]: a bind mount of a folder"));
    assert_int_equal(check_mount(NULL, "/dev/null", "bind", &err), SM_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, "a device"));
    assert_int_equal(check_mount("bind", big, "rbind", &err), SM_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, "copied into the VM, up to"));
    assert_int_equal(check_mount("bind", "/nonexistent/file", "rbind", &err), SM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "mounts[1]: source /nonexistent/file"));
    assert_int_equal(check_mount("bind", "relative", "rbind", &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "absolute source"));
}

/* Not a bind (no bind type or option): the guest's own, whatever its source. */
static void test_other_mounts_are_not_binds(void **state)
{
    (void)state;
    sm_error err = { 0 };
    assert_int_equal(check_mount("tmpfs", dir, "nosuid", &err), SM_OK);
}

/* An engine's /dev/shm folder (podman's, Docker's) is the guest's own
 * /dev/shm: taken, not copied; another folder at another place is not. */
static void test_shm_folder_is_the_guests(void **state)
{
    (void)state;
    sm_error err = { 0 };
    assert_int_equal(check_mount_on("/dev/shm", "bind", dir, "rbind", &err), SM_OK);
    assert_int_equal(check_mount_on("/dev/shm/x", "bind", dir, "rbind", &err), SM_E_UNSUPPORTED);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(file, sizeof file, "%s/hosts", dir);
    snprintf(big, sizeof big, "%s/big", dir);
    FILE *f = fopen(file, "w");
    fputs("127.0.0.1 localhost\n", f);
    fclose(f);
    f = fopen(big, "w");
    fseek(f, RT_BIND_FILE_MAX + 1, SEEK_SET);
    fputc('x', f);
    fclose(f);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_file_is_taken),
        cmocka_unit_test(test_other_binds_are_refused),
        cmocka_unit_test(test_other_mounts_are_not_binds),
        cmocka_unit_test(test_shm_folder_is_the_guests),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(file);
    unlink(big);
    rmdir(dir);
    return failed;
}
