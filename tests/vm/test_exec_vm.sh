# tests/vm/test_exec_vm.sh: exec into real VMs (sourced by run-all.sh).
#
#   1. the library's VM API (build/tests/test_vm_api, and the ASan build when
#      built): its own VMs; big streams, 32 concurrent execs, a guest that
#      stops reading, the VMM killed mid-exec, nothing left behind;
#   2. the CLI on one detached VM: start, exec ID, pause and resume, cp both ways, ps, then the
#      whole exec suite (tests/exec, plain and ASan builds) against its exec
#      socket, last test_exec_pid1, which powers the guest off: ps then says
#      dead, exec says so, and stop cleans up;
#   3. a second CLI VM stopped while a command runs in it;
#   4. 64 MiB out of the CLI VM through exec, and bench/soak/streams' ten
#      64 MiB streams in and out of its own 2-vCPU VM, byte for byte;
#   5. bench/soak/concurrent: 5 rounds of 32 execs at once, outputs exact;
#   6. start IMAGE: no IMAGE bakes 'default' once and restores it; a named
#      image (baked with 512 MiB, which its VMs have) and a
#      snapshot folder, one with a published port; boot options with IMAGE
#      and images that are none are refused and start nothing.
# Every VM lives under this file's own runtime folder ($SM_VM_WORK/rt), which
# must be empty at the end, with no supermachine-vmm process left, and every
# image under its own images folder.

vm_rt=$SM_VM_WORK/rt
vm_images=$SM_VM_WORK/images
vm_id_file=$SM_VM_WORK/cli-vm.id
mkdir -p "$vm_rt" "$vm_images" && chmod 700 "$vm_rt"

sm() { XDG_RUNTIME_DIR=$vm_rt SUPERMACHINE_IMAGES=$vm_images "$SM_BIN" "$@"; }

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
    # A boot (--cpus without IMAGE), then the default image's first bake.
    SUPERMACHINE_KERNEL=/nonexistent sm start --cpus 1 2>"$T/err"; rc=$?
    [[ $rc == 1 ]] && grep -q 'SUPERMACHINE_KERNEL' "$T/err" ||
        { echo "start --cpus 1 with a missing kernel: status $rc: $(cat "$T/err")"; return 1; }
    SUPERMACHINE_KERNEL=/nonexistent sm start 2>"$T/err"; rc=$?
    [[ $rc == 1 ]] && grep -q 'SUPERMACHINE_KERNEL' "$T/err" ||
        { echo "start (baking 'default') with a missing kernel: status $rc: $(cat "$T/err")"; return 1; }
    [[ $(vm_folders) == 0 ]] || { echo "a failed start left a folder"; return 1; }
    [[ -z $(ls -A "$vm_images") ]] || { echo "a failed bake left $(ls -A "$vm_images")"; return 1; }
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

# How far the guest's counter (/tmp/ticks, one more every 0.1 s) gets in
# `secs` seconds of the host, the VM paused meanwhile when $2 is "paused".
cli_ticks_over() {
    local id=$1 how=$2 secs=$3 a b
    a=$(sm exec "$id" -- cat /tmp/ticks) || return 1
    [[ $how == paused ]] && { sm pause "$id" || return 1; }
    sleep "$secs"
    [[ $how == paused ]] && { sm resume "$id" || return 1; }
    b=$(sm exec "$id" -- cat /tmp/ticks) || return 1
    echo $((b - a))
}

