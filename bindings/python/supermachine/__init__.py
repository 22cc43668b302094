"""supermachine: run commands inside hardware-isolated Linux microVMs.

A binding of libsupermachine (a CPython extension written in C). The names
follow the Rust crate's: Image, Vm, ExecBuilder, ExecChild, ExecOutcome.

    import supermachine
    image = supermachine.Image.default()
    with image.start() as vm:
        out = vm.exec(["sh", "-c", "echo hi"])
        assert out.status == 0 and out.stdout == b"hi\\n"

Every blocking call releases the GIL, so threads run VMs and commands in
parallel. Failures raise supermachine.Error (or a subclass per error code),
with .code (the library's sm_code, a negative int) and .message.
"""

import select as _select

from . import _supermachine as _c
from ._supermachine import (  # noqa: F401  (re-exported)
    Error,
    InvalidError,
    NoMemoryError,
    HostIOError,
    NotFoundError,
    UnsupportedError,
    KvmError,
    GuestError,
    TimeoutError,
    ProtocolError,
    SetupError,
    DroppedError,
    CancelledError,
    LimitError,
    BusyError,
)

__all__ = [
    "Image", "Vm", "Pool", "ExecBuilder", "ExecChild", "ExecOutcome", "ExecStatus",
    "Agent", "Error", "InvalidError", "NoMemoryError", "HostIOError", "NotFoundError",
    "UnsupportedError", "KvmError", "GuestError", "TimeoutError", "ProtocolError",
    "SetupError", "DroppedError", "CancelledError", "LimitError", "BusyError",
]


class ExecStatus:
    """How a command ended.

    status: the exit code 0..255, or -1 when a signal killed it (see signal).
    signal: the signal that killed it, or 0. timed_out: the builder's timeout
    killed it. duration: seconds from the first start to the last exit.
    peak_rss_kib: the largest resident set of a command. steps_run: argvs of a
    chain that were started.
    """

    __slots__ = ("status", "signal", "timed_out", "duration", "peak_rss_kib", "steps_run")

    def __init__(self, raw):
        code, sig, timed_out, duration_us, rss, steps = raw
        self.status = code
        self.signal = sig
        self.timed_out = bool(timed_out)
        self.duration = duration_us / 1e6
        self.peak_rss_kib = rss
        self.steps_run = steps

    @property
    def shell_code(self):
        """The shell's view: the exit code, or 128+N for signal N."""
        return 128 + self.signal if self.status < 0 and self.signal else self.status

    @property
    def success(self):
        return self.status == 0

    def __repr__(self):
        return "<%s status=%d signal=%d timed_out=%s duration=%.3fs>" % (
            type(self).__name__, self.status, self.signal, self.timed_out, self.duration)


class ExecOutcome(ExecStatus):
    """What ExecBuilder.output collects: a status plus stdout and stderr (bytes)."""

    __slots__ = ("stdout", "stderr")

    def __init__(self, raw):
        status, out, err = raw
        super().__init__(status)
        self.stdout = out
        self.stderr = err


class _Stdin:
    def __init__(self, raw):
        self._raw = raw

    def write(self, data):
        """Send bytes to the command's stdin; blocks until all are sent."""
        return self._raw.write(data)

    def close(self):
        """Close the command's stdin (it reads EOF)."""
        self._raw.close_stdin()


class _Reader:
    def __init__(self, raw, which):
        self._read = raw.read_stdout if which == 1 else raw.read_stderr

    def read(self, n=-1):
        """Read up to n bytes (blocking until some arrive); b"" is the end.
        n < 0 reads to the end of the stream."""
        if n is None or n < 0:
            parts = []
            while True:
                chunk = self._read(65536)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        if n == 0:
            return b""
        return self._read(n)


