"""The cgroupfs driver against this machine's real cgroups (root), plus a fake v2 tree.

Every real test works under a parent of its own (/pycrio-test-<random>) and
its fixture removes that parent in every hierarchy, killing only the
processes the test itself started, even when the test fails.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrio_cgroup_fs import CgroupfsDriver
from pycrio_cgroup_fs.fs import rmdir_tree
from pycrio_cgroup_fs.layout import MODE_NONE, MODE_V2, Hierarchy, Layout, detect

from pycrio.config.load import defaults
from pycrio.errors import FailedPrecondition, InvalidArgument, NotFound
from pycrio.kernel.interfaces import (
    MEASURE_CPU_QUOTA,
    MEASURE_MEMORY_RESERVATION,
    MEASURE_PRESSURE,
    CgroupDriver,
    DriverContext,
)

MiB = 1 << 20

# Waits for a line, then charges memory and burns CPU inside its new cgroup,
# says "ok" and waits again: memory already charged elsewhere does not move
# with a process on v1, so the work must happen after the move.
CHILD = """
import sys, time
sys.stdin.readline()
data = b"x" * (32 << 20)
end = time.monotonic() + 0.3
n = 0
while time.monotonic() < end:
    n += 1
print("ok", flush=True)
sys.stdin.readline()
"""


def make_driver(tmp_path: Path, layout: Layout | None = None, **options: object) -> CgroupfsDriver:
    ctx = DriverContext("cgroupfs", defaults(), dict(options), str(tmp_path), str(tmp_path))
    return CgroupfsDriver(ctx, layout=layout)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


LAYOUT = detect()
needs_root_cgroups = pytest.mark.skipif(
    os.geteuid() != 0 or LAYOUT.mode == MODE_NONE, reason="needs root and mounted cgroups"
)
needs_v1 = pytest.mark.skipif(
    LAYOUT.uses_v2, reason="this machine's controllers are on cgroup v2; the v1 path is not here"
)


def _why_no_v2() -> str:
    unified = LAYOUT.unified
    if unified is None:
        return f"cgroup layout is {LAYOUT.mode} with no cgroup2 mount"
    controllers = " ".join(sorted(LAYOUT.unified_controllers)) or "no controllers"
    return (
        f"cgroup layout is {LAYOUT.mode}: the unified hierarchy at {unified.mountpoint} holds"
        f" {controllers} and resources go to v1; the v2 path needs a pure cgroup v2 machine"
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; killed and reaped first thing at teardown."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


@pytest.fixture
def parent(procs: list[subprocess.Popen[str]]) -> Iterator[str]:
    """A unique top-level cgroup path, removed from every hierarchy afterwards."""
    path = f"/pycrio-test-{secrets.token_hex(4)}"
    yield path
    for p in procs:  # the processes must be gone before their cgroups can be
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
    errors = []
    for mount in LAYOUT.all_mounts():
        try:
            rmdir_tree(mount + path, time.monotonic() + 5)
        except Exception as e:  # noqa: BLE001 - report every leftover, not the first
            errors.append(str(e))
    assert not errors, errors
    assert not [m for m in LAYOUT.all_mounts() if os.path.exists(m + path)]


def join(pid: int, path: str) -> None:
    """Move ``pid`` into ``path`` the way runc would (every hierarchy that takes resources)."""
    mounts = [LAYOUT.unified.mountpoint] if LAYOUT.uses_v2 and LAYOUT.unified else []
    mounts += [h.mountpoint for h in LAYOUT.v1] if not LAYOUT.uses_v2 else []
    for mount in mounts:
        with open(f"{mount}{path}/cgroup.procs", "w") as f:
            f.write(str(pid))


def test_is_a_cgroup_driver(tmp_path: Path) -> None:
    driver = make_driver(tmp_path)
    assert isinstance(driver, CgroupDriver)
    assert driver.cri_cgroup_driver == "cgroupfs"
    assert driver.container_cgroups_path("/kubepods/pod1", "abc") == "/kubepods/pod1/pycrio-abc"
    with pytest.raises(InvalidArgument):
        driver.container_cgroups_path("/kubepods/pod1", "../x")
    with pytest.raises(InvalidArgument):
        make_driver(tmp_path, default_parent="relative")
    with pytest.raises(InvalidArgument):
        make_driver(tmp_path, remove_timeout="soon")


@needs_root_cgroups
@needs_v1
def test_v1_pod_cgroup_lifecycle(
    tmp_path: Path, parent: str, procs: list[subprocess.Popen[str]]
) -> None:
    driver = make_driver(tmp_path, remove_timeout=0.3)
    resources = {
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "memory": {"limit": 256 * MiB},
        "pids": {"limit": 100},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
    }
    path = driver.pod_cgroup(f"{parent}/kubepods/pod-abc", "sandbox1", resources)
    assert path == f"{parent}/kubepods/pod-abc"
    for mount in LAYOUT.managed_mounts():
        assert os.path.isdir(mount + path), mount
    cpu, memory = LAYOUT.v1_mount("cpu"), LAYOUT.v1_mount("memory")
    pids, cpuset = LAYOUT.v1_mount("pids"), LAYOUT.v1_mount("cpuset")
    assert cpu and memory and pids
    assert read(f"{memory}{path}/memory.limit_in_bytes") == str(256 * MiB)
    assert read(f"{cpu}{path}/cpu.shares") == "512"
    assert read(f"{cpu}{path}/cpu.cfs_quota_us") == "50000"
    assert read(f"{cpu}{path}/cpu.cfs_period_us") == "100000"
    assert read(f"{pids}{path}/pids.max") == "100"
    if cpuset:  # copied from the parent so that tasks can join
        assert read(f"{cpuset}{path}/cpuset.cpus") == read(f"{cpuset}/cpuset.cpus")
        assert read(f"{cpuset}{path}/cpuset.mems") == read(f"{cpuset}/cpuset.mems")

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    procs.append(child)
    assert child.stdin and child.stdout
    join(child.pid, path)
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "ok"

    stats = driver.stats(path)
    assert stats.pids >= 1
    assert stats.pids_limit == 100
    assert stats.cpu_usage_ns > 0
    assert stats.memory_usage_bytes >= 32 * MiB
    assert 0 < stats.memory_working_set_bytes <= stats.memory_usage_bytes
    assert 0 < stats.memory_available_bytes < 256 * MiB
    assert stats.memory_page_faults > 0
    # what the cadvisor metrics need: the processes, the limits as set, the split CPU time
    assert stats.processes == [child.pid]
    assert (stats.cpu_shares, stats.cpu_quota_us, stats.cpu_period_us) == (512, 50000, 100000)
    assert stats.memory_limit_bytes == 256 * MiB
    assert stats.memory_max_usage_bytes >= stats.memory_usage_bytes
    assert stats.cpu_user_ns + stats.cpu_system_ns > 0
    assert stats.cpu_periods > 0  # a quota is set: CFS counts its periods
    measurable = driver.measurable()
    assert {MEASURE_CPU_QUOTA, MEASURE_MEMORY_RESERVATION} <= measurable
    if MEASURE_PRESSURE in measurable:
        assert set(stats.pressure) == {"cpu", "memory", "io"}

    driver.update(
        path,
        {
            "cpu": {"shares": 256, "quota": 20000},
            "memory": {"limit": 512 * MiB},
            "pids": {"limit": 50},
        },
    )
    assert read(f"{memory}{path}/memory.limit_in_bytes") == str(512 * MiB)
    assert read(f"{cpu}{path}/cpu.shares") == "256"
    assert read(f"{cpu}{path}/cpu.cfs_quota_us") == "20000"
    assert read(f"{pids}{path}/pids.max") == "50"
    assert driver.stats(path).pids_limit == 50

    # A container cgroup below the pod, as runc makes it, goes with the pod.
    container = driver.container_cgroups_path(path, "c1")
    for mount in LAYOUT.managed_mounts():
        os.mkdir(mount + container)

    # remove() never kills: with the process inside it fails and leaves it running.
    with pytest.raises(FailedPrecondition, match=str(child.pid)):
        driver.remove(path)
    assert child.poll() is None

    child.kill()
    child.wait(timeout=10)
    driver.remove(path)
    for mount in LAYOUT.all_mounts():
        assert not os.path.exists(mount + path), mount
        assert os.path.isdir(f"{mount}{parent}/kubepods"), "the parents are not ours to remove"
    driver.remove(path)  # idempotent
    with pytest.raises(NotFound):
        driver.stats(path)
    with pytest.raises(NotFound):
        driver.update(path, {"pids": {"limit": 10}})


@needs_root_cgroups
def test_monitors_share_a_leaf_of_the_pod(
    tmp_path: Path, parent: str, procs: list[subprocess.Popen[str]]
) -> None:
    """conmon_cgroup = "pod": each monitor joins <pod>/pycrio-conmon, which goes with the pod."""
    driver = make_driver(tmp_path, remove_timeout=0.3)
    pod = driver.pod_cgroup(f"{parent}/pod-m", "sandbox-m", {"memory": {"limit": 256 * MiB}})
    monitors = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    procs.extend(monitors)  # type: ignore[arg-type]
    for n, monitor in enumerate(monitors):
        driver.place_monitor(monitor.pid, pod, f"c{n}")
    leaf = f"{pod}/pycrio-conmon"
    with open(f"/proc/{monitors[0].pid}/cgroup") as f:
        joined = {line.split(":", 2)[2] for line in f.read().splitlines()}
    assert joined == {leaf}, joined  # every hierarchy, v1 and unified alike
    for mount in LAYOUT.managed_mounts():
        assert sorted(read(f"{mount}{leaf}/cgroup.procs").split()) == sorted(
            str(m.pid) for m in monitors
        ), mount
    assert driver.stats(pod).processes == sorted(m.pid for m in monitors)  # they count
    with pytest.raises(NotFound):
        driver.place_monitor(monitors[0].pid, f"{parent}/no-such-pod", "c9")
    with pytest.raises(FailedPrecondition):
        driver.remove(pod)  # never kills the monitors
    for monitor in monitors:
        monitor.kill()
        monitor.wait(timeout=10)
    driver.remove(pod)
    for mount in LAYOUT.all_mounts():
        assert not os.path.exists(mount + pod), mount


@needs_root_cgroups
def test_default_parent_and_update_order(tmp_path: Path, parent: str) -> None:
    driver = make_driver(tmp_path, default_parent=f"{parent}/pods")
    path = driver.pod_cgroup("", "p1", {})
    assert path == f"{parent}/pods/pod-p1"
    assert all(os.path.isdir(m + path) for m in LAYOUT.managed_mounts())
    if not LAYOUT.uses_v2:
        driver.update(path, {"cpu": {"quota": 200000, "period": 300000}})
        cpu = LAYOUT.v1_mount("cpu")
        assert read(f"{cpu}{path}/cpu.cfs_quota_us") == "200000"
        assert read(f"{cpu}{path}/cpu.cfs_period_us") == "300000"
        memory = LAYOUT.v1_mount("memory")
        if memory and os.path.exists(f"{memory}{path}/memory.memsw.limit_in_bytes"):
            driver.update(path, {"memory": {"limit": 100 * MiB, "swap": 200 * MiB}})
            # Raising memory above the current memory+swap is refused until
            # memory+swap is raised: the refused write is retried after it.
            driver.update(path, {"memory": {"limit": 300 * MiB, "swap": 400 * MiB}})
            assert read(f"{memory}{path}/memory.memsw.limit_in_bytes") == str(400 * MiB)
            assert read(f"{memory}{path}/memory.limit_in_bytes") == str(300 * MiB)
            with pytest.raises(InvalidArgument, match="memsw"):
                driver.update(path, {"memory": {"limit": 300 * MiB, "swap": 200 * MiB}})
    driver.remove(path)
    assert not [m for m in LAYOUT.all_mounts() if os.path.exists(m + path)]


@needs_root_cgroups
@needs_v1
def test_rejected_value_names_file_and_rolls_back(tmp_path: Path, parent: str) -> None:
    driver = make_driver(tmp_path)
    with pytest.raises(InvalidArgument, match=r"'500' to .*cpu\.cfs_quota_us"):
        driver.pod_cgroup(f"{parent}/pod-x", "x", {"cpu": {"quota": 500, "period": 100000}})
    # The directories this call made are gone again, the ones it found stay.
    for mount in LAYOUT.all_mounts():
        assert not os.path.exists(f"{mount}{parent}"), mount

    os.mkdir(LAYOUT.managed_mounts()[0] + parent)
    with pytest.raises(InvalidArgument, match="cpuset.cpus"):
        driver.pod_cgroup(f"{parent}/pod-y", "y", {"cpu": {"cpus": "4000-4001"}})
    # issue 17, CRI fuzzer: a value longer than a page is E2BIG from kernfs (was INTERNAL)
    with pytest.raises(InvalidArgument, match="cpuset.cpus"):
        driver.pod_cgroup(f"{parent}/pod-y", "y", {"cpu": {"cpus": "x" * 70_000}})
    assert os.path.isdir(LAYOUT.managed_mounts()[0] + parent)
    assert not [m for m in LAYOUT.all_mounts() if os.path.exists(f"{m}{parent}/pod-y")]


@needs_root_cgroups
def test_invalid_input_creates_nothing(tmp_path: Path, parent: str) -> None:
    driver = make_driver(tmp_path)
    for bad_parent in ("kubepods.slice", f"{parent}/../etc", "/", "relative/path"):
        with pytest.raises(InvalidArgument):
            driver.pod_cgroup(bad_parent, "p", {})
    with pytest.raises(InvalidArgument):
        driver.pod_cgroup(f"{parent}/pod", "p", {"memory": {"limit": "1G"}})
    with pytest.raises(InvalidArgument):
        driver.pod_cgroup(f"{parent}/pod", "../p", {})
    with pytest.raises(InvalidArgument):
        driver.remove("/")
    with pytest.raises(InvalidArgument):
        driver.stats("/../x")
    assert not [m for m in LAYOUT.all_mounts() if os.path.exists(m + parent)]
    driver.remove(f"{parent}/never-made")  # removing what is not there is fine
    with pytest.raises(NotFound):
        driver.stats(f"{parent}/never-made")


@needs_root_cgroups
@pytest.mark.skipif(LAYOUT.mode != MODE_V2, reason=_why_no_v2())
def test_v2_pod_cgroup_real(
    tmp_path: Path, parent: str, procs: list[subprocess.Popen[str]]
) -> None:
    driver = make_driver(tmp_path)
    assert LAYOUT.unified is not None
    root = LAYOUT.unified.mountpoint
    resources = {
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
        "memory": {"limit": 256 * MiB},
        "pids": {"limit": 100},
    }
    path = driver.pod_cgroup(f"{parent}/pod", "p", resources)
    available = set(LAYOUT.unified_controllers)
    if "memory" in available:
        assert read(f"{root}{path}/memory.max") == str(256 * MiB)
    if "cpu" in available:
        assert read(f"{root}{path}/cpu.weight") == "39"
        assert read(f"{root}{path}/cpu.max") == "50000 100000"
    if "pids" in available:
        assert read(f"{root}{path}/pids.max") == "100"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    procs.append(child)
    assert child.stdin and child.stdout
    join(child.pid, path)
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "ok"
    stats = driver.stats(path)
    assert stats.cpu_usage_ns > 0
    if "memory" in available:
        assert stats.memory_usage_bytes > 0
    child.kill()
    child.wait(timeout=10)
    driver.remove(path)
    assert not os.path.exists(root + path)


def _fake_v2(tmp_path: Path) -> tuple[Path, Layout]:
    """A directory shaped like a v2 hierarchy: enough files for the driver's writes."""
    root = tmp_path / "cgroup"
    pod = root / "kubepods" / "pod1"
    pod.mkdir(parents=True)
    for directory in (root, root / "kubepods"):
        (directory / "cgroup.controllers").write_text("cpu memory pids\n")
        (directory / "cgroup.subtree_control").write_text("")
    (root / "kubepods" / "cgroup.subtree_control").write_text("memory\n")
    for name in ("memory.max", "memory.swap.max", "cpu.weight", "cpu.max", "pids.max"):
        (pod / name).write_text("")
    unified = Hierarchy(str(root), 2, frozenset({"cpu", "memory", "pids"}))
    return root, Layout(MODE_V2, (), unified, unified.controllers)


