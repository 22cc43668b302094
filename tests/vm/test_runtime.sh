# tests/vm/test_runtime.sh: the OCI runtime's containers as VMs (issue 14),
# sourced by run-all.sh.
#
# Bundles are made here from busybox-static (a root filesystem folder and a
# config.json, as an engine unpacks them); tests/vm/runtime_engine.py plays
# the engine (a subreaper that runs create, start, kill, state, delete and
# waits for the container's pid). What is checked: the process runs in a
# VM of ours with config.json's args, env, cwd and user, its output reaches
# create's stdio and its exit status the engine; signals reach it; exec
# runs beside it; a terminal through the console socket; the lifecycle's
# errors out of order; and a second container of the same root filesystem
# restores the first's bake instead of packing and baking again.

rt_bin=$SM_BUILD/bin/supermachine-runtime
rt_work=$SM_VM_WORK/runtime
rt_root=$rt_work/root
mkdir -p "$rt_work/data" "$rt_root"
# The runtime's images (src/runtime/store.h), kept apart from the other shards'.
export SUPERMACHINE_RUNTIME_IMAGES=$rt_work/data/images

rt() { "$rt_bin" --root "$rt_root" "$@"; }
engine() { python3 "$SM_ROOT/tests/vm/runtime_engine.py" "$rt_bin" "$rt_root" "$@"; }

# rt_rootfs DIR: a busybox root filesystem with a marker file.
rt_rootfs() {
    local d=$1 applet
    mkdir -p "$d/bin" "$d/etc" "$d/home/user"
    cp /usr/bin/busybox "$d/bin/busybox"
    for applet in sh echo cat id env pwd sleep grep uname tty hostname; do
        ln -sf busybox "$d/bin/$applet"
    done
    echo "made by test_runtime.sh" >"$d/etc/marker"
}

# rt_bundle DIR ARGS_JSON: a bundle with a shared root filesystem (so that
# later containers reuse its bake); tests edit its config.json with sed.
rt_bundle() {
    local d=$1 args=$2
    mkdir -p "$d"
    [[ -d $rt_work/rootfs ]] || rt_rootfs "$rt_work/rootfs"
    ln -sfn "$rt_work/rootfs" "$d/rootfs"
    cat >"$d/config.json" <<EOF
{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},
 "args":$args,"env":["PATH=/bin","TERM=xterm"],"cwd":"/"},
 "root":{"path":"rootfs","readonly":true},"hostname":"box"}
EOF
}

# The first container of a root filesystem: packed, baked, restored. Its
# process is in a VM (the hypervisor flag, our kernel), its output is
# create's, its exit code the container's; /dev/shm is the guest's own.
t_runtime_first_container() {
    rt_bundle "$T/b" '["sh","-c","echo hi; grep -c hypervisor /proc/cpuinfo; uname -r; cat /etc/marker; echo ok >/dev/shm/p && echo shm-$(cat /dev/shm/p); exit 3"]'
    engine "$T/b" first >"$T/out" 2>"$T/err" || { cat "$T/err"; return 1; }
    grep -q "^hi$" "$T/out" || { echo "no 'hi': $(cat "$T/out") $(tail -5 "$T/err")"; return 1; }
    [[ $(sed -n 2p "$T/out") -ge 1 ]] || { echo "no hypervisor flag in the container's /proc/cpuinfo"; return 1; }
    [[ $(sed -n 3p "$T/out") != "$(uname -r)" ]] || { echo "the host's kernel: $(sed -n 3p "$T/out")"; return 1; }
    grep -q "^made by test_runtime.sh$" "$T/out" || { echo "the root filesystem is not the bundle's"; return 1; }
    grep -q "^shm-ok$" "$T/out" || { echo "no writable /dev/shm in the guest: $(cat "$T/out")"; return 1; }
    grep -q "state after create: created" "$T/err" || { echo "$(cat "$T/err")"; return 1; }
    grep -q "state after exit: stopped" "$T/err" || { echo "$(cat "$T/err")"; return 1; }
    grep -q "status: exit 3$" "$T/err" || { echo "status: $(grep status: "$T/err")"; return 1; }
    [[ ! -e $rt_root/first ]] || { echo "delete left $rt_root/first"; return 1; }
    echo "info: kernel $(sed -n 3p "$T/out"); $(grep "created in" "$T/err" | sed 's/engine: //') (packed and baked)"
}