class ExecChild:
    """A running command (ExecBuilder.spawn).

    child.stdin.write(b), child.stdin.close(), child.stdout.read(n),
    child.stderr.read(n), child.signal(signo), child.resize(cols, rows),
    child.wait() -> ExecStatus. Iterating yields ("stdout"|"stderr", bytes)
    chunks as they arrive until both streams end. A context manager: on exit
    an unwaited command is aborted (its process group killed).
    """

    def __init__(self, raw):
        self._raw = raw
        self.stdin = _Stdin(raw)
        self.stdout = _Reader(raw, 1)
        self.stderr = _Reader(raw, 2)

    def signal(self, signo):
        """Send signo to the command's process group (safe from any thread)."""
        self._raw.signal(int(signo))

    def resize(self, cols, rows):
        """Set the tty's size (tty commands only)."""
        self._raw.resize(cols, rows)

    def wait(self):
        """Close stdin and wait for the exit; returns an ExecStatus. Read the
        output meanwhile (or first) if the command writes more than ~1 MiB."""
        return ExecStatus(self._raw.wait())

    def close(self):
        """Abort the command if it was not waited for, and free the handle."""
        self._raw.close()

    def __iter__(self):
        out_fd, err_fd = self._raw.fds()
        open_fds = {out_fd: ("stdout", self._raw.read_stdout), err_fd: ("stderr", self._raw.read_stderr)}
        while open_fds:
            ready, _, _ = _select.select(list(open_fds), [], [])
            for fd in ready:
                name, read = open_fds[fd]
                chunk = read(65536)
                if chunk:
                    yield name, chunk
                else:
                    del open_fds[fd]

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.close()
        except InvalidError:
            if exc_type is None:
                raise
            # still in use by another thread: freed with its last reference
        return False


class ExecBuilder:
    """A command for an agent: set it up with the chainable methods, then
    output(), output_resilient(retries) or spawn(). The setters change the
    builder and return it (the Rust crate's builder style)."""

    __slots__ = ("_b",)

    def __init__(self, socket_path=None, *, _raw=None):
        self._b = _raw if _raw is not None else _c.ExecBuilder(socket_path)

    def _set(self, name, *args, **kw):
        getattr(self._b, name)(*args, **kw)
        return self

    def argv(self, argv):
        """The program and its arguments (a sequence of str; argv[0] is looked up in the guest's PATH)."""
        return self._set("argv", list(argv) if not isinstance(argv, (str, bytes)) else argv)

    def env(self, key, value):
        """Add or replace one variable on top of the agent's environment."""
        return self._set("env", key, value)

    def cwd(self, guest_dir):
        """The command's working folder in the guest."""
        return self._set("cwd", guest_dir)

    def user(self, uid, gid, groups=()):
        """Run as uid:gid with exactly these supplementary groups (at most 256); by default the agent's own identity."""
        return self._set("user", uid, gid, list(groups))

    def rlimit(self, resource, soft, hard):
        """A setrlimit limit for the command and every chained step: resource is a resource.RLIMIT_* (0..15), soft <= hard, None or resource.RLIM_INFINITY for unlimited; a resource given twice keeps the last."""
        return self._set("rlimit", resource, soft, hard)

    def hostname(self, name):
        """Set the guest's (the whole VM's) hostname before the command starts: 1..64 letters, digits, '.' and '-'. Only a VM's agent sets it; an agent on the host refuses the request."""
        return self._set("hostname", name)

    def clear_env(self, on=True):
        """The command's environment is only what env() set, nothing inherited from the agent."""
        return self._set("clear_env", on)

    def tty(self, on=True):
        """Run on a pseudo-terminal: stdin and stdout through it, stderr merged into stdout."""
        return self._set("tty", on)

    def winsize(self, cols, rows):
        """The tty's initial size (ExecChild.resize changes it later)."""
        return self._set("winsize", cols, rows)

    def timeout(self, seconds):
        """Wall-clock limit in seconds (None or 0: none): the command's process group is SIGKILLed and timed_out is set."""
        return self._set("timeout", seconds)

    def agent_timeout(self, seconds):
        """How long to wait for an agent that stopped answering (None: the library's 30 s)."""
        return self._set("agent_timeout", seconds)

    def max_output(self, nbytes):
        """The cap of output() on stdout+stderr together (None: no cap); more raises LimitError."""
        return self._set("max_output", nbytes)

    def stage_file(self, path, data, mode=None):
        """Write data at an absolute guest path (atomically, parents created) before the command runs; mode 0o644 unless given."""
        return self._set("stage_file", path, data, mode)

    def stage_file_mode(self, path, data, mode):
        """stage_file with a mode."""
        return self._set("stage_file", path, data, mode)

    def chain(self, argv):
        """Run argv after the previous command exited 0 (&&); the first non-zero exit ends the chain."""
        return self._set("chain", list(argv) if not isinstance(argv, (str, bytes)) else argv)

    def copy(self):
        """An independent copy of this builder."""
        return ExecBuilder(_raw=self._b.copy())

    __copy__ = copy

    def output(self):
        """Run the command to its end and collect stdout, stderr and status
        (an ExecOutcome). A KeyboardInterrupt in the main thread kills the
        command (through the agent) and propagates."""
        return ExecOutcome(self._b._output())

    def output_with_cancel(self, cancel):
        """output(), but once cancel.is_set() (a threading.Event, set from any
        thread; looked at every 100 ms) the command is killed through the
        agent and CancelledError is raised (with what arrived as .stdout and
        .stderr)."""
        if cancel is None:
            raise TypeError("cancel must be a threading.Event, not None")
        return ExecOutcome(self._b._output(cancel))

    def output_resilient(self, retries):
        """output(), retrying up to `retries` more times when nothing of the
        command arrived (SetupError): for idempotent commands only."""
        return ExecOutcome(self._b._output_resilient(retries))

    def spawn(self):
        """Start the command and stream its stdio yourself: an ExecChild."""
        return ExecChild(self._b._spawn())



