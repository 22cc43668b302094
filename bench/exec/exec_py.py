"""One block for bench/exec/python_vs_c.sh: N round trips of `true` through
each exec socket in turn with the Python binding (Agent(socket).exec), then
one line of the medians in microseconds, as `exec_bench --roundtrip-block`
prints them for the C library.

    python3 bench/exec/exec_py.py N SOCKET...   (PYTHONPATH=build/python)
"""
import statistics
import sys
import time

import supermachine


def main():
    n = int(sys.argv[1])
    agents = [supermachine.Agent(s) for s in sys.argv[2:]]
    times = [[] for _ in agents]
    for _ in range(n):
        for a, t in zip(agents, times):
            t0 = time.perf_counter()
            if a.exec(["true"]).status != 0:
                sys.exit("exec_py: true failed")
            t.append(time.perf_counter() - t0)
    print(" ".join("%.1f" % (statistics.median(t) * 1e6) for t in times))


if __name__ == "__main__":
    main()
