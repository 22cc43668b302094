#!/bin/bash
# bench/compare/two-trees.sh: bench/restore's restore_bench and bench/exec for
# two built trees (say, before and after a change), in alternating rounds of
# one run, so that their figures compare even on an emulated host.
#
#   tools/kvmbox -- bench/compare/two-trees.sh BEFORE_TREE AFTER_TREE [ROUNDS]
#
# Each tree must have `make all` done and build/bench/restore_bench and
# build/bench/exec_bench built (bench/restore/run.sh and bench/exec/run.sh
# show how). The trees must be visible inside the box (not under /tmp).
set -u
[ $# -ge 2 ] || { sed -n '2,11p' "$0"; exit 2; }
before=$1 after=$2 rounds=${3:-3}
for t in "$before" "$after"; do
    tag=$(basename "$t")
    rm -rf "/tmp/snap-$tag"
    mkdir -p "/tmp/rt-$tag" && chmod 700 "/tmp/rt-$tag"
    "$t/build/bin/supermachine-vmm" --kernel "$t/build/guest/bzImage" --initrd "$t/build/guest/initramfs.cpio" \
        --memory 256 --cpus 1 --timeout 300 --console "/tmp/bake-$tag.log" --snapshot-when-ready "/tmp/snap-$tag" \
        || { echo "bake failed for $t"; tail -5 "/tmp/bake-$tag.log"; exit 1; }
done
for r in $(seq "$rounds"); do
    for t in "$before" "$after"; do
        tag=$(basename "$t")
        echo "=== round $r: $t restore_bench"
        (cd "$t" && XDG_RUNTIME_DIR=/tmp/rt-$tag SUPERMACHINE_VMM=$t/build/bin/supermachine-vmm \
            build/bench/restore_bench --restores 30 --boots 1 --idle 5 "/tmp/snap-$tag" \
            build/guest/bzImage build/guest/initramfs.cpio 2>&1)
        echo "=== round $r: $t exec bench"
        (cd "$t" && sh bench/exec/run.sh 200 2 2>&1 | tail -12)
    done
done
