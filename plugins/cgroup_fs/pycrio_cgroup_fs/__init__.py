"""pycrio's ``cgroupfs`` cgroup driver (entry point ``pycrio.cgroup: cgroupfs``).

Pod cgroups are plain directories under each cgroup hierarchy, named by
paths like the kubelet's (``/kubepods/burstable/pod<uid>``), on cgroup v1,
hybrid and v2 machines. See README.md.
"""

from __future__ import annotations

from .driver import CgroupfsDriver

__all__ = ["CgroupfsDriver"]
