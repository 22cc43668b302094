/*
 * libFuzzer target: image references (src/image/reference.c). Any input
 * either fails with a message, or parses into a reference whose canonical
 * form parses back to the same reference (the round trip is checked).
 *
 *   build/fuzz/fuzz_reference -max_total_time=20 fuzz/corpus/fuzz_reference
 */
#include "image/reference.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * OCI_REF_INPUT_MAX)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct oci_reference r, again;
    sm_error err = {0};
    if (oci_reference_parse(s, &r, &err) == SM_OK) {
        char canonical[OCI_REF_INPUT_MAX + 8];
        int n = oci_reference_format(&r, canonical, sizeof canonical);
        if (n < 0 || (size_t)n >= sizeof canonical)
            abort(); /* the canonical form always fits */
        if (oci_reference_parse(canonical, &again, &err) != SM_OK ||
            memcmp(&r, &again, sizeof r) != 0)
            abort();
        if (!r.tag[0] && !r.digest[0])
            abort();
        if (r.digest[0] && !oci_digest_valid(r.digest))
            abort();
    } else if (!err.message[0]) {
        abort(); /* every failure says why */
    }
    free(s);
    return 0;
}
