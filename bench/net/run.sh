#!/usr/bin/env bash
# bench/net: the guest's network, guest -> host TCP, three paths side by side
# in one run, in alternating rounds:
#
#   ours      our guest (supermachine start: build/guest/bzImage and
#             initramfs.cpio, 256 MiB, 1 vCPU), eth0 -> our virtio-net ->
#             the VMM's libslirp NAT and egress filter -> the host's
#             127.0.0.1, reached as 10.0.2.2 with --allow 10.0.2.2:PORT
#   loopback  the same sender as a process of the host, to 127.0.0.1: the
#             floor, what the host's own TCP costs
#   qemu      the same guest kernel under qemu-system-x86_64 -M microvm
#             -enable-kvm -cpu host, 256 MiB, 1 vCPU, with -netdev user
#             (QEMU's slirp) and virtio-net-device (virtio-mmio), sending to
#             10.0.2.2 too; its /init is bench/net/qemu-init.sh
#
#   bench/net/run.sh [MIB [CONNS [ROUNDS]]]     (default 32 500 3)
#
# The figures, each a median over ROUNDS rounds (one per path per round; the
# order of the three rotates from round to round):
#   throughput  MiB/s: one TCP connection carries MIB MiB of zeros from the
#               sender (128 KiB writes) to the receiver (256 KiB reads); timed
#               on the host from the receiver's accept() to its EOF
#   conn rate   connections/s: CONNS TCP connections one after the other,
#               each connect, one byte out, one byte back, close; timed on
#               the host from the accept() of the run's opening connection to
#               the close of its last
# and the ratios ours/loopback and ours/qemu of each (above 1: ours faster).
# Every path runs the same sender, bench/net/net_worker.c (static, musl), and
# reaches the same receiver and clock, bench/net/net_bench.c, on the host's
# 127.0.0.1; booting a guest and starting a sender lie outside what is timed.
# One small job per path first, uncounted (it also waits for each sender to
# be up).
#
# Builds what it needs into build/bench (net_bench, net_worker, the QEMU
# guest's initramfs). Needs `make all kernel`, qemu-system-x86_64 and
# busybox-static. Where /dev/kvm cannot run standard guests (PVM, see
# `supermachine doctor`) it runs itself inside tools/kvmbox (2 GiB, one
# emulated CPU shared by the receiver, both VMMs and the loopback sender).
# There everything, the host's own loopback included, runs at emulation
# speed: the absolute figures are those of an emulated machine, and only the
# ratios within one run mean anything.
set -euo pipefail
cd "$(dirname "$0")/../.."
mib=${1:-32}
conns=${2:-500}
rounds=${3:-3}
for n in "$mib" "$conns" "$rounds"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/net/run.sh [MIB [CONNS [ROUNDS]]]" >&2; exit 2; }
done

qemu_initrd=build/bench/net-qemu-initramfs.cpio
if [[ -z ${KVMBOX:-} ]]; then   # inside the box the tree is read-only: build outside
    make -s build/bin/supermachine build/bin/supermachine-vmm build/bin/mkinitramfs build/guest/initramfs.cpio
    mkdir -p build/bench
    flags=(-std=c11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla)
    cc "${flags[@]}" bench/net/net_bench.c -o build/bench/net_bench
    musl-gcc "${flags[@]}" -static bench/net/net_worker.c -o build/bench/net_worker
    build/bin/mkinitramfs -o "$qemu_initrd" -C . bench/net/qemu-initramfs.list
fi
for f in build/guest/bzImage build/guest/initramfs.cpio build/bench/net_bench build/bench/net_worker "$qemu_initrd"; do
    [[ -e $f ]] || { echo "bench/net: $f is missing; run: make all kernel" >&2; exit 1; }
done
if ! build/bin/supermachine doctor --quiet; then
    if [[ -n ${KVMBOX:-} ]]; then
        echo "bench/net: no usable KVM even inside kvmbox:" >&2
        build/bin/supermachine doctor >&2 || true
        exit 1
    fi
    echo "bench/net: this host cannot run guests directly; running inside tools/kvmbox" >&2
    exec tools/kvmbox --mem 2048 -- "$0" "$@"
