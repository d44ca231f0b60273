"""The runc driver's offline maintenance operations on real runc + conmon containers."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
from pycrio_runtime_runc import RuncDriver
from test_runc_driver_real import Env, _alive, _wait, env  # noqa: F401 - env is a fixture

from pycrio import reaper
from pycrio.config.load import defaults
from pycrio.errors import NotFound
from pycrio.kernel.interfaces import LeftoverProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def ours(env: Env, tmp_path: Path) -> Env:  # noqa: F811 - the imported fixture
    """The real-runc Env, with a daemon runroot holding its bundles (tmp_path)."""
    cfg = defaults()
    cfg.data["runroot"] = str(tmp_path)
    env.driver = RuncDriver(dataclasses.replace(env.driver.ctx, config=cfg))
    return env


def test_real_containers_left_over_and_removed(ours: Env) -> None:
    driver = ours.driver
    gone, gone_pid = ours.run(["sleep", "300"], cgroup_parent=ours.cgroup_parent)
    kept, kept_pid = ours.run(["sleep", "300"], cgroup_parent=ours.cgroup_parent)
    gone_id, kept_id = gone.container_id, kept.container_id
    persist = Path(driver.persist_dir(gone_id))
    monitor = int((persist / "conmon.pid").read_text())
    monitor_cgroups = json.loads(
        (Path(driver.ctx.run_dir) / "monitor-cgroups" / gone_id).read_text()
    )
    assert monitor_cgroups and all(os.path.isdir(c) for c in monitor_cgroups)

    found = driver.leftover_processes({kept_id})
    assert sorted(found, key=lambda p: p.pid) == sorted(
        [
            LeftoverProcess(gone_pid, f"container {gone_id}"),
            LeftoverProcess(monitor, f"monitor of {gone_id}"),
        ],
        key=lambda p: p.pid,
    )
    files = set(driver.leftover_files({kept_id}))
    assert {
        os.path.join(driver.runtime_root, gone_id),
        str(persist),
        os.path.join(driver.ctx.run_dir, "monitor-cgroups", gone_id),
        os.path.join(driver.socket_dir, gone_id),
    } <= files
    assert not any(kept_id in f for f in files)

    # what maintenance does: kill what was found, then remove the rest
    for proc in found:
        os.kill(proc.pid, signal.SIGKILL)
    _wait(lambda: reaper.reap_orphans() is not None and not _alive(monitor), 10, "conmon gone")
    _wait(lambda: not _alive(gone_pid), 10, "the container's init gone")
    assert driver.remove_leftovers({kept_id}) == []
    assert driver.leftover_files({kept_id}) == []
    assert driver.leftover_processes({kept_id}) == []
    with pytest.raises(NotFound):
        driver.state(gone_id)
    assert not any(os.path.exists(c) for c in monitor_cgroups)
    # runc delete removed the container's own cgroup too
    assert not any(
        os.path.isdir(os.path.join(h, ours.cgroup_parent.lstrip("/"), gone_id))
        for h in (str(p) for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir())
    )
    # the known container is untouched and still running
    assert driver.state(kept_id).status == "running" and _alive(kept_pid)
    assert os.path.exists(driver.persist_dir(kept_id))
