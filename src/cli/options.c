#include "cli/options.h"
#include "base/number.h"

#include <stdio.h>

bool parse_u32_option(const char *name, const char *text, uint32_t *out)
{
    if (number_u32(text, out))
        return true;
    fprintf(stderr, "supermachine: %s wants a whole number, not '%s'\n", name, text);
    return false;
}

bool parse_seconds_option(const char *name, const char *text, double *out)
{
    if (number_seconds(text, out))
        return true;
    fprintf(stderr, "supermachine: %s wants a number of seconds (0 < S <= 86400), not '%s'\n", name, text);
    return false;
}
