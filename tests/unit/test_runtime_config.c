/* Unit tests of config.json parsing (src/runtime/config.c): what parses, and
 * each kind of bad field, refused with its name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "runtime/config.h"

/* A config as podman writes one, trimmed. */
static const char full[] =
    "{\"ociVersion\":\"1.0.2-dev\","
    " \"process\":{\"terminal\":true,\"consoleSize\":{\"height\":24,\"width\":80},"
    "  \"user\":{\"uid\":1000,\"gid\":100,\"additionalGids\":[10,20],\"umask\":18},"
    "  \"args\":[\"sh\",\"-c\",\"echo hi\"],"
    "  \"env\":[\"PATH=/usr/bin:/bin\",\"TERM=xterm\",\"EMPTY=\"],"
    "  \"cwd\":\"/work\","
    "  \"capabilities\":{\"bounding\":[\"CAP_CHOWN\"]},\"noNewPrivileges\":true,"
    "  \"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"hard\":1048576,\"soft\":1024}]},"
    " \"root\":{\"path\":\"rootfs\",\"readonly\":true},"
    " \"hostname\":\"box\","
    " \"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
    "  {\"destination\":\"/dev\",\"type\":\"tmpfs\",\"source\":\"tmpfs\","
    "   \"options\":[\"nosuid\",\"strictatime\",\"mode=755\",\"size=65536k\"]},"
    "  {\"destination\":\"/etc/hosts\",\"source\":\"/run/x/hosts\",\"options\":[\"bind\",\"ro\"]}],"
    " \"hooks\":{\"prestart\":[]},"
    " \"annotations\":{\"io.podman.annotations.autoremove\":\"FALSE\",\"k\":\"v\"},"
    " \"linux\":{\"namespaces\":[{\"type\":\"pid\"},"
    "  {\"type\":\"network\",\"path\":\"/run/netns/x\"}],"
    "  \"resources\":{\"memory\":{\"limit\":536870912},"
    "   \"cpu\":{\"quota\":50000,\"period\":100000,\"shares\":1024},"
    "   \"devices\":[{\"allow\":false,\"access\":\"rwm\"}]},"
    "  \"seccomp\":{\"defaultAction\":\"SCMP_ACT_ERRNO\"}},"
    " \"somethingNew\":{\"x\":[1,2,3]}}";

static void test_full_config(void **state)
{
    (void)state;
    struct rt_config c;
    sm_error err = {0};
    assert_int_equal(rt_config_parse(full, strlen(full), &c, &err), SM_OK);
    assert_string_equal(c.oci_version, "1.0.2-dev");
    assert_true(c.has_process);
    assert_true(c.terminal);
    assert_int_equal(c.console_height, 24);
    assert_int_equal(c.console_width, 80);
    assert_int_equal(c.uid, 1000);
    assert_int_equal(c.gid, 100);
    assert_int_equal(c.ngids, 2);
    assert_int_equal(c.additional_gids[1], 20);
    assert_int_equal(c.nargs, 3);
    assert_string_equal(c.args[2], "echo hi");
    assert_null(c.args[3]);
    assert_int_equal(c.nenv, 3);
    assert_string_equal(c.env[2], "EMPTY=");
    assert_string_equal(c.cwd, "/work");
    assert_int_equal(c.nrlimits, 1);
    assert_string_equal(c.rlimits[0].type, "RLIMIT_NOFILE");
    assert_int_equal(c.rlimits[0].soft, 1024);
    assert_int_equal(c.rlimits[0].hard, 1048576);
    assert_string_equal(c.root_path, "rootfs");
    assert_true(c.root_readonly);
    assert_string_equal(c.hostname, "box");
    assert_int_equal(c.nmounts, 3);
    assert_string_equal(c.mounts[1].type, "tmpfs");
    assert_int_equal(c.mounts[1].noptions, 4);
    assert_string_equal(c.mounts[1].options[3], "size=65536k");
    assert_null(c.mounts[2].type);
    assert_string_equal(c.mounts[2].source, "/run/x/hosts");
    assert_int_equal(c.nannotations, 2);
    assert_string_equal(rt_config_annotation(&c, "k"), "v");
    assert_null(rt_config_annotation(&c, "nope"));
    assert_true(c.has_memory_limit);
    assert_int_equal(c.memory_limit, 536870912);
    assert_true(c.has_cpu_quota && c.has_cpu_period && c.has_cpu_shares);
    assert_int_equal(c.cpu_quota, 50000);
    assert_int_equal(c.cpu_period, 100000);
    assert_int_equal(c.cpu_shares, 1024);
    assert_true(c.has_net_namespace);
    assert_string_equal(c.net_namespace_path, "/run/netns/x");
    rt_config_free(&c);
    rt_config_free(&c); /* harmless twice */
}

