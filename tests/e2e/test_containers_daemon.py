"""Containers and the daemon's own life: restarts (SIGTERM, SIGKILL) and OCI hooks.

Each test starts its own daemon (start_daemon); the containers are their
monitor's children (conmon's with runc, the shim's with a shim v2 handler), so
they must outlive the daemon and their exits must be recorded while it is down.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
import registry_env
from container_e2e import (
    EXITED,
    RUNNING,
    Pod,
    alive,
    assert_nothing_left,
    daemon_config,
    is_shim,
    parent_pid,
    pod_config,
    processes_cmdline,
    texts,
    wait_until,
)
from cri_api.v1 import api_pb2
from image_e2e import pull

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_containers_outlive_the_daemon(
    start_daemon, tmp_path: Path, registry, images: registry_env.TestImages, sig: int
) -> None:
    d = start_daemon(config=daemon_config(tmp_path / "conf", registry.host))
    pull(d, images.busybox.name)
    pod = Pod(d, pod_config("restart", tmp_path / "logs"))
    keeps = pod.run("keeps", images.busybox.name, command=["sleep", "300"])
    ends = pod.run(
        "ends", images.busybox.name,
        command=["sh", "-c", "echo started; sleep 1; echo bye; exit 4"],
    )  # fmt: skip
    keeps_pid, ends_pid = pod.info(keeps)["pid"], pod.info(ends)["pid"]
    assert alive(keeps_pid) and alive(ends_pid)
    # the container's parent is its monitor: conmon, or the pod's shim v2
    monitors = [parent_pid(keeps_pid), parent_pid(ends_pid)]
    assert all(is_shim(p) or "conmon" in processes_cmdline(p) for p in monitors), monitors

    d.signal(sig)
    d.wait(timeout=30)
    d.stop()
    down_at = time.time_ns()
    # while the daemon is down: one container runs on, the other ends and its monitor records it
    assert alive(keeps_pid) and all(alive(p) for p in monitors)
    wait_until(lambda: not alive(ends_pid), 10, "the short container to exit")
    time.sleep(0.2)
    assert alive(keeps_pid)

    d.start()
    s = pod.status(keeps).status
    assert s.state == RUNNING and s.exit_code == 0
    s = pod.status(ends).status
    assert (s.state, s.exit_code, s.reason) == (EXITED, 4, "Error")
    assert down_at < s.finished_at < time.time_ns()
    assert texts(pod.log_lines("ends")) == ["started", "bye"]
    listed = pod.rt.ListContainers(api_pb2.ListContainersRequest()).containers
    assert {(c.id, c.state) for c in listed} == {(keeps, RUNNING), (ends, EXITED)}

    # the daemon still controls the survivor
    assert pod.out(keeps, "echo", "still here") == "still here\n"
    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=keeps, timeout=1), timeout=30)
    s = pod.status(keeps).status
    assert s.state == EXITED
    assert not alive(keeps_pid)
    pod.remove()
    assert_nothing_left(d, pod.containers)


def test_oci_hook_from_a_configured_directory_runs(
    start_daemon, tmp_path: Path, registry, images: registry_env.TestImages
) -> None:
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    out_dir = tmp_path / "hook-out"
    out_dir.mkdir()
    script = tmp_path / "record-state.sh"
    script.write_text('#!/bin/sh\ncat > "$1/$2.json"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    for stage in ("createRuntime", "prestart"):
        (hooks / f"10-{stage}.json").write_text(
            json.dumps(
                {
                    "version": "1.0.0",
                    "hook": {"path": str(script), "args": ["record-state", str(out_dir), stage]},
                    "when": {"always": True},
                    "stages": [stage],
                }
            )
        )
    extra = f"[plugins.oci_hooks]\ndirs = [{json.dumps(str(hooks))}]\n"
    d = start_daemon(config=daemon_config(tmp_path / "conf", registry.host, extra))
    pull(d, images.busybox.name)
    pod = Pod(d, pod_config("hooks", tmp_path / "logs"))
    cid = pod.create(pod.container_config("hooked", images.busybox.name, command=["true"]))
    for stage in ("createRuntime", "prestart"):
        state = json.loads((out_dir / f"{stage}.json").read_text())
        # the container's state on stdin, as the OCI runtime spec says
        assert state["id"] == cid and state["status"] == "creating"
        assert state["bundle"] and os.path.isdir(state["bundle"])
        assert state["pid"] > 0
    pod.remove()
    assert_nothing_left(d, pod.containers)
