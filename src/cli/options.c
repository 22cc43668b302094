#include "cli/options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

bool parse_u32_option(const char *name, const char *text, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v > UINT32_MAX) {
        fprintf(stderr, "supermachine: %s wants a whole number, not '%s'\n", name, text);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

bool parse_seconds_option(const char *name, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v <= 0 || v > 86400) {
        fprintf(stderr, "supermachine: %s wants a number of seconds (0 < S <= 86400), not '%s'\n", name, text);
        return false;
    }
    *out = v;
    return true;
}
