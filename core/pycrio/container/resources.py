"""linux.resources and process.oomScoreAdj from the CRI's LinuxContainerResources.

Values are checked against what the kernel accepts so that a bad request
fails CreateContainer with the field's name rather than deep inside runc.
Zero means "not set" throughout, as in the CRI.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.errors import InvalidArgument

log = logging.getLogger("pycrio.container")

#: CRI-O refuses memory limits below 12 MiB: runc and conmon need that much.
MIN_MEMORY = 12 * 1024 * 1024
OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000
#: cpu.cfs_period_us bounds (kernel/sched/core.c).
MIN_CPU_PERIOD = 1000
MAX_CPU_PERIOD = 1_000_000
MIN_CPU_QUOTA = 1000
#: cpu.cfs_quota_us above this is EINVAL (MAX_BW in kernel/sched/core.c: 2^44 - 1 us).
MAX_CPU_QUOTA = (1 << 44) - 1
#: cgroup v1 cpu.shares bounds (v2 weights are converted by runc).
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262144

_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_PAGE_SIZE = re.compile(r"^\d+(KB|MB|GB|TB|PB)$")


def _cpuset(value: str, field: str) -> str:
    if not value:
        return ""
    if not _CPUSET.match(value):
        raise InvalidArgument(f"{field}: {value!r} is not a cpu list like 0-3,5")
    for part in value.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise InvalidArgument(f"{field}: range {part!r} in {value!r} is reversed")
    return value


def build(
    resources: api_pb2.LinuxContainerResources,
    cgroup_v2: bool,
    swap_accounting: bool,
) -> dict[str, Any]:
    """The OCI ``linux.resources`` object (without devices) for ``resources``.

    Swap follows CRI-O: only with a memory limit, never below it, and only
    where the node accounts swap (runc fails otherwise); without an explicit
    swap limit it equals the memory limit, i.e. no swap. ``unified`` is
    cgroup v2 only and ignored on v1, where there is nothing to write it to.
    """
    out: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    if resources.cpu_shares:
        if not MIN_CPU_SHARES <= resources.cpu_shares <= MAX_CPU_SHARES:
            raise InvalidArgument(
                f"cpu_shares: {resources.cpu_shares} is outside {MIN_CPU_SHARES}..{MAX_CPU_SHARES}"
            )
        cpu["shares"] = resources.cpu_shares
    if resources.cpu_quota:
        if resources.cpu_quota != -1 and not MIN_CPU_QUOTA <= resources.cpu_quota <= MAX_CPU_QUOTA:
            raise InvalidArgument(
                f"cpu_quota: {resources.cpu_quota} must be -1 or in "
                f"{MIN_CPU_QUOTA}..{MAX_CPU_QUOTA}"
            )
        cpu["quota"] = resources.cpu_quota
    if resources.cpu_period:
        if not MIN_CPU_PERIOD <= resources.cpu_period <= MAX_CPU_PERIOD:
            raise InvalidArgument(
                f"cpu_period: {resources.cpu_period} is outside {MIN_CPU_PERIOD}..{MAX_CPU_PERIOD}"
            )
        cpu["period"] = resources.cpu_period
    if resources.cpuset_cpus:
        cpu["cpus"] = _cpuset(resources.cpuset_cpus, "cpuset_cpus")
    if resources.cpuset_mems:
        cpu["mems"] = _cpuset(resources.cpuset_mems, "cpuset_mems")
    if cpu:
        out["cpu"] = cpu

    limit = resources.memory_limit_in_bytes
    swap = resources.memory_swap_limit_in_bytes
    if limit < 0:
        raise InvalidArgument(f"memory_limit_in_bytes: {limit} is negative")
    if swap < -1:
        raise InvalidArgument(f"memory_swap_limit_in_bytes: {swap} is invalid")
    if limit:
        if limit < MIN_MEMORY:
            raise InvalidArgument(
                f"memory_limit_in_bytes: {limit} is below the minimum of {MIN_MEMORY} bytes"
            )
        memory: dict[str, Any] = {"limit": limit}
        if swap > 0 and swap < limit:
            raise InvalidArgument(
                f"memory_swap_limit_in_bytes: {swap} is lower than the memory limit {limit}"
            )
        if swap_accounting:
            memory["swap"] = swap if swap else limit
        out["memory"] = memory
    elif swap:
        raise InvalidArgument("memory_swap_limit_in_bytes: set without memory_limit_in_bytes")

    hugepages = []
    seen: set[str] = set()
    for index, h in enumerate(resources.hugepage_limits):
        field = f"hugepage_limits[{index}]"
        if not _PAGE_SIZE.match(h.page_size):
            raise InvalidArgument(f"{field}.page_size: {h.page_size!r} is not like 2MB or 1GB")
        if h.page_size in seen:
            raise InvalidArgument(f"{field}.page_size: {h.page_size} given twice")
        seen.add(h.page_size)
        hugepages.append({"pageSize": h.page_size, "limit": h.limit})
    if hugepages:
        out["hugepageLimits"] = hugepages

    if resources.unified:
        for key in resources.unified:
            if not key or "/" in key or key.startswith(".") or "." not in key:
                raise InvalidArgument(f"unified: {key!r} is not a cgroup v2 interface file")
        if cgroup_v2:
            out["unified"] = dict(sorted(resources.unified.items()))
        else:
            log.warning("ignoring unified cgroup resources: this node runs cgroup v1")
    return out


def clamp_oom_score_adj(requested: int, floor: int | None) -> int:
    """The oom_score_adj the container can really get.

    Without CAP_SYS_RESOURCE the kernel refuses to go below the daemon's own
    value, and runc would fail the whole container for it; ``floor`` is that
    value (None when the daemon may set anything). Clamped with a warning,
    as a kubelet asking for -997 on such a node still wants the container.
    """
    if not OOM_SCORE_ADJ_MIN <= requested <= OOM_SCORE_ADJ_MAX:
        raise InvalidArgument(
            f"oom_score_adj: {requested} is outside {OOM_SCORE_ADJ_MIN}..{OOM_SCORE_ADJ_MAX}"
        )
    if floor is not None and requested < floor:
        log.warning(
            "oom_score_adj %d is below what this daemon may set without CAP_SYS_RESOURCE; using %d",
            requested,
            floor,
        )
        return floor
    return requested


def own_oom_score_adj(path: str = "/proc/self/oom_score_adj") -> int:
    """The daemon's own oom_score_adj, the lowest it may give a child without privilege."""
    with open(path, encoding="ascii") as f:
        return int(f.read().strip())


def cgroup_v2_host(root: str = "/sys/fs/cgroup") -> bool:
    """Whether the node runs the unified hierarchy only (cgroup v2)."""

    return os.path.exists(os.path.join(root, "cgroup.controllers"))


def swap_accounting_host(cgroup_v2: bool, root: str = "/sys/fs/cgroup") -> bool:
    """Whether a memory.swap limit can be set (v1 needs swapaccount=1)."""

    if cgroup_v2:
        return os.path.exists(os.path.join(root, "memory.swap.max")) or os.path.exists(
            os.path.join(root, "init.scope", "memory.swap.max")
        )
    return os.path.exists(os.path.join(root, "memory", "memory.memsw.limit_in_bytes"))
