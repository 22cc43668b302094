/* Internal parts of host detection (src/lib/host.c), apart so that unit tests
 * can feed them made-up facts; the public API is sm_host_check. */
#ifndef SM_LIB_HOST_H
#define SM_LIB_HOST_H

#include "supermachine.h"

/* True when the first "flags" line of a /proc/cpuinfo text lists `flag` as a
 * whole word. Reads at most `len` bytes of `cpuinfo` (no NUL needed). */
bool host_cpuinfo_has_flag(const char *cpuinfo, size_t len, const char *flag);

/* Sets r->kind, r->summary and r->advice from the facts already in *r
 * (kvm_present, kvm_open_errno, api_version, missing_caps, cpu_*, kvm_module). */
void host_classify(sm_host_report *r);

#endif
