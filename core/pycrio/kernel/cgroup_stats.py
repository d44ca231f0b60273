"""Read usage counters and limits back from cgroup files, the way cadvisor and the kubelet do.

Shared by the cgroup drivers (cgroupfs, systemd): whoever created a cgroup,
its usage is read from the same kernel files the same way.

The computations are pure over a ``read(controller, file)`` callable that
returns the file's text or None when it does not exist, so they can be
tested with sample file contents. The working set is usage minus inactive
file pages (cadvisor's definition, the number the kubelet evicts on);
available memory is the limit minus the working set, and None when there is
no limit (the kubelet then leaves ``available_bytes`` unset). Limits read as
"unlimited" (v1's huge numbers, v2's "max", a quota of -1) are 0.

On v1 the pseudo controller ``unified`` names the cgroup's directory in the
cgroup2 hierarchy of a hybrid machine, where pressure stall information
(PSI) lives; runc places containers there too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from pycrio.kernel.interfaces import BlkioDevice, CgroupStats, PressureTotals

#: The v1 value the kernel reports for "no memory limit" is 2**63 - 4096 rounded
#: to a page; anything this large is treated as unlimited.
UNLIMITED_THRESHOLD = 1 << 62

Reader = Callable[[str, str], "str | None"]

#: USER_HZ: the unit of cpuacct.stat.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PRESSURE_RESOURCES = ("cpu", "memory", "io")


def weight_to_shares(weight: int) -> int:
    """The smallest v1 cpu.shares that runc's shares -> v2 cpu.weight mapping turns into ``weight``.

    runc maps shares [2, 262144] linearly onto weights [1, 10000]; reading a v2
    weight back in v1 terms rounds up, so weight -> shares -> weight is exact.
    """
    if weight == 0:
        return 0
    weight = min(max(weight, 1), 10000)
    return 2 + -((-(weight - 1) * 262142) // 9999)


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


def parse_limit(text: str | None) -> int:
    """A limit file: 0 for "max", -1, v1's near-2**63 "unlimited" and absent files."""
    value = parse_int(text)
    return value if 0 < value < UNLIMITED_THRESHOLD else 0


def parse_pressure(text: str | None) -> PressureTotals | None:
    """A PSI file (``some avg10=.. total=N`` / ``full ... total=N``); None when absent."""
    if text is None:
        return None
    totals = PressureTotals()
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for field in rest.split():
            key, _, value = field.partition("=")
            if key == "total" and value.isdigit():
                if kind == "some":
                    totals.some_us = int(value)
                elif kind == "full":
                    totals.full_us = int(value)
    return totals


def parse_blkio_v1(service_bytes: str | None, serviced: str | None) -> list[BlkioDevice]:
    """v1 ``blkio.*io_service_bytes_recursive`` and ``*io_serviced_recursive`` lines.

    Each line is ``major:minor Operation value``; the trailing ``Total N`` line
    (no device) is skipped.
    """
    devices: dict[tuple[int, int], BlkioDevice] = {}
    for text, attr in ((service_bytes, "bytes"), (serviced, "ios")):
        for line in (text or "").splitlines():
            parts = line.split()
            if len(parts) != 3 or ":" not in parts[0]:
                continue
            major, _, minor = parts[0].partition(":")
            try:
                key = (int(major), int(minor))
                value = int(parts[2])
            except ValueError:
                continue
            device = devices.setdefault(key, BlkioDevice(*key))
            getattr(device, attr)[parts[1]] = value
    return [devices[k] for k in sorted(devices)]


_IO_STAT_KEYS = {
    "rbytes": ("bytes", "Read"),
    "wbytes": ("bytes", "Write"),
    "dbytes": ("bytes", "Discard"),
    "rios": ("ios", "Read"),
    "wios": ("ios", "Write"),
    "dios": ("ios", "Discard"),
}


