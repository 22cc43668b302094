# tests/vm/test_snapshot.sh: snapshots and images (issue 5), sourced by
# run-all.sh after lib.sh.
#
#   1. supermachine-vmm --snapshot-when-ready bakes a snapshot (state + a
#      sparse memory file) that the rest use;
#   2. the library against VMs restored from it (build/tests/test_snapshot,
#      one check per test): restore, exec, snapshot again, restore that;
#      warm state kept, later state not; clones differ; the clock of an old
#      snapshot; 100 restores in a row leak nothing; a damaged snapshot
#      through sm_vm_start; and the ASan build of it with fewer restores;
#   3. damaged snapshots (state: flipped bytes, bad magic, wrong version,
#      truncated, padded, swapped sections, a section longer than the file, a
#      bad vCPU count; memory: missing or truncated; no state) are refused by
#      the VMM at once, status 1, with the message that names the damage;
#      and by `supermachine run DIR`, status 125;
#   4. `supermachine run -- sh -c 'echo hello; exit 3'` with no images: the
#      first run bakes the default image, the second restores it;
#   5. `supermachine snapshot ID NAME`: a running VM's written file is there
#      in `run NAME`.
# Everything lives under $SM_VM_WORK (tmpfs inside kvmbox): its own runtime
# folder, images folder and snapshots; nothing may be left running.

snap_rt=$SM_VM_WORK/snap-rt
snap_images=$SM_VM_WORK/snap-images
snap_dir=$SM_VM_WORK/snap-base
mkdir -p "$snap_rt" "$snap_images" && chmod 700 "$snap_rt"

snap_sm() { XDG_RUNTIME_DIR=$snap_rt SUPERMACHINE_IMAGES=$snap_images "$SM_BIN" "$@"; }

snap_vmm=$SM_BUILD/bin/supermachine-vmm
snap_bin=$SM_BUILD/tests/test_snapshot
# test_snapshot --damage STATE ACTION ARGS: see the damage mode in test_snapshot.c.
snap_damage() { "$snap_bin" --damage "$@"; }

