"""exec_sync's output capture and deadline, with plain host processes as the 'runtime'."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pycrio_runtime_runc import exec_sync


def _run(script: str, tmp_path: Path, timeout: float = 10, cap: int = 1 << 20):
    return exec_sync.run(
        ["/bin/sh", "-c", script], timeout=timeout, max_output=cap, pid_file=str(tmp_path / "pid")
    )


def test_output_and_exit_code(tmp_path: Path) -> None:
    r = _run("echo out; echo err >&2; exit 5", tmp_path)
    assert (r.stdout, r.stderr, r.exit_code, r.timed_out) == (b"out\n", b"err\n", 5, False)


def test_both_pipes_large_without_deadlock(tmp_path: Path) -> None:
    # 2 MiB on each pipe, interleaved: a sequential reader would block forever
    script = "head -c 2097152 /dev/zero >&2 & head -c 2097152 /dev/zero; wait"
    r = _run(script, tmp_path, cap=4 << 20)
    assert len(r.stdout) == 2 << 20 and len(r.stderr) == 2 << 20 and r.exit_code == 0


def test_output_capped(tmp_path: Path) -> None:
    r = _run("head -c 10000000 /dev/zero; echo done >&2", tmp_path, cap=1000)
    assert len(r.stdout) == 1000 and r.stderr == b"done\n" and r.exit_code == 0


def test_timeout_kills_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "still-alive"
    start = time.monotonic()
    r = _run(f"echo $$ > {tmp_path}/pid; sleep 30; touch {marker}", tmp_path, timeout=1)
    assert r.timed_out
    assert time.monotonic() - start < 5
    assert r.exit_code == 137
    time.sleep(0.2)
    assert not marker.exists()


def test_signal_death_reported_as_128_plus(tmp_path: Path) -> None:
    r = _run("kill -TERM $$", tmp_path)
    assert r.exit_code == 143 and not r.timed_out


def test_no_pid_file_left_needed(tmp_path: Path) -> None:
    r = _run("true", tmp_path, timeout=0)
    assert r.exit_code == 0 and not os.path.exists(tmp_path / "pid")
