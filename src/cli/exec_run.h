/*
 * Running one command through an agent's exec socket, as `supermachine exec`
 * and `supermachine run` both do (src/cli/exec_run.c): the exec flags they
 * share, the options those flags fill, and the run itself.
 */
#ifndef SM_CLI_EXEC_RUN_H
#define SM_CLI_EXEC_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "cli/flags.h"

#define EXIT_USAGE   2
#define EXIT_TIMEOUT 124
#define EXIT_CANNOT  125

/* The exec flags' help lines, as `exec --help` prints them. */
#define EXEC_FLAGS_HELP \
    "  -e K=V          set an environment variable (on top of the agent's own)\n" \
    "  -w DIR          working directory in the guest\n" \
    "  -t              allocate a pseudo-terminal (raw mode here, resizes forwarded)\n" \
    "  -i              pass this program's stdin to the command\n" \
    "  --timeout S     SIGKILL the command's process group after S seconds (exit 124)\n" \
    "  --stage G=H[:M] copy host file H to guest path G (octal mode M) before running\n"

/* The short exec flags, for getopt's optstring. */
#define EXEC_SHORT_FLAGS "e:w:ti"

enum exec_flag {
    EXEC_FLAG_TIMEOUT = FLAG_BLOCK_EXEC,
    EXEC_FLAG_STAGE,
};

/* The long exec flags, entries for a command's struct option table. */
#define EXEC_FLAGS                                                  \
    { "timeout", required_argument, NULL, EXEC_FLAG_TIMEOUT },      \
    { "stage", required_argument, NULL, EXEC_FLAG_STAGE }

/* What to run and how. The strings are the command line's own. */
struct exec_opts {
    const char *socket;     /* the agent's exec socket */
    const char **env;       /* "KEY=VALUE", n_env of them */
    size_t n_env;
    const char *workdir;    /* NULL: the agent's */
    const char **stages;    /* "GUEST_PATH=HOST_FILE[:MODE]", n_stages of them */
    size_t n_stages;
    bool tty, interactive;
    double timeout_s;       /* 0: none */
    int argc;
    char *const *argv;
};

/* Makes room for the flags of a command line of argc words (no flag can
 * come more often); false when out of memory. */
bool exec_opts_init(struct exec_opts *o, int argc);
void exec_opts_free(struct exec_opts *o);

static inline bool is_exec_flag(int c)
{
    return c == 'e' || c == 'w' || c == 't' || c == 'i' || c == EXEC_FLAG_TIMEOUT ||
           c == EXEC_FLAG_STAGE;
}

/* Records the exec flag c with its value arg; false after saying on stderr
 * what is wrong with it (prog names the command). */
bool exec_flag_apply(const char *prog, struct exec_opts *o, int c, const char *arg);

/*
 * Runs o->argv through o->socket: streams stdout/stderr as they come, passes
 * stdin with o->interactive, puts the terminal in raw mode with o->tty
 * (forwarding size changes), and forwards SIGINT/SIGTERM/SIGHUP to the
 * command's process group; if the command has not ended a grace period
 * after that, gives up on it. Returns the exit status: the command's code,
 * 128+N if killed by signal N (or given up on after signal N), EXIT_TIMEOUT
 * when o->timeout_s fired, EXIT_USAGE for an --stage or -e the agent cannot
 * take, EXIT_CANNOT when it could not run or its connection broke.
 */
int exec_run(const char *prog, const struct exec_opts *o);

#endif
