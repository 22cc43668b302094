"""The exec API of the Python binding against a local agent (no VM)."""
import os
import signal
import threading
import time

import pytest

import supermachine
from supermachine import ExecBuilder


def procs_with(needle):
    """Pids whose command line contains needle."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if needle.encode() in f.read().replace(b"\0", b" "):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def wait_gone(needle, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not procs_with(needle):
            return True
        time.sleep(0.05)
    return False


# ---- output ------------------------------------------------------------------

def test_exec_status_stdout_stderr(agent):
    out = agent.exec(["sh", "-c", "echo hi; echo err >&2; exit 7"])
    assert out.status == 7
    assert out.stdout == b"hi\n"
    assert out.stderr == b"err\n"
    assert out.signal == 0
    assert not out.timed_out
    assert out.duration > 0
    assert out.peak_rss_kib > 0


def test_exec_env_and_cwd(agent, workdir):
    out = agent.exec(["sh", "-c", 'echo "$FOO"; pwd'], env={"FOO": "bar baz"}, cwd=workdir)
    assert out.status == 0
    assert out.stdout == b"bar baz\n" + os.path.realpath(workdir).encode() + b"\n"


def test_exec_stdin_large(agent):
    data = bytes(range(256)) * 8192  # 2 MiB, more than a pipe holds
    out = agent.exec(["cat"], stdin=data)
    assert out.status == 0
    assert out.stdout == data


def test_exec_timeout_kills(agent):
    t0 = time.monotonic()
    out = agent.exec(["sh", "-c", "sleep 30; echo late"], timeout=0.3)
    assert time.monotonic() - t0 < 10
    assert out.timed_out
    assert out.status == -1 and out.signal == signal.SIGKILL
    assert out.shell_code == 128 + signal.SIGKILL
    assert b"late" not in out.stdout


def test_builder_chain_and_stage_file(agent, workdir):
    path = os.path.join(workdir, "sub", "script.sh")
    out = (ExecBuilder(agent.socket_path)
           .stage_file(path, b"#!/bin/sh\necho staged $1\n", 0o755)
           .argv([path, "one"])
           .chain(["sh", "-c", "stat -c %a " + path])
           .output())
    assert out.status == 0
    assert out.stdout == b"staged one\n755\n"
    assert out.steps_run == 2


def test_chain_stops_at_first_failure(agent):
    out = ExecBuilder(agent.socket_path).argv(["sh", "-c", "exit 3"]).chain(["echo", "no"]).output()
    assert out.status == 3
    assert out.stdout == b""
    assert out.steps_run == 1


def test_tty_merges_stderr(agent):
    out = agent.exec(["sh", "-c", "test -t 1 && echo tty; echo err >&2"], tty=True)
    assert out.status == 0
    assert b"tty" in out.stdout and b"err" in out.stdout
    assert out.stderr == b""


def test_builder_copy_is_independent(agent):
    b = ExecBuilder(agent.socket_path).argv(["sh", "-c", 'echo "$X"']).env("X", "1")
    c = b.copy().env("X", "2")
    assert b.output().stdout == b"1\n"
    assert c.output().stdout == b"2\n"


def test_clear_env(agent):
    b = ExecBuilder(agent.socket_path).argv(["env"]).env("A", "1").clear_env()
    assert b.copy().output().stdout == b"A=1\n"
    assert b"PATH=" in b.clear_env(False).output().stdout


def test_user(agent):
    """The agent's own identity works, even unprivileged; a foreign one only for root."""
    uid, gid = os.getuid(), os.getgid()
    b = ExecBuilder(agent.socket_path).argv(["sh", "-c", "id -u; id -g"])
    out = b.user(uid, gid, os.getgroups()).output()
    assert out.status == 0, out.stderr
    assert out.stdout == b"%d\n%d\n" % (uid, gid)
    out = b.user(uid + 1, gid, os.getgroups()).output()
    if uid == 0:
        assert out.stdout == b"1\n0\n"
    else:
        assert out.status == 126
        assert b"setuid: Operation not permitted" in out.stderr


def test_rlimit(agent):
    """Limits reach every step; unlimited is None or resource.RLIM_INFINITY; one the agent may not set is status 126."""
    import resource
    b = ExecBuilder(agent.socket_path).argv(["sh", "-c", "ulimit -n; ulimit -Hn"])
    b.rlimit(resource.RLIMIT_NOFILE, 50, 60).rlimit(resource.RLIMIT_NOFILE, 77, 100)
    assert b.copy().output().stdout == b"77\n100\n"
    b = ExecBuilder(agent.socket_path).argv(["sh", "-c", "ulimit -c"])
    assert b.rlimit(resource.RLIMIT_CORE, 0, resource.RLIM_INFINITY).output().stdout == b"0\n"
    out = ExecBuilder(agent.socket_path).argv(["true"]).rlimit(resource.RLIMIT_NOFILE, 10, None).output()
    assert out.status == 126
    assert b"setrlimit(RLIMIT_NOFILE" in out.stderr


