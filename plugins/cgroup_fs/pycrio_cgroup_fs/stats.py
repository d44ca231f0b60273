"""Read usage counters back from cgroup files, the way cadvisor and the kubelet do.

The computations are pure over a ``read(controller, file)`` callable that
returns the file's text or None when it does not exist, so they can be
tested with sample file contents. The working set is usage minus inactive
file pages (cadvisor's definition, the number the kubelet evicts on);
available memory is the limit minus the working set, and 0 when there is no
limit (what the kubelet reports for an unlimited cgroup).
"""

from __future__ import annotations

from collections.abc import Callable

from pycrio.kernel.interfaces import CgroupStats

from .resources import UNLIMITED_THRESHOLD

Reader = Callable[[str, str], "str | None"]


def parse_keyed(text: str | None) -> dict[str, int]:
    """Parse a flat-keyed file (``key value`` per line: memory.stat, cpu.stat)."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_int(text: str | None) -> int:
    """A single-value file; "max" and absent or unparsable files are 0 (no value)."""
    if text is None:
        return 0
    value = text.strip().split(" ")[0]
    if value == "max":
        return 0
    try:
        return int(value)
    except ValueError:
        return 0


def _memory(stats: CgroupStats, usage: int, limit: int, inactive_file: int) -> None:
    stats.memory_usage_bytes = usage
    stats.memory_working_set_bytes = max(usage - inactive_file, 0)
    if 0 < limit < UNLIMITED_THRESHOLD:
        stats.memory_available_bytes = max(limit - stats.memory_working_set_bytes, 0)


def stats_v1(read: Reader) -> CgroupStats:
    """Counters of a v1 cgroup. ``total_*`` memory.stat keys include the children."""
    stats = CgroupStats()
    stats.cpu_usage_ns = parse_int(read("cpuacct", "cpuacct.usage"))
    memory = parse_keyed(read("memory", "memory.stat"))
    _memory(
        stats,
        parse_int(read("memory", "memory.usage_in_bytes")),
        parse_int(read("memory", "memory.limit_in_bytes")),
        memory.get("total_inactive_file", memory.get("inactive_file", 0)),
    )
    stats.memory_rss_bytes = memory.get("total_rss", memory.get("rss", 0))
    stats.memory_page_faults = memory.get("total_pgfault", memory.get("pgfault", 0))
    stats.memory_major_page_faults = memory.get("total_pgmajfault", memory.get("pgmajfault", 0))
    stats.pids = parse_int(read("pids", "pids.current"))
    stats.pids_limit = parse_int(read("pids", "pids.max"))
    return stats


def stats_v2(read: Reader) -> CgroupStats:
    """Counters of a v2 cgroup (memory.stat is recursive on v2; rss is ``anon``)."""
    stats = CgroupStats()
    stats.cpu_usage_ns = parse_keyed(read("cpu", "cpu.stat")).get("usage_usec", 0) * 1000
    memory = parse_keyed(read("memory", "memory.stat"))
    _memory(
        stats,
        parse_int(read("memory", "memory.current")),
        parse_int(read("memory", "memory.max")),
        memory.get("inactive_file", 0),
    )
    stats.memory_rss_bytes = memory.get("anon", 0)
    stats.memory_page_faults = memory.get("pgfault", 0)
    stats.memory_major_page_faults = memory.get("pgmajfault", 0)
    stats.pids = parse_int(read("pids", "pids.current"))
    stats.pids_limit = parse_int(read("pids", "pids.max"))
    return stats
