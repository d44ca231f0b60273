"""Reading what conmon leaves behind: exit files, the oom marker, the ctl FIFO."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from pycrio_runtime_runc import conmon

from pycrio.errors import FailedPrecondition


def test_exit_code_absent_then_present(tmp_path: Path) -> None:
    assert conmon.read_exit_code(str(tmp_path), "c1") is None
    (tmp_path / "c1").write_text("0")
    assert conmon.read_exit_code(str(tmp_path), "c1") == 0
    (tmp_path / "c2").write_text("137")
    assert conmon.read_exit_code(str(tmp_path), "c2") == 137
    (tmp_path / "c3").write_text("3\n")
    assert conmon.read_exit_code(str(tmp_path), "c3") == 3


def test_exit_code_garbage_is_an_error_code(tmp_path: Path) -> None:
    (tmp_path / "c").write_text("")
    assert conmon.read_exit_code(str(tmp_path), "c") == 255


def test_oom_marker(tmp_path: Path) -> None:
    assert not conmon.container_oom_killed(str(tmp_path))
    (tmp_path / "oom").touch()
    assert conmon.container_oom_killed(str(tmp_path))


def _record(tmp_path: Path) -> conmon.MonitorRecord:
    return conmon.MonitorRecord(
        container_id="c",
        bundle=str(tmp_path),
        log_path=str(tmp_path / "log"),
        ctl_path=str(tmp_path / "ctl"),
        attach_path=str(tmp_path / "attach"),
        conmon_pid_file=str(tmp_path / "conmon.pid"),
    )


def test_monitor_record_round_trip(tmp_path: Path) -> None:
    assert conmon.read_monitor_record(str(tmp_path)) is None
    rec = _record(tmp_path)
    rec.cgroups = ["/sys/fs/cgroup/x"]
    conmon.write_monitor_record(str(tmp_path), rec)
    assert conmon.read_monitor_record(str(tmp_path)) == rec


def test_reopen_log_writes_ctl_message(tmp_path: Path) -> None:
    """Acts as conmon: reads the FIFO and recreates the log file."""
    conmon.write_monitor_record(str(tmp_path), _record(tmp_path))
    os.mkfifo(tmp_path / "ctl")
    got: list[bytes] = []

    def fake_conmon() -> None:
        with open(tmp_path / "ctl", "rb") as f:
            got.append(f.readline())
        (tmp_path / "log").touch()

    t = threading.Thread(target=fake_conmon)
    t.start()
    # the reader must be open before a non-blocking writer can open
    for _ in range(200):
        try:
            conmon.reopen_log(str(tmp_path), timeout=5)
            break
        except FailedPrecondition:
            threading.Event().wait(0.01)
    t.join(5)
    assert got == [b"2 0 0\n"]


def test_reopen_log_without_monitor(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition):
        conmon.reopen_log(str(tmp_path))
    conmon.write_monitor_record(str(tmp_path), _record(tmp_path))
    os.mkfifo(tmp_path / "ctl")  # nobody reading: conmon is gone
    with pytest.raises(FailedPrecondition, match="not running"):
        conmon.reopen_log(str(tmp_path))
