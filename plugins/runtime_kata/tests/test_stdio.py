"""ContainerIO with real FIFOs and real writer processes that open them as a shim v2 does.

The "shim" here is a separate process: it opens the output FIFO for writing
(blocking until a reader exists, as containerd's pkg/process/io.go does),
keeps a read end of its own like the runc shim, and copies its stdin into
the FIFO in 4 KiB writes, so a test drives the container's output by
writing to that process's stdin.
"""

from __future__ import annotations

import os
import re
import resource
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pycrio_runtime_kata import stdio
from pycrio_runtime_kata.stdio import ContainerIO

from pycrio.errors import FailedPrecondition
from pycrio.kernel.interfaces import STDERR, STDOUT

RECORD = re.compile(
    rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d) (stdout|stderr) ([PF]) (.*)$"
)

SHIM_WRITER = r"""
import os, sys
path, hold = sys.argv[1], sys.argv[2] == "hold"
fd = os.open(path, os.O_WRONLY)
keep = os.open(path, os.O_RDONLY | os.O_NONBLOCK) if hold else None
sys.stdout.write("open\n"); sys.stdout.flush()
while chunk := os.read(0, 4096):
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view):]
os.close(fd)
"""

STDIN_READER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
sys.stdout.write("open\n"); sys.stdout.flush()
while chunk := os.read(fd, 4096):
    sys.stdout.buffer.write(chunk); sys.stdout.buffer.flush()
sys.stdout.write("<EOF>"); sys.stdout.flush()
"""


class Shim:
    """A writer process on one FIFO, fed through its stdin."""

    def __init__(self, path: str, *, hold: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SHIM_WRITER, path, "hold" if hold else "no"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == b"open\n"

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


def write_once(path: str, data: bytes) -> None:
    shim = Shim(path, hold=False)
    shim.write(data)
    shim.close()


def records(path: Path) -> list[tuple[bytes, bytes, bytes]]:
    """(stream, tag, content) per record; every line must be a CRI record."""
    out = []
    for line in path.read_bytes().split(b"\n")[:-1]:
        m = RECORD.match(line)
        assert m, line
        out.append((m.group(2), m.group(3), m.group(4)))
    return out


def text(path: Path, stream: bytes = b"stdout") -> bytes:
    """The stream's content as the kubelet reassembles it."""
    out = b""
    for s, tag, content in records(path):
        if s == stream:
            out += content + (b"\n" if tag == b"F" else b"")
    return out


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.02)


@pytest.fixture
def made() -> Iterator[list[ContainerIO]]:
    """ContainerIO objects a test made; closed at the end."""
    objs: list[ContainerIO] = []
    yield objs
    for obj in objs:
        obj.close()


def new_io(made: list[ContainerIO], directory: Path, log: Path, **kw) -> ContainerIO:
    obj = ContainerIO(str(directory), str(log), **kw)
    made.append(obj)
    return obj


def test_output_of_several_writers_becomes_cri_records(
    tmp_path: Path, made: list[ContainerIO]
) -> None:
    log = tmp_path / "c.log"
    io = new_io(made, tmp_path / "io", log)
    assert log.exists() and stat.S_IMODE(log.stat().st_mode) == 0o600
    for path in (io.stdout_path, io.stderr_path):
        st = os.stat(path)
        assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert io.stdin_path == ""
    # writers come and go, as a shim's reconnects would: no end-of-file in between
    write_once(io.stdout_path, b"hello\nwor")
    write_once(io.stderr_path, b"oops\n")
    time.sleep(0.2)
    write_once(io.stdout_path, b"ld\n")
    assert io.finish(10)
    assert text(log) == b"hello\nworld\n"
    assert text(log, b"stderr") == b"oops\n"
    recs = records(log)
    assert (b"stdout", b"P", b"wor") in recs and (b"stdout", b"F", b"ld") in recs


