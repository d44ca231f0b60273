"""Task.Stats answers in CgroupStats terms.

The shim answers with an Any: ``io.containerd.cgroups.v1.Metrics`` on a
cgroup v1 host (the runc shim, and Kata's agent reporting the guest's
cgroups), ``io.containerd.cgroups.v2.Metrics`` on v2. Both are read the way
the cgroupfs driver reads the files they come from (working set = usage
minus inactive file pages); any other answer is unavailable, not guessed.
"""

from __future__ import annotations

from typing import Any

from pycrio.errors import Unavailable
from pycrio.kernel.interfaces import BlkioDevice, CgroupStats
from pycrio_runtime_kata import api

V1_METRICS = "io.containerd.cgroups.v1.Metrics"
V2_METRICS = "io.containerd.cgroups.v2.Metrics"

#: the kernel's "no limit" for memory counters on v1 (PAGE_COUNTER_MAX pages)
_UNLIMITED = 1 << 62


def _limit(value: int) -> int:
    return 0 if value >= _UNLIMITED else value


def from_any(stats: Any) -> CgroupStats:
    name = api.type_name(stats.type_url)
    if name == V1_METRICS:
        m = api.cgroups.Metrics()
        m.ParseFromString(stats.value)
        return from_v1(m)
    if name == V2_METRICS:
        m2 = api.cgroups_v2.Metrics()
        m2.ParseFromString(stats.value)
        return from_v2(m2)
    raise Unavailable(
        f"the shim reported stats as {name or 'nothing'!r}; pycrio reads {V1_METRICS}"
        f" and {V2_METRICS}"
    )


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


def from_v2(m: Any) -> CgroupStats:
    """The v2 Metrics message as CgroupStats (microseconds become nanoseconds)."""
    mem = m.memory
    usage = mem.usage
    working_set = usage - mem.inactive_file if usage > mem.inactive_file else 0
    limit = _limit(mem.usage_limit)
    blkio = [
        BlkioDevice(
            e.major,
            e.minor,
            bytes={"Read": e.rbytes, "Write": e.wbytes, "Total": e.rbytes + e.wbytes},
            ios={"Read": e.rios, "Write": e.wios, "Total": e.rios + e.wios},
        )
        for e in m.io.usage
    ]
    return CgroupStats(
        cpu_usage_ns=m.cpu.usage_usec * 1000,
        cpu_user_ns=m.cpu.user_usec * 1000,
        cpu_system_ns=m.cpu.system_usec * 1000,
        cpu_periods=m.cpu.nr_periods,
        cpu_throttled_periods=m.cpu.nr_throttled,
        cpu_throttled_ns=m.cpu.throttled_usec * 1000,
        memory_usage_bytes=usage,
        memory_max_usage_bytes=mem.max_usage,
        memory_working_set_bytes=working_set,
        memory_rss_bytes=mem.anon,
        memory_cache_bytes=mem.file,
        memory_mapped_file_bytes=mem.file_mapped,
        memory_swap_bytes=mem.swap_usage,
        memory_kernel_bytes=mem.kernel_stack + mem.slab,
        memory_oom_kills=m.memory_events.oom_kill,
        memory_page_faults=mem.pgfault,
        memory_major_page_faults=mem.pgmajfault,
        memory_available_bytes=(max(limit - working_set, 0) if limit else None),
        pids=m.pids.current,
        pids_limit=m.pids.limit,
        memory_limit_bytes=limit,
        memory_swap_limit_bytes=_limit(mem.swap_limit),
        blkio=blkio,
        hugetlb={h.pagesize: (h.current, h.max) for h in m.hugetlb},
    )
