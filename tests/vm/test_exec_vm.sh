# tests/vm/test_exec_vm.sh: exec into real VMs (sourced by run-all.sh).
#
#   1. the library's VM API (build/tests/test_vm_api, and the ASan build when
#      built): its own VMs; big streams, 32 concurrent execs, a guest that
#      stops reading, the VMM killed mid-exec, nothing left behind;
#   2. the CLI on one detached VM: start, exec ID, cp both ways, ps, then the
#      whole exec suite (tests/exec, plain and ASan builds) against its exec
#      socket, last test_exec_pid1, which powers the guest off: ps then says
#      dead, exec says so, and stop cleans up;
#   3. a second CLI VM stopped while a command runs in it;
#   4. 64 MiB out of the CLI VM through exec, and bench/soak/streams' ten
#      64 MiB streams in and out of its own 2-vCPU VM, byte for byte;
#   5. bench/soak/concurrent: 5 rounds of 32 execs at once, outputs exact.
# Every VM lives under this file's own runtime folder ($SM_VM_WORK/rt), which
# must be empty at the end, with no supermachine-vmm process left.

vm_rt=$SM_VM_WORK/rt
vm_id_file=$SM_VM_WORK/cli-vm.id
mkdir -p "$vm_rt" && chmod 700 "$vm_rt"

sm() { XDG_RUNTIME_DIR=$vm_rt "$SM_BIN" "$@"; }

cli_vm_id() {
    cat "$vm_id_file" 2>/dev/null || echo "no-vm-started"
}