def test_tty_has_one_stream_logged_as_stdout(tmp_path: Path, made: list[ContainerIO]) -> None:
    log = tmp_path / "c.log"
    io = new_io(made, tmp_path / "io", log, tty=True)
    assert io.stderr_path == "" and not (tmp_path / "io" / "stderr").exists()
    write_once(io.stdout_path, b"prompt$ ")
    assert io.finish(10)
    assert records(log) == [(b"stdout", b"P", b"prompt$ ")]


def test_finish_waits_for_the_shim_to_close_its_end(
    tmp_path: Path, made: list[ContainerIO]
) -> None:
    log = tmp_path / "c.log"
    io = new_io(made, tmp_path / "io", log)
    shim = Shim(io.stdout_path)
    shim.write(b"first\n")
    assert not io.finish(0.3)  # the shim still holds its end: more may come
    shim.write(b"last\n")
    shim.close()
    assert io.finish(10)
    assert text(log) == b"first\nlast\n"


def test_a_restarted_daemon_resumes_and_loses_nothing(
    tmp_path: Path, made: list[ContainerIO]
) -> None:
    log = tmp_path / "c.log"
    directory = tmp_path / "io"
    io = ContainerIO(str(directory), str(log), log_size_max=-1)
    shim = Shim(io.stdout_path)
    shim.write(b"before\n")
    wait_until(lambda: text(log) == b"before\n", what="first line")
    io.release()  # the daemon goes away; the shim and its FIFO stay
    assert os.path.exists(io.stdout_path)

    # 300 KB while nobody reads: more than the pipes hold, so the writer blocks
    lines = b"".join(b"line-%06d\n" % i for i in range(25000))
    feeder = threading.Thread(target=shim.write, args=(lines,))
    feeder.start()
    time.sleep(0.5)
    assert feeder.is_alive(), "the shim should be blocked on a full FIFO"
    assert text(log) == b"before\n"

    io2 = ContainerIO.resume(str(directory))
    made.append(io2)
    feeder.join(30)
    assert not feeder.is_alive()
    shim.write(b"after\n")
    shim.close()
    assert io2.finish(10)
    assert text(log) == b"before\n" + lines + b"after\n"


def test_reopen_log_after_the_kubelet_renamed_it(tmp_path: Path, made: list[ContainerIO]) -> None:
    log = tmp_path / "c.log"
    io = new_io(made, tmp_path / "io", log)
    shim = Shim(io.stdout_path)
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            shim.write(b"n-%d\n" % i)
            time.sleep(0.002)

    t = threading.Thread(target=produce)
    t.start()
    try:
        wait_until(lambda: len(records(log)) >= 20, what="output")
        rotated = tmp_path / "c.log.1"
        os.rename(log, rotated)
        io.reopen_log()
        assert log.exists()
        wait_until(lambda: len(records(log)) >= 20, what="output in the new file")
    finally:
        stop.set()
        t.join()
    shim.close()
    assert io.finish(10)
    old = text(rotated).split()
    new = text(log).split()
    numbers = [int(x.split(b"-")[1]) for x in old + new]
    assert numbers == list(range(1, len(numbers) + 1)), "lost or duplicated across the rotation"
    assert old and new


def test_reopen_log_after_the_output_ended_is_a_failed_precondition(
    tmp_path: Path, made: list[ContainerIO]
) -> None:
    io = new_io(made, tmp_path / "io", tmp_path / "c.log")
    assert io.finish(5)
    with pytest.raises(FailedPrecondition):
        io.reopen_log()


def test_log_size_max_starts_a_new_file_like_conmon(
    tmp_path: Path, made: list[ContainerIO]
) -> None:
    log = tmp_path / "c.log"
    io = new_io(made, tmp_path / "io", log, log_size_max=1000)
    shim = Shim(io.stdout_path)
    sizes = []
    for i in range(60):
        shim.write(b"entry-%03d\n" % i)
        time.sleep(0.005)
        sizes.append(log.stat().st_size)
    shim.close()
    assert io.finish(10)
    assert max(sizes) <= 1000
    content = text(log).split()
    # the file holds the newest entries, each whole, ending with the last one
    assert content[-1] == b"entry-059"
    nums = [int(x.split(b"-")[1]) for x in content]
    assert nums == list(range(nums[0], 60)) and nums[0] > 0


