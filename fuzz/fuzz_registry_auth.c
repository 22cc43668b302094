/*
 * libFuzzer target: what a registry or a user's files feed the registry
 * client's parsers: WWW-Authenticate challenges (a hostile registry;
 * src/image/registry_headers.c, where fuzz_registry_headers meets them
 * inside whole header blocks too) and docker config.json credentials
 * (src/image/registry.c). The first byte picks which; the rest is the input.
 *
 *   build/fuzz/fuzz_registry_auth -max_total_time=20 fuzz/corpus/fuzz_registry_auth
 */
#include "image/registry.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void challenge(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return;
    memcpy(s, data, size);
    s[size] = '\0';
    struct auth_challenge ch;
    sm_error err = {0};
    sm_code rc = registry_parse_challenge(s, &ch, &err);
    if (rc == SM_OK && (strlen(ch.realm) >= sizeof ch.realm || strlen(ch.scheme) >= sizeof ch.scheme))
        abort();
    if (rc != SM_OK && !err.message[0])
        abort();
    free(s);
}

static void credentials(const uint8_t *data, size_t size)
{
    static const char *const registries[] = {"docker.io", "127.0.0.1:5000", "r.io"};
    for (size_t i = 0; i < sizeof registries / sizeof registries[0]; i++) {
        char *user = NULL, *pass = NULL;
        sm_error err = {0};
        sm_code rc = docker_config_credentials((const char *)data, size, registries[i], &user,
                                               &pass, &err);
        if (rc == SM_OK && (!user || !pass))
            abort();
        if (rc != SM_OK && (user || pass || !err.message[0]))
            abort();
        free(user);
        free(pass);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (256u << 10))
        return 0;
    if (data[0] & 1)
        challenge(data + 1, size - 1);
    else
        credentials(data + 1, size - 1);
    return 0;
}
