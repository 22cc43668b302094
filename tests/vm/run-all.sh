#!/usr/bin/env bash
# tests/vm/run-all.sh: every VM test (tests/vm/test_*.sh), on a host whose
# /dev/kvm runs standard guests: hardware KVM, or inside tools/kvmbox
# (tests/run picks; by hand: tools/kvmbox -- tests/vm/run-all.sh).
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

for t in tests/vm/test_*.sh; do
    echo "--- $t"
    source "$t"
done
summary
