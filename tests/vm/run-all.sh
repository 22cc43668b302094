#!/usr/bin/env bash
# tests/vm/run-all.sh [SHARD...]: the VM tests (tests/vm/test_SHARD.sh; all of
# them by default: boot confine exec_vm image net pool python snapshot
# volume), on a host whose /dev/kvm runs standard guests: hardware KVM, or
# inside tools/kvmbox
# (tests/run picks, and runs one box per shard there; by hand:
# tools/kvmbox -- tests/vm/run-all.sh pool). The shards share nothing.
# Needs `make all kernel`. The last line is "N passed, N failed"; the exit
# status is non-zero when a test failed.
#   SM_BUILD (default build), SM_CHECK_TIMEOUT (seconds per test, default 300)
set -uo pipefail
cd "$(dirname "$0")/../.."
SM_ROOT=$PWD
SM_VM_WORK=$(mktemp -d "${TMPDIR:-/tmp}/sm-vm.XXXXXX")
trap 'rm -rf "$SM_VM_WORK"' EXIT
source tests/vm/lib.sh

summary() {
    echo
    echo "$vm_passed passed, $vm_failed failed"
    ((vm_failed == 0))
    exit
}

# What every test needs; without it, say what to build and count one failure.
missing=()
for f in "$SM_BIN" "$SM_KERNEL" "$SM_INITRD" "$SM_BUILD/bin/mkinitramfs" "$SM_BUILD/guest/test-init_hang"; do
    [[ -e $f ]] || missing+=("$f")
done
if ((${#missing[@]})); then
    echo "FAIL VM tests: missing ${missing[*]} (run: make all kernel)"
    vm_failed=$((vm_failed + 1))
    summary
fi

# The hang initramfs: in build/guest when writable, else (inside kvmbox, where
# this machine's files are read-only) in the work dir.
SM_HANG_INITRD=$SM_BUILD/guest/test-hang.cpio
if ! [[ -w $SM_BUILD/guest ]]; then
    SM_HANG_INITRD=$SM_VM_WORK/test-hang.cpio
fi
if ! "$SM_BUILD/bin/mkinitramfs" -o "$SM_HANG_INITRD" -C "$SM_BUILD" tests/vm/hang-initramfs.list; then
    echo "FAIL VM tests: building $SM_HANG_INITRD failed"
    vm_failed=$((vm_failed + 1))
    summary
fi

if ! "$SM_BIN" doctor --quiet; then
    echo "note: supermachine doctor says guests cannot run here; expect failures:"
    "$SM_BIN" doctor | sed 's/^/  /'
fi

shards=("$@")
if ((${#shards[@]} == 0)); then
    for t in tests/vm/test_*.sh; do
        t=${t#tests/vm/test_}
        shards+=("${t%.sh}")
    done
fi
for shard in "${shards[@]}"; do
    t=tests/vm/test_$shard.sh
    if [[ ! -f $t ]]; then
        echo "FAIL VM tests: no shard '$shard' ($t)"
        vm_failed=$((vm_failed + 1))
        continue
    fi
    echo "--- $t"
    source "$t"
done
summary
