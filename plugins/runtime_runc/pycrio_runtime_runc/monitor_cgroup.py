"""Put conmon in a cgroup next to the pod's containers, as CRI-O's cgroupfs manager does.

Why: the monitor's memory and CPU belong to the pod, and a pod cgroup that
is removed must not leave monitors behind in the node's root cgroup. CRI-O
makes ``<cgroup_parent>/crio-conmon-<id>``; we make
``<cgroup_parent>/pycrio-conmon-<id>`` in every mounted hierarchy where the
parent exists. A child (not the parent itself) because cgroup v2 forbids
processes in a cgroup whose controllers are delegated to children.

Only cgroupfs paths are handled here; a systemd slice parent is left to
the caller (placement is best effort and its failure is only logged).
"""

from __future__ import annotations

import errno
import logging
import os
import time

log = logging.getLogger("pycrio.runc.monitor_cgroup")

PREFIX = "pycrio-conmon-"


def hierarchies() -> list[tuple[str, bool]]:
    """(mount point, has cpuset) of each cgroup hierarchy mounted at its root."""
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or fields[3] != "/":
            continue
        fstype, superopts = rfields[0], rfields[2]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mount = fields[4]
        if mount in seen:
            continue
        seen.add(mount)
        out.append((mount, "cpuset" in superopts.split(",")))
    return out


def _copy_cpuset(parent: str, child: str) -> None:
    """A new v1 cpuset cgroup starts empty and would refuse tasks."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        with open(os.path.join(parent, name), encoding="ascii") as f:
            value = f.read().strip()
        with open(os.path.join(child, name), "w", encoding="ascii") as f:
            f.write(value)


def place(pid: int, cgroup_parent: str, container_id: str) -> list[str]:
    """Move ``pid`` into ``<parent>/pycrio-conmon-<id>``; return the directories made."""
    if not cgroup_parent or not cgroup_parent.startswith("/") or cgroup_parent.endswith(".slice"):
        log.debug("monitor cgroup: parent %r is not a cgroupfs path; leaving it", cgroup_parent)
        return []
    made: list[str] = []
    for mount, has_cpuset in hierarchies():
        parent = os.path.join(mount, cgroup_parent.lstrip("/"))
        if not os.path.isdir(parent):
            continue
        child = os.path.join(parent, PREFIX + container_id)
        os.makedirs(child, exist_ok=True)
        made.append(child)
        if has_cpuset:
            _copy_cpuset(parent, child)
        with open(os.path.join(child, "cgroup.procs"), "w", encoding="ascii") as f:
            f.write(str(pid))
    return made


def remove(paths: list[str], timeout: float = 2.0) -> None:
    """rmdir the monitor's cgroups, retrying while the exiting monitor still holds them."""
    deadline = time.monotonic() + timeout
    for path in paths:
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning("cannot remove monitor cgroup %s: %s", path, e.strerror)
                    break
                time.sleep(0.05)