# pause/resume: ps says paused; exec is refused (status 125, and what to do)
# rather than left hanging; a second pause and a resume of a running VM are
# errors (1), a word that is no id a usage error (2); the guest's counter
# hardly moves while paused, against how far it gets while running; after
# resume commands run as before.
t_cli_pause_resume() {
    local id=$(cli_vm_id) running paused rc counter
    counter=$(sm exec "$id" -- sh -c 'i=0; while :; do i=$((i + 1)); echo $i >/tmp/ticks; sleep 0.1; done \
        >/dev/null 2>&1 & echo $!') && [[ $counter =~ ^[0-9]+$ ]] || { echo "could not start the counter"; return 1; }
    sleep 1
    sm pause "$id" || { echo "pause failed"; return 1; }
    sm ps >"$T/ps"
    grep -qE "^$id +paused " "$T/ps" || { echo "ps does not say paused: $(cat "$T/ps")"; sm resume "$id"; return 1; }
    XDG_RUNTIME_DIR=$vm_rt SUPERMACHINE_IMAGES=$vm_images timeout 20 "$SM_BIN" exec "$id" -- true 2>"$T/err"
    rc=$?
    [[ $rc == 125 ]] && grep -q "VM $id is paused: .supermachine resume $id." "$T/err" ||
        { echo "exec into a paused VM: status $rc, said: $(cat "$T/err")"; sm resume "$id"; return 1; }
    sm pause "$id" 2>"$T/err"; rc=$?
    [[ $rc == 1 ]] && grep -q "paused already" "$T/err" ||
        { echo "a second pause: status $rc, said: $(cat "$T/err")"; sm resume "$id"; return 1; }
    sm resume "$id" || { echo "resume failed"; return 1; }
    sm ps >"$T/ps"
    grep -qE "^$id +running " "$T/ps" || { echo "ps does not say running after resume: $(cat "$T/ps")"; return 1; }
    sm resume "$id" 2>"$T/err"; rc=$?
    [[ $rc == 1 ]] && grep -q "not paused" "$T/err" || { echo "resume of a running VM: status $rc: $(cat "$T/err")"; return 1; }
    sm pause not-an-id 2>"$T/err"; rc=$?
    [[ $rc == 2 ]] || { echo "pause not-an-id: status $rc: $(cat "$T/err")"; return 1; }
    # 10 s each: the execs, pause and resume around the wait move the
    # counter too (22 in the box), and that must stay well below a run's.
    running=$(cli_ticks_over "$id" running 10) && paused=$(cli_ticks_over "$id" paused 10) ||
        { echo "could not read the counter"; sm resume "$id" 2>/dev/null; return 1; }
    echo "info: the guest's counter moved $running in 10 s running, $paused in 10 s paused (and the execs around)"
    ((running > 0 && paused * 2 < running)) || { echo "the guest did not stop while paused"; return 1; }
    [[ $(sm exec "$id" -- sh -c "kill $counter && echo back") == back ]] || { echo "exec after resume failed"; return 1; }
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
    SM_EXEC_SOCKET=$vm_rt/supermachine/vms/$id/cell/exec.sock SM_EXEC_CLI=$SM_BIN SM_EXEC_VM_ID=$id \
        XDG_RUNTIME_DIR=$vm_rt CMOCKA_MESSAGE_OUTPUT=STDOUT "${@:2}" "$bin" >"$T/out" 2>&1
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

# Stops the VMs given and fails with the message: a failed start test
# leaves nothing running for the next one.
start_failed() {
    local why=$1 id
    shift
    for id in "$@"; do sm stop "$id" >/dev/null 2>&1; done
    echo "$why"
    return 1
}

# No IMAGE: the first start bakes 'default' (and says so), the second
# restores it at once; a command left in the background outlives its exec
# (how a service is started in such a VM).
t_cli_start_default() {
    local a b out rc t0
    t0=$(now_ms)
    a=$(sm start 2>"$T/err1") || start_failed "start: $(cat "$T/err1")" || return 1
    echo "info: first start, baking 'default': $(($(now_ms) - t0)) ms"
    grep -q "baking the default image" "$T/err1" && [[ -f $vm_images/default/state ]] ||
        start_failed "the first start did not bake 'default': $(cat "$T/err1")" "$a" || return 1
    t0=$(now_ms)
    b=$(sm start 2>"$T/err2") || start_failed "second start: $(cat "$T/err2")" "$a" || return 1
    echo "info: second start, restoring 'default': $(($(now_ms) - t0)) ms"
    [[ ! -s $T/err2 && $a != "$b" ]] ||
        start_failed "second start: id $b (first $a), said: $(cat "$T/err2")" "$a" "$b" || return 1
    out=$(sm exec "$a" -- sh -c 'echo hi && exit 7'); rc=$?
    [[ $out == hi && $rc == 7 ]] || start_failed "exec: '$out', status $rc; want hi, 7" "$a" "$b" || return 1
    sm exec "$b" -- sh -c 'sleep 600 >/dev/null 2>&1 &' &&
        [[ $(sm exec "$b" -- sh -c 'ps | grep -c "[s]leep 600"') == 1 ]] ||
        start_failed "a background command did not outlive its exec" "$a" "$b" || return 1
    sm ps >"$T/ps"
    grep -qE "^$a +running " "$T/ps" && grep -qE "^$b +running " "$T/ps" ||
        start_failed "ps does not show both running: $(cat "$T/ps")" "$a" "$b" || return 1
    sm stop "$a" && sm stop "$b" || { echo "stop failed"; return 1; }
    [[ ! -e $vm_rt/supermachine/vms/$a && ! -e $vm_rt/supermachine/vms/$b ]] ||
        { echo "stop left a folder"; return 1; }
}

# A port nothing listens on, on this host's loopback.
cli_free_port() {
    local p
    for p in $(seq 18200 18300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    echo 18999
}

# The body of GET http://127.0.0.1:PORT/PATH, through bash alone.
cli_http_get() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    timeout 60 cat <&3 | sed '1,/^\r*$/d'
    exec 3<&-
}

# A named image baked with 512 MiB: its VMs have that (which is why --memory
# and --cpus go with no IMAGE), here with a published port; the same image as
# a snapshot folder; boot options with IMAGE are refused. (One vCPU: a
# restore may not ask for more vCPUs than the host has, and kvmbox has one.)
t_cli_start_named() {
    local id dir_id hp rc out folders
    sm bake --memory 512 mine >"$T/bake" 2>&1 || { echo "bake: $(cat "$T/bake")"; return 1; }
    folders=$(vm_folders)
    sm start --memory 1024 mine 2>"$T/err"; rc=$?
    [[ $rc == 2 ]] && grep -q -- "--memory does not go with IMAGE" "$T/err" ||
        { echo "start --memory 1024 mine: status $rc: $(cat "$T/err")"; return 1; }
    sm start mine --kernel "$SM_KERNEL" 2>"$T/err"; rc=$?
    [[ $rc == 2 ]] && grep -q -- "--kernel does not go with IMAGE" "$T/err" ||
        { echo "start mine --kernel: status $rc: $(cat "$T/err")"; return 1; }
    [[ $(vm_folders) == "$folders" ]] || { echo "a refused start left a VM"; return 1; }
    hp=$(cli_free_port)
    id=$(sm start -p "127.0.0.1:$hp:8080" mine 2>"$T/err") || start_failed "start mine: $(cat "$T/err")" || return 1
    out=$(sm exec "$id" -- grep MemTotal /proc/meminfo)
    echo "info: the VM of 'mine': $out; ps: $(sm ps | awk -v id="$id" '$1 == id')"
    [[ $out =~ ^MemTotal:\ +([0-9]+)\ kB$ ]] && ((BASH_REMATCH[1] > 400000)) ||
        start_failed "the VM of 'mine' does not have 512 MiB: '$out'" "$id" || return 1
    # ps shows the size the VM has, its image's, not the defaults.
    sm ps | grep -qE "^$id +running +[0-9]+ +512M +1 " ||
        start_failed "ps does not show 512M and 1 vCPU for the VM of 'mine': $(sm ps | grep "^$id")" "$id" || return 1
    sm exec "$id" -- sh -c 'mkdir -p /tmp/www && echo from-mine >/tmp/www/index.html && httpd -p 8080 -h /tmp/www' ||
        start_failed "httpd in the guest did not start" "$id" || return 1
    out=$(cli_http_get "$hp" /index.html 2>&1)
    [[ $out == from-mine ]] || start_failed "GET 127.0.0.1:$hp (published 8080): '$out'" "$id" || return 1
    dir_id=$(sm start "$vm_images/mine" 2>"$T/err") ||
        start_failed "start of the folder $vm_images/mine: $(cat "$T/err")" "$id" || return 1
    out=$(sm exec "$dir_id" -- grep MemTotal /proc/meminfo)
    [[ $out =~ ^MemTotal:\ +([0-9]+)\ kB$ ]] && ((BASH_REMATCH[1] > 400000)) ||
        start_failed "the folder's VM does not have 512 MiB: '$out'" "$id" "$dir_id" || return 1
    sm stop "$id" && sm stop "$dir_id" || { echo "stop failed"; return 1; }
}

# IMAGE that is none: status 1 with the reason, no VM, no image.
t_cli_start_bad_image() {
    local what want re args rc
    mkdir -p "$T/not-a-snapshot"
    while IFS='|' read -r what want re args; do
        # shellcheck disable=SC2086 # the arguments are words
        XDG_RUNTIME_DIR=$vm_rt SUPERMACHINE_IMAGES=$vm_images timeout 120 "$SM_BIN" start $args \
            >"$T/out" 2>"$T/err"; rc=$?
        [[ $rc == "$want" ]] && grep -qE -- "$re" "$T/err" && [[ ! -s $T/out ]] ||
            { echo "$what (start $args): status $rc, want $want; said: $(cat "$T/err" "$T/out")"; return 1; }
        echo "info: $what: $(head -c 200 "$T/err")"
    done <<EOF
a bare name, no image here nor pullable|1|no image named 'no-such-image-here'|no-such-image-here
a registry that is not there|1|cannot reach 127.0.0.1:9|127.0.0.1:9/nope:1
a folder without a snapshot|1|is not an image|$T/not-a-snapshot
not even a reference|1|invalid image reference|No_Such:Image!
EOF
    [[ $(vm_folders) == 0 && -z $(our_vmms) ]] || { echo "a refused start left a VM"; return 1; }
    [[ ! -e $vm_images/no-such-image-here ]] || { echo "an image was made"; return 1; }
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
check "cli: pause ID: ps paused, exec refused, the guest stands still; resume ID: it runs on" t_cli_pause_resume
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
check "cli: start with no IMAGE bakes 'default' once, then restores it; exec in it; a background command stays" \
    t_cli_start_default
check "cli: start a named image (its memory; -p) and a snapshot folder; boot options with IMAGE refused" \
    t_cli_start_named
check "cli: start of an image that is none says why, status 1, and starts nothing" t_cli_start_bad_image
check "cli: stop a running VM mid-exec" t_cli_stop_running
check "nothing left: no VMM process, no folder" t_nothing_left
