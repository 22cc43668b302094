/*
 * The CLI's store: the library's default, except that $SUPERMACHINE_IMAGES
 * names another images folder (tests and CI keep theirs apart this way).
 * The environment is the CLI's business; the library takes a store.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/cli_store.h"

#include <stdbool.h>

#define EXIT_CANNOT 125

static sm_store *store;

static void free_store(void)
{
    sm_store_free(store);
}

const sm_store *cli_store(void)
{
    static bool made;
    if (made)
        return store;
    made = true;
    const char *images = getenv("SUPERMACHINE_IMAGES");
    if (!images || !*images)
        return NULL;
    char absolute[PATH_MAX], cwd[PATH_MAX];
    if (images[0] != '/' && getcwd(cwd, sizeof cwd) &&
        (size_t)snprintf(absolute, sizeof absolute, "%s/%s", cwd, images) < sizeof absolute)
        images = absolute;
    sm_error err = { 0 };
    if (sm_store_new(images, NULL, &store, &err) != SM_OK) {
        fprintf(stderr, "supermachine: $SUPERMACHINE_IMAGES: %s\n", err.message);
        exit(EXIT_CANNOT);
    }
    atexit(free_store);
    return store;
}
