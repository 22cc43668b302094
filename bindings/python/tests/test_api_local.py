"""Images, pools and VMs: what can be checked without a VM (argument
checking, error mapping), on a fake snapshot folder, which the library only
checks when a VM restores it."""
import os
import resource

import pytest

import supermachine


@pytest.fixture
def fake_image(tmp_path):
    d = tmp_path / "snap"
    d.mkdir()
    (d / "state").write_bytes(b"not a snapshot")
    (d / "memory").write_bytes(b"")
    return supermachine.Image.from_snapshot(str(d))


def test_image_from_snapshot_dir(fake_image, tmp_path):
    assert os.path.samefile(fake_image.dir, str(tmp_path / "snap"))


def test_image_from_missing_snapshot(tmp_path):
    with pytest.raises(supermachine.NotFoundError) as ei:
        supermachine.Image.from_snapshot(str(tmp_path / "nothing"))
    assert ei.value.code == -4 and ei.value.message


def test_named_image_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERMACHINE_IMAGES", str(tmp_path / "images"))
    with pytest.raises(supermachine.NotFoundError):
        supermachine.Image.named("nosuchimage")


@pytest.mark.parametrize("call, exc", [
    (lambda: supermachine.Image.from_snapshot(None), TypeError),
    (lambda: supermachine.Image.from_snapshot(3), TypeError),
    (lambda: supermachine.Image.named(None), TypeError),
    (lambda: supermachine.Image.from_oci(None), TypeError),
    (lambda: supermachine.Image.from_oci("x", username="u"), ValueError),
    (lambda: supermachine.Image.bake(None), TypeError),
    (lambda: supermachine.Image.bake("x", memory_mib=-1), ValueError),
    (lambda: supermachine.Image.bake("x", cpus=99), supermachine.InvalidError),
])
def test_bad_image_arguments(call, exc):
    with pytest.raises(exc):
        call()


@pytest.mark.parametrize("kw, exc", [
    ({"memory_mib": -1}, ValueError),
    ({"memory_mib": "512"}, TypeError),
    ({"memory_mib": 1 << 40}, ValueError),
    ({"memory_mib": 12}, supermachine.InvalidError),
    ({"cpus": 0}, supermachine.InvalidError),
    ({"cpus": 2.5}, TypeError),
    ({"boot_timeout": 0}, supermachine.InvalidError),
    ({"volumes": [("work", "relative")]}, supermachine.InvalidError),
    ({"volumes": [(".hidden", "/x")]}, supermachine.InvalidError),
    ({"volumes": ["work:/x"]}, TypeError),
    ({"volumes": [("a", "/a")] * 2}, supermachine.InvalidError),
    ({"volumes": [(f"v{i}", f"/v{i}") for i in range(5)]}, supermachine.LimitError),
    ({"volume_size": 1024}, supermachine.InvalidError),
])
def test_bad_start_arguments(fake_image, kw, exc):
    with pytest.raises(exc):
        fake_image.start(**kw)


@pytest.mark.parametrize("kw, exc", [
    ({"min": -1}, ValueError),
    ({"max": 0}, supermachine.InvalidError),
    ({"max": 1000}, supermachine.InvalidError),
    ({"min": 5, "max": 2}, supermachine.InvalidError),
    ({"idle_timeout": -1}, ValueError),
    ({"acquire_timeout": 7200}, supermachine.InvalidError),
    ({"min": None, "max": "4"}, TypeError),
])
def test_bad_pool_arguments(fake_image, kw, exc):
    with pytest.raises(exc):
        fake_image.pool(**kw)


def test_error_classes():
    codes = {
        supermachine.InvalidError: ValueError,
        supermachine.NotFoundError: LookupError,
        supermachine.TimeoutError: TimeoutError,
        supermachine.SetupError: ConnectionError,
        supermachine.DroppedError: ConnectionError,
        supermachine.HostIOError: OSError,
    }
    for cls, builtin in codes.items():
        assert issubclass(cls, supermachine.Error) and issubclass(cls, builtin)
    for cls in (supermachine.GuestError, supermachine.LimitError, supermachine.ProtocolError,
                supermachine.CancelledError, supermachine.KvmError, supermachine.UnsupportedError,
                supermachine.NoMemoryError, supermachine.BusyError):
        assert issubclass(cls, supermachine.Error)


def test_no_leak_in_a_loop(agent):
    """Handles are freed: 1500 execs and spawns do not grow the process much."""
    def rss_kib():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    for _ in range(100):
        agent.exec(["true"])
    before = rss_kib()
    for i in range(1000):
        out = agent.exec(["echo", "x" * 2000])
        assert out.status == 0
    for i in range(500):
        c = agent.spawn(["true"])
        c.wait()
        c.close()
    grown = rss_kib() - before
    assert grown < 8 * 1024, "RSS grew by %d KiB" % grown
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
