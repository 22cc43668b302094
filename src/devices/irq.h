/*
 * An interrupt line as devices see it. The VMM backs it with KVM (an irqfd
 * or KVM_IRQ_LINE); tests back it with a counter.
 */
#ifndef SM_DEVICES_IRQ_H
#define SM_DEVICES_IRQ_H

#include <stdbool.h>
#include <stdint.h>

struct irq_line {
    /* Edge: one interrupt now (virtio used-buffer and config notifications). */
    void (*pulse)(struct irq_line *line);
    /* Level: drive the pin high or low (8250 UART). */
    void (*set_level)(struct irq_line *line, bool high);
    uint32_t gsi;
    int fd;      /* irqfd, when the backing uses one */
    void *ctx;   /* the backing's own state */
};

static inline void irq_pulse(struct irq_line *line) { if (line && line->pulse) line->pulse(line); }
static inline void irq_set_level(struct irq_line *line, bool high) { if (line && line->set_level) line->set_level(line, high); }

#endif
