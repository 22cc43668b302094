/* supermachine doctor: can this host run microVMs, and if not, what to do. */
#include "cli/commands.h"
#include "cli/flags.h"
#include "supermachine.h"

#include <stdio.h>
#include <string.h>

static void doctor_usage(FILE *out)
{
    fprintf(out, "usage: supermachine doctor [--quiet]\n"
                 "  says whether this host can run microVMs through /dev/kvm, and what to do\n"
                 "  if it cannot. Exit status 0: guests run here; 1: they do not; 2: usage.\n"
                 "  --quiet  print nothing, only set the exit status\n");
}

static const char *yes_no(bool b)
{
    return b ? "yes" : "no";
}

static void print_report(const sm_host_report *r)
{
    printf("supermachine doctor\n");
    if (!r->kvm_present)
        printf("  /dev/kvm        absent\n");
    else if (r->kvm_open_errno)
        printf("  /dev/kvm        present, cannot open: %s\n", strerror(r->kvm_open_errno));
    else
        printf("  /dev/kvm        opens, API version %d%s%s\n", r->api_version,
               r->missing_caps[0] ? ", lacks " : ", all capabilities we use",
               r->missing_caps);
    printf("  KVM module      %s\n", r->kvm_module[0] ? r->kvm_module : "(none found in /sys/module)");
    printf("  CPU flags       vmx %s, svm %s, hypervisor %s\n",
           yes_no(r->cpu_vmx), yes_no(r->cpu_svm), yes_no(r->cpu_hypervisor));
    printf("  confinement     %s\n", r->confinement);
    printf("  limits          %s\n", r->limits);
    printf("  verdict         %s\n", r->summary);
    if (r->advice[0])
        printf("  what to do      %s\n", r->advice);
}

int cmd_doctor(int argc, char **argv)
{
    static const struct option flags[] = { { "quiet", no_argument, NULL, 'q' }, FLAG_HELP, FLAGS_TABLE_END };
    int first, quiet, status = flags_switches("supermachine doctor", argc, argv, "qh", flags, doctor_usage,
                                              &first, &quiet);
    if (status != FLAGS_GO_ON)
        return status;
    if (first < argc) {
        fprintf(stderr, "supermachine doctor: unknown option '%s'\n", argv[first]);
        doctor_usage(stderr);
        return 2;
    }
    sm_host_report report;
    sm_error err = { 0 };
    sm_code code = sm_host_check(&report, &err);
    if (code == SM_E_INVALID) {   /* cannot happen with a report; say so if it does */
        if (!quiet)
            fprintf(stderr, "supermachine doctor: %s\n", err.message);
        return 1;
    }
    if (!quiet)
        print_report(&report);
    return code == SM_OK ? 0 : 1;
}
