/* Time as the host and the agent measure it: the monotonic clock, which no
 * change of the wall clock moves; and the wall clock written for people and
 * files that want a date. */
#ifndef SM_BASE_CLOCK_H
#define SM_BASE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

int64_t clock_now_ns(void);
uint64_t clock_now_us(void);
uint64_t clock_now_ms(void);
/* Sleeps ms milliseconds, through signals. */
void clock_sleep_ms(unsigned ms);
/* The wall clock as RFC 3339 in UTC with nanoseconds
 * ("2026-12-04T19:02:13.123456789Z"), as the OCI runtime's state and log
 * files write it; cap of 40 is enough. */
void clock_wall_rfc3339(char *out, size_t cap);

#endif
