#include "cli/pull_options.h"

#include "base/number.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool ensure(sm_pull_options **o)
{
    if (!*o)
        *o = sm_pull_options_new();
    return *o != NULL;
}

/* The password for --username: the first line of standard input. */
static bool read_password(char *out, size_t cap)
{
    if (!fgets(out, (int)cap, stdin))
        return false;
    out[strcspn(out, "\r\n")] = 0;
    return true;
}

/* --username U, with the password read_password finds. */
static sm_code apply_credentials(const char *prog, const char *user, sm_pull_options *o)
{
    char password[1024];
    if (!read_password(password, sizeof password)) {
        fprintf(stderr, "%s: --username %s: give the password on standard input\n", prog, user);
        return SM_E_INVALID;
    }
    sm_code rc = sm_pull_options_credentials(o, user, password);
    explicit_bzero(password, sizeof password);
    if (rc)
        fprintf(stderr, "%s: --username: %s\n", prog, sm_strerror(rc));
    return rc;
}

/* PULL_OPTIONS_HELP states the library's defaults. */
_Static_assert(SM_PULL_DEFAULT_MAX_COMPRESSED == 8ull << 30, "--max-download's help says 8G");
_Static_assert(SM_PULL_DEFAULT_MAX_UNPACKED == 32ull << 30, "--max-unpacked's help says 32G");

/* --max-download SIZE, --max-unpacked SIZE. */
static bool apply_cap(const char *prog, int c, const char *arg, sm_pull_options *o)
{
    const char *flag = c == PULL_FLAG_MAX_DOWNLOAD ? "--max-download" : "--max-unpacked";
    uint64_t bytes;
    if (!number_bytes(arg, &bytes)) {
        fprintf(stderr,
                "%s: %s wants a size: a whole number of bytes above 0, or one with K, M, G or T "
                "after it (8G), not '%s'\n",
                prog, flag, arg);
        return false;
    }
    sm_code rc = c == PULL_FLAG_MAX_DOWNLOAD ? sm_pull_options_max_compressed_bytes(o, bytes)
                                             : sm_pull_options_max_unpacked_bytes(o, bytes);
    if (rc)
        fprintf(stderr, "%s: %s: %s\n", prog, flag, sm_strerror(rc));
    return rc == SM_OK;
}

bool pull_flag_apply(const char *prog, int c, const char *arg, sm_pull_options **o)
{
    if (!ensure(o)) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return false;
    }
    sm_code rc = SM_E_INVALID;
    if (c == PULL_FLAG_USERNAME)
        return apply_credentials(prog, arg, *o) == SM_OK;
    if (c == PULL_FLAG_MAX_DOWNLOAD || c == PULL_FLAG_MAX_UNPACKED)
        return apply_cap(prog, c, arg, *o);
    if (c == PULL_FLAG_PLAIN_HTTP)
        rc = sm_pull_options_plain_http(*o, true);
    else if (c == PULL_FLAG_CA_FILE)
        rc = sm_pull_options_ca_file(*o, arg);
    if (rc)
        fprintf(stderr, "%s: %s: %s\n", prog, c == PULL_FLAG_CA_FILE ? "--ca-file" : "--plain-http",
                sm_strerror(rc));
    return rc == SM_OK;
}

/* ---- progress ---------------------------------------------------------------- */

static struct {
    bool tty;
    bool line_open;       /* a redrawn line is on the terminal */
    char last_what[96];   /* plain mode: one line per step */
    bool said_done;       /* ... and one when its download finished */
} progress_line;

static void on_progress(void *ctx, const char *what, uint64_t done, uint64_t total)
{
    (void)ctx;
    if (progress_line.tty) {
        if (total)
            fprintf(stderr, "\r\033[K%s %5.1f%% of %.1f MiB", what, 100.0 * (double)done / (double)total,
                    (double)total / (1024.0 * 1024.0));
        else
            fprintf(stderr, "\r\033[K%s", what);
        progress_line.line_open = true;
        return;
    }
    bool finished = total && done >= total;
    if (strcmp(what, progress_line.last_what) != 0) {
        snprintf(progress_line.last_what, sizeof progress_line.last_what, "%s", what);
        progress_line.said_done = false;
        if (!finished)
            fprintf(stderr, "%s%s\n", what, total ? " ..." : "");
    }
    if (finished && !progress_line.said_done) {
        fprintf(stderr, "%s done (%.1f MiB)\n", what, (double)total / (1024.0 * 1024.0));
        progress_line.said_done = true;
    }
}

void pull_progress_attach(sm_pull_options *o)
{
    progress_line.tty = isatty(STDERR_FILENO);
    sm_pull_options_progress(o, on_progress, NULL);
}

void pull_progress_done(void)
{
    if (progress_line.line_open)
        fputs("\r\033[K", stderr);
    progress_line.line_open = false;
}
