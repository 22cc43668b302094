#!/usr/bin/env bash
# The main job (`make run`): boot a microVM with our kernel and agent and
# report the time from start to the agent's ready signal. Runs directly on a
# host with hardware virtualization, through tools/kvmbox otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=(build/bin/supermachine boot --kernel build/guest/bzImage --initrd build/guest/initramfs.cpio --cpus 2)
if build/bin/supermachine doctor --quiet; then
    echo "run: this host runs microVMs directly (hardware virtualization)" >&2
    exec "${cmd[@]}"
fi
echo "run: this host cannot run a standard guest directly (see \`build/bin/supermachine doctor\`);" >&2
echo "run: booting inside tools/kvmbox, an emulated KVM host (slow: compare figures only side by side)" >&2
exec tools/kvmbox -- "${cmd[@]}"
