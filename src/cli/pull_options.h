/* Options for reaching a registry, shared by `pull` and `run`
 * (src/cli/pull_options.c). */
#ifndef SM_CLI_PULL_OPTIONS_H
#define SM_CLI_PULL_OPTIONS_H

#include <stdbool.h>

#include "supermachine.h"

#define PULL_OPTIONS_HELP \
    "  --plain-http         talk http:// to the registry (a local test registry)\n" \
    "  --ca-file FILE       trust this CA bundle too, for the registry's HTTPS\n" \
    "  --username U         basic auth as U, the password read from standard input\n" \
    "                       (default: ~/.docker/config.json, else anonymous)\n"

/*
 * If argv[*i] is a pull option, applies it to o (creating o on first use),
 * advances *i past it and its value, and returns 1; 0 when argv[*i] is not
 * one; -1 (having said why on stderr) when it is malformed.
 */
int pull_option(const char *prog, int argc, char **argv, int *i, sm_pull_options **o);
/* Progress on stderr: a redrawn line on a terminal, plain lines otherwise. */
void pull_progress_attach(sm_pull_options *o);
void pull_progress_done(void);

#endif
