/*
 * The VMM process's contract (src/protocol/vmm.c), as both sides use it:
 * arguments written by the library parse back to the same arguments in the
 * VMM, bad arguments are refused with a message naming the option, and the
 * ready line and control requests parse only when whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "protocol/vmm.h"

static int argc_of(char **argv)
{
    int n = 0;
    while (argv[n])
        n++;
    return n;
}

static void test_args_round_trip(void **state)
{
    (void)state;
    struct vmm_args a, b;
    vmm_args_init(&a);
    a.kernel = "/k";
    a.initrd = "/i";
    a.cmdline = "quiet x=1";
    a.disk = "/d";
    a.console = "/c";
    a.memory_mib = 512;
    a.cpus = 2;
    a.timeout_s = 7.5;
    a.vsock_socket = "/v";
    a.exec_socket = "/e";
    a.control_socket = "/ctl";
    a.snapshot_when_ready = "/snap";
    a.ready_fd = 3;
    a.lifeline_fd = 4;
    char nwhy[160];
    struct net_rule rule;
    assert_true(net_rule_parse("10.0.2.2:8080", NET_ALLOW, &rule, nwhy, sizeof nwhy));
    assert_true(net_policy_add(&a.net, &rule, nwhy, sizeof nwhy));
    assert_true(net_rule_parse("203.0.113.0/24", NET_DENY, &rule, nwhy, sizeof nwhy));
    assert_true(net_policy_add(&a.net, &rule, nwhy, sizeof nwhy));
    assert_true(net_ports_add(&a.ports, "127.0.0.1:8080:80", nwhy, sizeof nwhy));
    struct vmm_argv v;
    assert_true(vmm_args_format(&a, "supermachine-vmm", &v));
    char why[256] = "";
    assert_int_equal(vmm_args_parse(&b, argc_of(v.argv), v.argv, why, sizeof why), 0);
    assert_string_equal(b.kernel, "/k");
    assert_string_equal(b.initrd, "/i");
    assert_string_equal(b.cmdline, "quiet x=1");
    assert_string_equal(b.disk, "/d");
    assert_string_equal(b.console, "/c");
    assert_int_equal(b.memory_mib, 512);
    assert_int_equal(b.cpus, 2);
    assert_true(b.timeout_s > 7.49 && b.timeout_s < 7.51);
    assert_string_equal(b.vsock_socket, "/v");
    assert_string_equal(b.exec_socket, "/e");
    assert_string_equal(b.control_socket, "/ctl");
    assert_string_equal(b.snapshot_when_ready, "/snap");
    assert_int_equal(b.ready_fd, 3);
    assert_int_equal(b.lifeline_fd, 4);
    assert_false(b.probe);
    assert_null(b.restore_dir);
    /* The network's arguments, in their order. */
    assert_true(b.net.enabled);
    assert_int_equal(b.net.count, 2);
    assert_true(net_rule_equal(&b.net.rules[0], &a.net.rules[0]));
    assert_true(net_rule_equal(&b.net.rules[1], &a.net.rules[1]));
    assert_int_equal(b.ports.count, 1);
    assert_true(net_port_equal(&b.ports.ports[0], &a.ports.ports[0]));
}


static void test_restore_round_trip(void **state)
{
    (void)state;
    struct vmm_args a, b;
    vmm_args_init(&a);
    a.restore_dir = "/img";
    a.exec_socket = "/e";
    struct vmm_argv v;
    assert_true(vmm_args_format(&a, "vmm", &v));
    char why[256];
    assert_int_equal(vmm_args_parse(&b, argc_of(v.argv), v.argv, why, sizeof why), 0);
    assert_string_equal(b.restore_dir, "/img");
    assert_null(b.kernel);
    assert_int_equal(b.memory_mib, 0);
    assert_int_equal(b.ready_fd, -1);
    assert_int_equal(b.lifeline_fd, -1);
}