static void test_minimal_config(void **state)
{
    (void)state;
    /* No process (allowed by the spec; create requires it), no options. */
    const char *j = "{\"ociVersion\":\"1.2.0\",\"root\":{\"path\":\"/srv/root\"}}";
    struct rt_config c;
    sm_error err = {0};
    assert_int_equal(rt_config_parse(j, strlen(j), &c, &err), SM_OK);
    assert_false(c.has_process);
    assert_false(c.root_readonly);
    assert_null(c.hostname);
    assert_false(c.has_memory_limit);
    assert_int_equal(c.nmounts, 0);
    assert_false(c.has_net_namespace);
    rt_config_free(&c);
    /* A network namespace without a path: a new one. */
    j = "{\"ociVersion\":\"1.2.0\",\"root\":{\"path\":\"r\"},"
        "\"linux\":{\"namespaces\":[{\"type\":\"network\"},{\"type\":\"uts\"}]}}";
    assert_int_equal(rt_config_parse(j, strlen(j), &c, &err), SM_OK);
    assert_true(c.has_net_namespace);
    assert_null(c.net_namespace_path);
    rt_config_free(&c);
    /* Nulls for optional fields, -1 for unlimited, uint64 at the top. */
    j = "{\"ociVersion\":\"1.1.0\",\"root\":{\"path\":\"r\"},\"hostname\":null,"
        "\"process\":{\"user\":{\"uid\":4294967295,\"gid\":0},\"args\":[\"x\"],\"cwd\":\"/\","
        "\"env\":null,\"rlimits\":[{\"type\":\"RLIMIT_CORE\",\"soft\":18446744073709551615,"
        "\"hard\":18446744073709551615}]},"
        "\"linux\":{\"resources\":{\"memory\":{\"limit\":-1},\"cpu\":{\"quota\":-1}}}}";
    assert_int_equal(rt_config_parse(j, strlen(j), &c, &err), SM_OK);
    assert_int_equal(c.uid, 4294967295u);
    assert_true(c.rlimits[0].soft == UINT64_MAX);
    assert_int_equal(c.memory_limit, -1);
    assert_int_equal(c.cpu_quota, -1);
    rt_config_free(&c);
}

struct bad_case {
    const char *json;
    sm_code code;
    const char *message; /* a part of the message */
};

#define ROOT "\"root\":{\"path\":\"r\"}"
#define PROC(x) "\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"args\":[\"sh\"],\"cwd\":\"/\"" x "}"
#define DOC(x) "{\"ociVersion\":\"1.0.0\"," ROOT x "}"

