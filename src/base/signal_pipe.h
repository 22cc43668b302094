/* Signals turned into bytes on a pipe (the self-pipe pattern), so that a
 * poll loop that relays a command's stdio also hears the signals it must
 * forward: a handler may only write a byte, and the loop does the rest.
 * One per process (signal dispositions are). */
#ifndef SM_BASE_SIGNAL_PIPE_H
#define SM_BASE_SIGNAL_PIPE_H

#include <stdbool.h>
#include <stddef.h>

/* Catches these signals (SA_RESTART) into the pipe, made on first use, and
 * ignores SIGPIPE. false with errno when the pipe cannot be made. */
bool signal_pipe_catch(const int *signals, size_t n);
/* The end to poll for POLLIN, or -1 before signal_pipe_catch. */
int signal_pipe_fd(void);
/* The next signal caught, or 0 when none is waiting. */
int signal_pipe_next(void);

#endif