def test_hostname_refused_on_the_host(agent):
    """The local agent shares this machine's hostname: it refuses to set it."""
    before = os.uname().nodename
    with pytest.raises(supermachine.InvalidError) as ei:
        ExecBuilder(agent.socket_path).argv(["true"]).hostname("sm-must-not-rename").output()
    assert "only the guest's init sets it" in str(ei.value)
    assert os.uname().nodename == before


def test_max_output_limit(agent):
    b = ExecBuilder(agent.socket_path).argv(["sh", "-c", "head -c 100000 /dev/zero"]).max_output(1000)
    with pytest.raises(supermachine.LimitError) as ei:
        b.output()
    assert ei.value.code == -13
    assert len(ei.value.stdout) <= 1000


# ---- spawn -------------------------------------------------------------------

def test_spawn_stdin_stdout_wait(agent):
    child = agent.spawn(["sh", "-c", "read x; echo got $x; echo e >&2; exit 4"])
    child.stdin.write(b"foo\n")
    assert child.stdout.read() == b"got foo\n"
    assert child.stderr.read() == b"e\n"
    st = child.wait()
    assert st.status == 4
    child.close()


def test_spawn_iteration(agent):
    with agent.spawn(["sh", "-c", "echo a; echo b >&2; echo c"]) as child:
        chunks = list(child)
        st = child.wait()
    assert st.status == 0
    assert b"".join(c for n, c in chunks if n == "stdout") == b"a\nc\n"
    assert b"".join(c for n, c in chunks if n == "stderr") == b"b\n"


def test_spawn_signal(agent):
    child = agent.spawn(["sh", "-c", "echo ready; exec sleep 30.125"])
    assert child.stdout.read(6) == b"ready\n"
    child.signal(signal.SIGTERM)
    st = child.wait()
    assert st.status == -1
    assert st.signal == signal.SIGTERM
    assert wait_gone("sleep 30.125")


def test_spawn_tty_resize(agent):
    b = ExecBuilder(agent.socket_path).argv(["sh", "-c", "read x; stty size"]).tty(True).winsize(80, 24)
    child = b.spawn()
    child.resize(132, 43)
    child.stdin.write(b"go\n")
    out = child.stdout.read()
    st = child.wait()
    assert st.status == 0
    assert b"43 132" in out


def test_spawn_close_aborts(agent):
    child = agent.spawn(["sleep", "30.25"])
    time.sleep(0.2)
    child.close()
    assert wait_gone("sleep 30.25")
    with pytest.raises(supermachine.InvalidError):
        child.wait()


# ---- files -------------------------------------------------------------------

def test_write_and_read_file(agent, workdir):
    path = os.path.join(workdir, "a", "b", "f.bin")
    data = os.urandom(300000)
    agent.write_file(path, data, mode=0o600)
    assert agent.read_file(path) == data
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_read_missing_file(agent, workdir):
    with pytest.raises(supermachine.NotFoundError) as ei:
        agent.read_file(os.path.join(workdir, "missing"))
    assert ei.value.code == -4
    assert isinstance(ei.value, supermachine.Error)


def test_read_file_over_limit(agent, workdir):
    path = os.path.join(workdir, "big")
    agent.write_file(path, b"x" * 5000)
    with pytest.raises(supermachine.LimitError):
        agent.read_file(path, max_len=100)


# ---- errors --------------------------------------------------------------------

def test_missing_socket_is_setup_error(workdir):
    a = supermachine.Agent(os.path.join(workdir, "nothing.sock"))
    with pytest.raises(supermachine.SetupError) as ei:
        a.exec(["true"])
    e = ei.value
    assert e.code == -10
    assert "nothing.sock" in e.message
    assert isinstance(e, supermachine.Error) and isinstance(e, ConnectionError)


def test_output_resilient_retries_setup_errors(workdir):
    b = ExecBuilder(os.path.join(workdir, "nothing.sock")).argv(["true"])
    t0 = time.monotonic()
    with pytest.raises(supermachine.SetupError):
        b.output_resilient(3)
    # linear backoff: 50 + 100 + 150 ms between the four attempts
    assert time.monotonic() - t0 >= 0.25


def test_output_resilient_runs(agent):
    out = ExecBuilder(agent.socket_path).argv(["echo", "ok"]).output_resilient(2)
    assert out.stdout == b"ok\n"


