/*
 * The fuzz targets' inputs are scripts: an opcode byte, then its operands,
 * read in turn. A short read ends the script.
 */
#ifndef SM_FUZZ_SCRIPT_H
#define SM_FUZZ_SCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fuzz_script {
    const uint8_t *p;
    size_t n;
};

/* The next len bytes into out; false (and nothing taken) when fewer are left. */
static inline bool script_take(struct fuzz_script *c, void *out, size_t len)
{
    if (c->n < len)
        return false;
    memcpy(out, c->p, len);
    c->p += len;
    c->n -= len;
    return true;
}

#endif
