"""What a daemon leaves on the host: mounts, netns pins, cgroups, monitors, files.

Used by the crash-recovery tests and bench/soak.py after every pod and
container was removed through the CRI; each finding is one readable string.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import cgroups

from pycrio.linux import mountinfo

#: Directories that must be empty once every pod and container is removed.
EMPTY_RUNROOT_DIRS = ("pods", "containers")
EMPTY_ROOT_DIRS = ("storage/tmp", "storage/overlay-containers", "sandboxes", "containers")


def record_ids(root: Path) -> set[str]:
    """Ids of the pod and container records on disk (whatever their state)."""
    ids = set()
    for sub in ("sandboxes", "containers"):
        d = root / sub
        if d.is_dir():
            ids.update(p.name[: -len(".json")] for p in d.iterdir() if p.name.endswith(".json"))
    return ids


def mounts_under(*dirs: Path) -> list[str]:
    """Mount points (from /proc/self/mountinfo) at or below any of ``dirs``."""
    return [
        m.mount_point
        for m in mountinfo.read()
        if any(mountinfo.is_under(m.mount_point, str(d)) for d in dirs)
    ]


def cgroups_named(ids: Iterable[str]) -> list[str]:
    """cgroup directories, in any hierarchy, whose name contains one of ``ids``."""
    wanted = [i for i in ids if i]
    if not wanted:
        return []
    out = []
    for mount in cgroups.mounts():
        for dirpath, dirnames, _ in os.walk(mount):
            for name in dirnames:
                if any(i in name for i in wanted):
                    out.append(os.path.join(dirpath, name))
    return out


def cmdlines() -> dict[int, str]:
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                out[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return out


def monitors_of(runroot: Path) -> list[tuple[int, str]]:
    """conmon or runc processes whose command line mentions ``runroot``, and shim v2
    processes that mention it or work in a bundle below it (a shim runs in its bundle)."""
    needle = str(runroot)
    return [
        (pid, cmd)
        for pid, cmd in cmdlines().items()
        if (needle in cmd and ("conmon" in cmd or "runc" in cmd))
        or ("containerd-shim" in cmd and (needle in cmd or _cwd_under(pid, needle)))
    ]


def _cwd_under(pid: int, top: str) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return cwd == top or cwd.startswith(top.rstrip("/") + "/")


def _entries(d: Path) -> list[str]:
    return sorted(os.listdir(d)) if d.is_dir() else []


def host_leaks(
    root: Path,
    runroot: Path,
    ids: Iterable[str] = (),
    *,
    daemon_running: bool = False,
    pids: Iterable[int] = (),
) -> list[str]:
    """Everything left behind by the daemon at ``root``/``runroot``.

    ``ids``: pod and container ids that must have no cgroup left; ``pids``:
    container processes that must have ended. With ``daemon_running`` the
    daemon's own private mount of its namespaces dir is allowed.
    """
    ids = set(ids)
    found: list[str] = []
    allowed = {str(runroot / "ns")} if daemon_running else set()
    for point in mounts_under(root, runroot):
        if point not in allowed:
            found.append(f"mount {point}")
    ns = runroot / "ns"
    if ns.is_dir():
        for dirpath, _, filenames in os.walk(ns):
            found.extend(f"netns/ns pin {os.path.join(dirpath, n)}" for n in filenames)
    found.extend(f"cgroup {p}" for p in cgroups_named(ids))
    found.extend(f"process {pid}: {cmd}" for pid, cmd in monitors_of(runroot))
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(f"container process {pid} still runs")
        except OSError:
            pass
    for sub in EMPTY_RUNROOT_DIRS:
        found.extend(f"file {runroot / sub / n}" for n in _entries(runroot / sub))
    for sub in EMPTY_ROOT_DIRS:
        found.extend(f"file {root / sub / n}" for n in _entries(root / sub))
    net_state = root / "drivers" / "testnet" / "pods.json"
    if net_state.exists():
        try:
            left = json.loads(net_state.read_text() or "{}")
        except ValueError:
            left = {"<unreadable>": net_state.read_text()}
        found.extend(f"network attachment of pod {p}" for p in left)
    return found