static const struct bad_case bad[] = {
    {"", SM_E_INVALID, "not valid JSON"},
    {"{", SM_E_INVALID, "ends too early"},
    {"[1]", SM_E_INVALID, "not a JSON object"},
    {DOC("") " x", SM_E_INVALID, "not valid JSON"},
    {"{\"ociVersion\":\"1.0.0\",root:{}}", SM_E_INVALID, "not valid JSON"},
    {"{" ROOT "}", SM_E_INVALID, "ociVersion: missing"},
    {"{\"ociVersion\":1," ROOT "}", SM_E_INVALID, "ociVersion: not a string"},
    {"{\"ociVersion\":\"2.0.0\"," ROOT "}", SM_E_UNSUPPORTED, "'2.0.0' is not supported"},
    {"{\"ociVersion\":\"1.x\"," ROOT "}", SM_E_UNSUPPORTED, "'1.x' is not supported"},
    {"{\"ociVersion\":\"1.0.0\"}", SM_E_INVALID, "root: missing"},
    {"{\"ociVersion\":\"1.0.0\",\"root\":[]}", SM_E_INVALID, "root: not an object"},
    {"{\"ociVersion\":\"1.0.0\",\"root\":{}}", SM_E_INVALID, "root.path: missing"},
    {"{\"ociVersion\":\"1.0.0\",\"root\":{\"path\":\"\"}}", SM_E_INVALID, "root.path: empty"},
    {"{\"ociVersion\":\"1.0.0\",\"root\":{\"path\":\"a\\u0000b\"}}", SM_E_INVALID,
     "root.path: holds a NUL byte"},
    {"{\"ociVersion\":\"1.0.0\",\"root\":{\"path\":\"r\",\"readonly\":\"yes\"}}", SM_E_INVALID,
     "root.readonly: not true or false"},
    {DOC(",\"process\":7"), SM_E_INVALID, "process: not an object"},
    {DOC(",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\"}"), SM_E_INVALID, "process.user: missing"},
    {DOC(",\"process\":{\"user\":{\"gid\":0},\"args\":[\"sh\"],\"cwd\":\"/\"}"), SM_E_INVALID,
     "process.user.uid: missing"},
    {DOC(",\"process\":{\"user\":{\"uid\":-1,\"gid\":0},\"args\":[\"sh\"],\"cwd\":\"/\"}"),
     SM_E_INVALID, "process.user.uid: not an integer from 0 to 4294967295"},
    {DOC(",\"process\":{\"user\":{\"uid\":4294967296,\"gid\":0},\"args\":[\"sh\"],\"cwd\":\"/\"}"),
     SM_E_INVALID, "process.user.uid: not an integer"},
    {DOC(",\"process\":{\"user\":{\"uid\":1.5,\"gid\":0},\"args\":[\"sh\"],\"cwd\":\"/\"}"),
     SM_E_INVALID, "process.user.uid: not an integer"},
    {DOC(",\"process\":{\"user\":{\"uid\":0,\"gid\":\"0\"},\"args\":[\"sh\"],\"cwd\":\"/\"}"),
     SM_E_INVALID, "process.user.gid: not an integer"},
    {DOC(",\"process\":{\"user\":{\"uid\":0,\"gid\":0,\"additionalGids\":[1,\"x\"]},"
         "\"args\":[\"sh\"],\"cwd\":\"/\"}"),
     SM_E_INVALID, "process.user.additionalGids[1]: not an integer"},
    {DOC(",\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"cwd\":\"/\"}"), SM_E_INVALID,
     "process.args: missing or empty"},
    {DOC(",\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"args\":[],\"cwd\":\"/\"}"), SM_E_INVALID,
     "process.args: missing or empty"},
    {DOC(",\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"args\":\"sh\",\"cwd\":\"/\"}"), SM_E_INVALID,
     "process.args: not an array of strings"},
    {DOC(",\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"args\":[\"sh\",3],\"cwd\":\"/\"}"),
     SM_E_INVALID, "process.args[1]: not a string"},
    {DOC(",\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"args\":[\"\"],\"cwd\":\"/\"}"),
     SM_E_INVALID, "process.args[0]: empty"},
    {DOC(",\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"args\":[\"sh\"]}"), SM_E_INVALID,
     "process.cwd: missing"},
    {DOC(",\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"args\":[\"sh\"],\"cwd\":\"work\"}"),
     SM_E_INVALID, "process.cwd: not an absolute path"},
    {DOC("," PROC(",\"env\":[\"A=1\",\"NOEQUALS\"]")), SM_E_INVALID,
     "process.env[1]: not KEY=VALUE"},
    {DOC("," PROC(",\"env\":[\"=x\"]")), SM_E_INVALID, "process.env[0]: not KEY=VALUE"},
    {DOC("," PROC(",\"terminal\":1")), SM_E_INVALID, "process.terminal: not true or false"},
    {DOC("," PROC(",\"consoleSize\":{\"height\":70000,\"width\":80}")), SM_E_INVALID,
     "process.consoleSize.height: more than 65535"},
    {DOC("," PROC(",\"consoleSize\":{\"height\":24}")), SM_E_INVALID,
     "process.consoleSize.width: missing"},
    {DOC("," PROC(",\"commandLine\":\"sh\"")), SM_E_UNSUPPORTED, "process.commandLine"},
    {DOC("," PROC(",\"rlimits\":{}")), SM_E_INVALID, "process.rlimits: not an array"},
    {DOC("," PROC(",\"rlimits\":[{\"type\":\"RLIMIT_FOO\",\"soft\":1,\"hard\":1}]")),
     SM_E_INVALID, "process.rlimits[0].type: not an RLIMIT_* name"},
    {DOC("," PROC(",\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"hard\":1}]")), SM_E_INVALID,
     "process.rlimits[0].soft: missing"},
    {DOC("," PROC(",\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"soft\":-1,\"hard\":1}]")),
     SM_E_INVALID, "process.rlimits[0].soft: not an integer"},
    {DOC("," PROC(",\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"soft\":2,\"hard\":1}]")),
     SM_E_INVALID, "process.rlimits[0]: soft is above hard"},
    {DOC("," PROC(",\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"soft\":1,\"hard\":1},"
                  "{\"type\":\"RLIMIT_NOFILE\",\"soft\":1,\"hard\":1}]")),
     SM_E_INVALID, "process.rlimits[1].type: given twice"},
    {DOC(",\"hostname\":\"0123456789012345678901234567890123456789012345678901234567890123456789\""),
     SM_E_LIMIT, "hostname: 70 bytes long, more than 64"},
    {DOC(",\"hostname\":false"), SM_E_INVALID, "hostname: not a string"},
    {DOC(",\"mounts\":{}"), SM_E_INVALID, "mounts: not an array"},
    {DOC(",\"mounts\":[{\"type\":\"tmpfs\"}]"), SM_E_INVALID, "mounts[0].destination: missing"},
    {DOC(",\"mounts\":[{\"destination\":\"/a\"},{\"destination\":\"b\"}]"), SM_E_INVALID,
     "mounts[1].destination: not an absolute path"},
    {DOC(",\"mounts\":[{\"destination\":\"/a\",\"options\":[\"ro\",null]}]"), SM_E_INVALID,
     "mounts[0].options[1]: not a string"},
    {DOC(",\"mounts\":[{\"destination\":\"/a\",\"uidMappings\":[{}]}]"), SM_E_UNSUPPORTED,
     "mounts[0]: id-mapped mounts"},
    {DOC(",\"hooks\":{\"prestart\":[{\"path\":\"/bin/true\"}]}"), SM_E_UNSUPPORTED,
     "hooks.prestart: hooks are not supported"},
    {DOC(",\"hooks\":{\"poststop\":{}}"), SM_E_INVALID, "hooks.poststop: not an array"},
    {DOC(",\"annotations\":[]"), SM_E_INVALID, "annotations: not an object"},
    {DOC(",\"annotations\":{\"a\":1}"), SM_E_INVALID, "annotations[\"a\"]: not a string"},
    {DOC(",\"annotations\":{\"\":\"x\"}"), SM_E_INVALID, "annotations: an empty key"},
    {DOC(",\"linux\":[]"), SM_E_INVALID, "linux: not an object"},
    {DOC(",\"linux\":{\"resources\":{\"memory\":{\"limit\":\"1G\"}}}"), SM_E_INVALID,
     "linux.resources.memory.limit: not an integer"},
    {DOC(",\"linux\":{\"resources\":{\"memory\":{\"limit\":-2}}}"), SM_E_INVALID,
     "linux.resources.memory.limit: not an integer from -1"},
    {DOC(",\"linux\":{\"resources\":{\"cpu\":{\"period\":-5}}}"), SM_E_INVALID,
     "linux.resources.cpu.period: not an integer"},
    {DOC(",\"linux\":{\"resources\":{\"cpu\":{\"shares\":1e3}}}"), SM_E_INVALID,
     "linux.resources.cpu.shares: not an integer"},
    {DOC(",\"linux\":{\"resources\":{\"cpu\":[]}}"), SM_E_INVALID,
     "linux.resources.cpu: not an object"},
    {DOC(",\"linux\":{\"namespaces\":{}}"), SM_E_INVALID, "linux.namespaces: not an array"},
    {DOC(",\"linux\":{\"namespaces\":[{\"path\":\"/x\"}]}"), SM_E_INVALID,
     "linux.namespaces[0]: missing"},
    {DOC(",\"linux\":{\"namespaces\":[{\"type\":\"network\",\"path\":\"x\"}]}"), SM_E_INVALID,
     "linux.namespaces[0]: path: not an absolute path"},
    {DOC(",\"linux\":{\"namespaces\":[{\"type\":\"network\"},{\"type\":\"network\"}]}"),
     SM_E_INVALID, "linux.namespaces[1]: a second network namespace"},
    {DOC(",\"linux\":{\"namespaces\":[1]}"), SM_E_INVALID, "linux.namespaces[0]: not an object"},
};

