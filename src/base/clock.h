/* Time as the host and the agent measure it: the monotonic clock, which no
 * change of the wall clock moves. */
#ifndef SM_BASE_CLOCK_H
#define SM_BASE_CLOCK_H

#include <stdint.h>

int64_t clock_now_ns(void);
uint64_t clock_now_us(void);
uint64_t clock_now_ms(void);
/* Sleeps ms milliseconds, through signals. */
void clock_sleep_ms(unsigned ms);

#endif
