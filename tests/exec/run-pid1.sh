#!/bin/sh
# Runs the exec suite against an agent that is PID 1: of a fresh PID and
# mount namespace (the agent's --no-vm mode), so its PID 1 code paths (the
# mounts, reaping orphans, power off) run without a VM. Needs root (unshare).
#
#   tests/exec/run-pid1.sh AGENT_BINARY BUILD_DIR
#
# AGENT_BINARY may be the static guest build (build/guest/supermachine-agent)
# or a host build; the test binaries come from BUILD_DIR/tests. A static
# agent runs as /init of a root holding only a static busybox (as in the
# guest), when one is installed. The last test binary, test_exec_pid1, powers
# the agent off; the namespace must then be gone.
set -u
agent=${1:?usage: tests/exec/run-pid1.sh AGENT_BINARY BUILD_DIR}
build=${2:?usage: tests/exec/run-pid1.sh AGENT_BINARY BUILD_DIR}
if ! command -v unshare >/dev/null || [ "$(id -u)" -ne 0 ]; then
    echo "run-pid1.sh: needs root and unshare(1); skipped" >&2
    exit 77
fi
# An agent without --no-vm would take the namespace for a guest and talk to
# the VMM's I/O port on this machine: refuse it.
if ! "$agent" --help 2>&1 | grep -q -- --no-vm; then
    echo "run-pid1.sh: $agent has no --no-vm option (stale build?): rebuild it" >&2
    exit 2
fi
# Not under /tmp or /run: the agent mounts tmpfs over those in its namespace.
dir=$(mktemp -d /var/tmp/sm-pid1.XXXXXX) || exit 2
sock=$dir/exec.sock
busybox=$(command -v busybox || true)
if [ -n "$busybox" ] && ! ldd "$agent" >/dev/null 2>&1 && ! ldd "$busybox" >/dev/null 2>&1; then
    # Both static: a guest-like root with only busybox, the agent as /init.
    root=$dir/root
    mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/proc" "$root/sys" "$root/dev" \
        "$root/tmp" "$root/run" "$root/root" "$root/etc"
    cp "$busybox" "$root/bin/busybox"
    for applet in $("$busybox" --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    cp "$agent" "$root/init"
    sock=$root/exec.sock
    echo "run-pid1.sh: $agent as /init of a busybox-only root"
    unshare --pid --fork --kill-child --mount --propagation private --root="$root" /init --no-vm \
        --listen unix:/exec.sock >"$dir/agent.log" 2>&1 &
else
    unshare --pid --fork --kill-child --mount --propagation private "$agent" --no-vm --listen "unix:$sock" \
        >"$dir/agent.log" 2>&1 &
fi
ns=$!
# The namespace's PID 1 is unshare's child; SIGKILL from out here always
# reaches it (--kill-child covers unshare dying on its own).
kill_ns() {
    for p in $(cat /proc/"$ns"/task/*/children 2>/dev/null); do
        kill -KILL "$p" 2>/dev/null
    done
    kill -KILL "$ns" 2>/dev/null
}
i=0
while [ ! -S "$sock" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$ns" 2>/dev/null; then
        echo "run-pid1.sh: the agent did not come up:" >&2
        cat "$dir/agent.log" >&2
        kill_ns
        rm -rf "$dir"
        exit 1
    fi
    sleep 0.05
done

export SM_EXEC_SOCKET="$sock" SM_EXEC_PID1=1
if [ -x "$build/bin/supermachine" ]; then
    SM_EXEC_CLI="$build/bin/supermachine"
    export SM_EXEC_CLI
fi
failed=0
for t in test_exec_spec test_exec_bad_peers test_exec_cli test_exec_pid1; do
    echo "run-pid1.sh: $build/tests/$t"
    if ! timeout 300 "$build/tests/$t"; then
        echo "run-pid1.sh: FAILED: $t" >&2
        failed=1
    fi
done

# After POWEROFF the namespace's PID 1 is gone, so unshare returns.
i=0
while kill -0 "$ns" 2>/dev/null && [ $i -lt 50 ]; do
    i=$((i + 1))
    sleep 0.1
done
if kill -0 "$ns" 2>/dev/null; then
    echo "run-pid1.sh: FAILED: the agent did not power off; killing the namespace" >&2
    kill_ns
    failed=1
fi
wait "$ns" 2>/dev/null
if ! grep -q "supermachine-agent: ready" "$dir/agent.log" ||
   ! grep -q "powering off (power off requested by the host)" "$dir/agent.log"; then
    echo "run-pid1.sh: FAILED: the agent's log lacks the ready/power-off lines:" >&2
    cat "$dir/agent.log" >&2
    failed=1
fi
rm -rf "$dir"
[ $failed -eq 0 ] && echo "run-pid1.sh: exec suite passed against $agent as PID 1"
exit $failed
