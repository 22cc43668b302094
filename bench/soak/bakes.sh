#!/usr/bin/env bash
# bench/soak/bakes.sh: bake N snapshots with the raw VMM, restore each once,
# and count the bakes that do not restore. For every bake it prints where the
# snapshot stopped vCPU 0 (run state, RIP, CPL, TR type: test_snapshot
# --damage STATE vcpus), so a bad bake shows its saved state beside the good.
#
#   bench/soak/bakes.sh [N [CPUS]]        (default 100 bakes, 1 vCPU)
#
# The last line is "bakes: N, bad: B" and the exit status is 1 when B > 0.
# Runs itself inside tools/kvmbox where guests cannot run directly. Needs
# `make all all-tests kernel`. SM_BUILD picks another build tree (default build).
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${SM_BUILD:-build}
n=${1:-100}
cpus=${2:-1}
for f in "$build/bin/supermachine" "$build/bin/supermachine-vmm" "$build/tests/test_snapshot" \
         build/guest/bzImage "$build/guest/initramfs.cpio"; do
    [[ -e $f ]] || { echo "bench/soak/bakes: $f is missing; run: make all all-tests kernel" >&2; exit 2; }
done
if ! "$build/bin/supermachine" doctor --quiet; then
    [[ -z ${KVMBOX:-} ]] || { echo "bench/soak/bakes: no usable KVM even inside kvmbox" >&2; exit 2; }
    exec tools/kvmbox -- "$0" "$@"
fi

tmp=$(mktemp -d /tmp/sm-bakes.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -m 700 "$tmp/rt"
bad=0
for ((i = 1; i <= n; i++)); do
    rm -rf "$tmp/snap"
    if ! "$build/bin/supermachine-vmm" --kernel build/guest/bzImage --initrd "$build/guest/initramfs.cpio" \
            --cpus "$cpus" --timeout 120 --console "$tmp/console" --snapshot-when-ready "$tmp/snap" \
            >"$tmp/bake.out" 2>&1 </dev/null; then
        echo "bake $i: the VMM failed: $(tail -c 300 "$tmp/bake.out" | tr '\n' ' ')"
        bad=$((bad + 1))
        continue
    fi
    regs=$("$build/tests/test_snapshot" --damage "$tmp/snap/state" vcpus | head -n 1)
    if XDG_RUNTIME_DIR=$tmp/rt timeout -k 5 120 "$build/bin/supermachine" run "$tmp/snap" -- true \
            >"$tmp/run.out" 2>&1 </dev/null; then
        echo "bake $i: restores; $regs"
    else
        bad=$((bad + 1))
        echo "bake $i: DOES NOT RESTORE; $regs"
        tail -n 45 "$tmp/run.out" | sed 's/^/  | /'
    fi
done
echo "bakes: $n, bad: $bad"
((bad == 0))
