#!/bin/sh
# Builds bench/pool/pool_bench against build/lib/libsupermachine.a and runs
# it: a VM restored from an image (sm_vm_start) against one handed out by a
# pool (sm_pool_acquire), with a VM idle and with none, in the same run.
#
#   bench/pool/run.sh [ROUNDS]      (default 20)
#
# Where /dev/kvm cannot run standard guests (`supermachine doctor` says so),
# it runs itself inside tools/kvmbox: everything there is emulated, so
# compare the figures with each other, not with figures from elsewhere.
# The image and the VMs live in a temporary folder (the box's /tmp inside).
set -eu
cd "$(dirname "$0")/../.."
if [ -z "${KVMBOX:-}" ]; then   # inside the box the tree is read-only: build outside
    make -s build/lib/libsupermachine.a build/bin/supermachine build/bin/supermachine-vmm \
        build/guest/initramfs.cpio
    mkdir -p build/bench
    cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude bench/pool/pool_bench.c \
        build/lib/libsupermachine.a -o build/bench/pool_bench -lpthread -lz
fi
if ! build/bin/supermachine doctor --quiet; then
    if [ -n "${KVMBOX:-}" ]; then
        echo "bench/pool: no usable KVM even inside kvmbox" >&2
        exit 1
    fi
    echo "bench/pool: this host cannot run guests directly; running inside tools/kvmbox" >&2
    exec tools/kvmbox -- "$0" "$@"
fi
tmp=$(mktemp -d /tmp/sm-pool-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -m 700 "$tmp/rt"
echo "bench/pool: $(nproc) CPUs${KVMBOX:+, inside kvmbox (emulated)}"
# build/bench is not a place the asset lookup knows: name the build's assets.
SUPERMACHINE_VMM=$PWD/build/bin/supermachine-vmm SUPERMACHINE_ASSETS=$PWD/build/guest \
    XDG_RUNTIME_DIR=$tmp/rt XDG_DATA_HOME=$tmp/data build/bench/pool_bench "${1:-20}"