# A second container of the same root filesystem restores the bake: no new
# squashfs, no new image. Its cwd and env are its own, and a bind-mounted
# file of the engine's is copied in.
t_runtime_second_container() {
    local before after
    before=$(find "$SUPERMACHINE_RUNTIME_IMAGES" -name '*.sqfs' -o -name 'image.info' | sort)
    rt_bundle "$T/b" '["sh","-c","pwd; echo $A; cat /etc/injected"]'
    echo "a file of the engine's" >"$T/injected"
    sed -i 's#"cwd":"/"#"cwd":"/etc"#; s#"TERM=xterm"#"A=two"#' "$T/b/config.json"
    sed -i "s#\"hostname\":\"box\"#&,\"mounts\":[{\"destination\":\"/etc/injected\",\"type\":\"bind\",\"source\":\"$T/injected\",\"options\":[\"rbind\",\"ro\"]}]#" "$T/b/config.json"
    engine "$T/b" second >"$T/out" 2>"$T/err" || { cat "$T/err"; return 1; }
    after=$(find "$SUPERMACHINE_RUNTIME_IMAGES" -name '*.sqfs' -o -name 'image.info' | sort)
    [[ $(cat "$T/out") == $'/etc\ntwo\na file of the engine\'s' ]] || { echo "output: $(cat "$T/out") $(tail -5 "$T/err")"; return 1; }
    grep -q "status: exit 0$" "$T/err" || { echo "$(grep status: "$T/err")"; return 1; }
    [[ -n $before && $before == "$after" ]] || { echo "the store changed: before [$before] after [$after]"; return 1; }
    echo "info: $(grep "created in" "$T/err" | sed 's/engine: //') (restored)"
}

# process.user and process.env exactly: uid, gid, additional groups; no
# variable of the agent's own; process.rlimits and the hostname.
t_runtime_user_env() {
    rt_bundle "$T/b" '["sh","-c","id; env | sort; ulimit -n; ulimit -Hn; hostname"]'
    sed -i 's#"user":{"uid":0,"gid":0}#"user":{"uid":1000,"gid":1000,"additionalGids":[5,1000]}#' "$T/b/config.json"
    sed -i 's#"cwd":"/"#&,"rlimits":[{"type":"RLIMIT_NOFILE","soft":77,"hard":100}]#' "$T/b/config.json"
    engine "$T/b" user >"$T/out" 2>"$T/err" || { cat "$T/err"; return 1; }
    grep -q "^uid=1000 gid=1000 groups=5,1000" "$T/out" ||
        { echo "id: $(head -1 "$T/out") $(tail -5 "$T/err")"; return 1; }
    local env
    env=$(grep "=" "$T/out" | grep -v "^uid=" | grep -v "^PWD=\|^SHLVL=\|^_=" | tr '\n' ' ')
    [[ $env == "PATH=/bin TERM=xterm " ]] || { echo "environment: $env"; return 1; }
    [[ $(grep -v "=" "$T/out" | tr '\n' ' ') == "77 100 box " ]] ||
        { echo "rlimits (want 77 100) and hostname (want box): $(grep -v "=" "$T/out" | tr '\n' ' ')"; return 1; }
}

# kill ID TERM reaches the process in the guest, which dies of it; the
# engine sees the signal.
t_runtime_kill() {
    rt_bundle "$T/b" '["sleep","1000"]'
    engine "$T/b" killed --kill-after 1 TERM >"$T/out" 2>"$T/err" || { cat "$T/err"; return 1; }
    grep -q "state before kill: running" "$T/err" || { echo "$(cat "$T/err")"; return 1; }
    grep -q "status: signal 15$" "$T/err" || { echo "$(grep status: "$T/err")"; return 1; }
}