def test_fake_v2_tree(tmp_path: Path) -> None:
    root, layout = _fake_v2(tmp_path)
    driver = make_driver(tmp_path, layout=layout)
    resources = {
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "memory": {"limit": 256 * MiB, "swap": -1},
        "pids": {"limit": 0},
    }
    path = driver.pod_cgroup("/kubepods/pod1", "p", resources)
    assert path == "/kubepods/pod1"
    pod = root / "kubepods" / "pod1"
    # Each ancestor enables what it has and has not enabled yet.
    assert (root / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (root / "kubepods" / "cgroup.subtree_control").read_text().startswith("+cpu +pids")
    assert (pod / "cpu.weight").read_text() == "20"
    assert (pod / "cpu.max").read_text() == "50000 100000"
    assert (pod / "memory.max").read_text() == str(256 * MiB)
    assert (pod / "memory.swap.max").read_text() == "max"
    assert (pod / "pids.max").read_text() == ""

    with pytest.raises(InvalidArgument, match=r"hugetlb\.2MB\.max"):
        driver.update(path, {"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]})
    with pytest.raises(NotFound):
        driver.update("/kubepods/other", {"pids": {"limit": 5}})

    (pod / "cpu.stat").write_text("usage_usec 10\n")
    (pod / "memory.current").write_text("4096\n")
    (pod / "memory.stat").write_text("anon 2048\ninactive_file 1024\n")
    stats = driver.stats(path)
    assert (stats.cpu_usage_ns, stats.memory_working_set_bytes, stats.memory_rss_bytes) == (
        10_000,
        3072,
        2048,
    )
