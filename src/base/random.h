/* A random number where uniqueness matters and secrecy does not (tags,
 * starting points). */
#ifndef SM_BASE_RANDOM_H
#define SM_BASE_RANDOM_H

#include <stdint.h>

/* From getrandom; should the kernel not answer at once, from the clock and
 * the PID, which still differ between processes and moments. */
uint32_t random_u32(void);

#endif
