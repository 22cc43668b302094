#!/bin/sh
# Builds bench/exec/exec_bench against build/lib/libsupermachine.a, starts the
# local agent (build/bin/supermachine-agent) on a temporary socket and runs the
# benchmark. Usage: bench/exec/run.sh [ROUNDTRIPS] [THROUGHPUT_RUNS]
set -eu
cd "$(dirname "$0")/../.."
make -s build/lib/libsupermachine.a build/bin/supermachine-agent
mkdir -p build/bench
cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude bench/exec/exec_bench.c \
    build/lib/libsupermachine.a -o build/bench/exec_bench -lpthread
tmp=$(mktemp -d /tmp/sm-bench.XXXXXX)
build/bin/supermachine-agent --listen "unix:$tmp/exec.sock" 2>"$tmp/agent.log" &
agent=$!
trap 'kill $agent 2>/dev/null; rm -rf "$tmp"' EXIT
while [ ! -S "$tmp/exec.sock" ]; do sleep 0.05; done
build/bench/exec_bench "$tmp/exec.sock" "$@"