def test_size_of_a_resumed_log_counts_toward_the_limit(
    tmp_path: Path, made: list[ContainerIO]
) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"x" * 960)  # what the previous daemon wrote (+ a 50-byte record > 1000)
    io = new_io(made, tmp_path / "io", log, log_size_max=1000)
    write_once(io.stdout_path, b"next\n")
    assert io.finish(10)
    assert records(log) == [(b"stdout", b"F", b"next")]


def test_attached_clients_all_get_the_output(tmp_path: Path, made: list[ContainerIO]) -> None:
    io = new_io(made, tmp_path / "io", tmp_path / "c.log")
    a, b = io.attach(), io.attach()
    write_once(io.stdout_path, b"to everyone\n")
    write_once(io.stderr_path, b"err\n")
    assert io.finish(10)
    for attachment in (a, b):
        got: dict[int, bytes] = {STDOUT: b"", STDERR: b""}
        while (chunk := attachment.recv()) is not None:
            got[chunk[0]] += chunk[1]
        assert got == {STDOUT: b"to everyone\n", STDERR: b"err\n"}
        attachment.close()
    with pytest.raises(FailedPrecondition):
        io.attach()


def test_close_unblocks_a_waiting_recv(tmp_path: Path, made: list[ContainerIO]) -> None:
    io = new_io(made, tmp_path / "io", tmp_path / "c.log")
    attachment = io.attach()
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(attachment.recv()))
    t.start()
    time.sleep(0.2)
    assert t.is_alive()
    attachment.close()
    t.join(5)
    assert result == [None]
    # a detached client no longer gets output; the log still does
    write_once(io.stdout_path, b"after\n")
    assert io.finish(10)
    assert text(Path(io.log_path)) == b"after\n"


