"""Fixtures of the Python binding's tests.

`agent`: an exec socket to run commands on without a VM. It is
$SM_EXEC_SOCKET when set (tests/exec/run-local.sh style); otherwise the tests
start $SM_AGENT (default build/bin/supermachine-agent, from the repository
root) with --listen unix:PATH themselves, and stop it at the end, checking it
left no child process behind.
"""
import os
import subprocess
import tempfile
import time

import pytest

import supermachine

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _children(pid):
    kids = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                kids += f.read().split()
    except FileNotFoundError:
        pass
    return kids


class LocalAgent:
    def __init__(self, socket_path, pid):
        self.socket_path = socket_path
        self.pid = pid
        self.dir = os.path.dirname(socket_path)

    def children(self):
        return _children(self.pid) if self.pid else []


@pytest.fixture(scope="session")
def local_agent():
    sock = os.environ.get("SM_EXEC_SOCKET")
    if sock:
        yield LocalAgent(sock, int(os.environ.get("SM_EXEC_AGENT_PID", "0")))
        return
    binary = os.environ.get("SM_AGENT", os.path.join(ROOT, "build", "bin", "supermachine-agent"))
    if not os.access(binary, os.X_OK):
        pytest.fail("no agent at %s: build it (make %s)" % (binary, "build/bin/supermachine-agent"))
    tmp = tempfile.mkdtemp(prefix="sm-py-agent.")
    sock = os.path.join(tmp, "exec.sock")
    log = open(os.path.join(tmp, "agent.log"), "wb")
    proc = subprocess.Popen([binary, "--listen", "unix:" + sock], stderr=log)
    for _ in range(200):
        if os.path.exists(sock) or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert os.path.exists(sock), "the agent did not start listening"
    yield LocalAgent(sock, proc.pid)
    # Every command's processes must be gone by the end.
    for _ in range(30):
        if not _children(proc.pid):
            break
        time.sleep(0.1)
    left = _children(proc.pid)
    proc.terminate()
    rc = proc.wait(10)
    log.close()
    subprocess.run(["rm", "-rf", tmp])
    assert not left, "the agent still has child processes: %s" % left
    assert rc == 0, "the agent exited with status %d" % rc


@pytest.fixture
def agent(local_agent):
    return supermachine.Agent(local_agent.socket_path)


@pytest.fixture
def workdir(local_agent):
    d = tempfile.mkdtemp(prefix="sm-py-test.")
    yield d
    subprocess.run(["rm", "-rf", d])
