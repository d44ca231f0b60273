"""Pods and containers under systemd, through the CRI socket, as the kubelet drives them.

Runs in the node VM (Debian 12, systemd as PID 1, cgroup v2 only; ``make
test-node``); elsewhere it skips. The daemon's configuration leaves
cgroup_manager unset: on a systemd node that must mean the systemd driver.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from pathlib import Path

import grpc
import pytest
import registry_env
from container_e2e import (
    EXITED,
    RUNNING,
    Pod,
    assert_nothing_left,
    daemon_config,
    pod_config,
    rpc_error,
    wait_until,
)
from cri_api.v1 import api_pb2
from image_e2e import pull
from node_support import needs_systemd_node, show, unit_gone

pytestmark = [pytest.mark.e2e, needs_systemd_node]

MiB = 1 << 20
CGROUP = "/sys/fs/cgroup"


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def cgroup_of_pid(pid: int) -> str:
    """The v2 cgroup of a process (the ``0::`` line of /proc/<pid>/cgroup)."""
    for line in read(f"/proc/{pid}/cgroup").splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"no cgroup v2 line for pid {pid}")


def monitor_pid(container_id: str) -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"conmon") and container_id.encode() in argv:
            return int(entry)
    raise AssertionError(f"no conmon for {container_id}")


def test_default_cgroup_manager_is_systemd_here(start_daemon, tmp_path: Path) -> None:
    d = start_daemon()
    resp = d.runtime().RuntimeConfig(api_pb2.RuntimeConfigRequest(), timeout=10)
    assert resp.linux.cgroup_driver == api_pb2.SYSTEMD
    assert "using 'systemd' because /run/systemd/system exists" in d.stderr()
    shown = subprocess.run(
        [*d.command()[:2], "pycrio", "config", "--config", str(d.config), "--config-dir",
         str(d.config_dir)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert 'cgroup_manager = "systemd"' in shown


def test_pods_and_containers_in_slices_and_scopes(
    start_daemon, tmp_path: Path, registry, images: registry_env.TestImages
) -> None:
    config = daemon_config(tmp_path / "conf", registry.host)
    d = start_daemon(config=config)
    pull(d, images.busybox.name)
    uid = secrets.token_hex(6)
    pod_slice = f"kubepods-burstable-pod{uid}.slice"
    pod_cgroup = f"{CGROUP}/kubepods.slice/kubepods-burstable.slice/{pod_slice}"
    cfg = pod_config("sd", tmp_path / "logs", uid=uid)
    cfg.linux.cgroup_parent = pod_slice
    cfg.linux.resources.memory_limit_in_bytes = 256 * MiB
    cfg.linux.resources.cpu_shares = 512
    pod = Pod(d, cfg)

    # the pod: the kubelet's slice, nested under its ancestors, with the pod's limits
    sh = show(pod_slice, "ActiveState", "MemoryMax", "CPUWeight")
    assert sh == {"ActiveState": "active", "MemoryMax": str(256 * MiB), "CPUWeight": "20"}
    assert read(f"{pod_cgroup}/memory.max") == str(256 * MiB)

    resources = api_pb2.LinuxContainerResources(
        memory_limit_in_bytes=64 * MiB, cpu_quota=20000, cpu_period=100000, cpu_shares=256
    )
    cid = pod.run(
        "main", images.busybox.name, command=["sleep", "600"],
        linux=api_pb2.LinuxContainerConfig(resources=resources),
    )  # fmt: skip
    scope = f"pycrio-{cid}.scope"
    scope_cgroup = f"{pod_cgroup}/{scope}"
    # the container: a delegated scope the runtime made in the pod slice
    sh = show(scope, "ActiveState", "Slice", "Delegate", "MemoryMax", "CPUQuotaPerSecUSec")
    assert sh == {
        "ActiveState": "active",
        "Slice": pod_slice,
        "Delegate": "yes",
        "MemoryMax": str(64 * MiB),
        "CPUQuotaPerSecUSec": "200ms",
    }
    pid = pod.info(cid)["pid"]
    assert cgroup_of_pid(pid) == scope_cgroup[len(CGROUP) :]
    assert read(f"{scope_cgroup}/memory.max") == str(64 * MiB)
    assert read(f"{scope_cgroup}/cpu.max") == "20000 100000"
    # the monitor: its own scope in the pod slice (conmon_cgroup = "pod")
    conmon = monitor_pid(cid)
    assert cgroup_of_pid(conmon) == f"{pod_cgroup[len(CGROUP) :]}/pycrio-conmon-{cid}.scope"

    # UpdateContainerResources: runc sets the unit's properties (SetUnitProperties)
    pod.rt.UpdateContainerResources(
        api_pb2.UpdateContainerResourcesRequest(
            container_id=cid,
            linux=api_pb2.LinuxContainerResources(memory_limit_in_bytes=96 * MiB),
        ),
        timeout=30,
    )
    assert show(scope, "MemoryMax") == {"MemoryMax": str(96 * MiB)}
    assert read(f"{scope_cgroup}/memory.max") == str(96 * MiB)

    # UpdatePodSandboxResources: SetUnitProperties on the pod slice
    pod.rt.UpdatePodSandboxResources(
        api_pb2.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=pod.id,
            resources=api_pb2.LinuxContainerResources(memory_limit_in_bytes=384 * MiB),
        ),
        timeout=30,
    )
    assert show(pod_slice, "MemoryMax") == {"MemoryMax": str(384 * MiB)}
    assert read(f"{pod_cgroup}/memory.max") == str(384 * MiB)

    # stats from the units' cgroup files
    pod.out(cid, "sh", "-c", "dd if=/dev/zero of=/dev/shm/f bs=1M count=8 2>/dev/null")
    stats = pod.rt.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid)).stats
    assert stats.memory.working_set_bytes.value > 4 * MiB
    assert stats.cpu.usage_core_nano_seconds.value > 0
    pstats = pod.rt.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod.id)).stats
    assert pstats.linux.memory.working_set_bytes.value >= stats.memory.working_set_bytes.value

    assert pstats.linux.process.process_count.value >= 2  # the container's and conmon's

    # systemd reloading and re-executing while the pod runs: nothing moves or dies
    for verb in ("daemon-reload", "daemon-reexec"):
        subprocess.run(["systemctl", verb], check=True, timeout=300)
    wait_until(lambda: show(scope, "ActiveState")["ActiveState"] == "active", 60, "systemd back")
    assert pod.status(cid).status.state == RUNNING
    assert read(f"{scope_cgroup}/memory.max") == str(96 * MiB)
    assert cgroup_of_pid(pid) == scope_cgroup[len(CGROUP) :]
    assert pod.out(cid, "echo", "alive") == "alive\n"

    # a daemon restart (SIGKILL): the container keeps running in its scope
    d.signal(signal.SIGKILL)
    d.wait(timeout=30)
    d.stop()
    assert show(scope, "ActiveState")["ActiveState"] == "active"
    d.start()
    assert pod.status(cid).status.state == RUNNING
    stats = pod.rt.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid)).stats
    assert stats.memory.working_set_bytes.value > 0

    # teardown: no unit and no cgroup left
    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=2), timeout=60)
    assert pod.status(cid).status.state == EXITED
    pod.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)
    wait_until(lambda: unit_gone(scope), 20, f"{scope} to go")
    wait_until(lambda: unit_gone(f"pycrio-conmon-{cid}.scope"), 20, "the conmon scope to go")
    assert not os.path.exists(scope_cgroup)
    pod.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
    pod.remove()
    wait_until(lambda: unit_gone(pod_slice), 20, f"{pod_slice} to go")
    assert not os.path.exists(pod_cgroup)
    assert_nothing_left(d, pod.containers)


def test_cgroupfs_parent_is_refused_and_leaves_nothing(start_daemon, tmp_path: Path) -> None:
    d = start_daemon()
    cfg = pod_config("fs", tmp_path / "logs")
    cfg.linux.cgroup_parent = "/kubepods/burstable/pod1234"
    err = rpc_error(
        lambda: d.runtime().RunPodSandbox(api_pb2.RunPodSandboxRequest(config=cfg), timeout=30)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "--cgroup-driver" in err.details() and "cgroup_manager" in err.details()
    assert not d.runtime().ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items


def test_conmon_in_a_named_slice_and_no_parent(
    start_daemon, tmp_path: Path, registry, images: registry_env.TestImages
) -> None:
    config = daemon_config(
        tmp_path / "conf", registry.host,
        '[plugins.systemd]\nconmon_cgroup = "system.slice"\ndefault_parent = "pycrionode.slice"',
    )  # fmt: skip
    d = start_daemon(config=config)
    pull(d, images.busybox.name)
    pod = Pod(d, pod_config("np", tmp_path / "logs"))  # no cgroup_parent (crictl users)
    pod_slice = f"pycrionode-pod{pod.id}.slice"
    assert show(pod_slice, "ActiveState") == {"ActiveState": "active"}
    cid = pod.run("c", images.busybox.name, command=["sleep", "600"])
    assert show(f"pycrio-{cid}.scope", "Slice") == {"Slice": pod_slice}
    conmon_cgroup = cgroup_of_pid(monitor_pid(cid))
    assert conmon_cgroup == f"/system.slice/pycrio-conmon-{cid}.scope"
    pod.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
    pod.remove()
    wait_until(lambda: unit_gone(pod_slice), 20, f"{pod_slice} to go")
    wait_until(lambda: unit_gone(f"pycrio-conmon-{cid}.scope"), 20, "the conmon scope to go")
    assert_nothing_left(d, pod.containers)


def test_wipe_stops_units_through_systemd(
    start_daemon, tmp_path: Path, registry, images: registry_env.TestImages
) -> None:
    """`pycrio wipe` with the daemon down: the runtime driver names its processes, the
    systemd driver stops the pod's slice and the container's scope over D-Bus."""
    d = start_daemon(config=daemon_config(tmp_path / "conf", registry.host))
    pull(d, images.busybox.name)
    uid = secrets.token_hex(6)
    pod_slice = f"kubepods-besteffort-pod{uid}.slice"
    cfg = pod_config("wipe", tmp_path / "logs", uid=uid)
    cfg.linux.cgroup_parent = pod_slice
    pod = Pod(d, cfg)
    cid = pod.run("c", images.busybox.name, command=["sleep", "600"])
    pid, monitor = pod.info(cid)["pid"], monitor_pid(cid)
    d.stop()
    assert os.path.exists(f"/proc/{pid}") and os.path.exists(f"/proc/{monitor}")

    r = subprocess.run(d.command("wipe"), env=d.env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"killed container {cid} (pid {pid})" in r.stdout
    assert f"killed monitor of {cid} (pid {monitor})" in r.stdout
    assert "not cleaned: cgroup" not in r.stdout and "note:" not in r.stdout, r.stdout
    for unit in (f"pycrio-{cid}.scope", f"pycrio-conmon-{cid}.scope", pod_slice):
        wait_until(lambda u=unit: unit_gone(u), 20, f"{unit} to go")
