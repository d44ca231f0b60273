"""The exit-file watcher: inotify when it can, polling when it cannot; busy ids are retried."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pycrio_runtime_runc import exit_watcher as events
from pycrio_runtime_runc.exit_watcher import ExitWatcher


@pytest.mark.parametrize("use_inotify", [True, False])
def test_exit_watcher_sees_exit_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_inotify: bool
) -> None:
    if not use_inotify:

        def no_inotify(*_: Any) -> int:
            raise OSError(38, "no inotify here")

        monkeypatch.setattr(events, "_inotify_watch", no_inotify)
    seen: list[str] = []
    busy = {"b": 2}
    got = threading.Event()

    def on_exit(cid: str) -> bool:
        if busy.get(cid, 0) > 0:  # busy twice, then handled
            busy[cid] -= 1
            return False
        seen.append(cid)
        if "b" in seen and "a" in seen:
            got.set()
        return True

    w = ExitWatcher(str(tmp_path / "exits"), on_exit)
    w.start()
    try:
        assert w.mode == ("inotify" if use_inotify else "poll")
        started = time.monotonic()
        for name in ("a", "b"):
            tmp = tmp_path / "exits" / f"{name}.tmp1"
            tmp.write_text("0")
            os.rename(tmp, tmp_path / "exits" / name)
        assert got.wait(5)
        if use_inotify:
            assert time.monotonic() - started < 0.5
        assert seen.count("b") == 1
    finally:
        w.stop()
