#include "cli/flags.h"

#include <stdio.h>
#include <string.h>

void flag_parser_start(struct flag_parser *p, const char *prog, int argc, char **argv,
                       const char *shortopts, const struct option *longopts)
{
    p->prog = prog;
    p->argc = argc;
    p->argv = argv;
    p->longopts = longopts;
    /* "+": no permuting, stop at the first non-flag; ":": a missing value
     * comes back as ':' apart from an unknown flag, '?'. */
    snprintf(p->optstring, sizeof p->optstring, "+:%s", shortopts);
    p->ended_at_dashes = false;
    p->rest = 1;
    p->offset = 0;
    p->after_word = NULL;
    optind = 0;
    opterr = 0;   /* our own messages, with the command's name */
}

/* The flag getopt choked on, as the user typed it; arg is the argument it
 * was reading (a cluster like "-ix" for a short flag). */
static void name_bad_flag(char *out, size_t cap, const char *arg)
{
    if (!strncmp(arg, "--", 2)) {
        snprintf(out, cap, "%s", arg);
    } else {
        snprintf(out, cap, "-%c", optopt);
    }
}

int flag_next(struct flag_parser *p)
{
    /* optind before the call names the argument getopt reads now (a short
     * cluster keeps optind until its last letter); 0 means the start. */
    int reading = optind > 0 ? optind : 1;
    int c = getopt_long(p->argc, p->argv, p->optstring, p->longopts, NULL);
    if (c == -1) {
        /* getopt steps over "--" when it ends there, and stands still on a
         * non-flag or at the end. */
        p->ended_at_dashes = optind == reading + 1 && !strcmp(p->argv[reading], "--");
        p->rest = optind;
        return FLAG_END;
    }
    if (c != '?' && c != ':')
        return c;
    char flag[64];
    name_bad_flag(flag, sizeof flag, reading < p->argc ? p->argv[reading] : "");
    if (c == ':')
        fprintf(stderr, "%s: %s needs a value\n", p->prog, flag);
    else
        fprintf(stderr, "%s: unknown option '%s'\n", p->prog, flag);
    return FLAG_BAD;
}

int flag_rest(const struct flag_parser *p)
{
    return p->offset + p->rest;
}

/* The word the parser stopped at, if any; parsing then goes on after it. */
static const char *take_word(struct flag_parser *p)
{
    if (p->ended_at_dashes || p->rest >= p->argc)
        return NULL;
    const char *word = p->argv[p->rest];
    /* The word stands where getopt's argv[0] would, so that parsing goes on
     * after it from a full reset. */
    p->offset += p->rest;
    p->argc -= p->rest;
    p->argv += p->rest;
    p->rest = 1;
    if (p->after_word)
        p->longopts = p->after_word;
    optind = 0;
    return word;
}

int flag_next_or_word(struct flag_parser *p, const char **word)
{
    int c = flag_next(p);
    if (c == FLAG_END && !*word && (*word = take_word(p)))
        c = flag_next(p);
    return c;
}

void flag_unexpected(const struct flag_parser *p, const char *word)
{
    fprintf(stderr, "%s: unexpected argument '%s'\n", p->prog, word);
}

int flags_switches(const char *prog, int argc, char **argv, const char *shortopts,
                   const struct option *longopts, void (*usage)(FILE *out), int *first, int *seen)
{
    struct flag_parser p;
    flag_parser_start(&p, prog, argc, argv, shortopts, longopts);
    *seen = 0;
    for (int c; (c = flag_next(&p)) != FLAG_END;) {
        if (c == 'h' || c == FLAG_BAD) {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
        *seen = c;
    }
    *first = flag_rest(&p);
    return FLAGS_GO_ON;
}

int flags_help_only(const char *prog, int argc, char **argv, void (*usage)(FILE *out), int *first)
{
    static const struct option flags[] = { FLAG_HELP, FLAGS_TABLE_END };
    int none;
    return flags_switches(prog, argc, argv, "h", flags, usage, first, &none);
}
