/* libFuzzer: the snapshot state reader must refuse any damage cleanly. The
 * input is a state file; the target walks it as restore would, by type, and
 * additionally with the CRCs re-sealed so that the section bounds themselves
 * get exercised, not only the checksums. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "snapshot/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const uint8_t *buf, size_t len)
{
    struct snap_reader r;
    struct snap_section s;
    if (snap_reader_open(&r, buf, len, NULL) != SM_OK)
        return;
    for (int i = 0; i < 10000; i++) {
        if (snap_next(&r, &s, NULL) != SM_OK)
            return;
        /* Touch every payload byte: any out-of-bounds read is caught by ASan. */
        volatile uint8_t sink = 0;
        for (uint64_t j = 0; j < s.len; j++)
            sink ^= s.data[j];
        (void)sink;
        if (s.type == SNAP_SEC_END)
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    walk(data, size);
    if (size < SNAP_HEADER_SIZE || size > (1u << 20))
        return 0;
    uint8_t *copy = malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    memcpy(copy, SNAP_MAGIC, 8);
    uint32_t version = SNAP_VERSION, header = SNAP_HEADER_SIZE, total = (uint32_t)size;
    memcpy(copy + 8, &version, 4);
    memcpy(copy + 12, &header, 4);
    memcpy(copy + 20, &total, 4);
    uint32_t body = (uint32_t)crc32(crc32(0, NULL, 0), copy + SNAP_HEADER_SIZE, (uInt)(size - SNAP_HEADER_SIZE));
    memcpy(copy + 24, &body, 4);
    uint32_t head = (uint32_t)crc32(crc32(0, NULL, 0), copy, 28);
    memcpy(copy + 28, &head, 4);
    walk(copy, size);
    free(copy);
    return 0;
}