fi
command -v qemu-system-x86_64 >/dev/null ||
    { echo "bench/net: qemu-system-x86_64 is missing (scripts/deps.sh)" >&2; exit 1; }

sm=build/bin/supermachine
tmp=$(mktemp -d /tmp/sm-bench-net.XXXXXX)
mkdir -m 700 "$tmp/rt"
export XDG_RUNTIME_DIR=$tmp/rt SUPERMACHINE_IMAGES=$tmp/images
export SUPERMACHINE_VMM=$PWD/build/bin/supermachine-vmm
server= vm= ours= qemu= loop=
cleanup() {
    local rc=$?
    set +e
    [[ -n $vm ]] && "$sm" stop "$vm" >/dev/null 2>&1
    for p in $ours $qemu $loop $server; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench/net: $mib MiB streams, $conns connections a run, $rounds rounds; guests: 256 MiB, 1 vCPU"
if [[ -n ${KVMBOX:-} ]]; then
    echo "bench/net: inside tools/kvmbox: an EMULATED host (QEMU TCG, nested SVM), the loopback included;"
    echo "bench/net: the absolute figures are an emulated machine's; only the ratios mean anything"
fi

build/bench/net_bench serve >"$tmp/server.log" 2>"$tmp/server.err" &
server=$!
port=
for ((i = 0; i < 100; i++)); do
    port=$(awk '$1 == "port" { print $2; exit }' "$tmp/server.log" 2>/dev/null)
    [[ -n $port ]] && break
    sleep 0.1
done
[[ -n $port ]] || { echo "bench/net: the receiver did not start: $(cat "$tmp/server.err")" >&2; exit 1; }
echo "bench/net: receiver on 127.0.0.1:$port"

# The loopback sender: the same static binary, on the host.
build/bench/net_worker 127.0.0.1 "$port" loopback 2>"$tmp/loopback.err" &
loop=$!

# Ours: a VM of our own, the sender staged into it, reaching the receiver as 10.0.2.2.
vm=$("$sm" start --allow "10.0.2.2:$port" --timeout 600 2>"$tmp/start.err") ||
    { echo "bench/net: supermachine start failed: $(cat "$tmp/start.err")" >&2; vm=; exit 1; }
echo "bench/net: ours: VM $vm up after ${SECONDS} s; eth0 virtio features (bit 0 first)" \
    "$("$sm" exec "$vm" -- cat /sys/class/net/eth0/device/features 2>&1)"
"$sm" exec "$vm" --stage /tmp/net_worker="$PWD/build/bench/net_worker:755" -- \
    /tmp/net_worker 10.0.2.2 "$port" ours >"$tmp/ours.out" 2>&1 &
ours=$!

# QEMU: the same kernel, the sender in a small initramfs of its own.
qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp 1 -m 256 -nodefaults -no-user-config \
    -display none -no-reboot -serial "file:$tmp/qemu-console.log" \
    -kernel build/guest/bzImage -initrd "$qemu_initrd" \
    -append "console=ttyS0 reboot=k panic=-1 quiet lpj=1000000 tsc=reliable nb_port=$port" \
    -netdev user,id=n0 -device virtio-net-device,netdev=n0 2>"$tmp/qemu.err" &
qemu=$!

paths=(ours loopback qemu)
declare -A sender=([ours]=$ours [loopback]=$loop [qemu]=$qemu)
# job PATH JOB...: one job of a path's sender; its result line goes to
# results. Fails at once if that path's sender (the exec, QEMU, the process)
# ends first.
job() {
    local out=$tmp/job.out pid
    build/bench/net_bench job "$port" 900 "$@" >"$out" &
    pid=$!
    wait -n "$pid" "${sender[$1]}" || true
    if kill -0 "$pid" 2>/dev/null || ! wait "$pid"; then
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
        echo "bench/net: $1: job '${*:2}' failed: $(cat "$out")" >&2
        case $1 in
            ours) echo "bench/net: ours: the exec: $(tail -n 5 "$tmp/ours.out" | tr '\n' ' ')" >&2 ;;
            qemu) echo "bench/net: qemu: $(tr '\n' ' ' <"$tmp/qemu.err") console: $(tail -n 8 "$tmp/qemu-console.log" | tr '\n' '|')" >&2 ;;
            loopback) echo "bench/net: loopback: $(tail -n 3 "$tmp/loopback.err" | tr '\n' ' ')" >&2 ;;
        esac
        return 1
    fi
    cat "$out" >>"$tmp/results"
}