# exec runs a second process in the running container's VM (same guest:
# it sees the first's process), with its own exit status.
t_runtime_exec() {
    rt_bundle "$T/b" '["sh","-c","echo started >/tmp/first; sleep 1000"]'
    engine "$T/b" exec1 --kill-after 4 KILL --exec-after 2 sh -c 'cat /tmp/first; exit 4' \
        >"$T/out" 2>"$T/err" || { cat "$T/err"; return 1; }
    grep -q "^started$" "$T/out" || { echo "exec did not see the container: $(cat "$T/out") $(tail -5 "$T/err")"; return 1; }
    grep -q "exec status: 4" "$T/err" || { echo "$(grep "exec status" "$T/err")"; return 1; }
    grep -q "status: signal 9$" "$T/err" || { echo "$(grep status: "$T/err")"; return 1; }
}

# A terminal through the console socket: the process's stdio is a pty.
t_runtime_terminal() {
    rt_bundle "$T/b" '["sh","-c","tty; echo done"]'
    sed -i 's#"terminal":false#"terminal":true#' "$T/b/config.json"
    engine "$T/b" term --console >"$T/out" 2>"$T/err" || { cat "$T/err"; return 1; }
    grep -q "^/dev/pts/" "$T/out" || { echo "tty: $(head -3 "$T/out") $(tail -5 "$T/err")"; return 1; }
    grep -q "status: exit 0$" "$T/err" || { echo "$(grep status: "$T/err")"; return 1; }
}

# The lifecycle out of order gives runc's errors; a running container is
# not deleted without --force, and is with it.
t_runtime_out_of_order() {
    rt_bundle "$T/b" '["sleep","1000"]'
    expect_rt() { # STATUS ERE ARGS...
        local want=$1 re=$2 status=0
        shift 2
        rt "$@" >"$T/o" 2>&1 </dev/null || status=$?
        [[ $status == "$want" ]] && { [[ -z $re ]] || grep -qE "$re" "$T/o"; } ||
            { echo "$*: status $status (want $want): $(cat "$T/o")"; return 1; }
    }
    expect_rt 1 "container does not exist" start ooo || return 1
    rt create --bundle "$T/b" ooo </dev/null >/dev/null 2>"$T/err" || { cat "$T/err"; return 1; }
    expect_rt 1 "container with given ID already exists" create --bundle "$T/b" ooo || return 1
    expect_rt 0 '"status": "created"' state ooo || return 1
    expect_rt 0 "" start ooo || return 1
    expect_rt 1 "cannot start an already running container" start ooo || return 1
    expect_rt 1 "cannot delete container ooo that is not stopped: running" delete ooo || return 1
    expect_rt 0 "" delete --force ooo || return 1
    expect_rt 1 "container does not exist" kill ooo TERM || return 1
    rt create --bundle "$T/b" ooo2 </dev/null >/dev/null 2>"$T/err" || { cat "$T/err"; return 1; }
    rt start ooo2 && rt kill ooo2 KILL || return 1
    local i
    for i in $(seq 50); do rt state ooo2 | grep -q '"stopped"' && break; sleep 0.2; done
    expect_rt 1 "container not running" kill ooo2 TERM || return 1
    expect_rt 1 "cannot start a container that has stopped" start ooo2 || return 1
    expect_rt 0 "" delete ooo2 || return 1
    [[ -z $(ls -A "$rt_root" | grep -vx '@vms') && -z $(ls -A "$rt_root/@vms") ]] ||
        { echo "left under --root: $(ls -AR "$rt_root")"; return 1; }
}

check "runtime: the first container of a root filesystem runs in a VM (exit 3)" t_runtime_first_container
check "runtime: a second container restores the first's bake; a bound file is copied in" t_runtime_second_container
check "runtime: process.user, env, rlimits and hostname exactly" t_runtime_user_env
check "runtime: kill TERM reaches the process in the guest" t_runtime_kill
check "runtime: exec beside the container's process" t_runtime_exec
check "runtime: a terminal through the console socket" t_runtime_terminal
check "runtime: the lifecycle out of order gives runc's errors" t_runtime_out_of_order
