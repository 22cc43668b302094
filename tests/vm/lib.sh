# tests/vm/lib.sh: helpers for the VM test scripts (sourced by run-all.sh).
#
#   check NAME COMMAND...   run one test (a shell function or a program) in
#                           its own process group with a time limit
#                           (SM_CHECK_TIMEOUT, default 300 s); print "ok NAME"
#                           or "FAIL NAME" and the tail of its output; count.
#   boot ARGS...            run `supermachine boot` with the standard kernel
#                           and initramfs (override with --kernel/--initrd in
#                           ARGS, later options win) and a console file; sets
#                           boot_status and boot_ms (wall clock, start to
#                           exit) and leaves $T/out, $T/err, $T/console.
#   expect_status N...      the last boot's status is one of N...
#   expect_grep FILE ERE WHAT   FILE has a line matching ERE (grep -E)
#   expect_no_grep FILE ERE WHAT
#
# Inside a check, $T is a fresh directory for that test; lines the test prints
# starting with "info: " are shown under its "ok" line. Assertions print what
# went wrong, with the boot's stdout, stderr and console tails, and return 1;
# a test function chains them with &&, or returns on the first failure.

SM_ROOT=${SM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SM_BUILD=${SM_BUILD:-$SM_ROOT/build}
SM_BIN=${SM_BIN:-$SM_BUILD/bin/supermachine}
SM_KERNEL=${SM_KERNEL:-$SM_ROOT/build/guest/bzImage}
SM_INITRD=${SM_INITRD:-$SM_BUILD/guest/initramfs.cpio}
SM_VM_WORK=${SM_VM_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/sm-vm.XXXXXX")}
vm_passed=0
vm_failed=0
vm_checks=0

show_file() {   # show_file LABEL FILE [LINES]
    if [[ -s $2 ]]; then
        echo "--- $1 (last ${3:-15} lines):"
        tail -n "${3:-15}" "$2" | sed 's/^/  /'
    else
        echo "--- $1: (empty)"
    fi
}

show_boot() {
    echo "--- boot exit status: ${boot_status:-?}, ${boot_ms:-?} ms wall clock"
    show_file "stdout" "$T/out"
    show_file "stderr" "$T/err"
    show_file "console" "$T/console"
}

now_ms() {
    local s
    s=$(date +%s%N)
    echo $((s / 1000000))
}

boot() {
    local start
    start=$(now_ms)
    echo "+ supermachine boot $*" >&2
    # A backstop far beyond any --timeout the tests pass: boot must end by
    # itself, and the checks below say so when it took too long.
    timeout -k 5 600 "$SM_BIN" boot --kernel "$SM_KERNEL" --initrd "$SM_INITRD" \
        --console "$T/console" "$@" >"$T/out" 2>"$T/err" </dev/null
    boot_status=$?
    boot_ms=$(($(now_ms) - start))
}

expect_status() {
    local want
    for want in "$@"; do
        [[ $boot_status == "$want" ]] && return 0
    done
    echo "expected exit status $*, got $boot_status"
    show_boot
    return 1
}

expect_grep() {
    if grep -qaE -- "$2" "$1" 2>/dev/null; then
        return 0
    fi
    echo "expected $3 (a line matching /$2/ in $(basename "$1"))"
    show_boot
    return 1
}

expect_no_grep() {
    if ! grep -qaE -- "$2" "$1" 2>/dev/null; then
        return 0
    fi
    echo "expected no $3 (/$2/ in $(basename "$1")), found: $(grep -maE1 -- "$2" "$1")"
    show_boot
    return 1
}

check() {
    local name=$1 limit=${SM_CHECK_TIMEOUT:-300} status pid killer
    shift
    vm_checks=$((vm_checks + 1))
    T=$SM_VM_WORK/$vm_checks
    mkdir -p "$T"
    local log=$T/log
    # Own process groups (set -m), so that a timeout stops the test and
    # everything it started, and the killer's sleep with it.
    set -m
    ( "$@" ) >"$log" 2>&1 </dev/null &
    pid=$!
    ( sleep "$limit"; echo "check: timed out after $limit s (SM_CHECK_TIMEOUT)" >>"$log"
      kill -TERM -- "-$pid"; sleep 3; kill -KILL -- "-$pid" ) >/dev/null 2>&1 &
    killer=$!
    set +m
    wait "$pid"
    status=$?
    kill -- "-$killer" 2>/dev/null
    wait "$killer" 2>/dev/null
    if ((status == 0)); then
        vm_passed=$((vm_passed + 1))
        echo "ok   $name"
        sed -n 's/^info: /     /p' "$log"
    else
        vm_failed=$((vm_failed + 1))
        echo "FAIL $name (status $status)"
        tail -n 40 "$log" | sed 's/^/     | /'
    fi
}
