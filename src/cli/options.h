/* Parsing of numeric command-line values, with messages that name the option. */
#ifndef SM_CLI_OPTIONS_H
#define SM_CLI_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

/* A whole decimal number that fits in 32 bits; prints an error and returns false otherwise. */
bool parse_u32_option(const char *name, const char *text, uint32_t *out);
/* A positive number of seconds, fractions allowed, at most a day. */
bool parse_seconds_option(const char *name, const char *text, double *out);

#endif