def test_a_client_too_far_behind_is_dropped(
    tmp_path: Path, made: list[ContainerIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stdio, "MAX_ATTACH_BACKLOG", 10000)
    io = new_io(made, tmp_path / "io", tmp_path / "c.log")
    slow, fast = io.attach(), io.attach()
    got = bytearray()
    reader = threading.Thread(
        target=lambda: [got.extend(c[1]) for c in iter(fast.recv, None)]  # type: ignore[func-returns-value]
    )
    reader.start()
    shim = Shim(io.stdout_path)
    data = b""
    for i in range(6):  # 24 KB in all, slowly enough for a reader that keeps up
        piece = bytes([97 + i]) * 3999 + b"\n"
        shim.write(piece)
        data += piece
        time.sleep(0.05)
    shim.close()
    assert io.finish(10)
    reader.join(10)
    assert bytes(got) == data
    assert slow.recv() is None  # dropped once 10 KB behind
    assert text(Path(io.log_path)) == data


def _stdin_reader(path: str) -> subprocess.Popen:
    """The shim's side of stdin: reads the FIFO to its end (and is reading on return)."""
    proc = subprocess.Popen([sys.executable, "-c", STDIN_READER, path], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"open\n"
    return proc


def test_attach_input_reaches_stdin_and_stdin_once_ends_it(
    tmp_path: Path, made: list[ContainerIO]
) -> None:
    closed_by_shim: list[bool] = []
    io = new_io(made, tmp_path / "io", tmp_path / "c.log", stdin=True, stdin_once=True)
    assert stat.S_ISFIFO(os.stat(io.stdin_path).st_mode)
    reader = _stdin_reader(io.stdin_path)
    # like the runc shim, something else holds a write end too until CloseIO
    shim_writer = os.open(io.stdin_path, os.O_WRONLY)

    def close_io() -> None:
        closed_by_shim.append(True)
        os.close(shim_writer)

    io._close_io = close_io
    attachment = io.attach()
    attachment.send(b"hello ")
    attachment.send(b"stdin\n")
    attachment.close_input()
    out, _ = reader.communicate(timeout=10)
    assert out == b"hello stdin\n<EOF>"
    assert closed_by_shim == [True]
    with pytest.raises(OSError):
        attachment.send(b"more")
    # the closed stdin is remembered for a restarted daemon
    io.release()
    made.remove(io)
    io2 = ContainerIO.resume(str(tmp_path / "io"))
    made.append(io2)
    with pytest.raises(OSError):
        io2.attach().send(b"x")


def test_without_stdin_once_a_client_ending_input_keeps_stdin_open(
    tmp_path: Path, made: list[ContainerIO]
) -> None:
    io = new_io(made, tmp_path / "io", tmp_path / "c.log", stdin=True)
    reader = _stdin_reader(io.stdin_path)
    first = io.attach()
    first.send(b"one\n")
    first.close_input()
    first.close()
    second = io.attach()
    second.send(b"two\n")
    time.sleep(0.3)
    assert reader.poll() is None  # no end-of-file
    io.close()
    made.remove(io)
    out, _ = reader.communicate(timeout=10)
    assert out == b"one\ntwo\n<EOF>"


def test_send_blocked_on_a_full_stdin_is_released_by_close(
    tmp_path: Path, made: list[ContainerIO]
) -> None:
    io = new_io(made, tmp_path / "io", tmp_path / "c.log", stdin=True)
    attachment = io.attach()
    errors: list[BaseException] = []

    def flood() -> None:
        try:
            attachment.send(b"z" * (1 << 20))  # nobody reads: blocks at 64 KiB
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=flood)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    io.close()
    made.remove(io)
    t.join(5)
    assert not t.is_alive() and len(errors) == 1


def test_resize_goes_to_the_driver_for_a_tty(tmp_path: Path, made: list[ContainerIO]) -> None:
    sizes: list[tuple[int, int]] = []
    io = new_io(
        made,
        tmp_path / "io",
        tmp_path / "c.log",
        tty=True,
        resize=lambda w, h: sizes.append((w, h)),
    )
    io.attach().resize(120, 40)
    plain = new_io(
        made, tmp_path / "io2", tmp_path / "d.log", resize=lambda w, h: sizes.append((w, h))
    )
    plain.attach().resize(1, 1)
    assert sizes == [(120, 40)]


def test_close_removes_the_fifos_release_keeps_them(tmp_path: Path) -> None:
    kept = ContainerIO(str(tmp_path / "kept"), str(tmp_path / "a.log"), stdin=True)
    kept.release()
    assert sorted(os.listdir(tmp_path / "kept")) == ["io.json", "stderr", "stdin", "stdout"]
    again = ContainerIO.resume(str(tmp_path / "kept"))
    assert again.stdin and again.log_path == str(tmp_path / "a.log")
    again.close()
    assert not (tmp_path / "kept").exists()
    assert (tmp_path / "a.log").exists()  # the log is the kubelet's


def test_a_failed_create_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ContainerIO(str(tmp_path / "io"), str(tmp_path / "no-such-dir" / "c.log"), stdin=True)
    assert not (tmp_path / "io").exists()


def test_resume_without_state_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ContainerIO.resume(str(tmp_path / "nothing"))


def test_idle_and_writerless_fifos_cost_no_cpu(tmp_path: Path, made: list[ContainerIO]) -> None:
    io = new_io(made, tmp_path / "io", tmp_path / "c.log", stdin=True)
    write_once(io.stdout_path, b"x\n")  # a writer came and went: a bare reader would see HUP now
    wait_until(lambda: text(Path(io.log_path)) == b"x\n")
    before = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(1.0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert used < 0.2, f"{used:.2f}s of CPU in 1s idle: a busy loop"
