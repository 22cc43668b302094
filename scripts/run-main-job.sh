#!/usr/bin/env bash
# The main job (`make run`): run a command inside a microVM restored from the
# default image (baked on first use: boot our kernel and agent, snapshot once
# ready), then the same again to show the restore path alone. Runs directly on
# a host with hardware virtualization, through tools/kvmbox otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
job='
    for n in 1 2; do
        start=$(date +%s%N)
        build/bin/supermachine run -- sh -c "echo hello from \$(uname -sr) in a microVM"
        echo "run $n: $(( ($(date +%s%N) - start) / 1000000 )) ms (wall clock, including process start)" >&2
    done'
if build/bin/supermachine doctor --quiet; then
    echo "run: this host runs microVMs directly (hardware virtualization)" >&2
    exec bash -c "$job"
fi
echo "run: this host cannot run a standard guest directly (see \`build/bin/supermachine doctor\`);" >&2
echo "run: running inside tools/kvmbox, an emulated KVM host (slow: compare figures only side by side)" >&2
# The box sees this machine read-only: images go to its own tmpfs.
exec tools/kvmbox -- env SUPERMACHINE_IMAGES=/tmp/supermachine-images bash -c "$job"
