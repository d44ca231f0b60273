"""Task.Stats answers in CgroupStats terms.

The shim answers with an Any: ``io.containerd.cgroups.v1.Metrics`` on a
cgroup v1 host (the runc shim, and Kata's agent reporting the guest's
cgroups), ``io.containerd.cgroups.v2.Metrics`` on v2. Only v1 is decoded
here; a v2 answer is reported as unavailable rather than guessed.
"""

from __future__ import annotations

from typing import Any

from pycrio.errors import Unavailable
from pycrio.kernel.interfaces import BlkioDevice, CgroupStats
from pycrio_runtime_kata import api

V1_METRICS = "io.containerd.cgroups.v1.Metrics"

#: the kernel's "no limit" for memory counters on v1 (PAGE_COUNTER_MAX pages)
_UNLIMITED = 1 << 62


def _limit(value: int) -> int:
    return 0 if value >= _UNLIMITED else value


def from_any(stats: Any) -> CgroupStats:
    name = api.type_name(stats.type_url)
    if name != V1_METRICS:
        raise Unavailable(
            f"the shim reported stats as {name or 'nothing'!r}; pycrio reads only {V1_METRICS}"
        )
    m = api.cgroups.Metrics()
    m.ParseFromString(stats.value)
    return from_v1(m)


def from_v1(m: Any) -> CgroupStats:
    """The v1 Metrics message as CgroupStats (as the cgroupfs driver reads v1 files)."""
    mem = m.memory
    usage = mem.usage.usage
    inactive_file = mem.total_inactive_file
    working_set = usage - inactive_file if usage > inactive_file else 0
    limit = _limit(mem.usage.limit)
    blkio: dict[tuple[int, int], BlkioDevice] = {}
    for entries, attr in (
        (m.blkio.io_service_bytes_recursive, "bytes"),
        (m.blkio.io_serviced_recursive, "ios"),
    ):
        for e in entries:
            dev = blkio.setdefault((e.major, e.minor), BlkioDevice(e.major, e.minor))
            getattr(dev, attr)[e.op or "Total"] = e.value
    return CgroupStats(
        cpu_usage_ns=m.cpu.usage.total,
        cpu_user_ns=m.cpu.usage.user,
        cpu_system_ns=m.cpu.usage.kernel,
        cpu_periods=m.cpu.throttling.periods,
        cpu_throttled_periods=m.cpu.throttling.throttled_periods,
        cpu_throttled_ns=m.cpu.throttling.throttled_time,
        memory_usage_bytes=usage,
        memory_max_usage_bytes=mem.usage.max,
        memory_working_set_bytes=working_set,
        memory_rss_bytes=mem.total_rss,
        memory_cache_bytes=mem.total_cache,
        memory_mapped_file_bytes=mem.total_mapped_file,
        memory_swap_bytes=mem.swap.usage - usage if mem.swap.usage > usage else 0,
        memory_kernel_bytes=mem.kernel.usage,
        memory_failcnt=mem.usage.failcnt,
        memory_oom_kills=m.memory_oom_control.oom_kill,
        memory_page_faults=mem.total_pg_fault,
        memory_major_page_faults=mem.total_pg_maj_fault,
        memory_available_bytes=(max(limit - working_set, 0) if limit else None),
        pids=m.pids.current,
        pids_limit=m.pids.limit,
        memory_limit_bytes=limit,
        memory_swap_limit_bytes=_limit(mem.swap.limit),
        blkio=list(blkio.values()),
        hugetlb={h.pagesize: (h.usage, h.max) for h in m.hugetlb},
    )
