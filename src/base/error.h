/* Filling an sm_error: every layer of the host reports failures this way. */
#ifndef SM_BASE_ERROR_H
#define SM_BASE_ERROR_H

#include "supermachine.h"

/* Fills *err (if non-NULL) with code and a printf-formatted message; returns code. */
sm_code error_set(sm_error *err, sm_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like error_set, appending ": <strerror(errno_value)>". */
sm_code error_set_errno(sm_error *err, sm_code code, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefixes err->message with "context: " (keeps code). */
void error_prefix(sm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
