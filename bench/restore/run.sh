#!/bin/sh
# bench/restore: restore-from-snapshot latency (p50, p99 of start-from-image to
# the exit of `true`), beside our cold boot and QEMU's microvm boot of the same
# guest in the same run, the VM exits a restore + exec costs, and the host
# memory of many idle restored VMs. bench/restore/restore_bench.c says what
# each figure is.
#
#   bench/restore/run.sh [RESTORES [BOOTS [IDLE_VMS [CONFINE_PAIRS]]]]   (default 100 5 50 20)
#
# Builds bench/restore/restore_bench against build/lib/libsupermachine.a,
# bakes a snapshot of the standard guest (256 MiB, 1 vCPU) with
# `supermachine-vmm --snapshot-when-ready` into a temporary folder, and runs
# the benchmark. Needs `make all kernel` and qemu-system-x86_64.
#
# Where /dev/kvm cannot run standard guests (PVM, see `supermachine doctor`),
# it runs itself inside tools/kvmbox (4 GiB), where everything is emulated:
# there it prints ratios only (memory as a fraction of the guest's; exits as
# counts).
set -eu
cd "$(dirname "$0")/../.."
if [ -z "${KVMBOX:-}" ]; then   # inside the box the tree is read-only: build outside
    make -s build/lib/libsupermachine.a build/bin/supermachine build/bin/supermachine-vmm \
        build/guest/initramfs.cpio
    mkdir -p build/bench
    cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla -Iinclude \
        bench/restore/restore_bench.c build/lib/libsupermachine.a -o build/bench/restore_bench \
        -lcurl -larchive -ljson-c -lcrypto -lpthread -lz
fi
for f in build/guest/bzImage build/guest/initramfs.cpio build/bench/restore_bench; do
    [ -e "$f" ] || { echo "bench/restore: $f is missing; run: make all kernel" >&2; exit 1; }
done
if ! build/bin/supermachine doctor --quiet; then
    if [ -n "${KVMBOX:-}" ]; then
        echo "bench/restore: no usable KVM even inside kvmbox:" >&2
        build/bin/supermachine doctor >&2 || true
        exit 1
    fi
    echo "bench/restore: this host cannot run guests directly; running inside tools/kvmbox" >&2
    exec tools/kvmbox --mem 4096 -- "$0" "$@"
fi
command -v qemu-system-x86_64 >/dev/null ||
    { echo "bench/restore: qemu-system-x86_64 is missing (scripts/deps.sh)" >&2; exit 1; }

restores=${1:-100}
boots=${2:-5}
idle=${3:-50}
pairs=${4:-20}
ratios=
[ -n "${KVMBOX:-}" ] && ratios=--ratios-only

tmp=$(mktemp -d /tmp/sm-bench-restore.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -m 700 "$tmp/rt"
export XDG_RUNTIME_DIR="$tmp/rt"
export SUPERMACHINE_VMM="$PWD/build/bin/supermachine-vmm"   # build/bench is not where the library looks
echo "bench/restore: baking the snapshot (build/guest/bzImage + initramfs.cpio, 256 MiB, 1 vCPU)"
build/bin/supermachine-vmm --kernel build/guest/bzImage --initrd build/guest/initramfs.cpio \
    --memory 256 --cpus 1 --timeout 120 --console "$tmp/bake-console.log" --snapshot-when-ready "$tmp/snap"
echo "bench/restore: snapshot: state $(stat -c %s "$tmp/snap/state") bytes, memory" \
    "$(( $(stat -c %b "$tmp/snap/memory") * $(stat -c %B "$tmp/snap/memory") >> 20 )) MiB allocated of" \
    "$(( $(stat -c %s "$tmp/snap/memory") >> 20 )) MiB"
[ -n "${KVMBOX:-}" ] && echo "bench/restore: inside tools/kvmbox (emulated host): ratios only"
build/bench/restore_bench $ratios --restores "$restores" --boots "$boots" --idle "$idle" --confine-pairs "$pairs" \
    "$tmp/snap" build/guest/bzImage build/guest/initramfs.cpio
