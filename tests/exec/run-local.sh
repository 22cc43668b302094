#!/bin/sh
# Runs the exec suite against a local agent.
#
#   tests/exec/run-local.sh BUILD_DIR [TEST_BINARY...]
#
# Starts BUILD_DIR/bin/supermachine-agent on a fresh Unix socket, runs the
# given exec test binaries (default: every BUILD_DIR/tests/test_exec_*) with
# SM_EXEC_SOCKET, SM_EXEC_LOCAL=1, SM_EXEC_AGENT_PID and SM_EXEC_CLI (the
# BUILD_DIR/bin/supermachine binary, if built) set, checks that the
# agent has no child process left, stops it with SIGTERM and checks its exit
# status (a sanitizer finding makes it non-zero). Then, when root, runs the
# suite again against the agent as PID 1 of a PID namespace (run-pid1.sh;
# SM_EXEC_NO_PID1=1 skips that). Exits non-zero on any failure.
set -u

build=${1:?usage: tests/exec/run-local.sh BUILD_DIR [TEST_BINARY...]}
shift
agent=$build/bin/supermachine-agent
if [ ! -x "$agent" ]; then
    echo "run-local.sh: no agent at $agent: build it first (make $agent)" >&2
    exit 2
fi
if [ $# -eq 0 ]; then
    for t in "$build"/tests/test_exec_*; do
        case $t in
        *.*) continue ;;              # dependency files and the like
        */test_exec_pid1) continue ;; # powers the agent off: run-pid1.sh runs it
        esac
        set -- "$@" "$t"
    done
fi

tmp=$(mktemp -d /tmp/sm-exec-local.XXXXXX) || exit 2
sock=$tmp/exec.sock
log=$tmp/agent.log
"$agent" --listen "unix:$sock" 2>"$log" &
agent_pid=$!

cleanup() {
    kill -TERM "$agent_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup INT TERM

i=0
while [ ! -S "$sock" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$agent_pid" 2>/dev/null; then
        echo "run-local.sh: the agent did not start listening on $sock:" >&2
        cat "$log" >&2
        cleanup
        exit 1
    fi
    sleep 0.05
done

export SM_EXEC_SOCKET="$sock" SM_EXEC_LOCAL=1 SM_EXEC_AGENT_PID="$agent_pid"
if [ -x "$build/bin/supermachine" ]; then
    SM_EXEC_CLI="$build/bin/supermachine"
    export SM_EXEC_CLI
fi
failed=0
ran=0
for t in "$@"; do
    if [ ! -x "$t" ]; then
        echo "run-local.sh: $t is not an executable test (build with make all-tests)" >&2
        failed=1
        continue
    fi
    ran=$((ran + 1))
    echo "run-local.sh: $t"
    if ! timeout 300 "$t"; then # a hung test fails instead of hanging the run
        echo "run-local.sh: FAILED: $t" >&2
        failed=1
    fi
done
if [ $ran -eq 0 ]; then
    echo "run-local.sh: no exec test binary ran" >&2
    failed=1
fi

# Every command's processes must be gone (reaped, not zombies) by now.
children() {
    cat /proc/"$agent_pid"/task/*/children 2>/dev/null | tr -s ' ' '\n' | grep -c .
}
i=0
while [ "$(children)" -ne 0 ] && [ $i -lt 20 ]; do
    i=$((i + 1))
    sleep 0.1
done
if [ "$(children)" -ne 0 ]; then
    echo "run-local.sh: FAILED: the agent still has child processes:" >&2
    for p in $(cat /proc/"$agent_pid"/task/*/children); do
        echo "  $p: $(tr '\0' ' ' < /proc/"$p"/cmdline 2>/dev/null) ($(grep State /proc/"$p"/status 2>/dev/null))" >&2
    done
    failed=1
fi

kill -TERM "$agent_pid"
wait "$agent_pid"
rc=$?
if [ $rc -ne 0 ]; then
    echo "run-local.sh: FAILED: the agent exited with status $rc; its log:" >&2
    cat "$log" >&2
    failed=1
fi
rm -rf "$tmp"
if [ $failed -eq 0 ]; then
    echo "run-local.sh: exec suite passed against $agent"
fi

# The same suite against the agent as PID 1 of a PID namespace: the static
# guest binary for a plain build, the sanitized host build otherwise.
if [ -z "${SM_EXEC_NO_PID1:-}" ] && [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null; then
    pid1_agent=$agent
    if [ "$build" = build ] && [ -x build/guest/supermachine-agent ]; then
        pid1_agent=build/guest/supermachine-agent
    fi
    if [ -x "$build/tests/test_exec_pid1" ]; then
        "$(dirname "$0")/run-pid1.sh" "$pid1_agent" "$build" || failed=1
    else
        echo "run-local.sh: no $build/tests/test_exec_pid1: PID 1 run skipped" >&2
    fi
fi
exit $failed
