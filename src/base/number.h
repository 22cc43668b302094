/* Numbers in command-line text, checked whole: the CLI's flags and the VMM's
 * arguments read them alike and word their own messages. */
#ifndef SM_BASE_NUMBER_H
#define SM_BASE_NUMBER_H

#include <stdbool.h>
#include <stdint.h>

/* A whole decimal number that fits in 32 bits, no sign, nothing after it. */
bool number_u32(const char *text, uint32_t *out);
/* A number of seconds, fractions allowed: 0 < S <= 86400 (a day). */
bool number_seconds(const char *text, double *out);
/* A size in bytes: a whole number, digits only, with an optional K, M, G or
 * T (either case; binary: K is 1024) right after it; more than 0, and it
 * must fit in 64 bits once multiplied. */
bool number_bytes(const char *text, uint64_t *out);

#endif
