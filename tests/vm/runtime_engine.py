#!/usr/bin/env python3
"""A minimal container engine for tests/vm/test_runtime.sh: what conmon or
containerd's shim does around an OCI runtime, and no more.

    runtime_engine.py RUNTIME ROOT BUNDLE ID [--console] [--kill-after S SIG]
                      [--exec-after S ARG...]

It becomes a subreaper (as engines are), runs `create` (with a console
socket when --console: the pty master it is sent is relayed to stdout),
then `start`, optionally `kill` or `exec` after S seconds, waits for the
container's pid (the runtime's monitor, reparented to us), runs `state`
and `delete`, and says on stderr:

    engine: created in MS ms, started in MS ms
    engine: state after exit: STATUS
    engine: status: exit N | signal N
"""
import array
import ctypes
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

PR_SET_CHILD_SUBREAPER = 36


def say(msg):
    print("engine: " + msg, file=sys.stderr, flush=True)


def runtime(rt, root, *args, check=True):
    r = subprocess.run([rt, "--root", root, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        say(f"{args[0]} failed ({r.returncode}): {r.stderr.strip()}")
        sys.exit(2)
    return r


def receive_master(listener):
    conn, _ = listener.accept()
    fds = array.array("i")
    msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    conn.close()
    if not fds:
        say("the console socket got no descriptor")
        sys.exit(2)
    return fds[0]


def relay_master(fd):
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the last slave closed
            return
        if not data:
            return
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def main():
    a = sys.argv[1:]
    if len(a) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    rt, root, bundle, cid = a[:4]
    rest = a[4:]
    console = "--console" in rest
    kill_after = exec_after = None
    if "--kill-after" in rest:
        i = rest.index("--kill-after")
        kill_after = (float(rest[i + 1]), rest[i + 2])
    if "--exec-after" in rest:
        i = rest.index("--exec-after")
        exec_after = (float(rest[i + 1]), rest[i + 2:])

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        say("cannot become a subreaper")
        return 2

    tmp = tempfile.mkdtemp(prefix="engine.", dir=os.path.dirname(root))
    pid_file = os.path.join(tmp, "pid")
    create = ["create", "--bundle", bundle, "--pid-file", pid_file]
    listener = relay = None
    if console:
        path = os.path.join(tmp, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        create += ["--console-socket", path]
    t0 = time.monotonic()
    # The container's stdio is create's: ours.
    r = subprocess.run([rt, "--root", root, *create, cid], stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        say(f"create failed ({r.returncode})")
        return 2
    created_ms = (time.monotonic() - t0) * 1000
    if console:
        master = receive_master(listener)
        relay = threading.Thread(target=relay_master, args=(master,), daemon=True)
        relay.start()
    pid = int(open(pid_file).read())
    state = json.loads(runtime(rt, root, "state", cid).stdout)
    say(f"state after create: {state['status']} pid {state['pid']} (pid file {pid})")
    t1 = time.monotonic()
    runtime(rt, root, "start", cid)
    say(f"created in {created_ms:.0f} ms, started in {(time.monotonic() - t1) * 1000:.0f} ms")
    if exec_after:
        time.sleep(exec_after[0])
        e = runtime(rt, root, "exec", cid, *exec_after[1], check=False)
        sys.stdout.write(e.stdout)
        say(f"exec status: {e.returncode} {e.stderr.strip()}")
    if kill_after:
        time.sleep(kill_after[0])
        say("state before kill: " + json.loads(runtime(rt, root, "state", cid).stdout)["status"])
        runtime(rt, root, "kill", cid, kill_after[1])
    _, ws = os.waitpid(pid, 0)
    if relay:
        relay.join(10)
    state = json.loads(runtime(rt, root, "state", cid).stdout)
    say(f"state after exit: {state['status']}")
    runtime(rt, root, "delete", cid)
    if os.WIFSIGNALED(ws):
        say(f"status: signal {os.WTERMSIG(ws)}")
    else:
        say(f"status: exit {os.WEXITSTATUS(ws)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
