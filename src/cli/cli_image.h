/*
 * IMAGE on the command line, for the commands that start a VM from one
 * (`run`, `start`): what the word means is written once here
 * (src/cli/cli_image.c), so that both commands read it the same way.
 */
#ifndef SM_CLI_CLI_IMAGE_H
#define SM_CLI_CLI_IMAGE_H

#include "supermachine.h"

/* The image no IMAGE stands for; baked the first time it is needed. */
#define CLI_DEFAULT_IMAGE "default"

/* The help text's account of IMAGE, as cli_image_open reads it. */
#define CLI_IMAGE_HELP                                                          \
    "IMAGE: a named image (`supermachine images`), a snapshot folder, or an\n"  \
    "OCI/Docker reference (pulled and baked on first use; then no network).\n"

/*
 * Opens the image name names, trying in this order: a named image of the
 * CLI's store; a snapshot folder; CLI_DEFAULT_IMAGE, baked now if the store
 * has none (said on stderr, prefixed with prog); else an OCI/Docker
 * reference, pulled and baked the first time with *pull's registry options,
 * progress on stderr. *pull is created when NULL (the caller frees it).
 * On failure err says why; for a word with no '/' that is no image, also
 * that the store and the folders were looked in before the registry.
 */
sm_code cli_image_open(const char *prog, const char *name, sm_pull_options **pull, sm_image **img,
                       sm_error *err);

#endif
