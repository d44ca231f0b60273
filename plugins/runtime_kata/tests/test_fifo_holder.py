"""The FIFO holder is found by its IO directory even when its pid was never recorded."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pycrio_runtime_kata import fifo_holder
from shimenv import alive, wait_for

from pycrio import reaper


def fifos(tmp_path: Path) -> tuple[str, list[str]]:
    io_dir = tmp_path / "io" / "c1"
    io_dir.mkdir(parents=True)
    paths = [str(io_dir / "stdout"), str(io_dir / "stderr")]
    for p in paths:
        os.mkfifo(p, 0o600)
    return str(io_dir), paths


def test_a_holder_whose_pid_was_lost_is_found_and_stopped(tmp_path: Path) -> None:
    io_dir, paths = fifos(tmp_path)
    bystander = subprocess.Popen(["sleep", "infinity"])  # same program, not a holder
    try:
        pid, start = fifo_holder.start(paths, io_dir)
        assert fifo_holder.is_holder(pid, start)
        assert fifo_holder.find(io_dir) == pid
        assert fifo_holder.find(io_dir + "x") == 0
        fifo_holder.stop_any(0, 0, io_dir)  # the record never had its pid
        wait_for(lambda: reaper.reap_orphans() is not None and not alive(pid), 10, "the holder")
        assert fifo_holder.find(io_dir) == 0
        assert alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait(timeout=10)
