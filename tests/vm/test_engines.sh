# tests/vm/test_engines.sh: the OCI runtime (build/bin/supermachine-runtime)
# under real engines, podman and containerd's ctr, sourced by run-all.sh.
#
# Each engine first runs the same container with crun, which needs no VM: a
# control that says the engine itself works here (state under $T, vfs and the
# native snapshotter, --network none), so that a failure of the checks after
# it is ours. Then with our runtime: podman run --rm (output and exit status),
# run -d + exec + stop + rm, run -it on a terminal; ctr run; and the process
# really is in a VM (a hypervisor CPU flag, a kernel other than the box's).
# Timings are printed (info:), not asserted. Setup: tests/vm/engines.sh.

source "$SM_ROOT/tests/vm/engines.sh"
eng_rt=$SM_BUILD/bin/supermachine-runtime

# podman with our runtime. podman gives the runtime its own --root and
# --log (the container's userdata/oci-log), as it does runc's: no flags here.
rpodman() { epodman "$T/p" --runtime "$eng_rt" "$@"; }

# What a failure needs to be understood: podman's stderr, the runtime's logs.
eng_why() {
    local f
    show_file "stderr" "$T/err" 8
    while read -r f; do
        [[ -n $f ]] && show_file "runtime log ($f)" "$f" 10
    done <<<"$(find "$T/p" -name oci-log 2>/dev/null)"
}

eng_ms() { echo $(($(now_ms) - $1)); }

t_podman_crun() {
    eng_podman_setup "$T/p" && eng_podman_load "$T/p" || return 1
    local t out rc
    t=$(now_ms)
    out=$(epodman "$T/p" run --rm --network none "$eng_image" sh -c 'echo hi; exit 3' 2>"$T/err")
    rc=$?
    [[ $out == hi && $rc == 3 ]] || { echo "crun: '$out', status $rc"; eng_why; return 1; }
    echo "info: podman run --rm with crun: $(eng_ms "$t") ms (vfs copies the image per container)"
}

t_podman_run() {
    eng_podman_setup "$T/p" && eng_podman_load "$T/p" || return 1
    local t out rc
    t=$(now_ms)
    out=$(rpodman --log-level debug run --rm --network none "$eng_image" sh -c 'echo hi; exit 3' 2>"$T/err")
    rc=$?
    [[ $out == hi && $rc == 3 ]] || { echo "podman run: '$out', status $rc (want 'hi', 3)"; eng_why; return 1; }
    echo "info: podman run --rm: $(eng_ms "$t") ms"
}

# The process is in a VM: the guest's CPU says hypervisor, and its kernel is
# ours, not the box's.
t_podman_in_vm() {
    eng_podman_setup "$T/p" && eng_podman_load "$T/p" || return 1
    local out n kernel
    out=$(rpodman run --rm --network none "$eng_image" sh -c 'grep -c hypervisor /proc/cpuinfo; uname -r' 2>"$T/err") ||
        { echo "podman run: '$out'"; eng_why; return 1; }
    n=$(sed -n 1p <<<"$out")
    kernel=$(sed -n 2p <<<"$out")
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 1)) || { echo "no hypervisor flag in the container's /proc/cpuinfo: '$out'"; return 1; }
    [[ -n $kernel && $kernel != "$(uname -r)" ]] ||
        { echo "the container's kernel '$kernel' is the box's ($(uname -r)): not a VM"; return 1; }
    echo "info: container kernel $kernel, box kernel $(uname -r)"
    # This is the second container of the image (after t_podman_run's, in
    # another podman store): it restored the first's bake, and packed
    # nothing, although podman made files of its own in its root.
    local packed
    packed=$(find "$SUPERMACHINE_RUNTIME_IMAGES" -name 'dir-*.sqfs' | wc -l)
    ((packed == 1)) || { echo "$packed root filesystems packed for two containers of one image (want 1)"; return 1; }
}

t_podman_detached() {
    eng_podman_setup "$T/p" && eng_podman_load "$T/p" || return 1
    local id out rc
    id=$(rpodman run -d --network none --name c1 "$eng_image" sleep 600 2>"$T/err") ||
        { echo "run -d: '$id'"; eng_why; return 1; }
    out=$(rpodman exec c1 sh -c 'echo from-exec; exit 4' 2>"$T/err")
    rc=$?
    [[ $out == from-exec && $rc == 4 ]] ||
        { echo "exec: '$out', status $rc (want 'from-exec', 4)"; eng_why; rpodman rm -f c1 >/dev/null 2>&1; return 1; }
    out=$(rpodman inspect -f '{{.State.Status}}' c1 2>"$T/err")
    [[ $out == running ]] || { echo "inspect after exec: '$out'"; eng_why; rpodman rm -f c1 >/dev/null 2>&1; return 1; }
    rpodman stop -t 5 c1 >/dev/null 2>"$T/err" || { echo "stop failed"; eng_why; rpodman rm -f c1 >/dev/null 2>&1; return 1; }
    out=$(rpodman inspect -f '{{.State.Status}}' c1 2>"$T/err")
    [[ $out == exited ]] || { echo "inspect after stop: '$out'"; eng_why; rpodman rm -f c1 >/dev/null 2>&1; return 1; }
    rpodman rm c1 >/dev/null 2>"$T/err" || { echo "rm failed"; eng_why; return 1; }
    [[ -z $(rpodman ps -aq 2>/dev/null) ]] || { echo "containers left after rm: $(rpodman ps -a)"; return 1; }
}