def parse_io_stat(text: str | None) -> list[BlkioDevice]:
    """v2 io.stat (``8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0``), with Totals."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        try:
            device = BlkioDevice(int(major), int(minor))
        except ValueError:
            continue
        for field in parts[1:]:
            key, _, value = field.partition("=")
            if key in _IO_STAT_KEYS and value.isdigit():
                attr, op = _IO_STAT_KEYS[key]
                getattr(device, attr)[op] = int(value)
        for attr in ("bytes", "ios"):
            counts = getattr(device, attr)
            counts["Total"] = counts.get("Read", 0) + counts.get("Write", 0)
        out.append(device)
    return sorted(out, key=lambda d: (d.major, d.minor))


def _memory(stats: CgroupStats, usage: int, limit: int, inactive_file: int) -> None:
    stats.memory_usage_bytes = usage
    stats.memory_working_set_bytes = max(usage - inactive_file, 0)
    stats.memory_limit_bytes = limit
    if limit:
        stats.memory_available_bytes = max(limit - stats.memory_working_set_bytes, 0)


def _pressure(read: Reader, controller: str) -> dict[str, PressureTotals]:
    out = {}
    for resource in PRESSURE_RESOURCES:
        totals = parse_pressure(read(controller, f"{resource}.pressure"))
        if totals is not None:
            out[resource] = totals
    # All three or nothing: a metric is described only when every cgroup has it.
    return out if len(out) == len(PRESSURE_RESOURCES) else {}


def stats_v1(read: Reader, hugepage_sizes: Iterable[str] = ()) -> CgroupStats:
    """Counters of a v1 cgroup. ``total_*`` memory.stat keys include the children."""
    stats = CgroupStats()
    stats.cpu_usage_ns = parse_int(read("cpuacct", "cpuacct.usage"))
    ticks = parse_keyed(read("cpuacct", "cpuacct.stat"))
    stats.cpu_user_ns = ticks.get("user", 0) * 1_000_000_000 // _CLOCK_TICKS
    stats.cpu_system_ns = ticks.get("system", 0) * 1_000_000_000 // _CLOCK_TICKS
    cpu = parse_keyed(read("cpu", "cpu.stat"))
    stats.cpu_periods = cpu.get("nr_periods", 0)
    stats.cpu_throttled_periods = cpu.get("nr_throttled", 0)
    stats.cpu_throttled_ns = cpu.get("throttled_time", 0)
    stats.cpu_shares = parse_int(read("cpu", "cpu.shares"))
    stats.cpu_quota_us = max(parse_int(read("cpu", "cpu.cfs_quota_us")), 0)
    stats.cpu_period_us = parse_int(read("cpu", "cpu.cfs_period_us"))

    memory = parse_keyed(read("memory", "memory.stat"))

    def total(key: str) -> int:
        return memory.get(f"total_{key}", memory.get(key, 0))

    _memory(
        stats,
        parse_int(read("memory", "memory.usage_in_bytes")),
        parse_limit(read("memory", "memory.limit_in_bytes")),
        total("inactive_file"),
    )
    stats.memory_max_usage_bytes = parse_int(read("memory", "memory.max_usage_in_bytes"))
    stats.memory_rss_bytes = total("rss")
    stats.memory_cache_bytes = total("cache")
    stats.memory_mapped_file_bytes = total("mapped_file")
    stats.memory_swap_bytes = total("swap")
    stats.memory_page_faults = total("pgfault")
    stats.memory_major_page_faults = total("pgmajfault")
    stats.memory_kernel_bytes = parse_int(read("memory", "memory.kmem.usage_in_bytes"))
    stats.memory_failcnt = parse_int(read("memory", "memory.failcnt"))
    stats.memory_oom_kills = parse_keyed(read("memory", "memory.oom_control")).get("oom_kill", 0)
    stats.memory_reservation_bytes = parse_limit(read("memory", "memory.soft_limit_in_bytes"))
    stats.memory_swap_limit_bytes = parse_limit(read("memory", "memory.memsw.limit_in_bytes"))

    stats.pids = parse_int(read("pids", "pids.current"))
    stats.pids_limit = parse_int(read("pids", "pids.max"))

    # The proportional-weight files count I/O only under the BFQ scheduler;
    # the throttle files count it always (what runc falls back to as well).
    stats.blkio = parse_blkio_v1(
        read("blkio", "blkio.io_service_bytes_recursive"),
        read("blkio", "blkio.io_serviced_recursive"),
    ) or parse_blkio_v1(
        read("blkio", "blkio.throttle.io_service_bytes_recursive"),
        read("blkio", "blkio.throttle.io_serviced_recursive"),
    )
    for size in hugepage_sizes:
        usage = read("hugetlb", f"hugetlb.{size}.usage_in_bytes")
        if usage is not None:
            stats.hugetlb[size] = (
                parse_int(usage),
                parse_int(read("hugetlb", f"hugetlb.{size}.max_usage_in_bytes")),
            )
    stats.pressure = _pressure(read, "unified")
    return stats


def stats_v2(read: Reader, hugepage_sizes: Iterable[str] = ()) -> CgroupStats:
    """Counters of a v2 cgroup (memory.stat is recursive on v2; rss is ``anon``)."""
    stats = CgroupStats()
    cpu = parse_keyed(read("cpu", "cpu.stat"))
    stats.cpu_usage_ns = cpu.get("usage_usec", 0) * 1000
    stats.cpu_user_ns = cpu.get("user_usec", 0) * 1000
    stats.cpu_system_ns = cpu.get("system_usec", 0) * 1000
    stats.cpu_periods = cpu.get("nr_periods", 0)
    stats.cpu_throttled_periods = cpu.get("nr_throttled", 0)
    stats.cpu_throttled_ns = cpu.get("throttled_usec", 0) * 1000
    weight = parse_int(read("cpu", "cpu.weight"))
    stats.cpu_shares = weight_to_shares(weight) if weight else 0
    quota, _, period = (read("cpu", "cpu.max") or "").strip().partition(" ")
    stats.cpu_quota_us = int(quota) if quota.isdigit() else 0
    stats.cpu_period_us = int(period) if period.isdigit() else 0

    memory = parse_keyed(read("memory", "memory.stat"))
    _memory(
        stats,
        parse_int(read("memory", "memory.current")),
        parse_limit(read("memory", "memory.max")),
        memory.get("inactive_file", 0),
    )
    stats.memory_max_usage_bytes = parse_int(read("memory", "memory.peak"))
    stats.memory_rss_bytes = memory.get("anon", 0)
    stats.memory_cache_bytes = memory.get("file", 0)
    stats.memory_mapped_file_bytes = memory.get("file_mapped", 0)
    stats.memory_swap_bytes = parse_int(read("memory", "memory.swap.current"))
    stats.memory_page_faults = memory.get("pgfault", 0)
    stats.memory_major_page_faults = memory.get("pgmajfault", 0)
    stats.memory_kernel_bytes = memory.get(
        "kernel", memory.get("kernel_stack", 0) + memory.get("slab", 0) + memory.get("sock", 0)
    )
    events = parse_keyed(read("memory", "memory.events"))
    stats.memory_failcnt = events.get("max", 0)
    stats.memory_oom_kills = events.get("oom_kill", 0)
    stats.memory_reservation_bytes = parse_limit(read("memory", "memory.low"))
    stats.memory_swap_limit_bytes = parse_limit(read("memory", "memory.swap.max"))

    stats.pids = parse_int(read("pids", "pids.current"))
    stats.pids_limit = parse_int(read("pids", "pids.max"))
    stats.blkio = parse_io_stat(read("io", "io.stat"))
    for size in hugepage_sizes:
        usage = read("hugetlb", f"hugetlb.{size}.current")
        if usage is not None:
            stats.hugetlb[size] = (parse_int(usage), 0)  # v2 keeps no maximum
    stats.pressure = _pressure(read, "")
    return stats


def processes(directory: str, read: Callable[[str], str | None]) -> list[int]:
    """Pids in the cgroup ``directory`` and every cgroup below it, sorted.

    ``read(path)`` returns a file's text or None; a cgroup removed while the
    tree is walked just contributes nothing.
    """
    pids: set[int] = set()
    for dirpath, _dirs, _files in os.walk(directory):
        pids.update(int(p) for p in (read(f"{dirpath}/cgroup.procs") or "").split() if p.isdigit())
    return sorted(pids)


def hugepage_sizes(sysfs: str = "/sys/kernel/mm/hugepages") -> tuple[str, ...]:
    """The kernel's huge page sizes in the names cgroup files use ("2MB", "1GB")."""
    try:
        entries = os.listdir(sysfs)
    except OSError:
        return ()
    sizes = []
    for entry in entries:
        kib = entry.removeprefix("hugepages-").removesuffix("kB")
        if not kib.isdigit():
            continue
        value, unit = int(kib), "KB"
        for bigger in ("MB", "GB", "TB"):
            if value % 1024:
                break
            value, unit = value // 1024, bigger
        sizes.append((int(kib), f"{value}{unit}"))
    return tuple(name for _, name in sorted(sizes))


def pressure_accounted() -> bool:
    """Whether the kernel accounts pressure stalls (PSI); a kernel booted with psi=0 does not."""
    for resource in PRESSURE_RESOURCES:
        try:
            with open(f"/proc/pressure/{resource}", encoding="ascii") as f:
                f.read()
        except OSError:
            return False
    return True