# Processes whose command line mentions our runtime folder (VMMs of ours).
our_vmms() {
    local f
    for f in /proc/[0-9]*/cmdline; do
        tr '\0' ' ' <"$f" 2>/dev/null | grep -F -- "$vm_rt/" | grep -q supermachine-vmm && {
            f=${f#/proc/}
            echo "${f%/cmdline}"
        }
    done
}

vm_folders() {
    ls -A "$vm_rt/supermachine/vms" 2>/dev/null | wc -l
}

t_api() {
    local bin=$1 blocks=${2:-100} start status
    if [[ ! -x $bin ]]; then
        echo "$bin is not built (make all-tests)"
        return 1
    fi
    start=$(now_ms)
    SM_STREAM_BLOCKS=$blocks CMOCKA_MESSAGE_OUTPUT=STDOUT "$bin" >"$T/out" 2>&1
    status=$?
    cat "$T/out"
    grep -E '^([0-9]+ MB|32 concurrent|while the guest|after SIGKILL|VM .* ready|stop of)' "$T/out" |
        sed 's/^/info: /'
    echo "info: $(($(now_ms) - start)) ms in all"
    return $status
}

t_cli_usage() {
    local rc
    sm exec -- true 2>"$T/err"; rc=$?
    [[ $rc == 2 ]] || { echo "exec without an id or --socket: status $rc, want 2"; return 1; }
    sm exec 'NOT-AN-ID' -- true 2>"$T/err"; rc=$?
    [[ $rc == 2 ]] && grep -q "not a VM id" "$T/err" ||
        { echo "exec with a bad id: status $rc: $(cat "$T/err")"; return 1; }
    sm exec 0badc0de -- true 2>"$T/err"; rc=$?
    [[ $rc == 125 ]] && grep -q "no VM 0badc0de" "$T/err" ||
        { echo "exec of an unknown VM: status $rc: $(cat "$T/err")"; return 1; }
    sm cp a b 2>"$T/err"; rc=$?
    [[ $rc == 2 ]] || { echo "cp between two host paths: status $rc, want 2"; return 1; }
    sm stop 0badc0de 2>"$T/err"; rc=$?
    [[ $rc == 1 ]] && grep -q "no VM 0badc0de" "$T/err" ||
        { echo "stop of an unknown VM: status $rc: $(cat "$T/err")"; return 1; }
    sm start --memory 12 2>"$T/err"; rc=$?
    [[ $rc == 2 ]] || { echo "start --memory 12: status $rc, want 2"; return 1; }
    SUPERMACHINE_KERNEL=/nonexistent sm start 2>"$T/err"; rc=$?
    [[ $rc == 1 ]] && grep -q 'SUPERMACHINE_KERNEL' "$T/err" ||
        { echo "start with a missing kernel: status $rc: $(cat "$T/err")"; return 1; }
    [[ $(vm_folders) == 0 ]] || { echo "a failed start left a folder"; return 1; }
}

t_cli_start() {
    local start id
    start=$(now_ms)
    id=$(sm start --cpus 2 --memory 512 2>"$T/err") ||
        { echo "start failed: $(cat "$T/err")"; return 1; }
    echo "info: start printed '$id' after $(($(now_ms) - start)) ms"
    [[ $id =~ ^[0-9a-f]{8}$ ]] || { echo "start printed '$id', not an id"; return 1; }
    echo "$id" >"$vm_id_file"
    # The CLI has exited; the VM runs on.
    sm ps >"$T/ps"
    cat "$T/ps"
    grep -qE "^$id +running +[0-9]+ +512M +2 +[0-9]+s$" "$T/ps" ||
        { echo "ps does not show $id running with 512M and 2 vCPUs"; return 1; }
    [[ $(sm ps -q) == "$id" ]] || { echo "ps -q: '$(sm ps -q)'"; return 1; }
}

t_cli_exec_hi() {
    local id out rc
    id=$(cli_vm_id)
    out=$(sm exec "$id" -- sh -c 'echo hi && exit 7')
    rc=$?
    [[ $out == hi && $rc == 7 ]] || { echo "got '$out', status $rc; want 'hi', 7"; return 1; }
    out=$(echo piped | sm exec "$id" -i -e X=1 -w /tmp -- sh -c 'read l; echo "$l $X $(pwd)"')
    [[ $out == "piped 1 /tmp" ]] || { echo "exec -i -e -w: got '$out'"; return 1; }
}

t_cli_cp() {
    local id=$(cli_vm_id) start host_sum guest_sum rc
    head -c 10485760 /dev/urandom >"$T/ten"
    start=$(now_ms)
    sm cp "$T/ten" "$id:/tmp/cp/ten" || { echo "cp into the VM failed"; return 1; }
    echo "info: 10 MB into the VM in $(($(now_ms) - start)) ms"
    host_sum=$(md5sum <"$T/ten")
    guest_sum=$(sm exec "$id" -- sh -c 'md5sum < /tmp/cp/ten')
    [[ $host_sum == "$guest_sum" ]] || { echo "md5 host $host_sum, guest $guest_sum"; return 1; }
    start=$(now_ms)
    sm cp "$id:/tmp/cp/ten" "$T/back" || { echo "cp out of the VM failed"; return 1; }
    echo "info: 10 MB out of the VM in $(($(now_ms) - start)) ms"
    cmp "$T/ten" "$T/back" || { echo "the round trip changed the file"; return 1; }
    # A folder destination keeps the name, both ways; modes travel inward.
    mkdir "$T/dir"
    chmod 750 "$T/ten"
    sm cp "$T/ten" "$id:/tmp/cp/" && sm cp "$id:/tmp/cp/ten" "$T/dir" ||
        { echo "cp to folders failed"; return 1; }
    cmp "$T/ten" "$T/dir/ten" || { echo "folder round trip changed the file"; return 1; }
    [[ $(sm exec "$id" -- stat -c %a /tmp/cp/ten) == 750 ]] ||
        { echo "mode did not travel: $(sm exec "$id" -- stat -c %a /tmp/cp/ten)"; return 1; }
    sm cp "$id:/tmp/no-such-file" "$T/x" 2>"$T/err"; rc=$?
    [[ $rc == 1 && ! -e $T/x ]] && grep -q "No such file" "$T/err" ||
        { echo "cp of a missing file: status $rc: $(cat "$T/err")"; return 1; }
}

# One exec test binary against the CLI VM's agent (the agent is PID 1 there).
t_exec_suite() {
    local bin=$1 id start status
    id=$(cli_vm_id)
    start=$(now_ms)
    SM_EXEC_SOCKET=$vm_rt/supermachine/vms/$id/exec.sock SM_EXEC_CLI=$SM_BIN \
        CMOCKA_MESSAGE_OUTPUT=STDOUT "${@:2}" "$bin" >"$T/out" 2>&1
    status=$?
    cat "$T/out"
    echo "info: $(grep -aE '^\[  PASSED  \]' "$T/out" | tail -n 1) $(grep -acE '^\[  SKIPPED \]' "$T/out") skipped, $(($(now_ms) - start)) ms"
    if ((status != 0)); then
        # What the VM itself said: a guest that reset or a VMM that failed
        # shows it here, and the state folder is gone after the next stop.
        echo "--- the VM's vmm.log and console.log (last lines)"
        tail -n 15 "$vm_rt/supermachine/vms/$id/vmm.log" 2>&1
        tail -n 25 "$vm_rt/supermachine/vms/$id/console.log" 2>&1
    fi
    return $status
}

t_exec_suite_pid1() {
    local id rc
    id=$(cli_vm_id)
    SM_EXEC_PID1=1 t_exec_suite "$1" || return 1
    # It powered the guest off: the VMM ends by itself, and shows as dead.
    for _ in $(seq 50); do
        sm ps | grep -qE "^$id +dead " && break
        sleep 0.2
    done
    sm ps | tee "$T/ps"
    grep -qE "^$id +dead " "$T/ps" || { echo "ps does not show $id dead"; return 1; }
    sm exec "$id" -- true 2>"$T/err"; rc=$?
    [[ $rc == 125 ]] && grep -q "is dead" "$T/err" ||
        { echo "exec in a dead VM: status $rc: $(cat "$T/err")"; return 1; }
    sm stop "$id" || { echo "stop of a dead VM failed"; return 1; }
    [[ ! -e $vm_rt/supermachine/vms/$id && $(vm_folders) == 0 ]] ||
        { echo "stop left $(ls "$vm_rt/supermachine/vms")"; return 1; }
}

# stop while a command runs: the command's CLI ends with an error at once,
# and nothing is left.
t_cli_stop_running() {
    local id pid start rc ms exec_pid
    id=$(sm start 2>"$T/err") || { echo "start failed: $(cat "$T/err")"; return 1; }
    pid=$(sm ps | awk -v id="$id" '$1 == id { print $3 }')
    sm exec "$id" -- sh -c 'echo started; sleep 100' >"$T/exec.out" 2>"$T/exec.err" &
    exec_pid=$!
    for _ in $(seq 100); do
        grep -q started "$T/exec.out" && break
        sleep 0.1
    done
    grep -q started "$T/exec.out" || { echo "the command did not start"; return 1; }
    start=$(now_ms)
    sm stop "$id" || { echo "stop failed"; return 1; }
    wait "$exec_pid"
    rc=$?
    ms=$(($(now_ms) - start))
    echo "info: stop of a running VM with a command in it: $ms ms; exec ended with status $rc: $(head -c 200 "$T/exec.err")"
    [[ $rc == 125 ]] || { echo "exec status $rc, want 125"; return 1; }
    ((ms < 6000)) || { echo "took $ms ms"; return 1; }
    [[ ! -e /proc/$pid ]] || { echo "VMM $pid still there: $(cat /proc/$pid/status | head -3)"; return 1; }
    [[ ! -e $vm_rt/supermachine/vms/$id ]] || { echo "stop left the folder"; return 1; }
}

# 64 MiB out of the CLI VM (2 vCPUs) through `exec`, byte-exact: the stream
# of issue 15, which broke off and read as a clean end.
t_cli_stream() {
    local id=$(cli_vm_id) start sum rc
    start=$(now_ms)
    # pipefail inside the substitution: its status is exec's, not md5sum's.
    sum=$(set -o pipefail; sm exec "$id" -- head -c 67108864 /dev/zero 2>"$T/err" | md5sum); rc=$?
    echo "info: 64 MiB out through exec in $(($(now_ms) - start)) ms"
    [[ $rc == 0 ]] || { echo "exec exited $rc: $(cat "$T/err")"; return 1; }
    [[ $sum == "7f614da9329cd3aebf59b91aadc30bf0  -" ]] ||
        { echo "md5 of the stream: $sum"; return 1; }
}

# bench/soak/streams: its own 2-vCPU VM, 64 MiB five ways (out through spawn
# and output, in through stdin and write_file, out through read_file), twice:
# ten streams, each checked byte for byte.
t_streams() {
    local bin=$SM_BUILD/bench/streams
    [[ -x $bin ]] || { echo "$bin is not built (make all-tests)"; return 1; }
    XDG_RUNTIME_DIR=$vm_rt SUPERMACHINE_VMM=$SM_BUILD/bin/supermachine-vmm SUPERMACHINE_KERNEL=$SM_KERNEL \
        SUPERMACHINE_INITRD=$SM_INITRD "$bin" --ratios-only --rounds 2 --mib 64
}

# bench/soak/concurrent: its own 2-vCPU VM, rounds of 32 execs at once, each
# output and exit code exact (a lost last line was found this way).
t_concurrent() {
    local bin=$SM_BUILD/bench/concurrent
    [[ -x $bin ]] || { echo "$bin is not built (make all-tests)"; return 1; }
    XDG_RUNTIME_DIR=$vm_rt SUPERMACHINE_VMM=$SM_BUILD/bin/supermachine-vmm SUPERMACHINE_KERNEL=$SM_KERNEL \
        SUPERMACHINE_INITRD=$SM_INITRD "$bin" --rounds 5 --keep ""
}

t_nothing_left() {
    local left
    left=$(our_vmms)
    [[ -z $left ]] || { echo "VMM processes left: $left"; return 1; }
    [[ $(vm_folders) == 0 ]] || { echo "folders left: $(ls "$vm_rt/supermachine/vms")"; return 1; }
    [[ -z $(sm ps -q) ]] || { echo "ps still lists: $(sm ps -q)"; return 1; }
}

check "vm api: library lifecycle, streams, concurrency ($SM_BUILD)" t_api "$SM_BUILD/tests/test_vm_api"
if [[ -x $SM_ROOT/build/asan/tests/test_vm_api && $SM_BUILD == "$SM_ROOT/build" ]]; then
    # 16 MB streams: this pass looks for memory errors, and its VMM is the
    # instrumented one too; 100 MB more adds minutes under emulation and no
    # coverage (the plain pass above moves the full 100 MB).
    check "vm api: library lifecycle, streams, concurrency (ASan, 16 MB streams)" t_api \
        "$SM_ROOT/build/asan/tests/test_vm_api" 16
fi
check "cli: usage errors and failed starts" t_cli_usage
check "cli: start prints an id; ps shows it running" t_cli_start
check "cli: exec ID -- sh -c 'echo hi && exit 7'" t_cli_exec_hi
check "cli: cp 10 MB both ways, unchanged" t_cli_cp
check "cli: 64 MiB out of a 2-vCPU VM through exec, whole" t_cli_stream
SM_CHECK_TIMEOUT=600 check "streams: ten 64 MiB streams in and out of a 2-vCPU VM, five ways, byte-exact" t_streams
check "concurrent: 5 rounds of 32 execs at once in one VM, every output exact" t_concurrent
for vm_suite_bin in "$SM_BUILD"/tests/test_exec_*; do
    case $vm_suite_bin in *.d|*/test_exec_pid1) continue ;; esac
    check "exec suite in a VM: $(basename "$vm_suite_bin")" t_exec_suite "$vm_suite_bin"
done
if [[ $SM_BUILD == "$SM_ROOT/build" ]]; then
    for vm_suite_bin in "$SM_ROOT"/build/asan/tests/test_exec_*; do
        case $vm_suite_bin in *.d|*/test_exec_pid1) continue ;; esac
        [[ -x $vm_suite_bin ]] || continue
        check "exec suite in a VM (ASan): $(basename "$vm_suite_bin")" t_exec_suite "$vm_suite_bin"
    done
fi
check "exec suite in a VM: test_exec_pid1 (powers off), then ps dead, stop cleans" \
    t_exec_suite_pid1 "$SM_BUILD/tests/test_exec_pid1"
check "cli: stop a running VM mid-exec" t_cli_stop_running
check "nothing left: no VMM process, no folder" t_nothing_left
