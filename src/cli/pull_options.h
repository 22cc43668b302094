/* Options for reaching a registry, shared by `pull` and `run`
 * (src/cli/pull_options.c). */
#ifndef SM_CLI_PULL_OPTIONS_H
#define SM_CLI_PULL_OPTIONS_H

#include <stdbool.h>

#include "cli/flags.h"
#include "supermachine.h"

#define PULL_OPTIONS_HELP \
    "  --plain-http         talk http:// to the registry (a local test registry)\n" \
    "  --ca-file FILE       trust this CA bundle too, for the registry's HTTPS\n" \
    "  --username U         basic auth as U, the password read from standard input\n" \
    "                       (default: ~/.docker/config.json, else anonymous)\n" \
    "  --max-download SIZE  refuse an image whose layers are more than SIZE\n" \
    "                       compressed (default 8G; SIZE in bytes, or with K, M, G, T)\n" \
    "  --max-unpacked SIZE  stop when its layers' files add up to more than SIZE\n" \
    "                       (default 32G)\n"

enum pull_flag {
    PULL_FLAG_PLAIN_HTTP = FLAG_BLOCK_PULL,
    PULL_FLAG_CA_FILE,
    PULL_FLAG_USERNAME,
    PULL_FLAG_MAX_DOWNLOAD,
    PULL_FLAG_MAX_UNPACKED,
    PULL_FLAG_LAST = PULL_FLAG_MAX_UNPACKED,
};

/* Entries for a command's struct option table. */
#define PULL_FLAGS                                                      \
    { "plain-http", no_argument, NULL, PULL_FLAG_PLAIN_HTTP },          \
    { "ca-file", required_argument, NULL, PULL_FLAG_CA_FILE },          \
    { "username", required_argument, NULL, PULL_FLAG_USERNAME },        \
    { "max-download", required_argument, NULL, PULL_FLAG_MAX_DOWNLOAD }, \
    { "max-unpacked", required_argument, NULL, PULL_FLAG_MAX_UNPACKED }

static inline bool is_pull_flag(int c)
{
    return c >= PULL_FLAG_PLAIN_HTTP && c <= PULL_FLAG_LAST;
}

/*
 * Applies the pull flag c (with its value arg) to *o, creating *o on first
 * use; false after saying why on stderr (prog names the command).
 */
bool pull_flag_apply(const char *prog, int c, const char *arg, sm_pull_options **o);
/* Progress on stderr: a redrawn line on a terminal, plain lines otherwise. */
void pull_progress_attach(sm_pull_options *o);
void pull_progress_done(void);

#endif