# Processes of supermachine-vmm whose command line mentions our folders.
snap_our_vmms() {
    local f
    for f in /proc/[0-9]*/cmdline; do
        tr '\0' ' ' <"$f" 2>/dev/null | grep -F -e "$snap_rt/" -e "$SM_VM_WORK/snap-" |
            grep -q supermachine-vmm && {
            f=${f#/proc/}
            echo "${f%/cmdline}"
        }
    done
}

t_snap_bake() {
    local start ms apparent allocated
    # One bake, and it must restore: no second attempt (a snapshot that does
    # not restore is a bug; bench/soak/bakes.sh loops this by the hundred).
    rm -rf "$snap_dir"
    start=$(now_ms)
    timeout -k 5 300 "$snap_vmm" --kernel "$SM_KERNEL" --initrd "$SM_INITRD" --timeout 120 \
        --console "$T/console" --snapshot-when-ready "$snap_dir" >"$T/out" 2>"$T/err" </dev/null
    boot_status=$?
    ms=$(($(now_ms) - start))
    expect_status 0 || return 1
    echo "info: $(snap_damage "$snap_dir/state" vcpus | head -n 1)"
    snap_sm run "$snap_dir" -- true >"$T/verify" 2>&1 ||
        { echo "the bake does not restore: $(tail -c 300 "$T/verify" | tr '\n' ' ')"; return 1; }
    [[ -f $snap_dir/state && -f $snap_dir/memory ]] ||
        { echo "no state and memory in $snap_dir: $(ls -la "$snap_dir" 2>&1)"; return 1; }
    [[ $(head -c 8 "$snap_dir/state" | od -An -c | tr -d ' ') == 'SMSNAP\r\n' ]] ||
        { echo "the state file does not start with SMSNAP\\r\\n"; return 1; }
    apparent=$(stat -c %s "$snap_dir/memory")
    allocated=$(($(stat -c %b "$snap_dir/memory") * $(stat -c %B "$snap_dir/memory")))
    [[ $apparent == $((256 << 20)) ]] || { echo "memory file is $apparent bytes, want 256 MiB"; return 1; }
    # The guest touched a fraction of its memory: the rest must be holes.
    ((allocated < apparent / 2)) ||
        { echo "memory file is not sparse: $allocated bytes allocated of $apparent"; return 1; }
    [[ -z $(snap_our_vmms) ]] || { echo "the VMM is still running after --snapshot-when-ready"; return 1; }
    echo "info: baked in $ms ms; state $(stat -c %s "$snap_dir/state") bytes, memory $((allocated >> 20)) MiB allocated of $((apparent >> 20)) MiB"
    snap_damage "$snap_dir/state" list | tr '\n' ',' | sed 's/,$//; s/^/info: sections (type index bytes offset): /'
    echo
}

# One test of build/.../test_snapshot (a cmocka name pattern), or all of them.
t_snap_api() {
    local bin=$1 filter=$2 restores=$3 start status
    [[ -x $bin ]] || { echo "$bin is not built (make all-tests)"; return 1; }
    start=$(now_ms)
    SM_SNAPSHOT_DIR=$snap_dir SM_SNAPSHOT_RESTORES=$restores SM_TEST_FILTER=$filter \
        XDG_RUNTIME_DIR=$snap_rt CMOCKA_MESSAGE_OUTPUT=STDOUT "$bin" >"$T/out" 2>&1
    status=$?
    cat "$T/out"
    grep -aE '^(restore|[0-9]+ restores|after [0-9]+|snapshot [0-9.]+ s old|start from a damaged|VM [0-9a-f]{8}|the (baked )?snapshot after)' \
        "$T/out" | sed 's/^/info: /'
    grep -qaE '^\[  PASSED  \] [1-9][0-9]* test' "$T/out" || { echo "no test passed (filter $filter)"; return 1; }
    echo "info: $(($(now_ms) - start)) ms"
    return $status
}

# A damaged copy of the baked snapshot: a copy of its state, and its memory
# through a hard link (the VMM refuses a symbolic one) unless the damage is
# to the memory.
snap_copy() {
    local d=$1
    mkdir -p "$d" && cp "$snap_dir/state" "$d/state" &&
        { ln "$snap_dir/memory" "$d/memory" 2>/dev/null || cp --sparse=always "$snap_dir/memory" "$d/memory"; }
}

# Restores the snapshot in folder $1: the VMM must exit with status 1 within
# 30 s, say "cannot restore DIR: " and a message matching ERE $2, and leave
# no exec socket (it never served the guest).
snap_expect_refused() {
    local d=$1 ere=$2 start ms
    shift 2   # the rest: more arguments for the VMM
    start=$(now_ms)
    timeout -k 5 120 "$snap_vmm" --restore "$d" --timeout 60 --console "$T/console" \
        --exec-socket "$T/exec.sock" --control-socket "$T/control.sock" "$@" >"$T/out" 2>"$T/err" </dev/null
    boot_status=$?
    ms=$(($(now_ms) - start))
    expect_status 1 &&
        expect_grep "$T/err" "^supermachine-vmm: cannot restore $d: $ere" "the refusal naming the damage" || return 1
    ((ms < 30000)) || { echo "refused only after $ms ms"; show_boot; return 1; }
    [[ ! -e $T/exec.sock && ! -e $T/control.sock ]] || { echo "a socket was left behind"; return 1; }
    echo "info: $(sed 's/^supermachine-vmm: cannot restore [^:]*: //' "$T/err" | head -n 1) ($ms ms)"
}

# t_snap_damaged ERE DAMAGE ARGS...: damage a copy of the state file with
# test_snapshot --damage, then expect the refusal.
t_snap_damaged() {
    local ere=$1
    shift
    snap_copy "$T/snap" && snap_damage "$T/snap/state" "$@" || { echo "cannot damage a copy"; return 1; }
    cmp -s "$snap_dir/state" "$T/snap/state" && { echo "the damage changed nothing"; return 1; }
    snap_expect_refused "$T/snap" "$ere"
}

t_snap_state_truncated() {
    local size
    size=$(stat -c %s "$snap_dir/state")
    snap_copy "$T/snap" && truncate -s $((size / 2)) "$T/snap/state" &&
        snap_expect_refused "$T/snap" "snapshot state is truncated or padded: $((size / 2)) bytes where the header says $size"
}

t_snap_state_padded() {
    local size
    size=$(stat -c %s "$snap_dir/state")
    snap_copy "$T/snap" && truncate -s $((size + 8)) "$T/snap/state" &&
        snap_expect_refused "$T/snap" "snapshot state is truncated or padded: $((size + 8)) bytes where the header says $size"
}

t_snap_state_empty() {
    snap_copy "$T/snap" && : >"$T/snap/state" &&
        snap_expect_refused "$T/snap" "not a supermachine snapshot"
}

t_snap_state_missing() {
    snap_copy "$T/snap" && rm "$T/snap/state" &&
        snap_expect_refused "$T/snap" "cannot open $T/snap/state: No such file"
}

t_snap_state_folder() {
    snap_copy "$T/snap" && rm "$T/snap/state" && mkdir "$T/snap/state" &&
        snap_expect_refused "$T/snap" "$T/snap/state is not a snapshot state file"
}

# What a hostile hand may plant in a snapshot folder: a FIFO (whose open
# would wait forever) or a link where a file belongs; and a snapshot that
# asks for more than the caller allows. Each is refused before anything is
# mapped, with the reason.
t_snap_state_fifo() {
    snap_copy "$T/snap" && rm "$T/snap/state" && mkfifo "$T/snap/state" &&
        snap_expect_refused "$T/snap" "$T/snap/state is not a snapshot state file \(not a regular file\)"
}

t_snap_state_link() {
    snap_copy "$T/snap" && rm "$T/snap/state" && ln -s "$snap_dir/state" "$T/snap/state" &&
        snap_expect_refused "$T/snap" "$T/snap/state is not a snapshot state file \(a symbolic link\)"
}

t_snap_memory_fifo() {
    snap_copy "$T/snap" && rm "$T/snap/memory" && mkfifo "$T/snap/memory" &&
        snap_expect_refused "$T/snap" "snapshot memory $T/snap/memory is not a regular file"
}

t_snap_over_memory_limit() {
    snap_copy "$T/snap" &&
        snap_expect_refused "$T/snap" \
            "the snapshot asks for 256 MiB of memory; at most 128 MiB allowed \(--max-memory\)" --max-memory 128
}

t_snap_over_cpu_limit() {
    snap_copy "$T/snap" && snap_damage "$T/snap/state" vm-cpus 2 &&
        snap_expect_refused "$T/snap" "the snapshot asks for 2 vCPUs; at most 1 allowed \(--max-cpus\)" --max-cpus 1
}

t_snap_memory_missing() {
    snap_copy "$T/snap" && rm "$T/snap/memory" &&
        snap_expect_refused "$T/snap" "cannot open the snapshot's memory $T/snap/memory: No such file"
}

# One page short: a copy of the memory file, sparse, cut by 4 KiB.
t_snap_memory_truncated() {
    local size
    size=$(stat -c %s "$snap_dir/memory")
    snap_copy "$T/snap" && rm "$T/snap/memory" &&
        cp --sparse=always "$snap_dir/memory" "$T/snap/memory" && truncate -s $((size - 4096)) "$T/snap/memory" &&
        snap_expect_refused "$T/snap" \
            "snapshot memory $T/snap/memory is $((size - 4096)) bytes; the state says $size \\(truncated\\?\\)"
}

# The CLI: `supermachine run DIR` on a damaged snapshot fails with 125 and
# the reason, and leaves no VM folder.
t_snap_run_damaged() {
    local rc
    snap_copy "$T/snap" && snap_damage "$T/snap/state" flip 200 || return 1
    snap_sm run "$T/snap" -- echo should-not-run >"$T/out" 2>"$T/err"
    boot_status=$?
    expect_status 125 &&
        expect_grep "$T/err" "supermachine run: .*cannot restore $T/snap: snapshot state is corrupt \\(checksum mismatch\\)" \
            "the VMM's reason on stderr" &&
        expect_no_grep "$T/out" should-not-run "the command's output" || return 1
    rc=$(ls -A "$snap_rt/supermachine/vms" 2>/dev/null | wc -l)
    [[ $rc == 0 ]] || { echo "a VM folder was left: $(ls "$snap_rt/supermachine/vms")"; return 1; }
    echo "info: $(head -c 300 "$T/err")"
}

# First run with no images: bakes the default image, prints hello, exits 3.
# Second run: restores it (no baking line, the image untouched), exits 3.
# Their times are shown, not judged: a timing is no test (bench/ compares
# them), and this one failed at 2.0x while the machine was compiling.
t_snap_run_default() {
    local t1 t2 ms1 ms2 rc1 rc2 before after
    rm -rf "$T/images" && mkdir -p "$T/images"
    t1=$(now_ms)
    SUPERMACHINE_IMAGES=$T/images XDG_RUNTIME_DIR=$snap_rt "$SM_BIN" run -- sh -c 'echo hello; exit 3' \
        >"$T/out1" 2>"$T/err1" </dev/null
    rc1=$?
    ms1=$(($(now_ms) - t1))
    [[ $rc1 == 3 && $(cat "$T/out1") == hello ]] ||
        { echo "first run: status $rc1, stdout '$(cat "$T/out1")', stderr: $(cat "$T/err1")"; return 1; }
    grep -q 'baking the default image' "$T/err1" || { echo "first run did not bake: $(cat "$T/err1")"; return 1; }
    [[ -f $T/images/default/state && -f $T/images/default/memory ]] ||
        { echo "no default image after the first run: $(ls -laR "$T/images")"; return 1; }
    before=$(stat -c '%s %Y %b' "$T/images/default/state" "$T/images/default/memory")
    t2=$(now_ms)
    SUPERMACHINE_IMAGES=$T/images XDG_RUNTIME_DIR=$snap_rt "$SM_BIN" run -- sh -c 'echo hello; exit 3' \
        >"$T/out2" 2>"$T/err2" </dev/null
    rc2=$?
    ms2=$(($(now_ms) - t2))
    after=$(stat -c '%s %Y %b' "$T/images/default/state" "$T/images/default/memory")
    echo "info: first run (bakes) $ms1 ms, second run (restores) $ms2 ms: $(awk -v a="$ms1" -v b="$ms2" 'BEGIN { printf "%.1fx", a / b }') faster"
    [[ $rc2 == 3 && $(cat "$T/out2") == hello ]] ||
        { echo "second run: status $rc2, stdout '$(cat "$T/out2")', stderr: $(cat "$T/err2")"; return 1; }
    [[ ! -s $T/err2 ]] || { echo "second run said: $(cat "$T/err2")"; return 1; }
    [[ $before == "$after" ]] || { echo "the second run changed the image: $before -> $after"; return 1; }
    [[ $(ls -A "$snap_rt/supermachine/vms" 2>/dev/null | wc -l) == 0 ]] ||
        { echo "a VM folder was left: $(ls "$snap_rt/supermachine/vms")"; return 1; }
}

# `snapshot ID NAME`: a VM started from the base snapshot writes a file and
# is kept as the image NAME, running on (and paused, it stays paused); NAME
# again is refused (status 1) and replaced with --force; once ID is
# stopped, `run NAME` finds the file, and `images` lists NAME with the VM's
# memory and vCPUs.
t_snap_cli_snapshot() {
    local id rc out
    id=$(snap_sm start "$snap_dir" 2>"$T/err") || { echo "start failed: $(cat "$T/err")"; return 1; }
    snap_sm exec "$id" -- sh -c 'echo kept-by-snapshot >/root/note' || { snap_sm stop "$id"; return 1; }
    snap_sm snapshot "$id" saved >"$T/out" 2>"$T/err"
    rc=$?
    [[ $rc == 0 && $(cat "$T/out") == saved ]] ||
        { echo "snapshot: status $rc, said: $(cat "$T/err")"; snap_sm stop "$id"; return 1; }
    [[ $(snap_sm exec "$id" -- cat /root/note) == kept-by-snapshot ]] ||
        { echo "the VM does not run on after its snapshot"; snap_sm stop "$id"; return 1; }
    snap_sm snapshot "$id" saved 2>"$T/err"
    rc=$?
    [[ $rc == 1 ]] && grep -q "an image named 'saved' exists already" "$T/err" ||
        { echo "a second snapshot to 'saved': status $rc, said: $(cat "$T/err")"; snap_sm stop "$id"; return 1; }
    snap_sm snapshot "$id" '../x' 2>"$T/err"
    rc=$?
    [[ $rc == 1 ]] && grep -q "is not valid" "$T/err" ||
        { echo "snapshot to '../x': status $rc, said: $(cat "$T/err")"; snap_sm stop "$id"; return 1; }
    snap_sm pause "$id" && snap_sm snapshot --force "$id" saved >/dev/null 2>"$T/err" ||
        { echo "snapshot --force of a paused VM failed: $(cat "$T/err")"; snap_sm stop "$id"; return 1; }
    snap_sm ps >"$T/ps"
    grep -qE "^$id +paused " "$T/ps" || { echo "the paused VM did not stay paused: $(cat "$T/ps")"; snap_sm stop "$id"; return 1; }
    snap_sm stop "$id" || return 1
    out=$(snap_sm run saved -- cat /root/note 2>"$T/err")
    rc=$?
    [[ $rc == 0 && $out == kept-by-snapshot ]] || { echo "run saved: status $rc, '$out', said: $(cat "$T/err")"; return 1; }
    snap_sm images >"$T/images"
    grep -qE "^saved +256Mi +1 " "$T/images" || { echo "images: $(cat "$T/images")"; return 1; }
    ls -A "$snap_images" | grep -q snapshot- && { echo "a temporary folder was left: $(ls -A "$snap_images")"; return 1; }
    snap_sm rmi saved
}

t_snap_nothing_left() {
    local left
    left=$(snap_our_vmms)
    [[ -z $left ]] || { echo "VMM processes left: $left"; return 1; }
    [[ $(ls -A "$snap_rt/supermachine/vms" 2>/dev/null | wc -l) == 0 ]] ||
        { echo "folders left: $(ls "$snap_rt/supermachine/vms")"; return 1; }
}

check "snapshot: --snapshot-when-ready bakes state + a sparse memory file" t_snap_bake
check "snapshot api: restore, exec, snapshot again, restore that (x2): same results; warm file kept, later file not" \
    t_snap_api "$snap_bin" test_resnapshot_same_results 0
check "snapshot api: two clones read different uuid and urandom bytes" t_snap_api "$snap_bin" test_clones_differ 0
check "snapshot api: date +%s of a VM restored from an old snapshot is within 1 s of the host's" \
    t_snap_api "$snap_bin" test_clock_after_long_ago 0
check "snapshot api: 100 restores in a row leak nothing (fds, memory, processes, files)" \
    t_snap_api "$snap_bin" test_restores_leak_nothing 100
check "snapshot api: sm_vm_start refuses a damaged snapshot with the reason" \
    t_snap_api "$snap_bin" test_damaged_snapshot_refused 0
if [[ -x $SM_ROOT/build/asan/tests/test_snapshot && $SM_BUILD == "$SM_ROOT/build" ]]; then
    check "snapshot api (ASan): all of the above, 10 restores" \
        t_snap_api "$SM_ROOT/build/asan/tests/test_snapshot" '*' 10
fi
check "snapshot refused: a flipped byte in the body" t_snap_damaged \
    'snapshot state is corrupt \(checksum mismatch\)$' flip 100
check "snapshot refused: a flipped byte in the header" t_snap_damaged \
    'snapshot header is corrupt \(checksum mismatch\)$' flip 16
check "snapshot refused: a bad magic" t_snap_damaged 'not a supermachine snapshot' magic
check "snapshot refused: format version 3 (header re-sealed)" t_snap_damaged \
    'snapshot format version 3; this build reads version 2 only' version 3
check "snapshot refused: IRQCHIP and PIT swapped (re-sealed)" t_snap_damaged \
    'snapshot sections are out of order: found PIT 0 where IRQCHIP 0 belongs$' swap IRQCHIP PIT
check "snapshot refused: two devices swapped (re-sealed)" t_snap_damaged \
    'snapshot sections are out of order: found DEVICE 3 where DEVICE 2 belongs$' swap DEVICE:2 DEVICE:3
check "snapshot refused: a section longer than the file (re-sealed)" t_snap_damaged \
    'snapshot section CLOCK is 1048576 bytes, beyond the file or the limit$' section-len CLOCK 1048576
check "snapshot refused: a VM section with 0 vCPUs (re-sealed)" t_snap_damaged \
    'snapshot says 0 vCPUs$' vm-cpus 0
check "snapshot refused: a truncated state file" t_snap_state_truncated
check "snapshot refused: a padded state file" t_snap_state_padded
check "snapshot refused: an empty state file" t_snap_state_empty
check "snapshot refused: no state file" t_snap_state_missing
check "snapshot refused: a folder for a state file" t_snap_state_folder
check "snapshot refused: no memory file" t_snap_memory_missing
check "snapshot refused: a FIFO for the state file (no hang)" t_snap_state_fifo
check "snapshot refused: a symbolic link for the state file" t_snap_state_link
check "snapshot refused: a FIFO for the memory file (no hang)" t_snap_memory_fifo
check "snapshot refused: more memory than --max-memory, before mapping" t_snap_over_memory_limit
check "snapshot refused: more vCPUs than --max-cpus, before mapping" t_snap_over_cpu_limit
check "snapshot refused: a memory file one page short" t_snap_memory_truncated
check "run: a damaged snapshot folder gives 125 and the reason" t_snap_run_damaged
check "run: first run bakes the default image, hello + status 3; the second restores it" \
    t_snap_run_default
check "cli: snapshot ID NAME keeps a running VM's files for run NAME; NAME again refused, --force replaces" \
    t_snap_cli_snapshot
check "snapshot: nothing left (no VMM process, no VM folder)" t_snap_nothing_left
