"""Exec through a shim v2: ExecSync and streaming exec over the task API.

A shim runs an exec the way containerd asks it to: Exec (an OCI Process
object and the FIFO paths for its stdio), Start, Wait, and Delete at the
end. This module owns the FIFOs and the copying; the ttrpc calls go through
:class:`TaskOps`, the seam the driver's task client implements.

The exec'd process is the container's own process with other arguments
(env, cwd, user, capabilities, rlimits, apparmor/selinux labels, no new
privileges...), as ``runc exec --process`` runs it for the runc driver and
as CRI-O does for VM runtimes: :func:`process_spec`.

FIFO ends, as in :mod:`pycrio_runtime_kata.stdio`: every output FIFO has our
read end (opened non-blocking before Exec, because the shim opens its write
end blocking) and a write end of ours (a *keepalive*) that we drop once Wait
returned: before that a reader would see end-of-file whenever the shim's
end is not open yet; after it, end-of-file means the shim has copied
everything. Stdin is first opened ``O_RDWR`` (an *anchor*: it never blocks
and lets the shim's read end open), then ``O_WRONLY`` for the writer; the
anchor goes once the process has exited, so a late write fails with EPIPE
instead of blocking forever. The runc shim holds a write end of stdin too,
so ending the input takes CloseIO.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import tempfile
import threading
import time
from typing import Any, Protocol

from pycrio.errors import CRIError, Internal, InvalidArgument, NotFound
from pycrio.kernel.interfaces import ExecProcess, ExecResult

log = logging.getLogger("pycrio.kata.exec")

CHUNK = 65536
#: How long output may still come once the process was killed or has exited:
#: a background child that inherited its stdout must not hold the call forever.
DRAIN_AFTER_KILL = 2.0
DRAIN_AFTER_EXIT = 5.0
#: Bound on waiting for the shim's Wait after the output ended or the kill.
WAIT_TIMEOUT = 30.0


class TaskOps(Protocol):
    """The shim v2 task calls exec needs (the driver's ttrpc client implements them).

    Each raises pycrio.errors errors (NotFound for an unknown container or
    exec, Internal for a shim failure). Calls may come from several threads
    at once (a Wait blocks while a Kill is sent).
    """

    def exec(
        self,
        container_id: str,
        exec_id: str,
        *,
        spec: dict,
        terminal: bool,
        stdin: str,
        stdout: str,
        stderr: str,
    ) -> None: ...

    def start(self, container_id: str, exec_id: str = "") -> int: ...

    def wait(self, container_id: str, exec_id: str = "") -> tuple[int, int]: ...

    def kill(self, container_id: str, exec_id: str, signal: int, all: bool = False) -> None: ...

    def resize_pty(self, container_id: str, exec_id: str, width: int, height: int) -> None: ...

    def close_io(self, container_id: str, exec_id: str) -> None: ...

    def delete(self, container_id: str, exec_id: str = "") -> tuple[int, int]: ...


def process_spec(bundle: str, argv: list[str], *, tty: bool) -> dict[str, Any]:
    """The container's OCI process (from ``<bundle>/config.json``) running ``argv``."""
    if not argv:
        raise InvalidArgument("exec needs a command")
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            process = dict(json.load(f)["process"])
    except FileNotFoundError:
        raise NotFound(f"the container's OCI config {path} is gone") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Internal(f"cannot read the process of the OCI config {path}: {e}") from e
    process["args"] = list(argv)
    process["terminal"] = tty
    process.pop("consoleSize", None)
    return process


def _spec(
    bundle: str, argv: list[str], *, tty: bool, base_process: dict[str, Any] | None
) -> dict[str, Any]:
    if base_process is None:
        return process_spec(bundle, argv, tty=tty)
    if not argv:
        raise InvalidArgument("exec needs a command")
    spec = {**base_process, "args": list(argv), "terminal": tty}
    spec.pop("consoleSize", None)
    return spec


# --- exec ids -------------------------------------------------------------------------

_ids_lock = threading.Lock()
_live_ids: set[tuple[str, str]] = set()


def _new_exec_id(container_id: str) -> str:
    """An id no other live exec of this container has (the shim refuses duplicates)."""
    with _ids_lock:
        while True:
            exec_id = f"exec-{secrets.token_hex(8)}"
            if (container_id, exec_id) not in _live_ids:
                _live_ids.add((container_id, exec_id))
                return exec_id


def _forget_exec_id(container_id: str, exec_id: str) -> None:
    with _ids_lock:
        _live_ids.discard((container_id, exec_id))


# --- FIFOs ------------------------------------------------------------------------------


class _Fifos:
    """The FIFOs of one exec in their own 0700 directory, with our ends open."""

    def __init__(self, root: str | None, name: str, *, stdin: bool, stderr: bool) -> None:
        base = root or tempfile.gettempdir()
        os.makedirs(base, mode=0o700, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix=f"{name}-", dir=base)
        self.stdin_path = os.path.join(self.dir, "stdin") if stdin else ""
        self.stdout_path = os.path.join(self.dir, "stdout")
        self.stderr_path = os.path.join(self.dir, "stderr") if stderr else ""
        self.stdout: int | None = None
        self.stderr: int | None = None
        self.stdin: int | None = None
        self._anchor: int | None = None
        self._keepalive: list[int] = []
        self._lock = threading.Lock()
        try:
            for path in (self.stdin_path, self.stdout_path, self.stderr_path):
                if path:
                    os.mkfifo(path, 0o600)
            self.stdout = self._open_output(self.stdout_path)
            if stderr:
                self.stderr = self._open_output(self.stderr_path)
            if stdin:
                self._anchor = os.open(self.stdin_path, os.O_RDWR | os.O_CLOEXEC)
                self.stdin = os.open(self.stdin_path, os.O_WRONLY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    def _open_output(self, path: str) -> int:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._keepalive.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        return fd

    def blocking_outputs(self) -> None:
        """Make our read ends blocking (for readers that block in read)."""
        for fd in (self.stdout, self.stderr):
            if fd is not None:
                os.set_blocking(fd, True)

    def process_ended(self) -> None:
        """Drop the keepalive writers and the stdin anchor: ends become real ends."""
        with self._lock:
            fds = [*self._keepalive, self._anchor]
            self._keepalive, self._anchor = [], None
        _close_all(fds)

    def close_stdin(self) -> None:
        with self._lock:
            fds = [self.stdin, self._anchor]
            self.stdin = self._anchor = None
        _close_all(fds)

    def close(self) -> None:
        self.process_ended()
        self.close_stdin()
        with self._lock:
            fds = [self.stdout, self.stderr]
            self.stdout = self.stderr = None
        _close_all(fds)
        shutil.rmtree(self.dir, ignore_errors=True)


def _close_all(fds: list[int | None]) -> None:
    for fd in fds:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _start(
    ops: TaskOps, container_id: str, spec: dict[str, Any], fifos: _Fifos, *, tty: bool
) -> tuple[str, int]:
    """Exec and Start; on failure nothing is left in the shim. (exec id, pid)."""
    exec_id = _new_exec_id(container_id)
    try:
        ops.exec(
            container_id,
            exec_id,
            spec=spec,
            terminal=tty,
            stdin=fifos.stdin_path,
            stdout=fifos.stdout_path,
            stderr=fifos.stderr_path,
        )
    except BaseException:
        _forget_exec_id(container_id, exec_id)
        raise
    try:
        pid = ops.start(container_id, exec_id)
    except BaseException:
        _delete(ops, container_id, exec_id)
        raise
    return exec_id, pid


def _delete(ops: TaskOps, container_id: str, exec_id: str) -> None:
    try:
        ops.delete(container_id, exec_id)
    except NotFound:
        pass
    except CRIError as e:
        log.warning("exec %s in %s: delete failed: %s", exec_id, container_id, e)
    finally:
        _forget_exec_id(container_id, exec_id)


# --- ExecSync -----------------------------------------------------------------------------


def exec_sync(
    ops: TaskOps,
    container_id: str,
    bundle: str,
    argv: list[str],
    timeout: float,
    max_output: int = 16 << 20,
    *,
    fifo_dir: str | None = None,
    base_process: dict[str, Any] | None = None,
) -> ExecResult:
    """Run ``argv`` in the container to its end (CRI ExecSync).

    ``timeout`` seconds (0: none): then the process is killed (SIGKILL, all)
    and ``timed_out`` is True. Output beyond ``max_output`` bytes per stream
    is read and dropped, so the process never blocks on a full pipe.
    ``fifo_dir``: where the exec's FIFO directory goes (default: $TMPDIR);
    ``base_process``: the container's OCI process object, when the driver
    has it at hand (otherwise it is read from the bundle's config.json).
    """
    spec = _spec(bundle, argv, tty=False, base_process=base_process)
    fifos = _Fifos(fifo_dir, container_id[:12] or "exec", stdin=False, stderr=True)
    try:
        exec_id, _ = _start(ops, container_id, spec, fifos, tty=False)
        try:
            return _run_to_end(ops, container_id, exec_id, fifos, timeout, max_output)
        finally:
            _delete(ops, container_id, exec_id)
    finally:
        fifos.close()


def _run_to_end(
    ops: TaskOps, container_id: str, exec_id: str, fifos: _Fifos, timeout: float, max_output: int
) -> ExecResult:
    outcome: dict[str, Any] = {}
    exited = threading.Event()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def waiter() -> None:
        try:
            outcome["status"] = ops.wait(container_id, exec_id)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = e
        finally:
            exited.set()
            fifos.process_ended()
            with contextlib.suppress(OSError):
                os.write(wake_w, b"x")
            os.close(wake_w)  # only here: the reader side may be gone already

    thread = threading.Thread(target=waiter, name=f"exec-wait-{exec_id}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout if timeout > 0 else None
    stop_at: float | None = None  # when to stop reading, once the process is gone
    timed_out = False
    bufs = {fifos.stdout: bytearray(), fifos.stderr: bytearray()}
    try:
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        for fd in bufs:
            poller.register(fd, select.POLLIN)
        open_fds = set(bufs)
        while open_fds:
            now = time.monotonic()
            if stop_at is None and exited.is_set():
                stop_at = now + DRAIN_AFTER_EXIT
            if deadline is not None and now >= deadline and not timed_out:
                if not exited.is_set():
                    timed_out = True
                    _kill(ops, container_id, exec_id)
                    stop_at = now + DRAIN_AFTER_KILL
                deadline = None
            if stop_at is not None and now >= stop_at:
                break  # a background child holds the output open: stop reading
            ends = [t for t in (deadline, stop_at) if t is not None]
            wait_ms = max(0, int((min(ends) - now) * 1000) + 1) if ends else None
            for fd, _ in poller.poll(wait_ms):
                if fd == wake_r:
                    poller.unregister(wake_r)
                    continue
                try:
                    chunk = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    continue
                buf = bufs[fd]
                room = max_output - len(buf)
                if room > 0:
                    buf += chunk[:room]
        if not exited.wait(WAIT_TIMEOUT):
            _kill(ops, container_id, exec_id)
            if not exited.wait(WAIT_TIMEOUT):
                raise Internal(f"exec {exec_id} in {container_id}: the shim reported no exit")
    finally:
        os.close(wake_r)
    if "error" in outcome:
        raise outcome["error"]
    exit_status, _ = outcome["status"]
    return ExecResult(
        exit_code=exit_status,
        stdout=bytes(bufs[fifos.stdout]),
        stderr=bytes(bufs[fifos.stderr]),
        timed_out=timed_out,
    )


def _kill(ops: TaskOps, container_id: str, exec_id: str) -> None:
    try:
        ops.kill(container_id, exec_id, signal.SIGKILL, all=True)
    except NotFound:
        pass  # it ended meanwhile
    except CRIError as e:
        log.warning("exec %s in %s: kill failed: %s", exec_id, container_id, e)


# --- streaming exec -----------------------------------------------------------------------


class ShimExecProcess(ExecProcess):
    """A process exec'd through the shim for a streaming session (``kubectl exec``).

    ``stdout`` (and ``stderr`` without a TTY) are blocking read ends that
    reach end-of-file once the process ended and the shim copied all it
    wrote; ``stdin`` is a blocking write end (a TTY's input goes to the
    terminal through it). Call :meth:`close` once, after :meth:`wait` or
    :meth:`kill`; the other methods may be called from any thread.
    """

    def __init__(
        self,
        ops: TaskOps,
        container_id: str,
        bundle: str,
        argv: list[str],
        *,
        tty: bool,
        stdin: bool,
        fifo_dir: str | None = None,
        base_process: dict[str, Any] | None = None,
    ) -> None:
        self._ops = ops
        self.container_id = container_id
        self.tty = tty
        spec = _spec(bundle, argv, tty=tty, base_process=base_process)
        self._fifos = _Fifos(fifo_dir, container_id[:12] or "exec", stdin=stdin, stderr=not tty)
        try:
            self.exec_id, self.pid = _start(ops, container_id, spec, self._fifos, tty=tty)
        except BaseException:
            self._fifos.close()
            raise
        self._fifos.blocking_outputs()
        self.stdin = self._fifos.stdin
        self.stdout = self._fifos.stdout
        self.stderr = self._fifos.stderr
        self._lock = threading.Lock()
        self._code: int | None = None
        self._error: BaseException | None = None
        self._exited = threading.Event()
        self._deleted = False
        # Wait is asked at once, not when the caller gets to wait(): the output
        # ends (our keepalive ends dropped) as soon as the process does,
        # whatever order the caller reads and waits in.
        self._waiter = threading.Thread(
            target=self._wait_for_exit, name=f"exec-wait-{self.exec_id}", daemon=True
        )
        self._waiter.start()

    def _wait_for_exit(self) -> None:
        try:
            status, _ = self._ops.wait(self.container_id, self.exec_id)
            with self._lock:
                self._code = status
        except BaseException as e:  # noqa: BLE001 - handed to wait()
            self._error = e
        finally:
            self._fifos.process_ended()
            self._exited.set()

    def resize(self, width: int, height: int) -> None:
        if self.tty:
            self._ops.resize_pty(self.container_id, self.exec_id, width, height)

    def wait(self) -> int:
        self._exited.wait()
        if self._error is not None:
            raise self._error
        assert self._code is not None
        return self._code

    def close_stdin(self) -> None:
        """EOF for a pipe (the shim's CloseIO); end-of-file (^D) typed on a terminal.

        With a TTY, CloseIO would make the runc shim shut the terminal down,
        output included; ^D ends the input as a user's would (the runc driver
        does the same).
        """
        if self._fifos.stdin is None:
            return
        if self.tty:
            with contextlib.suppress(OSError):
                os.write(self._fifos.stdin, b"\x04")
            return
        self._fifos.close_stdin()
        try:
            self._ops.close_io(self.container_id, self.exec_id)
        except NotFound:
            pass

    def kill(self) -> None:
        with self._lock:
            if self._code is not None:
                return
        _kill(self._ops, self.container_id, self.exec_id)

    def close(self) -> None:
        with self._lock:
            if self._deleted:
                return
            self._deleted = True
            running = self._code is None
        if running:
            self.kill()
            if not self._exited.wait(WAIT_TIMEOUT):
                log.warning("exec %s in %s: no exit after SIGKILL", self.exec_id, self.container_id)
        self._fifos.close()  # first: a shim's stdin copy may be waiting for our end to go
        _delete(self._ops, self.container_id, self.exec_id)
        self.stdin = self.stdout = self.stderr = None
