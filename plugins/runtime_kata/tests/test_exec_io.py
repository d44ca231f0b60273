"""exec through the shim's task API, with a TaskOps double that runs real host processes.

The double stands in for the shim only at the ttrpc seam: it starts the
exec'd process with the FIFOs as its stdio, opening them as containerd's
runc shim does (output ends O_WRONLY and blocking, so a missing read end
hangs the test; stdin with a write end of its own that only CloseIO drops),
and a real pty for terminal=True. The driver's tests run the same module
against containerd-shim-runc-v2.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pycrio_runtime_kata import exec_io
from pycrio_runtime_kata.exec_io import ShimExecProcess, exec_sync

from pycrio.errors import AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound

CID = "c0ffee" * 10 + "abcd"


class _Exec:
    def __init__(self, spec: dict, terminal: bool, stdin: str, stdout: str, stderr: str) -> None:
        self.spec, self.terminal = spec, terminal
        self.paths = (stdin, stdout, stderr)
        self.proc: subprocess.Popen | None = None
        self.master: int | None = None
        self.stdin_writer: int | None = None  # the shim's own write end (openStdin)
        self.threads: list[threading.Thread] = []


class LocalTaskOps:
    """TaskOps running each exec as a process on the host."""

    def __init__(self) -> None:
        self.execs: dict[tuple[str, str], _Exec] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def _get(self, container_id: str, exec_id: str) -> _Exec:
        with self.lock:
            e = self.execs.get((container_id, exec_id))
        if e is None:
            raise NotFound(f"exec {exec_id} not found")
        return e

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
    ) -> None:
        self.calls.append(("exec", container_id, exec_id))
        if container_id != CID:
            raise NotFound(f"container {container_id} not found")
        with self.lock:
            if (container_id, exec_id) in self.execs:
                raise AlreadyExists(f"exec {exec_id} exists")
            self.execs[(container_id, exec_id)] = _Exec(spec, terminal, stdin, stdout, stderr)

    def start(self, container_id: str, exec_id: str = "") -> int:
        self.calls.append(("start", container_id, exec_id))
        e = self._get(container_id, exec_id)
        stdin, stdout, stderr = e.paths
        out_w = os.open(stdout, os.O_WRONLY)  # blocks without a reader, as the shim's does
        err_w = os.open(stderr, os.O_WRONLY) if stderr else None
        in_r = None
        if stdin:
            in_r = os.open(stdin, os.O_RDONLY | os.O_NONBLOCK)
            os.set_blocking(in_r, True)
            e.stdin_writer = os.open(stdin, os.O_WRONLY)
        env = dict(kv.split("=", 1) for kv in e.spec.get("env", []))
        argv, cwd = e.spec["args"], e.spec.get("cwd") or "/"
        try:
            if e.terminal:
                master, slave = os.openpty()
                e.master = master
                try:
                    e.proc = subprocess.Popen(
                        argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                        start_new_session=True,
                    )  # fmt: skip
                finally:
                    os.close(slave)
                e.threads.append(_spawn(_copy_terminal_out, master, out_w))
                if in_r is not None:
                    e.threads.append(_spawn(_copy_fd, in_r, master))
            else:
                e.proc = subprocess.Popen(
                    argv, stdin=in_r if in_r is not None else subprocess.DEVNULL,
                    stdout=out_w, stderr=err_w, env=env, cwd=cwd, start_new_session=True,
                )  # fmt: skip
        except OSError as err:
            raise Internal(f"exec failed: {err}") from err
        finally:
            if not e.terminal:
                for fd in (out_w, err_w, in_r):
                    if fd is not None:
                        os.close(fd)
        return e.proc.pid

    def wait(self, container_id: str, exec_id: str = "") -> tuple[int, int]:
        e = self._get(container_id, exec_id)
        assert e.proc is not None
        code = e.proc.wait()
        return (128 - code if code < 0 else code), time.time_ns()

    def kill(self, container_id: str, exec_id: str, signal: int, all: bool = False) -> None:
        self.calls.append(("kill", container_id, exec_id, signal, all))
        e = self._get(container_id, exec_id)
        assert e.proc is not None
        with contextlib.suppress(ProcessLookupError):
            if all:
                os.killpg(e.proc.pid, signal)
            else:
                e.proc.send_signal(signal)

    def resize_pty(self, container_id: str, exec_id: str, width: int, height: int) -> None:
        self.calls.append(("resize", exec_id, width, height))
        e = self._get(container_id, exec_id)
        assert e.master is not None
        fcntl.ioctl(e.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close_io(self, container_id: str, exec_id: str) -> None:
        self.calls.append(("close_io", exec_id))
        e = self._get(container_id, exec_id)
        if e.stdin_writer is not None:
            os.close(e.stdin_writer)
            e.stdin_writer = None

    def delete(self, container_id: str, exec_id: str = "") -> tuple[int, int]:
        self.calls.append(("delete", container_id, exec_id))
        e = self._get(container_id, exec_id)
        if e.proc is not None and e.proc.poll() is None:
            raise FailedPrecondition(f"exec {exec_id} is running")
        if e.stdin_writer is not None:
            os.close(e.stdin_writer)  # ends the stdin copy once our ends are gone too
        for t in e.threads:
            t.join(5)
            assert not t.is_alive(), "a copy thread of the exec did not end"
        if e.master is not None:
            os.close(e.master)
        with self.lock:
            del self.execs[(container_id, exec_id)]
        return (e.proc.returncode if e.proc else 255), time.time_ns()

    def cleanup(self) -> None:
        """Kill whatever a test left behind (background children included)."""
        for e in list(self.execs.values()):
            if e.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(e.proc.pid, signal.SIGKILL)
                e.proc.wait()

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


def _spawn(fn: Any, *args: Any) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def _copy_terminal_out(master: int, out: int) -> None:
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's last user is gone
                break
            if not chunk:
                break
            os.write(out, chunk)
    finally:
        os.close(out)


def _copy_fd(src: int, dst: int) -> None:
    try:
        while chunk := os.read(src, 4096):
            os.write(dst, chunk)
    except OSError:
        pass
    finally:
        os.close(src)


@pytest.fixture
def ops() -> Any:
    o = LocalTaskOps()
    yield o
    o.cleanup()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle whose config.json has the container's process, as the core writes it."""
    b = tmp_path / "bundle"
    b.mkdir()
    (tmp_path / "work").mkdir()
    process = {
        "terminal": True,
        "consoleSize": {"height": 10, "width": 10},
        "user": {"uid": 0, "gid": 0},
        "args": ["/pause"],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=from-the-image"],
        "cwd": str(tmp_path / "work"),
        "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"]},
        "noNewPrivileges": True,
        "apparmorProfile": "pycrio-default",
    }
    (b / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "process": process}))
    return b


