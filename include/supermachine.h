/*
 * supermachine: run commands inside hardware-isolated Linux microVMs.
 *
 * The one public header of libsupermachine. Handles are opaque; options are
 * set through setters; every call that can fail returns an sm_code and fills
 * an optional sm_error with a message a person can act on.
 *
 * Names: public functions are sm_<object>_<verb>; types are sm_<object>.
 */
#ifndef SUPERMACHINE_H
#define SUPERMACHINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SM_VERSION_MAJOR 0
#define SM_VERSION_MINOR 1
#define SM_VERSION_PATCH 0

/* ===== Errors ========================================================== */

typedef enum sm_code {
    SM_OK = 0,
    SM_E_INVALID     = -1,  /* a bad argument or option: fix the call */
    SM_E_NOMEM       = -2,  /* out of memory */
    SM_E_IO          = -3,  /* a host system call failed (errno in message) */
    SM_E_NOTFOUND    = -4,  /* a file, VM, socket or image does not exist */
    SM_E_UNSUPPORTED = -5,  /* this host cannot do it (e.g. no usable KVM) */
    SM_E_KVM         = -6,  /* KVM refused an operation */
    SM_E_GUEST       = -7,  /* the guest misbehaved (panic, bad device use) */
    SM_E_TIMEOUT     = -8,  /* a deadline passed */
    SM_E_PROTOCOL    = -9,  /* a peer sent a malformed or unexpected frame */
    SM_E_SETUP       = -10, /* the connection failed before the command ran */
    SM_E_DROPPED     = -11, /* the connection dropped after the command ran */
    SM_E_CANCELLED   = -12, /* the caller cancelled */
    SM_E_LIMIT       = -13, /* a size or count limit was exceeded */
} sm_code;

/* Filled by failing calls when non-NULL. `message` always ends in a NUL. */
typedef struct sm_error {
    sm_code code;
    char message[512];
} sm_error;

/* A short, static name of the code, e.g. "invalid argument". */
const char *sm_strerror(sm_code code);

/* ===== Host ============================================================ */
/* (section owned by: host detection / doctor)
 *
 * Can this host run a standard Linux guest through /dev/kvm? Hardware KVM
 * (VT-x/AMD-V) can; PVM (a paravirtual KVM for hosts without nested
 * virtualization) answers the same API but runs only guests patched for it. */

typedef enum sm_host_kind {
    SM_HOST_KVM_HARDWARE = 0, /* /dev/kvm on VT-x/AMD-V: guests run here */
    SM_HOST_KVM_PVM,          /* /dev/kvm is PVM: standard guests cannot run */
    SM_HOST_NO_KVM,           /* no /dev/kvm (module not loaded, or no VT-x/AMD-V) */
    SM_HOST_KVM_NO_ACCESS,    /* /dev/kvm exists but this user may not open it */
    SM_HOST_KVM_UNUSABLE,     /* it opens, but the API version or a capability is wrong */
} sm_host_kind;

/* What sm_host_check found. Strings always end in a NUL. */
typedef struct sm_host_report {
    sm_host_kind kind;
    bool kvm_present;        /* /dev/kvm exists */
    int kvm_open_errno;      /* 0 when /dev/kvm opened read-write */
    int api_version;         /* KVM_GET_API_VERSION, or -1 when not asked */
    char missing_caps[192];  /* KVM capabilities we need and lack, space-separated */
    bool cpu_vmx;            /* /proc/cpuinfo flags: Intel VT-x */
    bool cpu_svm;            /*                      AMD-V */
    bool cpu_hypervisor;     /*                      running under a hypervisor */
    char kvm_module[32];     /* "kvm_intel", "kvm_amd", "kvm_pvm" or "" */
    char summary[256];       /* one line: what this host is */
    char advice[512];        /* what to do when guests cannot run; "" when they can */
} sm_host_report;

/* Examines /dev/kvm, /proc/cpuinfo and /sys/module and fills *out. Returns
 * SM_OK when guests can run here (kind SM_HOST_KVM_HARDWARE); otherwise
 * SM_E_UNSUPPORTED with err->message saying what to do (out is filled either
 * way). SM_E_INVALID when out is NULL. Never exits; opens nothing it keeps. */
sm_code sm_host_check(sm_host_report *out, sm_error *err);

/* A short, static name of the kind, e.g. "hardware KVM". */
const char *sm_host_kind_name(sm_host_kind kind);

/* ===== Exec ============================================================ */
/* (section owned by: exec API, the spec's ExecBuilder) */

/* ===== VMs ============================================================= */
/* (section owned by: VM lifecycle) */

#ifdef __cplusplus
}
#endif
#endif /* SUPERMACHINE_H */