def _prepare(b, argv, env, cwd, timeout, tty, stdin_given):
    b.argv(argv)
    for k, v in (env or {}).items():
        b.env(k, v)
    if cwd is not None:
        b.cwd(cwd)
    if timeout is not None:
        b.timeout(timeout)
    if tty:
        b.tty(True)
    return b


class _Runner:
    """exec/spawn/write_file/read_file over an exec socket (shared by Vm and Agent)."""

    def exec_builder(self, argv=None):
        """A new ExecBuilder for a command here (argv optional)."""
        b = self._builder()
        if argv is not None:
            b.argv(argv)
        return b

    def exec(self, argv, env=None, cwd=None, timeout=None, stdin=None, tty=False):
        """Run argv to its end: an ExecOutcome (status, stdout, stderr, ...).

        env: a dict added to the agent's environment; cwd: the guest folder;
        timeout: seconds, after which the command is killed (timed_out=True);
        stdin: bytes fed to the command; tty: run on a pseudo-terminal."""
        b = _prepare(self._builder(), argv, env, cwd, timeout, tty, stdin is not None)
        if stdin is None:
            return b.output()
        if not isinstance(stdin, (bytes, bytearray, memoryview)):
            raise TypeError("stdin must be bytes, not %s" % type(stdin).__name__)
        return self._exec_with_stdin(b, bytes(stdin))

    @staticmethod
    def _exec_with_stdin(b, data):
        import threading
        stop = threading.Event()
        errors = []
        child = b.spawn()

        def feed():
            # In chunks, so that an interrupted exec stops feeding soon.
            try:
                view = memoryview(data)
                for i in range(0, len(view), 1 << 16):
                    if stop.is_set():
                        return
                    child.stdin.write(view[i:i + (1 << 16)])
                child.stdin.close()
            except Error as e:  # the command may end without reading it all
                errors.append(e)

        t = threading.Thread(target=feed, name="supermachine-stdin", daemon=True)
        t.start()
        parts = {"stdout": [], "stderr": []}
        try:
            for name, chunk in child:
                parts[name].append(chunk)
            t.join()
            st = child.wait()
        except BaseException:
            stop.set()
            try:
                child.signal(9)
            except Error:
                pass
            t.join(5)
            try:
                child.close()
            except Error:
                pass  # still in use by the feeder: freed with its last reference
            raise
        child.close()
        raw_status = (st.status, st.signal, st.timed_out, round(st.duration * 1e6), st.peak_rss_kib, st.steps_run)
        return ExecOutcome((raw_status, b"".join(parts["stdout"]), b"".join(parts["stderr"])))

    def spawn(self, argv, env=None, cwd=None, timeout=None, tty=False):
        """Start argv and stream its stdio: an ExecChild."""
        return _prepare(self._builder(), argv, env, cwd, timeout, tty, False).spawn()


class Agent(_Runner):
    """An agent's exec socket, without a VM: e.g. one started by
    `supermachine-agent --listen unix:PATH`, or a VM's exec_socket_path."""

    def __init__(self, socket_path):
        import os
        self.socket_path = os.fspath(socket_path)

    def _builder(self):
        return ExecBuilder(self.socket_path)

    def write_file(self, path, data, mode=0o644):
        """Write bytes at an absolute guest path, atomically."""
        _c.write_file(self.socket_path, path, data, mode)

    def read_file(self, path, max_len=1 << 30):
        """Read a guest file (NotFoundError if missing, LimitError if larger than max_len)."""
        return _c.read_file(self.socket_path, path, max_len)


