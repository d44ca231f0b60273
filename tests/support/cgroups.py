"""cgroup paths for tests, derived from the layout the cgroupfs driver detects.

A test that hard-codes ``/sys/fs/cgroup/<controller>`` fails on a cgroup v2
node, and a glob below a directory that does not exist finds nothing and so
passes without checking anything. These helpers ask the cgroupfs driver's own
detection (pycrio_cgroup_fs.layout) where each controller lives, and refuse
to answer when there is no such hierarchy rather than find nothing.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from pycrio_cgroup_fs.layout import Layout, detect


def layout() -> Layout:
    return detect()


def mounts() -> list[Path]:
    """Every cgroup hierarchy's mount point (never empty)."""
    found = [Path(m) for m in detect().all_mounts()]
    assert found, "no cgroup hierarchy is mounted"
    return found


def controller_dir(controller: str, path: str) -> Path:
    """The directory holding ``controller``'s files of the cgroup ``path``."""
    lay = detect()
    base = lay.unified.mountpoint if lay.uses_v2 and lay.unified else lay.v1_mount(controller)
    assert base, f"no hierarchy holds the {controller} controller ({lay.mode} layout)"
    return Path(base) / path.lstrip("/")


def matching(pattern: str) -> list[Path]:
    """cgroup directories in any hierarchy whose path below the mount matches ``pattern``.

    os.walk rather than rglob: cgroups of other tests and daemons come and go
    while it walks, and rglob raises when a directory vanishes under it.
    """
    want = pattern.split("/")
    found = []
    for mount in mounts():
        for top, dirs, _files in os.walk(mount):
            for d in dirs:
                parts = Path(top, d).relative_to(mount).parts
                tail = parts[-len(want) :]
                if len(tail) == len(want) and all(map(fnmatch.fnmatchcase, tail, want)):
                    found.append(Path(top, d))
    return found


def cpu_share(shares: int) -> int:
    """What the cgroup holds for CRI cpu_shares: the shares on v1, runc's cpu.weight on v2."""
    if not detect().uses_v2:
        return shares
    return 1 + ((shares - 2) * 9999) // 262142


def resources(path: str) -> dict[str, int]:
    """cpu_share (see :func:`cpu_share`), cpu_quota, cpu_period and memory_limit of a cgroup."""
    cpu, memory = controller_dir("cpu", path), controller_dir("memory", path)
    if detect().uses_v2:
        quota, period = (cpu / "cpu.max").read_text().split()
        limit = (memory / "memory.max").read_text().strip()
        return {
            "cpu_share": int((cpu / "cpu.weight").read_text()),
            "cpu_quota": -1 if quota == "max" else int(quota),
            "cpu_period": int(period),
            "memory_limit": -1 if limit == "max" else int(limit),
        }
    return {
        "cpu_share": int((cpu / "cpu.shares").read_text()),
        "cpu_quota": int((cpu / "cpu.cfs_quota_us").read_text()),
        "cpu_period": int((cpu / "cpu.cfs_period_us").read_text()),
        "memory_limit": int((memory / "memory.limit_in_bytes").read_text()),
    }


def memory_limit_file_in_container() -> str:
    """Where a container (in its own cgroup namespace) reads its memory limit."""
    if detect().uses_v2:
        return "/sys/fs/cgroup/memory.max"
    return "/sys/fs/cgroup/memory/memory.limit_in_bytes"


def frozen(path: str) -> bool:
    """True if the cgroup ``path`` is frozen (a paused container), whoever froze it."""
    if detect().uses_v2:
        return (controller_dir("cpu", path) / "cgroup.freeze").read_text().strip() == "1"
    return (controller_dir("freezer", path) / "freezer.state").read_text().strip() == "FROZEN"
