#include "base/clock.h"

#include <errno.h>
#include <time.h>

int64_t clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t clock_now_us(void)
{
    return (uint64_t)clock_now_ns() / 1000u;
}

uint64_t clock_now_ms(void)
{
    return clock_now_us() / 1000u;
}

void clock_sleep_ms(unsigned ms)
{
    struct timespec left = { .tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L };
    while (nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
}
