"""The systemd driver against a real systemd (PID 1) over D-Bus.

These run in the node VM (``make test-node``: Debian 12, systemd, cgroup v2);
elsewhere they skip. Every test uses slices of its own (``pycrtest<random>``)
and its fixture stops whatever is left of them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pycrio_cgroup_systemd.driver import SystemdCgroupDriver
from pycrio_cgroup_systemd.units import cgroup_of

from pycrio.config.load import defaults
from pycrio.errors import FailedPrecondition, InvalidArgument, NotFound
from pycrio.kernel.interfaces import CgroupDriver, DriverContext

MiB = 1 << 20
CHILD = """
import sys
sys.stdin.readline()
data = bytearray(16 << 20)
for i in range(0, len(data), 4096):
    data[i] = 1
print("ok", flush=True)
sys.stdin.readline()
"""


def _systemd_pid1() -> bool:
    try:
        with open("/proc/1/comm") as f:
            return f.read().strip() == "systemd" and os.path.isdir("/run/systemd/system")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not _systemd_pid1(),
    reason="needs root and systemd as PID 1: runs in the node VM (make test-node)",
)


def systemctl_show(unit: str, *props: str) -> dict[str, str]:
    out = subprocess.run(
        ["systemctl", "show", unit, *(f"--property={p}" for p in props)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def start_transient(unit: str, *properties: str) -> None:
    """StartTransientUnit through busctl: name, then (name, signature, value...) triples."""
    count = sum(1 for p in properties if p[:1].isupper())
    subprocess.run(
        [
            "busctl", "call", "--quiet", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))",
            unit, "fail", str(count), *properties, "0",
        ],
        check=True,
        timeout=30,
    )  # fmt: skip
    wait_for(lambda: systemctl_show(unit, "ActiveState")["ActiveState"] == "active", unit)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def unloaded(unit: str) -> bool:
    """The transient unit is gone (a slice may still load as a file-less stub when asked)."""
    show = systemctl_show(unit, "LoadState", "ActiveState", "Transient")
    return show["LoadState"] == "not-found" or (
        show["ActiveState"] == "inactive" and show["Transient"] == "no"
    )


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[SystemdCgroupDriver]:
    ctx = DriverContext("systemd", defaults(), {}, str(tmp_path), str(tmp_path))
    d = SystemdCgroupDriver(ctx)
    yield d
    d.close()


@pytest.fixture
def top() -> Iterator[str]:
    """A slice of the test's own; it and everything below are stopped at the end."""
    name = f"pycrtest{secrets.token_hex(4)}"
    yield name
    subprocess.run(["systemctl", "stop", f"{name}.slice"], timeout=60, check=False)
    assert not os.path.exists(f"/sys/fs/cgroup/{name}.slice")


def test_is_the_systemd_driver(driver: SystemdCgroupDriver) -> None:
    assert isinstance(driver, CgroupDriver)
    assert driver.cri_cgroup_driver == "systemd"
    assert driver.v2, "the node VM boots with cgroup v2 only"
    assert driver.ready() == (True, "", "")


