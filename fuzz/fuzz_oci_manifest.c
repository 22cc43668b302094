/*
 * libFuzzer target: manifests and indexes as a registry (hostile) sends
 * them (src/image/oci_manifest.c), then the linux/amd64 choice of an index.
 * The first input byte picks the Content-Type hint; the rest is the body.
 * Checked: failures say why; what parses keeps its bounds.
 *
 *   build/fuzz/fuzz_oci_manifest -max_total_time=20 fuzz/corpus/fuzz_oci_manifest
 */
#include "image/oci_manifest.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const hints[] = {
    NULL, "", OCI_MT_OCI_MANIFEST, OCI_MT_OCI_INDEX, OCI_MT_DOCKER_MANIFEST, OCI_MT_DOCKER_LIST,
    OCI_MT_DOCKER_V1_SIGNED, "application/json; charset=utf-8",
};

static void check_descriptor(const struct oci_descriptor *d)
{
    if (!oci_digest_valid(d->digest) || d->size > OCI_MAX_LAYER_SIZE ||
        strlen(d->media_type) >= sizeof d->media_type)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    const char *hint = hints[data[0] % (sizeof hints / sizeof hints[0])];
    struct oci_manifest m;
    sm_error err = {0};
    sm_code rc = oci_manifest_parse((const char *)data + 1, size - 1, hint, &m, &err);
    if (rc != SM_OK) {
        if (!err.message[0] || m.layers || m.manifests)
            abort();
        return 0;
    }
    if (m.kind == OCI_KIND_IMAGE) {
        if (m.nlayers > OCI_MAX_LAYERS || m.nmanifests)
            abort();
        check_descriptor(&m.config);
        for (size_t i = 0; i < m.nlayers; i++)
            if (!oci_digest_valid(m.layers[i].digest) ||
                oci_layer_compression_of(m.layers[i].media_type) == OCI_LAYER_UNKNOWN)
                abort();
    } else if (m.kind == OCI_KIND_INDEX) {
        if (m.nmanifests > OCI_MAX_MANIFESTS || m.nlayers)
            abort();
        for (size_t i = 0; i < m.nmanifests; i++)
            check_descriptor(&m.manifests[i]);
        const struct oci_descriptor *d;
        rc = oci_index_select(&m, "linux", "amd64", NULL, &d, &err);
        if (rc == SM_OK && (d < m.manifests || d >= m.manifests + m.nmanifests))
            abort();
        if (rc != SM_OK && !err.message[0])
            abort();
    } else {
        abort();
    }
    oci_manifest_free(&m);
    return 0;
}
