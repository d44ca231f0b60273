"""pycrio's ``cgroupfs`` cgroup driver (entry point ``pycrio.cgroup: cgroupfs``).

Pod cgroups are plain directories under each cgroup hierarchy, named by
paths like the kubelet's (``/kubepods/burstable/pod<uid>``), on cgroup v1,
hybrid and v2 machines. See README.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CgroupfsDriver"]


def __getattr__(name: str) -> Any:
    """The driver is imported on first use: reading this package's options
    (:mod:`pycrio_cgroup_fs.options`) must not import it."""
    if name == "CgroupfsDriver":
        from .driver import CgroupfsDriver

        return CgroupfsDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
