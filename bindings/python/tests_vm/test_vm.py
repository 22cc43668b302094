"""The Python binding on real VMs (run by tests/vm/test_python.sh, which sets
XDG_DATA_HOME to a default store with a baked 'default' image, XDG_RUNTIME_DIR
to a folder of its own, and the asset variables).

Each test checks that it left no VM folder and no VMM process behind."""
import os
import re
import signal
import threading
import time

import pytest

import supermachine

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
VMS_DIR = os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"), "supermachine", "vms")
SLOW = float(os.environ.get("SM_PY_SLOW", "1"))  # scales timeouts inside kvmbox


def vm_folders():
    try:
        return sorted(os.listdir(VMS_DIR))
    except FileNotFoundError:
        return []


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_dead(pid, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(autouse=True)
def nothing_left_behind():
    before = vm_folders()
    yield
    deadline = time.monotonic() + 20
    while vm_folders() != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert vm_folders() == before, "VM folders left: %s" % (set(vm_folders()) - set(before))


@pytest.fixture(scope="module")
def image():
    return supermachine.Image.default()


def test_default_image_start_exec_files(image):
    with image.start() as vm:
        assert re.fullmatch(r"[0-9a-f]{8}", vm.id)
        assert vm.running
        pid = vm.pid
        folder = vm.state_dir
        assert os.path.isdir(folder)
        out = vm.exec(["sh", "-c", "echo hi; echo err >&2; exit 7"])
        assert (out.status, out.stdout, out.stderr) == (7, b"hi\n", b"err\n")
        out = vm.exec(["cat"], stdin=b"x" * 100000)
        assert out.stdout == b"x" * 100000
        vm.write_file("/tmp/py/data", b"\x00\x01binary", mode=0o600)
        assert vm.read_file("/tmp/py/data") == b"\x00\x01binary"
        assert vm.exec(["stat", "-c", "%a", "/tmp/py/data"]).stdout == b"600\n"
        with pytest.raises(supermachine.NotFoundError):
            vm.read_file("/tmp/py/missing")
        out = vm.exec_builder().argv(["sh", "-c", "sleep 60"]).timeout(1).output()
        assert out.timed_out
        child = vm.spawn(["sh", "-c", "read x; echo got $x"])
        child.stdin.write(b"it\n")
        assert child.stdout.read() == b"got it\n"
        assert child.wait().status == 0
    assert not os.path.exists(folder)
    assert wait_dead(pid)
    with pytest.raises(supermachine.InvalidError):
        vm.exec(["true"])
    vm.stop()  # again: harmless


def test_snapshot_and_restore(image, tmp_path):
    snap = str(tmp_path / "snap")
    with image.start() as vm:
        vm.write_file("/root/marker", b"from before the snapshot")
        vm.snapshot(snap)
    restored = supermachine.Image.from_snapshot(snap)
    with restored.start() as vm2:
        assert vm2.read_file("/root/marker") == b"from before the snapshot"


def test_volume_outlives_its_vm(image):
    """A named volume keeps what one VM wrote for the next; a second writer
    meanwhile is refused with BusyError; a VM with a volume is not snapshotted."""
    with image.start(volumes=[("pyvol", "/work")], volume_size=64 << 20) as vm:
        vm.write_file("/work/kept", b"across VMs")
        with pytest.raises(supermachine.BusyError):
            image.start(volumes=[("pyvol", "/w")])
        with pytest.raises(supermachine.UnsupportedError):
            vm.snapshot("/nonexistent-never-made")
    with image.start(volumes=[("pyvol", "/work", True)]) as vm2:
        assert vm2.read_file("/work/kept") == b"across VMs"
        assert vm2.exec(["sh", "-c", "echo x >/work/new"]).status != 0


def test_pool_eight_threads(image):
    n = 8
    with image.pool(min=2, max=n, acquire_timeout=600 * SLOW) as pool:
        barrier = threading.Barrier(n, timeout=900 * SLOW)
        ids, errors = [], []
        lock = threading.Lock()

        def worker(i):
            try:
                with pool.acquire() as vm:
                    out = vm.exec(["sh", "-c", "echo $((%d * 3))" % i])
                    assert out.status == 0 and out.stdout == b"%d\n" % (i * 3)
                    with lock:
                        ids.append(vm.id)
                    barrier.wait()  # all 8 held at once
            except BaseException as e:  # noqa: B902 - reported below
                with lock:
                    errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(set(ids)) == n, ids
        stats = pool.stats()
        assert stats["in_use"] == 0
        assert stats["max"] == n and stats["min"] == 2
        assert stats["restored"] >= n
        with pytest.raises(supermachine.InvalidError):
            image.pool(min=5, max=2)


def test_keyboard_interrupt_during_exec(image):
    with pytest.raises(KeyboardInterrupt):
        with image.start() as vm:
            pid = vm.pid
            folder = vm.state_dir
            timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            try:
                vm.exec(["sleep", "3600"])
            finally:
                timer.join()
    assert not os.path.exists(folder)
    assert wait_dead(pid)


def test_readme_example():
    """The README's Python example, as printed there."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"<!-- python-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no python example block"
    code = m.group(1)
    env = {}
    exec(compile(code, "README.md", "exec"), env)  # noqa: S102
