#!/bin/sh
# The price of the Python binding: `exec(['true'])` from Python
# (Agent(socket).exec) against the same from C (sm_exec_output), through a
# local agent and a VM's agent, side by side in one run: BLOCKS blocks of N
# round trips each, C and Python alternating, so drift hits both. Prints the
# median of each side's block medians and the ratio Python/C.
#
#   bench/exec/python_vs_c.sh [BLOCKS] [N]     (defaults 6 and 50)
#
# Needs `make python`. Where /dev/kvm cannot run standard guests it runs
# itself in tools/kvmbox, as bench/exec/run.sh does: only the ratios mean
# anything there.
set -eu
cd "$(dirname "$0")/../.."
if [ -z "${KVMBOX:-}" ]; then
    make -s all python
    mkdir -p build/bench
    cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude bench/exec/exec_bench.c \
        build/lib/libsupermachine.a -o build/bench/exec_bench -lpthread -lz
    if ! build/bin/supermachine doctor --quiet; then
        echo "bench/exec: this host cannot run guests directly; running inside tools/kvmbox" >&2
        exec tools/kvmbox -- "$0" "$@"
    fi
fi
blocks=${1:-6}
n=${2:-50}
tmp=$(mktemp -d /tmp/sm-bench.XXXXXX)
agent=
vm_id=
cleanup() {
    [ -n "$agent" ] && kill "$agent" 2>/dev/null
    [ -n "$vm_id" ] && XDG_RUNTIME_DIR=$tmp/rt SUPERMACHINE_IMAGES=$tmp/images build/bin/supermachine stop "$vm_id"
    rm -rf "$tmp"
}
trap cleanup EXIT
build/bin/supermachine-agent --listen "unix:$tmp/exec.sock" 2>"$tmp/agent.log" &
agent=$!
while [ ! -S "$tmp/exec.sock" ]; do sleep 0.05; done
mkdir -m 700 "$tmp/rt" "$tmp/images"
vm_id=$(XDG_RUNTIME_DIR=$tmp/rt SUPERMACHINE_IMAGES=$tmp/images build/bin/supermachine start)
vm_sock=$tmp/rt/supermachine/vms/$vm_id/cell/exec.sock
: >"$tmp/c"
: >"$tmp/py"
b=0
while [ $b -lt "$blocks" ]; do
    build/bench/exec_bench --roundtrip-block "$n" "$tmp/exec.sock" "$vm_sock" >>"$tmp/c"
    PYTHONPATH=build/python python3 bench/exec/exec_py.py "$n" "$tmp/exec.sock" "$vm_sock" >>"$tmp/py"
    b=$((b + 1))
done
python3 - "$tmp/c" "$tmp/py" "$blocks" "$n" "${KVMBOX:+kvmbox}" <<'PY'
import statistics, sys
c = [list(map(float, l.split())) for l in open(sys.argv[1])]
py = [list(map(float, l.split())) for l in open(sys.argv[2])]
print("exec(['true']) round trip, median of %s blocks of %s, C then Python%s:"
      % (sys.argv[3], sys.argv[4], " (inside kvmbox: ratios only)" if sys.argv[5] else ""))
for i, where in enumerate(("local agent", "agent in a VM")):
    mc = statistics.median(r[i] for r in c)
    mp = statistics.median(r[i] for r in py)
    figures = "" if sys.argv[5] else "C %8.1f us  Python %8.1f us  " % (mc, mp)
    print("  %-14s %sratio Python/C %.2f" % (where, figures, mp / mc))
PY