def test_pod_slice_lifecycle(driver: SystemdCgroupDriver, top: str) -> None:
    pod = f"{top}-burstable-pod{secrets.token_hex(4)}.slice"
    resources = {
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
        "memory": {"limit": 64 * MiB},
        "pids": {"limit": 50},
    }
    assert driver.pod_cgroup(pod, "p1", resources) == pod
    show = systemctl_show(
        pod, "ActiveState", "MemoryMax", "TasksMax", "CPUWeight", "CPUQuotaPerSecUSec",
        "AllowedCPUs", "ControlGroup",
    )  # fmt: skip
    assert show["ActiveState"] == "active"
    assert show["MemoryMax"] == str(64 * MiB)
    assert show["TasksMax"] == "50"
    assert show["CPUWeight"] == str(1 + (510 * 9999) // 262142)
    assert show["CPUQuotaPerSecUSec"] == "500ms"
    assert show["AllowedCPUs"] == "0"
    cgroup = f"/sys/fs/cgroup{cgroup_of(pod)}"
    assert show["ControlGroup"] == cgroup_of(pod)
    assert read(f"{cgroup}/memory.max") == str(64 * MiB)
    assert read(f"{cgroup}/pids.max") == "50"
    assert read(f"{cgroup}/cpu.max") == "50000 100000"

    # UpdatePodSandboxResources: SetUnitProperties, seen in systemd and the files
    driver.update(pod, {"memory": {"limit": 96 * MiB}, "pids": {"limit": -1}})
    show = systemctl_show(pod, "MemoryMax", "TasksMax")
    assert show["MemoryMax"] == str(96 * MiB)
    assert show["TasksMax"] == "infinity"
    assert read(f"{cgroup}/memory.max") == str(96 * MiB)
    assert read(f"{cgroup}/pids.max") == "max"
    # systemd reloading keeps the limits: they are its own properties
    subprocess.run(["systemctl", "daemon-reload"], check=True, timeout=120)
    assert read(f"{cgroup}/memory.max") == str(96 * MiB)

    stats = driver.stats(pod)
    assert stats.pids == 0 and stats.pids_limit == 0  # "max" reads as no limit

    driver.remove(pod)
    wait_for(lambda: unloaded(pod), f"{pod} to be unloaded")
    assert not os.path.exists(cgroup)
    driver.remove(pod)  # idempotent
    with pytest.raises(NotFound):
        driver.stats(pod)
    with pytest.raises(NotFound):
        driver.update(pod, {"memory": {"limit": 64 * MiB}})


def test_scope_stats_and_removal_never_kills(driver: SystemdCgroupDriver, top: str) -> None:
    pod = driver.pod_cgroup(f"{top}-pod1.slice", "p2", {"memory": {"limit": 128 * MiB}})
    path = driver.container_cgroups_path(pod, "c0ffee")
    assert path == f"{pod}:pycrio:c0ffee"
    # memory is charged where it is allocated and does not move with a process
    # on v2: the child allocates only once it is in the scope
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        # what the OCI runtime does with --systemd-cgroup: a delegated scope in the slice
        start_transient(
            "pycrio-c0ffee.scope",
            "Slice", "s", pod, "PIDs", "au", "1", str(child.pid),
            "Delegate", "b", "true", "MemoryAccounting", "b", "true",
        )  # fmt: skip
        cgroup = f"/sys/fs/cgroup{cgroup_of(path)}"
        wait_for(lambda: str(child.pid) in read(f"{cgroup}/cgroup.procs").split(), "the move")
        assert systemctl_show("pycrio-c0ffee.scope", "Delegate")["Delegate"] == "yes"
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ok\n"
        usage = driver.stats(path)
        assert usage.memory_usage_bytes > 8 * MiB
        assert usage.pids == 1
        assert driver.stats(pod).memory_usage_bytes >= usage.memory_usage_bytes
        # removal waits remove_timeout for the process, then refuses, killing nothing
        driver.remove_timeout = 0.3
        with pytest.raises(FailedPrecondition) as e:
            driver.remove(path)
        assert str(child.pid) in e.value.message
        with pytest.raises(FailedPrecondition):
            driver.remove(pod)
        assert child.poll() is None
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    driver.remove_timeout = 5.0
    driver.remove(path)
    driver.remove(pod)
    assert not os.path.exists(f"/sys/fs/cgroup{cgroup_of(pod)}")


def test_kubelet_made_slice_is_adopted(driver: SystemdCgroupDriver, top: str) -> None:
    pod = f"{top}-pod2.slice"
    # the kubelet creates the pod slice (a transient unit) before RunPodSandbox
    start_transient(pod, "TasksMax", "t", "7")
    assert systemctl_show(pod, "TasksMax")["TasksMax"] == "7"
    assert driver.pod_cgroup(pod, "p3", {"pids": {"limit": 20}}) == pod
    assert systemctl_show(pod, "TasksMax")["TasksMax"] == "20"
    driver.remove(pod)


def test_default_parent_and_monitor_scope(driver: SystemdCgroupDriver, top: str) -> None:
    driver.default_parent = f"{top}.slice"
    pod = driver.pod_cgroup("", "abc123", {})
    assert pod == f"{top}-podabc123.slice"
    monitor = subprocess.Popen(["sleep", "30"])
    try:
        driver.place_monitor(monitor.pid, pod, "feed")
        scope = f"/sys/fs/cgroup{cgroup_of(pod)}/pycrio-conmon-feed.scope"
        assert str(monitor.pid) in read(f"{scope}/cgroup.procs").split()
        assert systemctl_show("pycrio-conmon-feed.scope", "Slice")["Slice"] == pod
    finally:
        monitor.kill()
        monitor.wait(timeout=10)
    # systemd collects the monitor's scope once it is empty
    wait_for(lambda: unloaded("pycrio-conmon-feed.scope"), "the monitor scope to go")
    driver.remove(pod)


def test_bad_input_creates_nothing(driver: SystemdCgroupDriver, top: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        driver.pod_cgroup("/kubepods/burstable/podx", "p4", {})
    assert "--cgroup-driver" in e.value.message
    pod = f"{top}-pod4.slice"
    with pytest.raises(InvalidArgument):
        driver.pod_cgroup(pod, "p4", {"memory": {"limit": "lots"}})
    with pytest.raises(InvalidArgument):
        driver.pod_cgroup(pod, "p4", {"unified": {"nosuch.file": "1"}})
    wait_for(lambda: unloaded(pod), f"{pod} to be unloaded")
    assert not os.path.exists(f"/sys/fs/cgroup{cgroup_of(pod)}")
