#include "base/random.h"
#include "base/clock.h"

#include <sys/random.h>
#include <unistd.h>

uint32_t random_u32(void)
{
    uint32_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r)
        return r;
    return (uint32_t)clock_now_ns() ^ (uint32_t)getpid() * 2654435761u;
}
