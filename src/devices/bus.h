/*
 * An address bus: port I/O or MMIO ranges, each served by one device.
 *
 * The vCPU loop hands every KVM_EXIT_IO / KVM_EXIT_MMIO here. Offsets passed
 * to a device are relative to its base; `len` is what the guest used (1, 2,
 * 4 or 8 bytes). Devices lock their own state: several vCPU threads may call
 * in at once.
 */
#ifndef SM_DEVICES_BUS_H
#define SM_DEVICES_BUS_H

#include <stdbool.h>
#include <stdint.h>

struct bus_device_ops {
    void (*read)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len);
    void (*write)(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len);
};

#define BUS_MAX_RANGES 32

struct bus_range {
    uint64_t base;
    uint64_t len;
    const struct bus_device_ops *ops;
    void *opaque;
};

struct bus {
    struct bus_range ranges[BUS_MAX_RANGES];
    int n;
};

/* Adds [base, base+len); refuses (returns -1) an overlap, overflow or a full bus. */
int bus_add(struct bus *bus, uint64_t base, uint64_t len, const struct bus_device_ops *ops, void *opaque);
/* Dispatch; false when no device owns the whole access (reads then give all ones). */
bool bus_read(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len);
bool bus_write(const struct bus *bus, uint64_t addr, const uint8_t *data, uint32_t len);

#endif
