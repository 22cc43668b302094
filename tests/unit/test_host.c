/* Host detection: the /proc/cpuinfo flag parser and the verdict, fed made-up
 * facts (the parts of src/lib/host.c that need no /dev/kvm). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "lib/host.h"

static bool has(const char *text, const char *flag)
{
    return host_cpuinfo_has_flag(text, strlen(text), flag);
}

static const char intel_cpuinfo[] =
    "processor\t: 0\n"
    "vendor_id\t: GenuineIntel\n"
    "model name\t: Some CPU with svm in its name\n"
    "flags\t\t: fpu vme de vmx sse2 hypervisor\n"
    "bugs\t\t: spectre_v1\n"
    "\n"
    "processor\t: 1\n"
    "flags\t\t: fpu svm\n";

static void test_flags_found_as_whole_words(void **state)
{
    (void)state;
    assert_true(has(intel_cpuinfo, "vmx"));
    assert_true(has(intel_cpuinfo, "fpu"));
    assert_true(has(intel_cpuinfo, "hypervisor"));   /* the last word of the line */
    assert_false(has(intel_cpuinfo, "vm"));          /* a prefix is not a flag */
    assert_false(has(intel_cpuinfo, "sse"));
    assert_false(has(intel_cpuinfo, "spectre_v1"));  /* on the bugs line, not flags */
}

static void test_only_the_first_flags_line_counts(void **state)
{
    (void)state;
    /* "svm" is in the model name and in CPU 1's flags, not in CPU 0's. */
    assert_false(has(intel_cpuinfo, "svm"));
}

static void test_malformed_cpuinfo(void **state)
{
    (void)state;
    assert_false(has("", "vmx"));
    assert_false(has("flags", "vmx"));
    assert_false(has("flags vmx\n", "vmx"));          /* no colon */
    assert_false(has("flags\t: \n", ""));
    assert_true(has("flags: vmx", "vmx"));            /* no final newline */
    /* The length bounds the read: "vmx" lies past it. */
    const char *text = "flags : fpu vmx\n";
    assert_false(host_cpuinfo_has_flag(text, strlen("flags : fpu"), "vmx"));
    assert_true(host_cpuinfo_has_flag(text, strlen("flags : fpu"), "fpu"));
}

static sm_host_report working_amd(void)
{
    sm_host_report r;
    memset(&r, 0, sizeof r);
    r.kvm_present = true;
    r.api_version = 12;
    r.cpu_svm = true;
    strcpy(r.kvm_module, "kvm_amd");
    return r;
}

static void test_hardware_kvm_runs_guests(void **state)
{
    (void)state;
    sm_host_report r = working_amd();
    host_classify(&r);
    assert_int_equal(r.kind, SM_HOST_KVM_HARDWARE);
    assert_string_equal(r.advice, "");
    assert_non_null(strstr(r.summary, "AMD-V"));
}

static void test_pvm_module_is_pvm(void **state)
{
    (void)state;
    sm_host_report r = working_amd();
    strcpy(r.kvm_module, "kvm_pvm");
    host_classify(&r);
    assert_int_equal(r.kind, SM_HOST_KVM_PVM);
    assert_non_null(strstr(r.summary, "PVM"));
    assert_non_null(strstr(r.advice, "tools/kvmbox"));
}

static void test_kvm_without_cpu_flags_is_pvm(void **state)
{
    (void)state;
    sm_host_report r = working_amd();
    r.cpu_svm = false;
    r.kvm_module[0] = '\0';
    host_classify(&r);
    assert_int_equal(r.kind, SM_HOST_KVM_PVM);
}

static void test_no_access_says_kvm_group(void **state)
{
    (void)state;
    sm_host_report r = working_amd();
    r.kvm_open_errno = EACCES;
    r.api_version = -1;
    host_classify(&r);
    assert_int_equal(r.kind, SM_HOST_KVM_NO_ACCESS);
    assert_non_null(strstr(r.advice, "kvm group"));
}

static void test_no_kvm_advice_depends_on_cpu(void **state)
{
    (void)state;
    sm_host_report r = working_amd();
    r.kvm_present = false;
    host_classify(&r);
    assert_int_equal(r.kind, SM_HOST_NO_KVM);
    assert_non_null(strstr(r.advice, "modprobe kvm_amd"));

    r.cpu_svm = false;
    r.cpu_hypervisor = false;
    host_classify(&r);
    assert_non_null(strstr(r.advice, "firmware"));

    r.cpu_hypervisor = true;
    host_classify(&r);
    assert_non_null(strstr(r.advice, "nested virtualization"));
}

static void test_wrong_api_or_missing_caps_unusable(void **state)
{
    (void)state;
    sm_host_report r = working_amd();
    r.api_version = 11;
    host_classify(&r);
    assert_int_equal(r.kind, SM_HOST_KVM_UNUSABLE);

    r = working_amd();
    strcpy(r.missing_caps, "KVM_CAP_IRQFD");
    host_classify(&r);
    assert_int_equal(r.kind, SM_HOST_KVM_UNUSABLE);
    assert_non_null(strstr(r.summary, "KVM_CAP_IRQFD"));
}

static void test_check_fills_report_consistently(void **state)
{
    (void)state;
    /* Whatever this machine is, the code and the report must agree. */
    sm_host_report r;
    sm_error err = { 0 };
    sm_code code = sm_host_check(&r, &err);
    if (r.kind == SM_HOST_KVM_HARDWARE) {
        assert_int_equal(code, SM_OK);
    } else {
        assert_int_equal(code, SM_E_UNSUPPORTED);
        assert_int_equal(err.code, SM_E_UNSUPPORTED);
        assert_true(strlen(err.message) > 0);
        assert_true(strlen(r.advice) > 0);
    }
    assert_int_equal(sm_host_check(NULL, &err), SM_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags_found_as_whole_words),
        cmocka_unit_test(test_only_the_first_flags_line_counts),
        cmocka_unit_test(test_malformed_cpuinfo),
        cmocka_unit_test(test_hardware_kvm_runs_guests),
        cmocka_unit_test(test_pvm_module_is_pvm),
        cmocka_unit_test(test_kvm_without_cpu_flags_is_pvm),
        cmocka_unit_test(test_no_access_says_kvm_group),
        cmocka_unit_test(test_no_kvm_advice_depends_on_cpu),
        cmocka_unit_test(test_wrong_api_or_missing_caps_unusable),
        cmocka_unit_test(test_check_fills_report_consistently),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
