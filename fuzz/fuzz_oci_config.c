/*
 * libFuzzer target: image config blobs (src/image/oci_config.c), hostile
 * JSON. Checked: failures say why and leave nothing allocated; what parses
 * keeps its bounds (counts, string lengths, KEY=VALUE env, sha256 diff_ids).
 *
 *   build/fuzz/fuzz_oci_config -max_total_time=20 fuzz/corpus/fuzz_oci_config
 */
#include "image/digest.h"
#include "image/oci_config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_strings(char **v, size_t n)
{
    if (n > OCI_CONFIG_MAX_ITEMS || (n && !v))
        abort();
    for (size_t i = 0; i < n; i++)
        if (!v[i] || strlen(v[i]) > OCI_CONFIG_MAX_STRING)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    struct oci_config c;
    sm_error err = {0};
    if (oci_config_parse((const char *)data, size, &c, &err) != SM_OK) {
        if (!err.message[0] || c.env || c.cmd || c.entrypoint || c.diff_ids || c.user ||
            c.working_dir)
            abort();
        return 0;
    }
    check_strings(c.env, c.nenv);
    check_strings(c.cmd, c.ncmd);
    check_strings(c.entrypoint, c.nentrypoint);
    check_strings(c.diff_ids, c.ndiff_ids);
    for (size_t i = 0; i < c.nenv; i++) {
        const char *eq = strchr(c.env[i], '=');
        if (!eq || eq == c.env[i])
            abort();
    }
    for (size_t i = 0; i < c.ndiff_ids; i++)
        if (!oci_digest_valid(c.diff_ids[i]))
            abort();
    if ((c.user && !c.user[0]) || (c.working_dir && !c.working_dir[0]))
        abort();
    oci_config_free(&c);
    return 0;
}
