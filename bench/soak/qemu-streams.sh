#!/usr/bin/env bash
# bench/soak/qemu-streams.sh: the peer of `bench/soak/run.sh streams`. The same
# guest (our kernel and initramfs, the agent as PID 1, 2 vCPUs, 512 MiB)
# under QEMU's -M microvm with QEMU's vhost-vsock instead of our VMM, and
# the same 64 MiB streams out of it through the agent, to tell a fault of our
# VMM from one of the host running it.
#
#   bench/soak/qemu-streams.sh [ROUNDS [MIB]]     (default 10 64)
#
# Each round: `supermachine exec --socket S -- head -c MIB MiB /dev/zero`,
# counted by wc -c, through socat from a Unix socket to the guest's vsock
# port 1024. Prints each round and how the VM ended; the last line is
# "qemu-streams: N rounds, F failed". Where the host cannot run guests, it
# runs inside tools/kvmbox with the vhost-vsock modules loaded.
set -uo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-10}
mib=${2:-64}
for tool in qemu-system-x86_64 socat; do
    command -v "$tool" >/dev/null || { echo "qemu-streams: $tool is missing (scripts/deps.sh)" >&2; exit 2; }
done
for f in build/guest/bzImage build/guest/initramfs.cpio build/bin/supermachine; do
    [[ -e $f ]] || { echo "qemu-streams: $f is missing; run: make all kernel" >&2; exit 2; }
done
if ! build/bin/supermachine doctor --quiet; then
    [[ -z ${KVMBOX:-} ]] || { echo "qemu-streams: no usable KVM even inside kvmbox" >&2; exit 2; }
    KVMBOX_EXTRA_MODULES="vhost_iotlb vhost vsock vmw_vsock_virtio_transport_common vhost_vsock" \
        exec tools/kvmbox --mem 4096 -- "$0" "$@"
fi
[[ -c /dev/vhost-vsock ]] || { echo "qemu-streams: no /dev/vhost-vsock (modprobe vhost_vsock)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/sm-qemu-streams.XXXXXX)
cleanup() {
    [[ -n ${relay:-} ]] && kill "$relay" 2>/dev/null && wait "$relay" 2>/dev/null
    [[ -n ${qemu:-} ]] && kill "$qemu" 2>/dev/null && wait "$qemu" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
cid=$((1000 + $$ % 100000))
qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp 2 -m 512 -nodefaults -no-user-config \
    -display none -no-reboot -serial "file:$tmp/console.log" \
    -kernel build/guest/bzImage -initrd build/guest/initramfs.cpio \
    -append "console=ttyS0 reboot=k panic=-1 ${QS_QUIET-quiet} lpj=1000000 tsc=reliable i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd" \
    -device "vhost-vsock-device,guest-cid=$cid" 2>"$tmp/qemu.err" &
qemu=$!
for ((i = 0; i < 1200; i++)); do
    grep -q "supermachine-agent: ready" "$tmp/console.log" 2>/dev/null && break
    kill -0 "$qemu" 2>/dev/null || break
    sleep 0.1
done
grep -q "supermachine-agent: ready" "$tmp/console.log" 2>/dev/null ||
    { echo "qemu-streams: the guest did not get ready under QEMU"; cat "$tmp/qemu.err" "$tmp/console.log"; exit 1; }
socat "UNIX-LISTEN:$tmp/exec.sock,fork" "VSOCK-CONNECT:$cid:1024" 2>"$tmp/socat.err" &
relay=$!
for ((i = 0; i < 50; i++)); do
    [[ -S $tmp/exec.sock ]] && break
    sleep 0.1
done

echo "qemu-streams: guest $(build/bin/supermachine exec --socket "$tmp/exec.sock" -- sh -c \
    'grep -m1 ^flags /proc/cpuinfo; cat /sys/devices/system/clocksource/clocksource0/current_clocksource' | tr '\n' ' ')"
want=$((mib << 20))
failed=0
for ((r = 1; r <= rounds; r++)); do
    got=$(build/bin/supermachine exec --socket "$tmp/exec.sock" -- head -c "$want" /dev/zero 2>"$tmp/exec.err" | wc -c)
    if [[ $got == "$want" ]] && ! [[ -s $tmp/exec.err ]]; then
        echo "qemu-streams: round $r whole"
    else
        failed=$((failed + 1))
        echo "qemu-streams: round $r FAILED: $got of $want bytes; $(tr '\n' ' ' <"$tmp/exec.err")"
        [[ -s $tmp/socat.err ]] && echo "qemu-streams: socat: $(tail -n 3 "$tmp/socat.err" | tr '\n' ' ')"
        ((r == 1)) && echo "qemu-streams: the guest console: $(grep -i -E "virtio|vsock|mmio|command line" "$tmp/console.log" | tail -n 12 | tr '\n' '|')"
        kill -0 "$qemu" 2>/dev/null || { echo "qemu-streams: QEMU has exited: $(cat "$tmp/qemu.err")"; break; }
    fi
done
kill -0 "$qemu" 2>/dev/null && echo "qemu-streams: the VM is still running" ||
    echo "qemu-streams: the VM ended; console: $(tail -n 5 "$tmp/console.log" | tr '\n' '|')"
echo "qemu-streams: $rounds rounds, $failed failed"
((failed == 0))
