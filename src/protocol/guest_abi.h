/*
 * What the VMM and the guest agent agree on outside the exec protocol.
 *
 * The signal port
 * ---------------
 * A 4-byte I/O port the agent (PID 1, root) reaches with ioperm(2). It is how
 * the VMM learns that the guest is ready without any device driver, and how
 * the agent learns what to do next, in one round trip:
 *
 *   step  direction  width  value                  meaning
 *   1     guest out  4      SM_SIGNAL_READY        the agent is up and serving
 *   2     guest in   4      SM_SIGNAL_CMD_SERVE    keep running (the normal case)
 *                           SM_SIGNAL_CMD_POWEROFF power off now (boot probes)
 *
 * The VMM counts the guest as ready at step 2, not step 1: the in is the
 * agent's last port access (it gives up the port right after), so a snapshot
 * taken once the VM is ready never holds a vCPU between the two instructions.
 * That matters because a restored vCPU must not run port I/O in user mode:
 * KVM on AMD reports the task register as busy (type 11), and an emulated
 * AMD host (QEMU TCG, tools/kvmbox) then refuses the I/O bitmap check with
 * #GP, which kills PID 1.
 *
 * Any other value written is counted and ignored; a read not preceded by
 * READY returns SM_SIGNAL_CMD_SERVE and means nothing.
 *
 * Power off
 * ---------
 * Our guests have no ACPI, so the kernel cannot power off by itself; the agent
 * reboots with `reboot=k` on the command line, which resets through the i8042
 * keyboard controller, and the VMM treats that reset as a clean shutdown.
 *
 * Volume slots
 * ------------
 * A VM's writable volumes are virtio-blk devices in slots of their own.
 * Every VM's kernel command line names the slots, with or without a disk
 * behind them (an empty slot reads as virtio DeviceID 0, which the kernel
 * skips), since a VM restored from a snapshot has its bake's command line:
 * the agent binds a slot to the virtio-mmio driver once a volume is there
 * (VOLUME, wire.h). Both sides place volume i the same way:
 *
 *   what           value
 *   MMIO window    SM_VOLUME_MMIO_BASE + i * SM_VOLUME_MMIO_STRIDE, 4 KiB
 *   IRQ            SM_VOLUME_FIRST_IRQ + i (an I/O APIC pin past the ISA ones)
 *   virtio-blk ID  "sm-volume-<i>" (the guest's /sys/block/vdX/serial)
 *
 * for i below SM_MAX_VOLUMES. The windows sit past the VMM's own virtio
 * slots (src/vmm/vm.h checks that they do not meet).
 */
#ifndef SM_PROTOCOL_GUEST_ABI_H
#define SM_PROTOCOL_GUEST_ABI_H

#define SM_SIGNAL_PORT          0x0700u
#define SM_SIGNAL_READY         0x52454459u /* "REDY" */
#define SM_SIGNAL_CMD_SERVE     0u
#define SM_SIGNAL_CMD_POWEROFF  1u

/* The vsock port the agent (PID 1) serves the exec protocol on
 * (protocol/wire.h); the VMM proxies its host-side exec socket to it. */
#define SM_AGENT_VSOCK_PORT     1024u

/* On the kernel command line of a VM booted without a network: the agent
 * then leaves eth0 down. A restored VM is told by NETCONF (wire.h) instead. */
#define SM_CMDLINE_NET_OFF "sm.net=off"

#define SM_MAX_VOLUMES        4u
#define SM_VOLUME_MMIO_BASE   0xd0010000ull
#define SM_VOLUME_MMIO_STRIDE 0x1000ull
#define SM_VOLUME_FIRST_IRQ   16u
#define SM_VOLUME_SERIAL      "sm-volume-%u"

#endif
