/* The MP table: CPUs, I/O APIC and interrupt wiring for a guest without ACPI. */
#ifndef SM_VMM_MPTABLE_H
#define SM_VMM_MPTABLE_H

#include <stddef.h>

#include "supermachine.h"
#include "machine/guest_memory.h"

#define MPTABLE_MAX_CPUS 32

/* Bytes the table takes for ncpus processors. */
size_t mptable_size(int ncpus);
/* Writes the floating pointer and the configuration table at addr. */
sm_code mptable_write(const struct guest_memory *mem, uint64_t addr, int ncpus, sm_error *err);

#endif
