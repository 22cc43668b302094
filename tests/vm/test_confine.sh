# tests/vm/test_confine.sh: the VMM's confinement (issue 12), sourced by
# run-all.sh. Every other shard runs with the filters on too (the default):
# this one checks that they are there, and that they kill.

confine_rt=$SM_VM_WORK/confine-rt
confine_images=$SM_VM_WORK/confine-images
mkdir -p "$confine_rt" "$confine_images" && chmod 700 "$confine_rt"

csm() { XDG_RUNTIME_DIR=$confine_rt SUPERMACHINE_IMAGES=$confine_images "$SM_BIN" "$@"; }
vmm_pid() { csm ps | awk -v id="$1" '$1 == id { print $3 }'; }
vm_dir() { echo "$confine_rt/supermachine/vms/$1"; }
# The VMM proper: the child of the stand-in that ps shows (src/vmm/cell.h).
vmm_inner() { tr -d ' ' <"/proc/$1/task/$1/children"; }

# Every thread of a running VMM (main, vCPUs, the network's) has its
# filter, and no_new_privs is set; the VM works under it.
t_confine_every_thread() {
    local id pid t names="" out
    id=$(csm start --cpus 2 2>"$T/err") || { echo "start: $(cat "$T/err")"; return 1; }
    pid=$(vmm_pid "$id")
    out=$(csm exec "$id" -- echo confined 2>&1)
    grep -q "^Seccomp:[[:space:]]*2$" "/proc/$pid/status" || { echo "the stand-in: $(grep Seccomp: "/proc/$pid/status")"; csm stop "$id"; return 1; }
    pid=$(vmm_inner "$pid")
    grep -q "^NoNewPrivs:[[:space:]]*1$" "/proc/$pid/status" || { echo "NoNewPrivs: $(grep NoNewPrivs "/proc/$pid/status")"; csm stop "$id"; return 1; }
    for t in /proc/"$pid"/task/*; do
        names+=" $(cat "$t/comm")"
        grep -q "^Seccomp:[[:space:]]*2$" "$t/status" ||
            { echo "thread $(cat "$t/comm"): $(grep Seccomp: "$t/status")"; csm stop "$id"; return 1; }
    done
    csm stop "$id" >/dev/null 2>&1
    [[ $out == confined ]] || { echo "exec under the filter: $out"; return 1; }
    [[ $names == *vcpu0* && $names == *vcpu1* && $names == *net* ]] || { echo "threads:$names"; return 1; }
    echo "info: threads with Seccomp 2:$names"
}

# The test-only control request makes the main thread call ptrace: the
# filter kills the VMM, its log names the call, and ps says why it died.
t_confine_forbidden_syscall() {
    local id pid i
    id=$(csm start 2>"$T/err") || { echo "start: $(cat "$T/err")"; return 1; }
    pid=$(vmm_pid "$id")
    echo test-forbidden-syscall | socat -t 5 - "UNIX-CONNECT:$(vm_dir "$id")/cell/control.sock" >/dev/null 2>&1
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    csm ps >"$T/ps"
    cp "$(vm_dir "$id")/vmm.log" "$T/vmm.log"
    csm stop "$id" >/dev/null 2>&1
    ! kill -0 "$pid" 2>/dev/null || { echo "the VMM lives on after a forbidden call"; return 1; }
    grep -q "killed by its seccomp filter: syscall 101 (thread main)" "$T/vmm.log" ||
        { echo "vmm.log: $(tail -3 "$T/vmm.log")"; return 1; }
    grep -q "^$id .*dead.*killed by its seccomp filter: syscall 101" "$T/ps" || { echo "ps: $(cat "$T/ps")"; return 1; }
    echo "info: $(grep "^$id" "$T/ps")"
}

# The cell: the VMM (the stand-in's child) has namespaces of its own (the
# host's network only when the VM has one), a read-only root that shows its
# cell folder and nothing else of the host (no vm.info, no image store),
# no core dumps or new processes, and none of the embedder's environment.
t_confine_cell() {
    local id pid inner n out root
    id=$(csm start 2>"$T/err") || { echo "start: $(cat "$T/err")"; return 1; }
    pid=$(vmm_pid "$id")
    inner=$(vmm_inner "$pid")
    out=""
    for n in user mnt pid ipc uts cgroup; do
        [[ $(readlink "/proc/$inner/ns/$n") != "$(readlink /proc/self/ns/$n)" ]] || out+=" $n shared;"
    done
    [[ $(readlink "/proc/$inner/ns/net") == "$(readlink /proc/self/ns/net)" ]] || out+=" net not shared (the NAT needs it);"
    root=$(cd "/proc/$inner/root" && find . -mindepth 1 | sort | tr '\n' ' ')
    [[ -e /proc/$inner/root$(vm_dir "$id")/cell/exec.sock ]] || out+=" no exec.sock in the cell;"
    [[ ! -e /proc/$inner/root$(vm_dir "$id")/vm.info && ! -e /proc/$inner/root$confine_images ]] || out+=" host files visible;"
    grep -q " / ro," "/proc/$inner/mountinfo" || out+=" root not read-only;"
    grep -Eq "^Max core file size +0 +0" "/proc/$inner/limits" || out+=" core dumps on;"
    grep -Eq "^Max processes +0 +0" "/proc/$inner/limits" || out+=" processes allowed;"
    ! tr '\0' '\n' <"/proc/$pid/environ" | grep -q "^SUPERMACHINE_IMAGES=" || out+=" environment inherited;"
    [[ $(csm exec "$id" -- echo in-cell 2>&1) == in-cell ]] || out+=" exec failed;"
    csm stop "$id" >/dev/null 2>&1
    [[ -z $out ]] || { echo "cell:$out root: $root"; return 1; }
    echo "info: the VMM's root holds: $root"
    # Without a network, a network namespace of its own too.
    id=$(csm start --net off 2>"$T/err") || { echo "start --net off: $(cat "$T/err")"; return 1; }
    inner=$(vmm_inner "$(vmm_pid "$id")")
    n=$(readlink "/proc/$inner/ns/net")
    csm stop "$id" >/dev/null 2>&1
    [[ $n != "$(readlink /proc/self/ns/net)" ]] || { echo "--net off: the host's network namespace"; return 1; }
}

# --memory-limit, --cpu-limit: the VMM (stand-in and all) in a cgroup of
# its own with those limits and pids.max, gone when the VM stops; a guest
# that fills more memory than the limit gets its VMM killed by the kernel,
# which the cgroup's memory.events counts and ps says. Needs a delegated cgroup v2
# (tools/kvmbox mounts one; elsewhere doctor says whether there is one).
t_confine_limits() {
    local id pid cg out="" usage events
    if ! csm doctor 2>/dev/null | grep -q '^  limits *cgroup v2'; then
        [[ -z ${KVMBOX:-} ]] || { echo "kvmbox has cgroup v2, yet: $(csm doctor 2>&1 | grep '^  limits')"; return 1; }
        echo "info: not run here: $(csm doctor 2>&1 | grep '^  limits')"
        return 0
    fi
    id=$(csm start --memory-limit 200M --cpu-limit 0.5 2>"$T/err") || { echo "start: $(cat "$T/err")"; return 1; }
    pid=$(vmm_pid "$id")
    cg=$(cat "$(vm_dir "$id")/cgroup")
    grep -qx "$pid" "$cg/cgroup.procs" || out+=" the stand-in is not in $cg;"
    grep -qx "$(vmm_inner "$pid")" "$cg/cgroup.procs" || out+=" the VMM is not in $cg;"
    [[ $(cat "$cg/memory.max") == $((200 << 20)) ]] || out+=" memory.max $(cat "$cg/memory.max");"
    [[ $(cat "$cg/cpu.max") == "50000 100000" ]] || out+=" cpu.max $(cat "$cg/cpu.max");"
    [[ $(cat "$cg/pids.max") == 64 ]] || out+=" pids.max $(cat "$cg/pids.max");"
    [[ $(csm exec "$id" -- echo limited 2>&1) == limited ]] || out+=" exec failed;"
    usage=$(cat "$cg/memory.current")
    csm stop "$id" >/dev/null 2>&1
    [[ ! -e $cg ]] || out+=" $cg left after stop;"
    [[ -z $out ]] || { echo "limits:$out"; return 1; }
    echo "info: $cg: memory.current $((usage >> 10)) KiB running"
    # Past the memory limit: the guest has 256 MiB, its VMM may use 96.
    id=$(csm start --memory-limit 96M 2>"$T/err") || { echo "start: $(cat "$T/err")"; return 1; }
    cg=$(cat "$(vm_dir "$id")/cgroup")
    csm exec "$id" -- sh -c 'dd if=/dev/zero of=/tmp/fill bs=1M count=180 2>/dev/null; echo filled' >"$T/fill" 2>&1
    events=$(cat "$cg/memory.events" 2>/dev/null | tr '\n' ' ')
    csm ps >"$T/ps" 2>&1
    csm stop "$id" >/dev/null 2>&1
    ! grep -q filled "$T/fill" || { echo "180 MiB filled under a 96 MiB limit: $(cat "$T/ps")"; return 1; }
    [[ $events =~ oom_kill\ [1-9] ]] || { echo "no OOM kill in memory.events: $events; exec said: $(cat "$T/fill")"; return 1; }
    grep -q "^$id .*dead.*over its memory limit" "$T/ps" || { echo "ps after the kill: $(cat "$T/ps")"; return 1; }
    [[ ! -e $cg ]] || { echo "$cg left after stop of the dead VM"; return 1; }
    echo "info: over the limit: $(grep "^$id" "$T/ps"); exec said: $(tail -n 1 "$T/fill")"
}

# SUPERMACHINE_VMM_SECCOMP=off (debugging, the bench's comparison) runs the
# VMM without filters: the switch is real, and the default is on.
t_confine_switch_off() {
    local id pid state
    id=$(SUPERMACHINE_VMM_SECCOMP=off csm start 2>"$T/err") || { echo "start: $(cat "$T/err")"; return 1; }
    pid=$(vmm_pid "$id")
    state=$(grep "^Seccomp:" "/proc/$pid/status")
    csm stop "$id" >/dev/null 2>&1
    [[ $state =~ Seccomp:[[:space:]]*0 ]] || { echo "with the filters off: $state"; return 1; }
}

check "confine: every VMM thread runs under its seccomp filter" t_confine_every_thread
check "confine: a forbidden system call kills the VMM, and says which" t_confine_forbidden_syscall
check "confine: the VMM lives in its cell (namespaces, its own root, rlimits, no environment)" t_confine_cell
check "confine: --memory-limit, --cpu-limit put the VMM in a cgroup of its own; past the limit the VM is killed" \
    t_confine_limits
check "confine: SUPERMACHINE_VMM_SECCOMP=off runs the VMM unconfined" t_confine_switch_off
