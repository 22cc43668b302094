#!/usr/bin/env bash
# bench/soak: loops that count every failure by kind instead of retrying.
#
#   bench/soak/run.sh [restores [VMS [PARALLEL]]]   (default 1000 4)
#       N restores + exec, P at a time (bench/soak/soak.c), from a snapshot of
#       the standard guest (256 MiB, 1 vCPU) baked with the raw VMM
#   bench/soak/run.sh streams [ROUNDS [MIB]]        (default 10 64)
#       long streams in and out of one 2-vCPU VM, five ways, byte-exact
#       (bench/soak/streams.c)
#   bench/soak/run.sh concurrent [ROUNDS]           (default 30)
#       rounds of 32 execs at once in one 2-vCPU VM, every output, exit code
#       and stream checked exactly (bench/soak/concurrent.c)
#   bench/soak/bakes.sh [N]                          (default 100)
#       N bakes, each restored once
#
# Exits 1 when anything failed. Where this host cannot run guests it runs
# itself inside tools/kvmbox and prints ratios instead of times; a box that
# stalls or dies (kvmbox status 123) is reported as a box fault, apart from
# our failures.
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-restores}
[[ $mode == restores || $mode == streams || $mode == concurrent ]] ||
    { echo "usage: bench/soak/run.sh [restores [VMS [PARALLEL]] | streams [ROUNDS [MIB]] | concurrent [ROUNDS]]" >&2; exit 2; }
if [[ -z ${KVMBOX:-} ]]; then   # inside the box the tree is read-only: build outside
    make -s build/lib/libsupermachine.a build/bin/supermachine build/bin/supermachine-vmm \
        build/guest/initramfs.cpio || exit 2
    mkdir -p build/bench
    for prog in soak streams concurrent; do
        cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla -Iinclude \
            "bench/soak/$prog.c" build/lib/libsupermachine.a -o "build/bench/$prog" \
            -lcurl -larchive -ljson-c -lcrypto -lpthread -lz || exit 2
    done
fi
for f in build/guest/bzImage build/guest/initramfs.cpio build/bench/soak build/bench/streams build/bench/concurrent; do
    [[ -e $f ]] || { echo "bench/soak: $f is missing; run: make all kernel" >&2; exit 2; }
done
if ! build/bin/supermachine doctor --quiet; then
    [[ -z ${KVMBOX:-} ]] || { echo "bench/soak: no usable KVM even inside kvmbox" >&2; exit 2; }
    echo "bench/soak: this host cannot run guests directly; running inside tools/kvmbox" >&2
    tools/kvmbox --mem 4096 -- "$0" "$@"
    status=$?
    ((status == 123)) && echo "bench/soak: box fault (kvmbox status 123): the emulated host stalled or died"
    exit "$status"
fi
ratios=()
[[ -n ${KVMBOX:-} ]] && ratios=(--ratios-only)
tmp=$(mktemp -d /tmp/sm-soak.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -m 700 "$tmp/rt"
export XDG_RUNTIME_DIR=$tmp/rt
export SUPERMACHINE_VMM=${SM_SOAK_VMM:-$PWD/build/bin/supermachine-vmm}   # SM_SOAK_VMM: another VMM (the ASan one)
export SUPERMACHINE_KERNEL=$PWD/build/guest/bzImage SUPERMACHINE_INITRD=$PWD/build/guest/initramfs.cpio
if [[ $mode == concurrent ]]; then
    build/bench/concurrent --rounds "${2:-30}"
    exit
fi
if [[ $mode == streams ]]; then
    build/bench/streams "${ratios[@]}" --rounds "${2:-10}" --mib "${3:-64}"
    exit
fi
build/bin/supermachine-vmm --kernel build/guest/bzImage --initrd build/guest/initramfs.cpio \
    --memory 256 --cpus 1 --timeout 120 --console "$tmp/bake-console.log" --snapshot-when-ready "$tmp/snap" ||
    { echo "bench/soak: the bake failed"; exit 1; }
build/bench/soak "${ratios[@]}" --vms "${2:-1000}" --parallel "${3:-4}" "$tmp/snap"