static void test_bad_configs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct rt_config c;
        sm_error err = {0};
        sm_code rc = rt_config_parse(bad[i].json, strlen(bad[i].json), &c, &err);
        if (rc != bad[i].code || !strstr(err.message, bad[i].message))
            fail_msg("case %zu: %s\n  got %d '%s'\n  want %d '%s'", i, bad[i].json, rc, err.message,
                     bad[i].code, bad[i].message);
        /* Nothing is left allocated, and the message names config.json. */
        assert_null(c.oci_version);
        assert_null(c.args);
        assert_null(c.mounts);
        assert_null(c.annotations);
        assert_non_null(strstr(err.message, "config.json"));
    }
}

/* Past each count and length limit: SM_E_LIMIT, naming the field. */
static void test_limits(void **state)
{
    (void)state;
    size_t cap = RT_CONFIG_MAX_BYTES + 64;
    char *j = malloc(cap);
    assert_non_null(j);
    struct rt_config c;
    sm_error err = {0};

    /* Too many args. */
    size_t n = (size_t)snprintf(j, cap, "{\"ociVersion\":\"1.0.0\"," ROOT
                                         ",\"process\":{\"user\":{\"uid\":0,\"gid\":0},"
                                         "\"cwd\":\"/\",\"args\":[");
    for (int i = 0; i <= RT_CONFIG_MAX_ARGS; i++)
        n += (size_t)snprintf(j + n, cap - n, "%s\"a\"", i ? "," : "");
    n += (size_t)snprintf(j + n, cap - n, "]}}");
    assert_int_equal(rt_config_parse(j, n, &c, &err), SM_E_LIMIT);
    assert_non_null(strstr(err.message, "process.args: 4097 entries, more than 4096"));

    /* One argument too long. */
    n = (size_t)snprintf(j, cap, "{\"ociVersion\":\"1.0.0\"," ROOT
                                  ",\"process\":{\"user\":{\"uid\":0,\"gid\":0},"
                                  "\"cwd\":\"/\",\"args\":[\"");
    memset(j + n, 'x', RT_CONFIG_MAX_STRING + 1);
    n += RT_CONFIG_MAX_STRING + 1;
    n += (size_t)snprintf(j + n, cap - n, "\"]}}");
    assert_int_equal(rt_config_parse(j, n, &c, &err), SM_E_LIMIT);
    assert_non_null(strstr(err.message, "process.args[0]: 131073 bytes long"));

    /* Too many mounts. */
    n = (size_t)snprintf(j, cap, "{\"ociVersion\":\"1.0.0\"," ROOT ",\"mounts\":[");
    for (int i = 0; i <= RT_CONFIG_MAX_MOUNTS; i++)
        n += (size_t)snprintf(j + n, cap - n, "%s{\"destination\":\"/m\"}", i ? "," : "");
    n += (size_t)snprintf(j + n, cap - n, "]}");
    assert_int_equal(rt_config_parse(j, n, &c, &err), SM_E_LIMIT);
    assert_non_null(strstr(err.message, "mounts: 257 entries"));

    /* Too many annotations. */
    n = (size_t)snprintf(j, cap, "{\"ociVersion\":\"1.0.0\"," ROOT ",\"annotations\":{");
    for (int i = 0; i <= RT_CONFIG_MAX_ANNOTATIONS; i++)
        n += (size_t)snprintf(j + n, cap - n, "%s\"k%d\":\"v\"", i ? "," : "", i);
    n += (size_t)snprintf(j + n, cap - n, "}}");
    assert_int_equal(rt_config_parse(j, n, &c, &err), SM_E_LIMIT);
    assert_non_null(strstr(err.message, "annotations: 1025 entries"));

    /* Too deep. */
    n = (size_t)snprintf(j, cap, "{\"ociVersion\":\"1.0.0\"," ROOT ",\"x\":");
    for (int i = 0; i < RT_CONFIG_MAX_DEPTH + 2; i++)
        j[n++] = '[';
    for (int i = 0; i < RT_CONFIG_MAX_DEPTH + 2; i++)
        j[n++] = ']';
    j[n++] = '}';
    assert_int_equal(rt_config_parse(j, n, &c, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "not valid JSON"));

    /* Too big a file, before it is read. */
    assert_int_equal(rt_config_parse(j, RT_CONFIG_MAX_BYTES + 1, &c, &err), SM_E_LIMIT);
    assert_non_null(strstr(err.message, "more than 4194304"));
    free(j);
}

/* exec --process FILE: a process object alone. */
static void test_process_file(void **state)
{
    (void)state;
    const char *j = "{\"terminal\":false,\"user\":{\"uid\":1,\"gid\":2},\"args\":[\"ls\",\"-l\"],"
                    "\"env\":[\"A=b\"],\"cwd\":\"/tmp\"}";
    struct rt_config c;
    sm_error err = {0};
    assert_int_equal(rt_process_parse(j, strlen(j), &c, &err), SM_OK);
    assert_int_equal(c.nargs, 2);
    assert_string_equal(c.args[1], "-l");
    assert_int_equal(c.gid, 2);
    assert_string_equal(c.cwd, "/tmp");
    rt_config_free(&c);
    j = "{\"user\":{\"uid\":1,\"gid\":2},\"args\":[],\"cwd\":\"/\"}";
    assert_int_equal(rt_process_parse(j, strlen(j), &c, &err), SM_E_INVALID);
    assert_non_null(strstr(err.message, "process.args: missing or empty"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_minimal_config),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_process_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
