#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *sm_strerror(sm_code code)
{
    switch (code) {
    case SM_OK: return "success";
    case SM_E_INVALID: return "invalid argument";
    case SM_E_NOMEM: return "out of memory";
    case SM_E_IO: return "I/O error";
    case SM_E_NOTFOUND: return "not found";
    case SM_E_UNSUPPORTED: return "not supported on this host";
    case SM_E_KVM: return "KVM error";
    case SM_E_GUEST: return "guest error";
    case SM_E_TIMEOUT: return "timed out";
    case SM_E_PROTOCOL: return "protocol error";
    case SM_E_SETUP: return "connection setup failed";
    case SM_E_DROPPED: return "connection dropped";
    case SM_E_CANCELLED: return "cancelled";
    case SM_E_LIMIT: return "limit exceeded";
    case SM_E_BUSY: return "in use";
    }
    return "unknown error";
}

static void fill(sm_error *err, sm_code code, const char *fmt, va_list ap)
{
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

sm_code error_set(sm_error *err, sm_code code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        fill(err, code, fmt, ap);
        va_end(ap);
    }
    return code;
}

sm_code error_set_errno(sm_error *err, sm_code code, int errno_value, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        fill(err, code, fmt, ap);
        va_end(ap);
        size_t used = strlen(err->message);
        snprintf(err->message + used, sizeof err->message - used, ": %s", strerror(errno_value));
    }
    return code;
}

void error_prefix(sm_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->message];
    memcpy(old, err->message, sizeof old);
    /* A message cut at the buffer's end is still the most useful part. */
    if (snprintf(err->message, sizeof err->message, "%s: %s", prefix, old) >= (int)sizeof err->message)
        err->message[sizeof err->message - 1] = 0;
}