/* Parses a NULL-ended list; returns the result and leaves the message. */
static int parse_list(char *why, size_t whylen, const char *first, ...)
{
    char *argv[32] = { "vmm" };
    int n = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s && n < 31; s = va_arg(ap, const char *))
        argv[n++] = (char *)s;
    va_end(ap);
    argv[n] = NULL;
    struct vmm_args a;
    why[0] = 0;
    return vmm_args_parse(&a, n, argv, why, whylen);
}

static void test_bad_args_name_the_option(void **state)
{
    (void)state;
    char why[256];
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--memory", "lots", NULL), -1);
    assert_non_null(strstr(why, "--memory"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--cpus", "-1", NULL), -1);
    assert_non_null(strstr(why, "--cpus"));
    /* 0 means "not given" inside struct vmm_args: a given 0 is refused. */
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--cpus", "0", NULL), -1);
    assert_non_null(strstr(why, "out of range"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--memory", "1", NULL), -1);
    assert_non_null(strstr(why, "--memory 1 is out of range"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--cpus", "33", NULL), -1);
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--timeout", "0", NULL), -1);
    assert_non_null(strstr(why, "--timeout"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--ready-fd", "70000", NULL), -1);
    assert_non_null(strstr(why, "--ready-fd"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--lifeline-fd", "1", NULL), -1);
    assert_non_null(strstr(why, "--lifeline-fd 1 is not a descriptor beyond stdin, stdout and stderr"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--bogus", NULL), -1);
    assert_non_null(strstr(why, "--bogus"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "extra", NULL), -1);
    assert_non_null(strstr(why, "extra"));
    assert_int_equal(parse_list(why, sizeof why, "--initrd", "i", NULL), -1);
    assert_non_null(strstr(why, "--kernel"));
    assert_int_equal(parse_list(why, sizeof why, "--restore", "d", "--kernel", "k", "--exec-socket", "e", NULL), -1);
    assert_int_equal(parse_list(why, sizeof why, "--restore", "d", NULL), -1);
    assert_non_null(strstr(why, "--exec-socket"));
    /* `supermachine boot` (probe) takes none of the process's own options. */
    assert_int_equal(parse_list(why, sizeof why, "--exec-socket", "e", "--probe", "--kernel", "k", NULL), -1);
    assert_non_null(strstr(why, "--exec-socket"));
    assert_int_equal(parse_list(why, sizeof why, "--probe", "--kernel", "k", NULL), 0);
    assert_int_equal(parse_list(why, sizeof why, "--probe", "--help", NULL), 1);
}

/* Volumes keep their order and read-only marks; more than SM_MAX_VOLUMES,
 * a relative path, a bake of a VM with volumes, and probe mode are refused. */
static void test_volumes(void **state)
{
    (void)state;
    struct vmm_args a, b;
    vmm_args_init(&a);
    a.restore_dir = "/snap";
    a.exec_socket = "/e";
    a.volumes[0] = (struct vmm_volume){ "/v/one.ext4", false };
    a.volumes[1] = (struct vmm_volume){ "/v/two.ext4", true };
    a.volumes[2] = (struct vmm_volume){ "/v/three.ext4", false };
    a.nvolumes = 3;
    struct vmm_argv v;
    assert_true(vmm_args_format(&a, "supermachine-vmm", &v));
    char why[256] = "";
    assert_int_equal(vmm_args_parse(&b, argc_of(v.argv), v.argv, why, sizeof why), 0);
    assert_int_equal(b.nvolumes, 3);
    for (uint32_t i = 0; i < 3; i++) {
        assert_string_equal(b.volumes[i].path, a.volumes[i].path);
        assert_int_equal(b.volumes[i].read_only, a.volumes[i].read_only);
    }
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--volume", "/1", "--volume", "/2", "--volume-ro", "/3",
                                "--volume", "/4", "--volume", "/5", NULL), -1);
    assert_non_null(strstr(why, "at most 4 volumes"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--volume", "rel.ext4", NULL), -1);
    assert_non_null(strstr(why, "absolute"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--volume", "/1", "--snapshot-when-ready", "/s",
                                NULL), -1);
    assert_non_null(strstr(why, "cannot be snapshotted"));
    assert_int_equal(parse_list(why, sizeof why, "--probe", "--kernel", "k", "--volume", "/1", NULL), -1);
}

/* The cell shows its VMM one host folder: --cell is absolute and plain,
 * and every socket is directly inside it; --cgroup is absolute and plain. */
static void test_cell_and_cgroup_folders(void **state)
{
    (void)state;
    char why[256];
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--cell", "/vm/cell", "--exec-socket",
                                "/vm/cell/exec.sock", "--vsock-socket", "/vm/cell/vsock.sock",
                                "--control-socket", "/vm/cell/control.sock", NULL), 0);
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--cell", "/vm/cell", "--exec-socket",
                                "/vm/exec.sock", NULL), -1);
    assert_non_null(strstr(why, "/vm/exec.sock is not in the cell folder"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--cell", "/vm/cell", "--control-socket",
                                "/vm/cell/sub/control.sock", NULL), -1);
    assert_non_null(strstr(why, "control.sock"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--cell", "/vm/cell2", "--exec-socket",
                                "/vm/cell/exec.sock", NULL), -1);
    const char *bad[] = { "cell", "/vm/../etc", "/vm/./cell", "/vm/..", "/vm/." };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--cell", bad[i], NULL), -1);
        assert_non_null(strstr(why, "--cell takes an absolute folder"));
    }
    /* What the library writes, the VMM reads back. */
    struct vmm_args a, b;
    vmm_args_init(&a);
    a.kernel = "/k";
    a.cell_dir = "/vm/cell";
    a.exec_socket = "/vm/cell/exec.sock";
    struct vmm_argv v;
    assert_true(vmm_args_format(&a, "vmm", &v));
    assert_int_equal(vmm_args_parse(&b, argc_of(v.argv), v.argv, why, sizeof why), 0);
    assert_string_equal(b.cell_dir, "/vm/cell");
    /* --cgroup: a plain absolute folder, written and read back. */
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--cgroup", "sys/fs/cgroup/x", NULL), -1);
    assert_non_null(strstr(why, "--cgroup takes an absolute folder"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--cgroup", "/sys/fs/cgroup/../x", NULL), -1);
    a.cgroup_dir = "/sys/fs/cgroup/supermachine/0a1b-1";
    assert_true(vmm_args_format(&a, "vmm", &v));
    assert_int_equal(vmm_args_parse(&b, argc_of(v.argv), v.argv, why, sizeof why), 0);
    assert_string_equal(b.cgroup_dir, "/sys/fs/cgroup/supermachine/0a1b-1");
    assert_int_equal(parse_list(why, sizeof why, "--probe", "--kernel", "k", "--cgroup", "/c", NULL), -1);
    /* `supermachine boot` runs no process of its own, so no cell. */
    assert_int_equal(parse_list(why, sizeof why, "--probe", "--kernel", "k", "--cell", "/c", NULL), -1);
    assert_non_null(strstr(why, "--cell"));
}

static void test_net_off_round_trip(void **state)
{
    (void)state;
    struct vmm_args a, b;
    vmm_args_init(&a);
    a.kernel = "/k";
    a.net.enabled = false;
    struct vmm_argv v;
    assert_true(vmm_args_format(&a, "vmm", &v));
    char why[256];
    assert_int_equal(vmm_args_parse(&b, argc_of(v.argv), v.argv, why, sizeof why), 0);
    assert_false(b.net.enabled);
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--allow", "10.0.0.1/8", NULL), -1);
    assert_non_null(strstr(why, "10.0.0.1"));
    assert_int_equal(parse_list(why, sizeof why, "--kernel", "k", "--publish", "80", NULL), -1);
}

static void test_ready_line(void **state)
{
    (void)state;
    char line[VMM_READY_LINE_MAX];
    struct vmm_ready r = { .us = 123456, .memory_mib = 512, .cpus = 2 }, back = { 0 };
    int n = vmm_ready_line_format(line, sizeof line, &r);
    assert_string_equal(line, "ready 123456 512 2\n");
    assert_true(vmm_ready_line_parse(line, (size_t)n, &back));
    assert_int_equal(back.us, 123456);
    assert_int_equal(back.memory_mib, 512);
    assert_int_equal(back.cpus, 2);
    /* Whole lines only, sizes in the VMM's range, nothing after them. */
    const char *bad[] = { "ready 12 256 1", "ready \n", "ready 12\n", "ready -5 256 1\n", "ready 12x 256 1\n",
                          "steady 12 256 1\n", "ready 12 256 0\n", "ready 12 256 33\n", "ready 12 63 1\n",
                          "ready 12 65537 1\n", "ready 12 256 1 7\n", "ready 012 256 1\n", "ready 12  256 1\n", "ready 12 +256 1\n",
                          "ready 99999999999999999999999 256 1\n", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(vmm_ready_line_parse(bad[i], strlen(bad[i]), &back));
}

static void test_control_requests(void **state)
{
    (void)state;
    struct vmm_control_request r;
    const char *why;
    assert_true(vmm_control_request_parse("snapshot /x y", &r, &why));
    assert_int_equal(r.verb, VMM_CONTROL_SNAPSHOT);
    assert_string_equal(r.dir, "/x y");
    assert_true(vmm_control_request_parse("stop", &r, &why));
    assert_int_equal(r.verb, VMM_CONTROL_STOP);
    assert_true(vmm_control_request_parse("stats", &r, &why));
    assert_int_equal(r.verb, VMM_CONTROL_STATS);
    assert_true(vmm_control_request_parse("publish 127.0.0.1:8080:80", &r, &why));
    assert_int_equal(r.verb, VMM_CONTROL_PUBLISH);
    assert_string_equal(r.port, "127.0.0.1:8080:80");
    assert_true(vmm_control_request_parse("pause", &r, &why));
    assert_int_equal(r.verb, VMM_CONTROL_PAUSE);
    assert_true(vmm_control_request_parse("resume", &r, &why));
    assert_int_equal(r.verb, VMM_CONTROL_RESUME);
    assert_false(vmm_control_request_parse("pause now", &r, &why));
    assert_false(vmm_control_request_parse("resume ", &r, &why));
    assert_false(vmm_control_request_parse("PAUSE", &r, &why));
    assert_false(vmm_control_request_parse("publish ", &r, &why));
    assert_false(vmm_control_request_parse("snapshot ", &r, &why));
    assert_false(vmm_control_request_parse("stop now", &r, &why));
    assert_false(vmm_control_request_parse("", &r, &why));
    assert_non_null(strstr(why, "unknown"));
}

static void test_control_call_without_vmm(void **state)
{
    (void)state;
    struct vmm_control_request r = { .verb = VMM_CONTROL_STATS };
    sm_error err = { 0 };
    assert_int_equal(vmm_control_call("/nonexistent/control.sock", &r, NULL, 0, &err), SM_E_IO);
    assert_non_null(strstr(err.message, "is it running"));
    char dir[5000];
    memset(dir, 'a', sizeof dir - 1);
    dir[sizeof dir - 1] = 0;
    r = (struct vmm_control_request){ .verb = VMM_CONTROL_SNAPSHOT, .dir = dir };
    assert_int_equal(vmm_control_call("/nonexistent/control.sock", &r, NULL, 0, &err), SM_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_round_trip),
        cmocka_unit_test(test_restore_round_trip),
        cmocka_unit_test(test_bad_args_name_the_option),
        cmocka_unit_test(test_volumes),
        cmocka_unit_test(test_cell_and_cgroup_folders),
        cmocka_unit_test(test_net_off_round_trip),
        cmocka_unit_test(test_ready_line),
        cmocka_unit_test(test_control_requests),
        cmocka_unit_test(test_control_call_without_vmm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