# podman -it needs a terminal on its stdin: script(1) gives it one (the box
# has no /dev/fd, so no process substitution). The container sees a tty, and
# its output comes back through it. crun runs the same first, in the same
# store: what script and podman themselves put on the terminal (the echo of
# the input, the EOF character script sends when its stdin ends) shows in
# both, so only the container's lines are looked for, and crun's output is
# shown beside ours when they differ.
eng_tty_run() { # RUNTIME OUT: podman run -it under script(1); its status
    local cmd
    printf -v cmd '%q ' env CONTAINERS_CONF="$T/p/containers.conf" CONTAINERS_STORAGE_CONF="$T/p/storage.conf" \
        TMPDIR="$T/p/tmp" podman --runtime "$1" run --rm -it --network none "$eng_image" sh -c 'tty; stty size; echo tty-exit-$?; exit 6'
    script -qec "$cmd" /dev/null >"$2.raw" 2>>"$T/err" <<<""
    local rc=$?
    tr -d '\r' <"$2.raw" >"$2"
    return $rc
}

t_podman_tty() {
    eng_podman_setup "$T/p" && eng_podman_load "$T/p" || return 1
    local rc
    eng_tty_run crun "$T/crun.out"
    eng_tty_run "$eng_rt" "$T/out"
    rc=$?
    grep -q '/dev/pts/[0-9]' "$T/out" && grep -q '^24 80$' "$T/out" && grep -q 'tty-exit-0' "$T/out" && ((rc == 6)) ||
        { echo "podman run -it: status $rc (want 6), output:"; sed -n l "$T/out" | sed 's/^/  /'
          echo "with crun:"; sed -n l "$T/crun.out" | sed 's/^/  /'; eng_why; return 1; }
    echo "info: $(grep -m1 -o '/dev/pts/[0-9]*' "$T/out"), 24 rows 80 columns"
    local norm='s#/dev/pts/[0-9]*#/dev/pts/N#'
    [[ $(sed "$norm" "$T/out") == "$(sed "$norm" "$T/crun.out")" ]] ||
        echo "info: the terminal's bytes differ from crun's: ours $(sed -n l "$T/out" | tr '\n' ' '), crun's $(sed -n l "$T/crun.out" | tr '\n' ' ')"
}

t_ctr_crun() {
    eng_containerd_start "$T/c" || { eng_containerd_stop "$T/c"; return 1; }
    local t out rc
    t=$(now_ms)
    out=$(ectr "$T/c" run --rm --snapshotter native --runc-binary crun "$eng_image" c1 sh -c 'echo hi; exit 3' 2>"$T/err")
    rc=$?
    eng_containerd_stop "$T/c"
    [[ $out == hi && $rc == 3 ]] ||
        { echo "ctr run with crun: '$out', status $rc"; show_file stderr "$T/err"; show_file containerd "$T/c/containerd.log"; return 1; }
    echo "info: ctr run --rm with crun: $(eng_ms "$t") ms"
}

# containerd's runc shim runs our binary as runc, with --root and --log of its
# own (under the shim's state folder, named below).
t_ctr_run() {
    eng_containerd_start "$T/c" || { eng_containerd_stop "$T/c"; return 1; }
    local t out rc
    t=$(now_ms)
    out=$(ectr "$T/c" run --rm --snapshotter native --runc-binary "$eng_rt" "$eng_image" c1 \
        sh -c 'echo hi; grep -c hypervisor /proc/cpuinfo; exit 3' 2>"$T/err")
    rc=$?
    eng_containerd_stop "$T/c"
    [[ $out =~ ^hi$'\n'[1-9][0-9]*$ && $rc == 3 ]] || {
        echo "ctr run: '$out', status $rc (want 'hi', a hypervisor count, 3)"
        show_file stderr "$T/err"
        # containerd's log is long lines of info: its warnings and errors only.
        grep -E 'level=(warning|error)' "$T/c/containerd.log" | tail -n 8 | cut -c1-400 | sed 's/^/  containerd: /'
        show_file "runtime log (the shim's)" "$T/c/state/io.containerd.runtime.v2.task/sm/c1/log.json"
        return 1
    }
    echo "info: ctr run --rm: $(eng_ms "$t") ms"
}

# Each check's engine state goes when it ends: every store holds a copy of
# the image (vfs, native), and the box's /tmp is a tmpfs of half its memory.
eng_check() {
    check "$@"
    rm -rf "$T/p" "$T/c" 2>/dev/null
}

if ! command -v podman >/dev/null || ! command -v ctr >/dev/null || ! command -v crun >/dev/null; then
    echo "FAIL engines: podman, ctr or crun missing (scripts/deps.sh)"
    vm_failed=$((vm_failed + 1))
else
    eng_check "podman run --rm with crun (control)" t_podman_crun
    eng_check "podman run --rm: output and exit status" t_podman_run
    eng_check "podman run: the process is in a VM; a second container restores the first's bake" t_podman_in_vm
    eng_check "podman run -d, exec, stop, rm" t_podman_detached
    eng_check "podman run -it on a terminal" t_podman_tty
    eng_check "ctr run --rm with crun (control)" t_ctr_crun
    eng_check "ctr run --rm --runc-binary supermachine-runtime" t_ctr_run
fi
