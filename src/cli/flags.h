/*
 * The one way the CLI's commands read their flags: getopt_long, stopping at
 * the first argument that is not a flag or at "--" (what follows an IMAGE,
 * an ID or "--" belongs to the command in the guest, not to us), with
 * messages that name the bad flag (src/cli/flags.c).
 *
 * A command lists its flags in one struct option array, made of the shared
 * fragments (PULL_FLAGS, VM_FLAGS_*, EXEC_FLAGS) and its own entries, and
 * loops on flag_next until it returns FLAG_END.
 */
#ifndef SM_CLI_FLAGS_H
#define SM_CLI_FLAGS_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

/* Long-only flags are numbered from here; each fragment has its own block,
 * so that a command may put any fragments together in one table. */
enum {
    FLAG_BLOCK_PULL = 0x100,
    FLAG_BLOCK_VM = 0x200,
    FLAG_BLOCK_EXEC = 0x300,
    FLAG_BLOCK_COMMAND = 0x400,   /* a command's own long-only flags */
};

#define FLAG_END (-1)
/* An unknown flag or one without its value; flag_next has said which. */
#define FLAG_BAD '?'

#define FLAG_HELP { "help", no_argument, NULL, 'h' }
#define FLAGS_TABLE_END { NULL, 0, NULL, 0 }

struct flag_parser {
    const char *prog;          /* "supermachine exec": the messages' prefix */
    int argc;
    char **argv;
    const struct option *longopts;
    char optstring[32];        /* "+:" and the short flags */
    bool ended_at_dashes;      /* FLAG_END came from "--" (consumed) */
    int rest;                  /* after FLAG_END: the first argument left */
    int offset;                /* where argv starts in the command's argv */
    const struct option *after_word;   /* see flag_next_or_word; NULL: the same */
};

/*
 * Starts parsing argv[1..argc-1] (argv[0] is a name, not a flag). glibc's
 * getopt keeps its place in globals, and a command may parse more than once
 * in one process (run reads the flags before and after IMAGE), so this resets
 * it fully (optind = 0). shortopts: getopt's letters, "" for none.
 */
void flag_parser_start(struct flag_parser *p, const char *prog, int argc, char **argv,
                       const char *shortopts, const struct option *longopts);
/* The next flag's val (its argument in optarg), FLAG_END, or FLAG_BAD after
 * printing which flag is unknown or lacks its value. */
int flag_next(struct flag_parser *p);
/* After FLAG_END: the index in the command's argv of the first argument
 * left over. */
int flag_rest(const struct flag_parser *p);
/*
 * flag_next for a command with one word among its flags (an IMAGE, a REF, a
 * NAME): the first word that is not a flag goes to *word (which must start
 * NULL) and parsing goes on after it, with p->after_word's flags if set.
 */
int flag_next_or_word(struct flag_parser *p, const char **word);
/* "PROG: unexpected argument 'X'" for a word where only flags may be. */
void flag_unexpected(const struct flag_parser *p, const char *word);

/* What a command's parse returns when the command is to go on (else the
 * exit status: 0 after --help, 2 for a usage error). */
#define FLAGS_GO_ON (-1)

/*
 * For a command whose flags take no value: -h/--help, and at most one
 * switch of its own in longopts/shortopts, whose val goes to *seen (else 0).
 * FLAGS_GO_ON with *first the index of its first argument ("--" skipped),
 * or the exit status after printing usage (on stdout for --help, stderr
 * after a bad flag).
 */
int flags_switches(const char *prog, int argc, char **argv, const char *shortopts,
                   const struct option *longopts, void (*usage)(FILE *out), int *first, int *seen);
/* flags_switches for a command with no flag but -h/--help. */
int flags_help_only(const char *prog, int argc, char **argv, void (*usage)(FILE *out), int *first);

#endif
