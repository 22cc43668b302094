/* Text from a guest on its way to a person's terminal. */
#ifndef SM_BASE_TEXT_H
#define SM_BASE_TEXT_H

#include <stdbool.h>

/* Whether a byte may reach a terminal as it is: printable ASCII, the bytes
 * of UTF-8 sequences, newline, tab, carriage return, backspace. The other
 * control characters may not: an ESC begins sequences that retitle the
 * window, move the cursor, or make some terminals answer with input. */
static inline bool text_terminal_safe(unsigned char c)
{
    return c >= 0x20 ? c != 0x7f : c == '\n' || c == '\t' || c == '\r' || c == '\b';
}

/* What stands in for a byte that is not. */
#define TEXT_REPLACEMENT '?'

#endif
