"""The shim v2 driver's IO against the real containerd-shim-runc-v2: the CRI log,
reopen, exec (sync, streaming, TTY), attach, and logging across a restart."""

from __future__ import annotations

import os
import re
import select
import signal
import time

import pytest
from shimenv import ShimEnv, alive, skip_reason, wait_for

from pycrio.errors import FailedPrecondition
from pycrio.kernel.interfaces import STDOUT

pytestmark = pytest.mark.integration

if skip_reason():
    pytest.skip(skip_reason(), allow_module_level=True)

LOG_LINE = re.compile(
    rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) (stdout|stderr) (F|P) (.*)$"
)


def _log(env: ShimEnv, cid: str) -> list[tuple[bytes, bytes, bytes]]:
    path = env.tmp / "logs" / f"{cid}.log"
    out = []
    for line in path.read_bytes().splitlines():
        m = LOG_LINE.match(line)
        assert m, f"not a CRI log line: {line!r}"
        out.append((m.group(2), m.group(3), m.group(4)))
    return out


def test_output_reaches_the_cri_log_before_the_exit_is_pushed(env: ShimEnv) -> None:
    cid, _ = env.run(["sh", "-c", "echo out1; echo err1 >&2; echo -n partial; exit 2"])
    assert env.wait_exit(cid).exit_code == 2
    lines = _log(env, cid)  # complete as soon as the exit is known
    assert (b"stdout", b"F", b"out1") in lines
    assert (b"stderr", b"F", b"err1") in lines
    assert (b"stdout", b"P", b"partial") in lines


def test_reopen_log_after_rotation(env: ShimEnv) -> None:
    cid, _ = env.run(["sh", "-c", "while true; do echo tick; sleep 0.1; done"])
    path = env.tmp / "logs" / f"{cid}.log"
    wait_for(lambda: path.exists() and b"tick" in path.read_bytes(), 10, "ticks in the log")
    os.rename(path, str(path) + ".1")
    env.driver.reopen_log(cid)
    wait_for(lambda: path.exists() and b"tick" in path.read_bytes(), 10, "ticks in the new log")


def test_exec_sync_output_exit_code_and_timeout(env: ShimEnv) -> None:
    cid, _ = env.run(["sleep", "1000"])
    res = env.driver.exec_sync(cid, ["sh", "-c", "echo hi; echo oops >&2; exit 3"], 10)
    assert (res.exit_code, res.stdout, res.stderr, res.timed_out) == (3, b"hi\n", b"oops\n", False)
    started = time.monotonic()
    res = env.driver.exec_sync(cid, ["sleep", "100"], 1)
    assert res.timed_out
    assert time.monotonic() - started < 10
    # the container's own process (env, cwd) runs the exec
    assert env.driver.exec_sync(cid, ["sh", "-c", "echo $PATH"], 5).stdout == b"/bin\n"
    env.driver.kill(cid, signal.SIGKILL)
    env.wait_exit(cid)
    with pytest.raises(FailedPrecondition):
        env.driver.exec_sync(cid, ["true"], 5)


def _read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen in {buf!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf


def test_streaming_exec_with_a_tty(env: ShimEnv) -> None:
    cid, _ = env.run(["sleep", "1000"])
    proc = env.driver.exec_start(cid, ["sh"], tty=True, stdin=True)
    try:
        assert proc.stderr is None and proc.stdin is not None and proc.stdout is not None
        proc.resize(100, 40)
        os.write(proc.stdin, b"stty size; exit 5\n")
        assert b"40 100" in _read_until(proc.stdout, b"40 100")
        assert proc.wait() == 5
    finally:
        proc.close()


def test_attach_sends_stdin_and_receives_output(env: ShimEnv) -> None:
    cid, _ = env.run(["sh", "-c", "while read l; do echo got:$l; done"], stdin=True)
    att = env.driver.attach(cid)
    try:
        att.send(b"one\n")
        stream, data = att.recv() or (0, b"")
        assert (stream, data) == (STDOUT, b"got:one\n")
    finally:
        att.close()
    assert (b"stdout", b"F", b"got:one") in _log(env, cid)


def test_logging_goes_on_across_a_restart(env: ShimEnv) -> None:
    cid, _ = env.run(["sh", "-c", "i=0; while true; do echo n$i; i=$((i+1)); sleep 0.1; done"])
    path = env.tmp / "logs" / f"{cid}.log"
    wait_for(lambda: path.exists() and b"n3" in path.read_bytes(), 10, "output before")
    env.driver.close()
    time.sleep(0.5)
    driver = env.restart()
    driver.recover([cid])
    wait_for(lambda: b"n30" in path.read_bytes(), 15, "output after the restart")
    numbers = [int(t[2][1:]) for t in _log(env, cid)]
    assert numbers == list(range(len(numbers))), "nothing lost or doubled across the restart"


def test_output_of_a_container_that_exited_while_the_daemon_was_down(env: ShimEnv) -> None:
    """The shim closes the FIFOs when the container exits; the holder keeps what is unread."""
    cid, _ = env.run(["sh", "-c", "echo started; sleep 1; echo bye; echo err-bye >&2; exit 4"])
    path = env.tmp / "logs" / f"{cid}.log"
    wait_for(lambda: path.exists() and b"started" in path.read_bytes(), 10, "the first line")
    holder = env.driver._records[cid].holder_pid
    env.driver.close()
    time.sleep(2)  # the container says bye and exits while nobody reads
    driver = env.restart()
    exits = driver.recover([cid])
    assert exits[cid].exit_code == 4
    assert [t[2] for t in _log(env, cid)] == [b"started", b"bye", b"err-bye"]
    driver.delete(cid)
    wait_for(lambda: not alive(holder), 10, "the FIFO holder to go with the container")
