#!/bin/sh
# Builds bench/exec/exec_bench against build/lib/libsupermachine.a, starts the
# local agent (build/bin/supermachine-agent) on a temporary socket and a VM
# (`supermachine start`, the VM's agent behind its exec socket), and runs the
# benchmark: the local figures, then the VM's as ratios to them.
#
#   bench/exec/run.sh [--no-vm] [ROUNDTRIPS] [THROUGHPUT_RUNS]
#
# Where /dev/kvm cannot run standard guests (PVM, see `supermachine doctor`),
# it runs itself inside tools/kvmbox, where everything is emulated: there it
# prints ratios only, and moves 64 MiB per throughput run instead of 1 GiB
# (SM_BENCH_MIB overrides either).
set -eu
cd "$(dirname "$0")/../.."
vm=1
if [ "${1:-}" = "--no-vm" ]; then
    vm=0
    shift
fi
if [ -z "${KVMBOX:-}" ]; then   # inside the box the tree is read-only: build outside
    make -s build/lib/libsupermachine.a build/bin/supermachine-agent
    if [ $vm = 1 ]; then
        make -s build/bin/supermachine build/bin/supermachine-vmm build/guest/initramfs.cpio
    fi
    mkdir -p build/bench
    cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude bench/exec/exec_bench.c \
        build/lib/libsupermachine.a -o build/bench/exec_bench -lpthread -lz
fi
if [ $vm = 1 ] && ! build/bin/supermachine doctor --quiet; then
    if [ -n "${KVMBOX:-}" ]; then
        echo "bench/exec: no usable KVM even inside kvmbox" >&2
        exit 1
    fi
    echo "bench/exec: this host cannot run guests directly; running inside tools/kvmbox" >&2
    exec tools/kvmbox -- "$0" "$@"
fi
mib=${SM_BENCH_MIB:-1024}
ratios=
if [ -n "${KVMBOX:-}" ]; then
    mib=${SM_BENCH_MIB:-64}
    ratios=--ratios-only
fi

tmp=$(mktemp -d /tmp/sm-bench.XXXXXX)
agent=
vm_id=
cleanup() {
    [ -n "$agent" ] && kill "$agent" 2>/dev/null
    [ -n "$vm_id" ] && XDG_RUNTIME_DIR=$tmp/rt build/bin/supermachine stop "$vm_id"
    rm -rf "$tmp"
}
trap cleanup EXIT
build/bin/supermachine-agent --listen "unix:$tmp/exec.sock" 2>"$tmp/agent.log" &
agent=$!
while [ ! -S "$tmp/exec.sock" ]; do sleep 0.05; done
roundtrips=${1:-300}
runs=${2:-5}
vm_opt=
if [ $vm = 1 ]; then
    mkdir -m 700 "$tmp/rt"
    vm_id=$(XDG_RUNTIME_DIR=$tmp/rt build/bin/supermachine start --cpus 2)
    vm_opt="--vm $tmp/rt/supermachine/vms/$vm_id/cell/exec.sock"
    echo "VM $vm_id: 2 vCPUs, 256 MiB${KVMBOX:+; inside kvmbox (emulated): ratios only}"
fi
build/bench/exec_bench --mib "$mib" $ratios $vm_opt "$tmp/exec.sock" "$roundtrips" "$runs"
