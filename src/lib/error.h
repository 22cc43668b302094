/* Internal helpers for filling sm_error. */
#ifndef SM_LIB_ERROR_H
#define SM_LIB_ERROR_H

#include "supermachine.h"

/* Fills *err (if non-NULL) with code and a printf-formatted message; returns code. */
sm_code sm_fail(sm_error *err, sm_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like sm_fail, appending ": <strerror(errno_value)>". */
sm_code sm_fail_errno(sm_error *err, sm_code code, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefixes err->message with "context: " (keeps code). */
void sm_error_prefix(sm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