class Vm(_Runner):
    """A running VM (Image.start, Pool.acquire). A context manager: leaving
    the block stops it (a pooled VM goes back to its pool)."""

    def __init__(self, raw):
        self._raw = raw

    def _builder(self):
        return ExecBuilder(_raw=self._raw.exec_builder())

    @property
    def id(self):
        return self._raw.id

    @property
    def exec_socket_path(self):
        return self._raw.exec_socket_path

    @property
    def state_dir(self):
        return self._raw.state_dir

    @property
    def running(self):
        return self._raw.running

    @property
    def pid(self):
        return self._raw.pid

    def write_file(self, path, data, mode=0o644):
        """Write bytes at an absolute guest path atomically (parents created)."""
        self._raw.write_file(path, data, mode)

    def read_file(self, path, max_len=0):
        """Read a guest file; max_len 0 means up to 1 GiB."""
        return self._raw.read_file(path, max_len)

    def snapshot(self, path):
        """Snapshot the running VM into a folder (an image: Image.from_snapshot)."""
        self._raw.snapshot(path)

    def stop(self):
        """Stop the VM and remove its state folder (pooled: give it back)."""
        self._raw.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def __repr__(self):
        return "<supermachine.Vm %s>" % self._raw.id


class Pool:
    """VMs restored from one image, ready before they are needed (Image.pool).

        with image.pool(min=2, max=8) as pool:
            with pool.acquire() as vm:
                vm.exec(["true"])
    """

    def __init__(self, raw):
        self._raw = raw

    def acquire(self):
        """A VM from the pool: idle at once, else restored, else waits up to
        the acquire timeout (TimeoutError). Use it as a context manager, or
        give it back with vm.stop()."""
        return Vm(self._raw._acquire())

    def stats(self):
        """The pool's counts: alive, idle, in_use, starting, min, max,
        restored, acquire_waits, acquire_timeouts, dead_discarded, start_failures."""
        return self._raw.stats()

    def close(self):
        """Stop the idle VMs and the pool's threads; VMs still acquired end."""
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Image:
    """A baked VM image: Image.default(), Image.named(name),
    Image.from_snapshot(dir), Image.from_oci(ref, ...)."""

    def __init__(self, raw):
        self._raw = raw

    @classmethod
    def default(cls):
        """The image named "default" of the default store, baked first when
        there is none (as the CLI does)."""
        try:
            return cls(_c.Image.named("default"))
        except NotFoundError:
            return cls.bake("default")

    @classmethod
    def bake(cls, name, memory_mib=None, cpus=None):
        """Boot the default guest, snapshot it once its agent is ready, and
        keep it in the default store as `name` (replacing an older one)."""
        return cls(_c.Image.bake(name, memory_mib, cpus))

    @classmethod
    def named(cls, name):
        """A named image of the default store (NotFoundError if none)."""
        return cls(_c.Image.named(name))

    @classmethod
    def from_snapshot(cls, path):
        """An image from a snapshot folder (vm.snapshot or a baked image)."""
        return cls(_c.Image.from_snapshot(path))

    @classmethod
    def from_oci(cls, ref, username=None, password=None, ca_file=None, plain_http=False,
                 refresh=False, memory_mib=None, cpus=None):
        """Pull an OCI/Docker image (registry ref, oci:PATH, docker-archive:PATH)
        and bake it; later calls with the same ref reuse the baked image."""
        return cls(_c.Image.from_oci(ref, username, password, ca_file, plain_http, refresh,
                                     memory_mib, cpus))

    @property
    def dir(self):
        """The image's folder."""
        return self._raw.dir

    def default_argv(self):
        """An OCI image's default command (Entrypoint + Cmd), or None."""
        return self._raw.default_argv()

    def start(self, memory_mib=None, cpus=None, boot_timeout=None, net=None,
              volumes=None, volume_size=None):
        """Start a VM from this image: a Vm (a context manager that stops it).

        memory_mib/cpus: the most the image may ask for (its VMs get the
        image's own sizes); boot_timeout: seconds; net: the guest network on
        or off; volumes: (source, guest_path[, read_only]) tuples, source a
        volume name (made on first use, volume_size bytes, default 1 GiB)
        or an ext4 file's path. The VM lives until it is stopped or this
        process ends, whichever thread started it."""
        return Vm(self._raw._start(memory_mib, cpus, boot_timeout, net, volumes, volume_size))

    def pool(self, min=None, max=None, idle_timeout=None, acquire_timeout=None,
             restore_on_release=True):
        """A Pool of VMs from this image (timeouts in seconds; None keeps the
        library's defaults: min 1, max 4, idle 300 s, acquire 30 s)."""
        return Pool(self._raw.pool(min, max, idle_timeout, acquire_timeout, restore_on_release))
