"""`pycrio check [--repair]` and `pycrio wipe` on state a real daemon left behind."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import leaks
import pytest
import registry_env
import runtime_mode
from container_e2e import Pod, alive, daemon_config, pod_config, wait_until
from cri_api.v1 import api_pb2
from image_e2e import pull

pytestmark = pytest.mark.e2e


def pycrio(d, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(d.command(*args), env=d.env, capture_output=True, text=True, timeout=120)


def mounts_under(*dirs: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points for d in dirs if p == str(d) or p.startswith(f"{d}/")]


def image_layers(root: Path, name: str) -> list[str]:
    db = sqlite3.connect(root / "storage" / "images.db")
    try:
        records = [json.loads(text) for (text,) in db.execute("SELECT record FROM images")]
    finally:
        db.close()
    return next(r["layers"] for r in records if name in r["repo_tags"])


def test_check_repair_and_wipe(
    start_daemon, tmp_path: Path, registry, images: registry_env.TestImages
) -> None:
    root, runroot = tmp_path / "root", tmp_path / "runroot"
    d = start_daemon(config=daemon_config(tmp_path / "conf", registry.host))
    pull(d, images.busybox.name)
    pull(d, images.multilayer.name)
    pod = Pod(d, pod_config("maint", tmp_path / "logs"))
    cid = pod.run("sleeper", images.busybox.name, command=["sleep", "300"])
    pid = pod.info(cid)["pid"]

    # neither command touches the state of a running daemon
    for args in (("wipe",), ("check",)):
        r = pycrio(d, *args)
        assert r.returncode == 1, r
        assert "daemon" in (r.stdout + r.stderr)
    assert pycrio(d, "check").returncode == 1

    d.stop()
    assert alive(pid)  # the container outlives the daemon
    r = pycrio(d, "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no problems found" in r.stdout

    # corrupt the store
    layers_dir = root / "storage" / "overlay" / "layers"
    top = image_layers(root, images.multilayer.name)[-1]
    subprocess.run(["rm", "-rf", str(layers_dir / top.split(":", 1)[1])], check=True)
    (root / "storage" / "tmp" / "layer-left-behind").mkdir(parents=True)
    record = json.loads((root / "containers" / f"{cid}.json").read_text())
    orphan_id = "f" * 64
    record.update(id=orphan_id, sandbox_id="0" * 64, name="orphan", state_dir="", rootfs="")
    (root / "containers" / f"{orphan_id}.json").write_text(json.dumps(record))

    r = pycrio(d, "check")
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert f"layer {top} is missing" in out
    assert "layer-left-behind" in out
    assert f"container {orphan_id}" in out and "does not exist" in out

    r = pycrio(d, "check", "--repair")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no problems remain" in r.stdout
    r = pycrio(d, "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (root / "containers" / f"{orphan_id}.json").exists()
    assert not (root / "storage" / "tmp" / "layer-left-behind").exists()
    assert alive(pid)  # the real container was left alone

    # the daemon still knows the good image and the pod after the repair
    d2 = start_daemon(config=d.config.read_text())
    names = [
        t for i in d2.images().ListImages(api_pb2.ListImagesRequest()).images for t in i.repo_tags
    ]
    assert images.busybox.name in names and images.multilayer.name not in names
    assert [p.id for p in d2.runtime().ListPodSandbox(api_pb2.ListPodSandboxRequest()).items] == [
        pod.id
    ]
    assert pycrio(d2, "wipe").returncode == 1  # refused while it runs
    d2.stop()

    r = pycrio(d, "wipe")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed" in r.stdout
    # the runtime driver named its own: the container's init and its monitor
    if runtime_mode.shimv2():  # the vm driver: the pod's shim is the monitor
        assert f"killed process of container {cid} (pid {pid})" in r.stdout, r.stdout
        assert f"killed shim of pod {pod.id} (pid " in r.stdout, r.stdout
    else:
        assert f"killed container {cid} (pid {pid})" in r.stdout, r.stdout
        assert f"killed monitor of {cid} (pid " in r.stdout, r.stdout
    assert "note:" not in r.stdout, r.stdout
    wait_until(lambda: not alive(pid), 10, "the container to be killed by wipe")
    # nor its monitor: conmon, or the pod's shim v2 (with its runtime state)
    wait_until(lambda: not leaks.monitors_of(runroot), 10, "the container's monitor to go")
    shim_state = [p for i in (cid, pod.id) for p in Path("/run/containerd").glob(f"*/*/{i}")]
    assert shim_state == []  # a shim v2's runtime state (runc's under /run/containerd/runc/<ns>)
    assert mounts_under(root, runroot) == []
    assert not (root / "storage").exists() and not (root / "sandboxes").exists()

    d3 = start_daemon(config=d.config.read_text())
    assert list(d3.images().ListImages(api_pb2.ListImagesRequest()).images) == []
    assert list(d3.runtime().ListPodSandbox(api_pb2.ListPodSandboxRequest()).items) == []
    assert list(d3.runtime().ListContainers(api_pb2.ListContainersRequest()).containers) == []
