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
/* (section owned by: host detection / doctor) */

/* ===== Exec ============================================================ */
/* (section owned by: exec API, the spec's ExecBuilder) */

/* ===== VMs ============================================================= */
/* (section owned by: VM lifecycle) */

#ifdef __cplusplus
}
#endif
#endif /* SUPERMACHINE_H */