@pytest.fixture
def fifo_dir(tmp_path: Path) -> Path:
    return tmp_path / "fifos"


def _sync(ops: LocalTaskOps, bundle: Path, fifo_dir: Path, script: str, **kw: Any):
    kw.setdefault("timeout", 20)
    kw.setdefault("max_output", 1 << 20)
    return exec_sync(
        ops, CID, str(bundle), ["/bin/sh", "-c", script], kw.pop("timeout"), kw.pop("max_output"),
        fifo_dir=str(fifo_dir), **kw,
    )  # fmt: skip


# --- the process spec ---------------------------------------------------------------


def test_exec_runs_as_the_containers_process_with_other_args(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path, tmp_path: Path
) -> None:
    r = _sync(ops, bundle, fifo_dir, 'echo "$GREETING"; pwd; echo err >&2; exit 3')
    assert (r.stdout, r.stderr, r.exit_code, r.timed_out) == (
        f"from-the-image\n{tmp_path / 'work'}\n".encode(),
        b"err\n",
        3,
        False,
    )
    spec = ops_spec(ops)
    assert spec["args"] == ["/bin/sh", "-c", 'echo "$GREETING"; pwd; echo err >&2; exit 3']
    assert spec["terminal"] is False and "consoleSize" not in spec
    assert spec["capabilities"] == {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"]}
    assert spec["noNewPrivileges"] is True and spec["apparmorProfile"] == "pycrio-default"
    assert spec["user"] == {"uid": 0, "gid": 0}


_seen_specs: dict[int, dict] = {}


def ops_spec(ops: LocalTaskOps) -> dict:
    """The spec of the one exec the test ran (recorded before delete removed it)."""
    return _seen_specs[id(ops)]


@pytest.fixture(autouse=True)
def _record_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    real = LocalTaskOps.exec

    def exec_(self: LocalTaskOps, container_id: str, exec_id: str, **kw: Any) -> None:
        _seen_specs[id(self)] = kw["spec"]
        real(self, container_id, exec_id, **kw)

    monkeypatch.setattr(LocalTaskOps, "exec", exec_)


def test_process_spec_errors(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(NotFound):
        exec_io.process_spec(str(tmp_path / "gone"), ["true"], tty=False)
    with pytest.raises(InvalidArgument):
        exec_io.process_spec(str(bundle), [], tty=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{}")
    with pytest.raises(Internal):
        exec_io.process_spec(str(tmp_path / "bad"), ["true"], tty=False)
    spec = exec_io.process_spec(str(bundle), ["ls", "-l"], tty=True)
    assert spec["args"] == ["ls", "-l"] and spec["terminal"] is True


# --- ExecSync --------------------------------------------------------------------------


def test_exec_sync_cleans_up_the_exec_and_its_fifos(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path
) -> None:
    _sync(ops, bundle, fifo_dir, "true")
    assert ops.names() == ["exec", "start", "delete"]
    assert os.listdir(fifo_dir) == []
    assert ops.execs == {}
    assert not exec_io._live_ids


def test_exec_sync_timeout_kills_the_process(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path
) -> None:
    start = time.monotonic()
    r = _sync(ops, bundle, fifo_dir, "echo started; sleep 30; echo never", timeout=1)
    assert r.timed_out and r.exit_code == 128 + signal.SIGKILL
    assert r.stdout == b"started\n"
    assert time.monotonic() - start < 10
    kills = [c for c in ops.calls if c[0] == "kill"]
    assert kills and kills[0][3:] == (signal.SIGKILL, True)
    assert ops.names()[-1] == "delete" and os.listdir(fifo_dir) == []


def test_exec_sync_caps_output_and_keeps_reading(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path
) -> None:
    r = _sync(ops, bundle, fifo_dir, "head -c 3000000 /dev/zero; echo done >&2", max_output=1000)
    assert r.stdout == b"\0" * 1000 and r.stderr == b"done\n" and r.exit_code == 0


def test_exec_sync_both_streams_large_without_deadlock(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path
) -> None:
    r = _sync(
        ops, bundle, fifo_dir,
        "head -c 1048576 /dev/zero >&2 & head -c 1048576 /dev/zero; wait", max_output=2 << 20,
    )  # fmt: skip
    assert len(r.stdout) == 1 << 20 and len(r.stderr) == 1 << 20


def test_exec_sync_signal_exit_is_128_plus_signal(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path
) -> None:
    r = _sync(ops, bundle, fifo_dir, "kill -TERM $$")
    assert r.exit_code == 128 + signal.SIGTERM and not r.timed_out


def test_a_background_child_holding_stdout_does_not_hold_the_call(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exec_io, "DRAIN_AFTER_EXIT", 0.5)
    start = time.monotonic()
    r = _sync(ops, bundle, fifo_dir, "sleep 30 & echo hi", timeout=0)
    assert r.stdout == b"hi\n" and r.exit_code == 0 and not r.timed_out
    assert time.monotonic() - start < 5


def test_exec_into_an_unknown_container_leaves_nothing(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path
) -> None:
    with pytest.raises(NotFound):
        exec_sync(ops, "unknown", str(bundle), ["true"], 5, fifo_dir=str(fifo_dir))
    assert os.listdir(fifo_dir) == [] and not exec_io._live_ids


def test_a_start_that_fails_deletes_the_exec(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path
) -> None:
    with pytest.raises(Internal):
        exec_sync(ops, CID, str(bundle), ["/no/such/binary"], 5, fifo_dir=str(fifo_dir))
    assert ops.names() == ["exec", "start", "delete"] and ops.execs == {}
    assert os.listdir(fifo_dir) == [] and not exec_io._live_ids


def test_exec_ids_are_unique_per_container(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(exec_io.secrets, "token_hex", lambda n: next(tokens))
    first = exec_io._new_exec_id(CID)
    second = exec_io._new_exec_id(CID)
    assert first == "exec-aaaa" and second == "exec-bbbb"
    exec_io._forget_exec_id(CID, first)
    exec_io._forget_exec_id(CID, second)


def test_concurrent_exec_syncs(ops: LocalTaskOps, bundle: Path, fifo_dir: Path) -> None:
    results: list[bytes] = []

    def one(i: int) -> None:
        results.append(_sync(ops, bundle, fifo_dir, f"sleep 0.2; echo {i}").stdout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [b"0\n", b"1\n", b"2\n", b"3\n"]
    exec_ids = {c[2] for c in ops.calls if c[0] == "exec"}
    assert len(exec_ids) == 4


# --- streaming exec --------------------------------------------------------------------


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            return out
        out += chunk
    return out


def test_streaming_exec_with_pipes(ops: LocalTaskOps, bundle: Path, fifo_dir: Path) -> None:
    proc = ShimExecProcess(
        ops, CID, str(bundle), ["/bin/sh", "-c", "cat; echo bye >&2"], tty=False, stdin=True,
        fifo_dir=str(fifo_dir),
    )  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        err = threading.Thread(target=lambda: errs.append(_read_all(proc.stderr)))
        errs: list[bytes] = []
        err.start()
        os.write(proc.stdin, b"hello\n")
        proc.close_stdin()  # the shim's CloseIO: cat sees end-of-file
        assert ("close_io", proc.exec_id) in ops.calls
        assert _read_all(proc.stdout) == b"hello\n"
        assert proc.wait() == 0
        err.join(10)
        assert errs == [b"bye\n"]
    finally:
        proc.close()
    assert ops.names()[-1] == "delete" and os.listdir(fifo_dir) == []


def test_streaming_exec_with_a_terminal(ops: LocalTaskOps, bundle: Path, fifo_dir: Path) -> None:
    proc = ShimExecProcess(
        ops, CID, str(bundle), ["/bin/sh", "-c", "read x; stty size; echo got-$x"],
        tty=True, stdin=True, fifo_dir=str(fifo_dir),
    )  # fmt: skip
    try:
        assert proc.stderr is None and proc.stdin is not None and proc.stdout is not None
        assert ops_spec(ops)["terminal"] is True
        proc.resize(100, 30)
        os.write(proc.stdin, b"hello\n")
        out = _read_all(proc.stdout)
        assert b"30 100" in out and b"got-hello" in out, out
        assert proc.wait() == 0
    finally:
        proc.close()
    assert ("resize", proc.exec_id, 100, 30) in ops.calls


def test_terminal_close_stdin_types_end_of_file(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path
) -> None:
    proc = ShimExecProcess(
        ops, CID, str(bundle), ["cat"], tty=True, stdin=True, fifo_dir=str(fifo_dir)
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        os.write(proc.stdin, b"abc\n")
        proc.close_stdin()
        assert proc.wait() == 0  # cat read ^D as the end of its input
        assert b"abc" in _read_all(proc.stdout)
        assert not [c for c in ops.calls if c[0] == "close_io"]
    finally:
        proc.close()


def test_kill_ends_a_streaming_exec(ops: LocalTaskOps, bundle: Path, fifo_dir: Path) -> None:
    proc = ShimExecProcess(
        ops, CID, str(bundle), ["sleep", "30"], tty=False, stdin=False, fifo_dir=str(fifo_dir)
    )
    assert proc.stdin is None
    proc.kill()
    assert proc.wait() == 128 + signal.SIGKILL
    proc.kill()  # after the end: nothing is signalled again
    assert len([c for c in ops.calls if c[0] == "kill"]) == 1
    proc.close()
    assert ops.execs == {} and os.listdir(fifo_dir) == []


def test_close_of_a_running_exec_kills_and_deletes_it(
    ops: LocalTaskOps, bundle: Path, fifo_dir: Path
) -> None:
    proc = ShimExecProcess(
        ops, CID, str(bundle), ["sleep", "30"], tty=True, stdin=True, fifo_dir=str(fifo_dir)
    )
    pid = proc.pid
    proc.close()
    assert ops.names()[-2:] == ["kill", "delete"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert proc.stdout is None and os.listdir(fifo_dir) == []