@pytest.mark.parametrize("call, exc", [
    (lambda b: b.argv("echo hi"), TypeError),
    (lambda b: b.argv([]), ValueError),
    (lambda b: b.argv(["echo", 3]), TypeError),
    (lambda b: b.argv(["ec\0ho"]), ValueError),
    (lambda b: b.argv(None), TypeError),
    (lambda b: b.env("A=B", "c"), ValueError),
    (lambda b: b.env(None, "c"), TypeError),
    (lambda b: b.cwd(None), TypeError),
    (lambda b: b.timeout(-1), ValueError),
    (lambda b: b.timeout("1"), TypeError),
    (lambda b: b.winsize(-1, 10), ValueError),
    (lambda b: b.winsize(10, 70000), ValueError),
    (lambda b: b.max_output(-5), ValueError),
    (lambda b: b.user(-1, 0), ValueError),
    (lambda b: b.user(0, 0, [0] * 257), ValueError),
    (lambda b: b.user(0, 0, ["0"]), TypeError),
    (lambda b: b.user(0, 0, 5), TypeError),
    (lambda b: b.rlimit(16, 1, 1), ValueError),
    (lambda b: b.rlimit(7, 2, 1), ValueError),
    (lambda b: b.rlimit(7, -2, 1), ValueError),
    (lambda b: b.rlimit(7, 1, 2 ** 64), ValueError),
    (lambda b: b.rlimit(7, "1", 2), TypeError),
    (lambda b: b.hostname(""), ValueError),
    (lambda b: b.hostname("a_b"), ValueError),
    (lambda b: b.hostname("a" * 65), ValueError),
    (lambda b: b.hostname(5), TypeError),
    (lambda b: b.stage_file("/x", "text"), TypeError),
    (lambda b: b.stage_file("/x", b"", -1), ValueError),
    (lambda b: b.output_resilient(-1), ValueError),
])
def test_bad_builder_input(agent, call, exc):
    with pytest.raises(exc):
        call(ExecBuilder(agent.socket_path))


def test_bad_exec_input(agent, workdir):
    with pytest.raises(TypeError):
        supermachine.ExecBuilder(None)
    with pytest.raises(TypeError):
        agent.exec(["cat"], stdin="text")
    with pytest.raises(ValueError):
        agent.write_file(os.path.join(workdir, "f"), b"", mode=-1)
    with pytest.raises(TypeError):
        agent.write_file(os.path.join(workdir, "f"), None)
    with pytest.raises(ValueError):
        agent.read_file(os.path.join(workdir, "f"), max_len=-1)
    child = agent.spawn(["true"])
    with pytest.raises(ValueError):
        child.signal(0)
    with pytest.raises(ValueError):
        child.stdout.read(0) or child._raw.read_stdout(-3)
    child.wait()


def test_relative_guest_path_is_refused(agent):
    with pytest.raises(supermachine.Error):
        agent.write_file("relative/path", b"x")


# ---- threads and signals ---------------------------------------------------------

def test_threads_run_in_parallel(agent):
    """Blocking calls release the GIL: 4 commands of 0.6 s each in threads
    take well under their 2.4 s sum."""
    results = []

    def run():
        results.append(agent.exec(["sleep", "0.6"]).status)

    threads = [threading.Thread(target=run) for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0, 0, 0, 0]
    assert time.monotonic() - t0 < 1.8


def test_keyboard_interrupt_kills_command(agent):
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        agent.exec(["sh", "-c", "sleep 30.375; echo done"])
    timer.join()
    assert time.monotonic() - t0 < 5
    assert wait_gone("sleep 30.375")


def test_exec_stdin_unread(agent):
    """A command that exits without reading its stdin still ends the exec."""
    t0 = time.monotonic()
    out = agent.exec(["sh", "-c", "echo bye"], stdin=b"z" * (8 << 20))
    assert out.status == 0 and out.stdout == b"bye\n"
    assert time.monotonic() - t0 < 30


def test_keyboard_interrupt_with_stdin(agent):
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        agent.exec(["sh", "-c", "sleep 30.5"], stdin=b"unread")
    timer.join()
    assert wait_gone("sleep 30.5")


def test_output_with_cancel(agent):
    ev = threading.Event()
    threading.Timer(0.3, ev.set).start()
    t0 = time.monotonic()
    with pytest.raises(supermachine.CancelledError) as ei:
        ExecBuilder(agent.socket_path).argv(["sh", "-c", "echo started; sleep 30.625"]).output_with_cancel(ev)
    assert time.monotonic() - t0 < 5
    assert ei.value.code == -12
    assert ei.value.stdout == b"started\n"
    assert wait_gone("sleep 30.625")
    # not set: runs to the end
    out = ExecBuilder(agent.socket_path).argv(["echo", "fine"]).output_with_cancel(threading.Event())
    assert out.stdout == b"fine\n"
    with pytest.raises(TypeError):
        ExecBuilder(agent.socket_path).argv(["true"]).output_with_cancel(object())
