#include "base/number.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool number_u32(const char *text, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

bool number_seconds(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v <= 0 || v > 86400)
        return false;
    *out = v;
    return true;
}

bool number_bytes(const char *text, uint64_t *out)
{
    static const char units[] = "KMGT"; /* powers of 1024, from 1 */
    char *end;
    if (!isdigit((unsigned char)text[0])) /* strtoull would take blanks and signs */
        return false;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || v == 0)
        return false;
    if (*end) {
        const char *unit = end[1] ? NULL : strchr(units, toupper((unsigned char)*end));
        if (!unit || !*unit)
            return false;
        unsigned shift = 10 * (unsigned)(unit - units + 1);
        if (v > (UINT64_MAX >> shift))
            return false;
        v <<= shift;
    }
    *out = (uint64_t)v;
    return true;
}
