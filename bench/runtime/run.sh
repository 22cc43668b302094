#!/usr/bin/env bash
# bench/runtime: `podman run --rm debian:test true` with supermachine-runtime
# (a microVM per container) against crun (namespaces, no VM), and runsc
# (gVisor) when installed: it is not packaged in Debian bookworm, so usually
# it is not. The same podman store for all (scripts/test-image.sh's
# debian:test, loaded once; vfs storage, --network none, as
# tests/vm/test_engines.sh sets it up with tests/vm/engines.sh), the runtimes
# taken in turn within each round so that drift hits them alike. Prints each
# runtime's median and its ratio to crun's: side by side, from one run, never
# a limit. A runtime whose first run fails is reported with its error and
# left out.
#
#   bench/runtime/run.sh [RUNS]       (RUNS default 5)
#
# Every run includes podman's own work, the same for every runtime: with vfs
# that is a full copy of the image's 115 MB for each container, which
# dominates crun's figure.
#
# Our runtime needs a /dev/kvm that runs standard guests: where there is none
# (PVM, see `supermachine doctor`), the script runs itself inside
# tools/kvmbox, where everything is emulated (TCG, nested SVM): compare the
# figures only with each other, from the same run.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/runtime/run.sh [RUNS]" >&2; exit 2; }
SM_ROOT=$PWD
SM_BUILD=${SM_BUILD:-$SM_ROOT/build}
rt=$SM_BUILD/bin/supermachine-runtime

if [[ -z ${KVMBOX:-} ]]; then   # inside the box the tree and the cache are read-only
    scripts/test-image.sh --print-dir >/dev/null
    [[ -n ${SM_BENCH_NO_BUILD:-} ]] || make -s all
fi
for cmd in podman crun; do
    command -v $cmd >/dev/null || { echo "bench/runtime: $cmd is missing (scripts/deps.sh)" >&2; exit 1; }
done
if ! "$SM_BUILD/bin/supermachine" doctor --quiet; then
    if [[ -n ${KVMBOX:-} ]]; then
        echo "bench/runtime: no usable KVM even inside kvmbox" >&2
        exit 1
    fi
    echo "bench/runtime: this host cannot run guests directly; running inside tools/kvmbox" >&2
    exec tools/kvmbox -- "$0" "$@"
fi

work=$(mktemp -d "${SM_BENCH_TMP:-/tmp}/sm-bench-runtime.XXXXXX")
trap 'rm -rf "$work"' EXIT
export SUPERMACHINE_RUNTIME_IMAGES=$work/images
source tests/vm/engines.sh
eng_podman_setup "$work/p"
eng_podman_load "$work/p"

names=(crun supermachine)
bins=(crun "$rt")
if command -v runsc >/dev/null; then
    names+=(runsc)
    bins+=("$(command -v runsc)")
else
    echo "runsc: not installed (gVisor is not packaged in Debian bookworm): left out"
fi

# One timed run, in ms, on stdout; its stderr in $work/err.
one() {
    local t
    t=$(date +%s%N)
    epodman "$work/p" --runtime "$1" run --rm --network none "$eng_image" true 2>"$work/err" >/dev/null || return 1
    echo $((($(date +%s%N) - t) / 1000000))
}

# A warm-up run each (not counted), which also leaves out a runtime that fails.
live=()
for i in "${!names[@]}"; do
    if one "${bins[$i]}" >/dev/null; then
        live+=("$i")
    else
        echo "${names[$i]}: podman run failed, left out: $(tail -n 3 "$work/err" | tr '\n' ' ')"
    fi
done

declare -A times
for ((r = 0; r < runs; r++)); do
    for i in "${live[@]}"; do
        ms=$(one "${bins[$i]}") || { echo "${names[$i]}: run $r failed: $(tail -n 3 "$work/err" | tr '\n' ' ')"; continue; }
        times[$i]+="$ms "
    done
done

median() {
    local -a v
    read -r -a v <<<"$1"
    ((${#v[@]})) || { echo -; return; }
    # <<< and not <(...): kvmbox has no /dev/fd.
    mapfile -t v <<<"$(printf '%s\n' "${v[@]}" | sort -n)"
    echo "${v[$((${#v[@]} / 2))]}"
}

echo
echo "podman run --rm debian:test true, $runs runs each${KVMBOX:+ (inside kvmbox: emulated, ratios only)}"
printf '%-14s %10s %10s   %s\n' runtime "median ms" "vs crun" "all runs (ms)"
base=
for i in "${live[@]}"; do
    m=$(median "${times[$i]:-}")
    [[ ${names[$i]} == crun ]] && base=$m
    ratio=n/a
    if [[ $m != - && $base =~ ^[1-9][0-9]*$ ]]; then
        ratio=$(awk -v a="$m" -v b="$base" 'BEGIN { printf "%.2fx", a / b }')
    fi
    printf '%-14s %10s %10s   %s\n' "${names[$i]}" "$m" "$ratio" "${times[$i]:-}"
done
