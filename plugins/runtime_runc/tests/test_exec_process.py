"""exec_process: the pid file, killing a process group, the exit code; real host processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from pycrio_runtime_runc import exec_process


def test_read_pid(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    assert exec_process.read_pid(str(pid_file)) is None  # not written yet
    pid_file.write_text("")
    assert exec_process.read_pid(str(pid_file)) is None  # created, not filled
    pid_file.write_text("0")
    assert exec_process.read_pid(str(pid_file)) is None
    pid_file.write_text("garbage")
    assert exec_process.read_pid(str(pid_file)) is None
    pid_file.write_text("1234\n")
    assert exec_process.read_pid(str(pid_file)) == 1234


def test_exit_code_follows_the_shell() -> None:
    assert exec_process.exit_code(0) == 0
    assert exec_process.exit_code(3) == 3
    assert exec_process.exit_code(-signal.SIGKILL) == 137
    assert exec_process.exit_code(-signal.SIGTERM) == 143


def test_kill_exec_kills_the_process_group_named_by_the_pid_file(tmp_path: Path) -> None:
    # the "runtime" leads its own group; the "exec'd process" leads another, with a child
    pid_file = tmp_path / "pid"
    exec_d = subprocess.Popen(  # noqa: S603 - argv list
        ["/bin/sh", "-c", "sleep 300 & echo $! > child; wait"],
        cwd=tmp_path,
        start_new_session=True,
    )
    runtime = subprocess.Popen(["sleep", "300"], start_new_session=True)  # noqa: S607
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "child").exists() or not (tmp_path / "child").read_text():
            assert time.monotonic() < deadline, "the exec'd process did not start its child"
            time.sleep(0.01)
        child = int((tmp_path / "child").read_text())
        pid_file.write_text(str(exec_d.pid))
        assert exec_process.kill_exec(runtime, str(pid_file)) == exec_d.pid
        assert exec_d.wait(timeout=10) == -signal.SIGKILL
        assert runtime.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{child}") and _state(child) != "Z":
            assert time.monotonic() < deadline, "the exec'd process' child survived"
            time.sleep(0.01)
    finally:
        for proc in (exec_d, runtime):
            proc.kill()
            proc.wait(timeout=10)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return "gone"
    return stat[stat.rindex(")") + 2]
