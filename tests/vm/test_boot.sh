# tests/vm/test_boot.sh: `supermachine boot` (issue 2), sourced by run-all.sh
# after lib.sh. Exit statuses under test: 0 ready and powered off, 1 host or
# setup error, 2 usage, 3 guest panic, 4 not ready in time.

READY_LINE='^boot-to-ready: [0-9]+(\.[0-9]+)? ms$'

# Boots to ready with N vCPUs; the guest must then power itself off.
t_boot_ready() {
    boot --cpus "$1" --timeout 120
    expect_status 0 &&
        expect_grep "$T/out" "$READY_LINE" "the boot-to-ready line on stdout" &&
        echo "info: $(grep -aE "$READY_LINE" "$T/out"), ${boot_ms} ms start to exit"
}

# The agent said ready, then powered off, in that order, on the console.
t_poweroff() {
    boot --cpus 1 --timeout 120
    expect_status 0 &&
        expect_grep "$T/console" 'supermachine-agent: ready' "the agent's ready line on the console" &&
        expect_grep "$T/console" 'supermachine-agent: powering off' "the agent's poweroff line on the console" || return 1
    local ready off
    ready=$(grep -naE 'supermachine-agent: ready' "$T/console" | head -n 1 | cut -d: -f1)
    off=$(grep -naE 'supermachine-agent: powering off' "$T/console" | tail -n 1 | cut -d: -f1)
    if ((off <= ready)); then
        echo "the poweroff line (line $off) comes before the ready line (line $ready)"
        show_boot
        return 1
    fi
    # Nothing from the agent after it said it powers off.
    if tail -n +"$((off + 1))" "$T/console" | grep -qaE 'supermachine-agent:'; then
        echo "the agent printed after its poweroff line"
        show_boot
        return 1
    fi
}

# No init: the kernel panics; boot says so with the console's last lines.
t_panic() {
    boot --timeout 120 --cmdline "rdinit=/nonexistent"
    expect_status 3 &&
        expect_grep "$T/err" '[Pp]anic' "'panic' on stderr" &&
        expect_grep "$T/err" 'Kernel panic|VFS:|not syncing' "the console's panic lines on stderr" &&
        expect_no_grep "$T/out" "$READY_LINE" "boot-to-ready line"
}

# An init that never signals ready: status 4 after --timeout, promptly.
t_timeout() {
    local limit=20 slack=15
    boot --initrd "$SM_HANG_INITRD" --timeout "$limit"
    expect_status 4 &&
        expect_grep "$T/err" '[Tt]ime(d)? ?out|not ready' "the timeout on stderr" &&
        expect_grep "$T/err" 'init_hang: PID 1 up' "the console's last lines on stderr" || return 1
    if ((boot_ms > (limit + slack) * 1000)); then
        echo "boot took ${boot_ms} ms with --timeout $limit: more than ${slack} s late"
        show_boot
        return 1
    fi
    echo "info: ended after ${boot_ms} ms with --timeout $limit"
}

# Option checks need no VM: a clear message, status 2 (usage) or 1, never a
# crash (a signal gives 128+N).
t_bad_option() {
    local want_word=$1
    shift
    "$SM_BIN" boot "$@" >"$T/out" 2>"$T/err" </dev/null
    boot_status=$?
    expect_status 1 2 &&
        expect_grep "$T/err" "supermachine boot: .*$want_word" "a message naming '$want_word'"
}

# These tests run only where guests can run (tests/run picks this host or
# kvmbox), so doctor must agree: exit 0 and a hardware-KVM verdict.
t_doctor() {
    "$SM_BIN" doctor >"$T/out" 2>"$T/err"
    boot_status=$?
    expect_status 0 &&
        expect_grep "$T/out" 'verdict +hardware KVM' "a hardware-KVM verdict" &&
        expect_no_grep "$T/out" 'what to do' "advice" &&
        "$SM_BIN" doctor --quiet >"$T/quiet" 2>&1 &&
        if [[ -s $T/quiet ]]; then echo "doctor --quiet printed: $(cat "$T/quiet")"; return 1; fi
}

check "doctor: guests can run where the VM tests run" t_doctor
check "boot: ready with 1 vCPU" t_boot_ready 1
check "boot: ready with 2 vCPUs" t_boot_ready 2
check "boot: the guest powers itself off after ready" t_poweroff
check "boot: a guest panic gives status 3" t_panic
check "boot: no ready signal gives status 4 after --timeout" t_timeout
check "boot: --cpus 0 is refused" t_bad_option cpus --kernel "$SM_KERNEL" --initrd "$SM_INITRD" --cpus 0
check "boot: --memory 1 is refused" t_bad_option memory --kernel "$SM_KERNEL" --initrd "$SM_INITRD" --memory 1
check "boot: a missing kernel file is refused" t_bad_option /nonexistent/bzImage --kernel /nonexistent/bzImage --initrd "$SM_INITRD"
check "boot: an unknown flag is refused" t_bad_option frobnicate --kernel "$SM_KERNEL" --initrd "$SM_INITRD" --frobnicate