echo "bench/net: warming up (one 1 MiB stream and 10 connections a path, uncounted; waits for QEMU's boot)"
for p in "${paths[@]}"; do
    job "$p" T "warm-$p" 1
    job "$p" R "warmr-$p" 10
done
grep -m1 "eth0 up" "$tmp/qemu-console.log" | sed 's/^/bench\/net: qemu: /' || true
echo "bench/net: all three senders answered; warm-up done at ${SECONDS} s"
: >"$tmp/results"

for ((r = 0; r < rounds; r++)); do
    order=("${paths[@]:r%3}" "${paths[@]:0:r%3}")
    for p in "${order[@]}"; do
        job "$p" T "$p-t$((r + 1))" "$mib"
    done
    for p in "${order[@]}"; do
        job "$p" R "$p-c$((r + 1))" "$conns"
    done
    echo "bench/net: round $((r + 1)) of $rounds done at ${SECONDS} s (order: ${order[*]})"
done
for p in "${paths[@]}"; do
    build/bench/net_bench job "$port" 60 "$p" Q >/dev/null || echo "bench/net: $p did not quit" >&2
done

# results: "T PATH-tN BYTES NS" and "R PATH-cN COUNT NS", one a job.
awk -v rounds="$rounds" -v mib="$mib" -v conns="$conns" '
function median(list,    v, n, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{
    split($2, tag, "-"); p = tag[1]; round = substr(tag[2], 2)
    if ($1 == "T") { v = $3 / 1048576 / ($4 / 1e9); tput[p] = tput[p] " " v; tr[p, round] = v }
    if ($1 == "R") { v = $3 / ($4 / 1e9); rate[p] = rate[p] " " v; cr[p, round] = v }
}
END {
    printf "\nper round       %-26s %s\n", "throughput, MiB/s", "connections/s"
    printf "                %8s %8s %8s   %8s %8s %8s\n", "ours", "loopback", "qemu", "ours", "loopback", "qemu"
    for (r = 1; r <= rounds; r++)
        printf "round %-9d %8.2f %8.2f %8.2f   %8.1f %8.1f %8.1f\n", r, tr["ours", r], tr["loopback", r],
            tr["qemu", r], cr["ours", r], cr["loopback", r], cr["qemu", r]
    to = median(tput["ours"]); tl = median(tput["loopback"]); tq = median(tput["qemu"])
    co = median(rate["ours"]); cl = median(rate["loopback"]); cq = median(rate["qemu"])
    printf "\nmedians of %d rounds\n", rounds
    printf "throughput (%d MiB, 1 connection)  ours %.2f MiB/s, loopback %.2f MiB/s, qemu -netdev user %.2f MiB/s\n",
        mib, to, tl, tq
    printf "connection rate (%d in sequence)   ours %.1f /s, loopback %.1f /s, qemu -netdev user %.1f /s\n",
        conns, co, cl, cq
    printf "ratios            ours/loopback   ours/qemu\n"
    printf "throughput        %13.3f   %9.3f\n", to / tl, to / tq
    printf "connection rate   %13.3f   %9.3f\n", co / cl, co / cq
}' "$tmp/results"
if [[ -n ${KVMBOX:-} ]]; then
    echo "(inside tools/kvmbox: every figure above was measured on an emulated host; compare only the ratios)"
fi
