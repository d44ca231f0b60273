"""Translate an OCI ``linux.resources`` object into cgroup file writes.

Pure functions: they say *what* to write (controller, file, value) for v1 or
for v2, and the driver decides where and does it. Keeping the mapping pure
lets it be tested without a kernel and keeps v1 and v2 side by side, which is
where mistakes show. The mapping follows runc's (libcontainer/cgroups/fs and
fs2), since runc applies the same spec to the containers below the pod
cgroup and the two must agree.

Zero means "leave unchanged" for the numeric fields, as in runc; -1 means
unlimited where the kernel has a notion of unlimited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pycrio.errors import InvalidArgument
from pycrio.kernel.oci_resources import integer as _int
from pycrio.kernel.oci_resources import section as _section

_PAGE_SIZE_RE = re.compile(r"^[1-9][0-9]*(KB|MB|GB|TB|PB)$")
_UNIFIED_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*\.[A-Za-z0-9_.]+$")


@dataclass(frozen=True)
class Write:
    """One value for one cgroup file.

    ``alt`` is a file to use instead when ``file`` does not exist (e.g.
    blkio.bfq.weight vs blkio.weight). ``optional`` writes are skipped when
    neither exists (a feature the kernel lacks, such as swap accounting),
    where a missing mandatory file is an error.
    """

    controller: str
    file: str
    value: str
    optional: bool = False
    alt: str = ""


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares -> v2 cpu.weight, runc's linear mapping.

    [2, 262144] maps onto [1, 10000]; 0 stays 0 ("unset"). The kubelet computes
    shares from CPU requests on every cgroup version, so this is how a request
    becomes a weight on v2 (1024 shares, one CPU, is weight 39).
    """
    if shares == 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 blkio.weight [10, 1000] -> v2 io.weight [1, 10000] (runc's mapping)."""
    if weight == 0:
        return 0
    weight = min(max(weight, 10), 1000)
    return 1 + ((weight - 10) * 9999) // 990


def memory_swap_to_v2(swap: int, memory: int) -> int:
    """OCI ``memory.swap`` (memory+swap, v1 semantics) -> v2 memory.swap.max (swap only).

    Mirrors runc: unlimited memory with no swap given means unlimited swap;
    otherwise swap needs a memory limit and must not be below it.
    """
    if memory == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if memory == 0:
        raise InvalidArgument("memory.swap needs memory.limit too on cgroup v2")
    if memory < 0:
        raise InvalidArgument(f"invalid memory.limit {memory}")
    if swap < memory:
        raise InvalidArgument(
            f"memory.swap (memory+swap) {swap} is lower than memory.limit {memory}"
        )
    return swap - memory


# --- input checking ---------------------------------------------------------


def _opt_int(section: dict[str, Any], key: str, where: str) -> int | None:
    """An integer field where an explicit 0 means something (cpu.idle, cpu.burst)."""
    if section.get(key) is None:
        return None
    return _int(section, key, where)


def _str(section: dict[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or "\n" in value:
        raise InvalidArgument(f"linux.resources.{where}.{key} must be a string, not {value!r}")
    return value.strip()


def _hugepages(resources: dict[str, Any]) -> list[tuple[str, int]]:
    limits = resources.get("hugepageLimits") or []
    if not isinstance(limits, list):
        raise InvalidArgument("linux.resources.hugepageLimits must be a list")
    out = []
    for item in limits:
        if not isinstance(item, dict):
            raise InvalidArgument(f"linux.resources.hugepageLimits item {item!r} is not an object")
        size = item.get("pageSize")
        if not isinstance(size, str) or not _PAGE_SIZE_RE.match(size):
            raise InvalidArgument(
                f"linux.resources.hugepageLimits pageSize {size!r} is not like 2MB or 1GB"
            )
        limit = _int(item, "limit", "hugepageLimits")
        if limit < 0:
            raise InvalidArgument(f"linux.resources.hugepageLimits limit {limit} is negative")
        out.append((size, limit))
    return out


def _devices(block: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = block.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidArgument(f"linux.resources.blockIO.{key} must be a list of objects")
    for item in items:
        _int(item, "major", f"blockIO.{key}")
        _int(item, "minor", f"blockIO.{key}")
    return items


def _dev(item: dict[str, Any]) -> str:
    return f"{item.get('major', 0)}:{item.get('minor', 0)}"


_THROTTLE = (
    ("throttleReadBpsDevice", "read_bps_device", "rbps"),
    ("throttleWriteBpsDevice", "write_bps_device", "wbps"),
    ("throttleReadIOPSDevice", "read_iops_device", "riops"),
    ("throttleWriteIOPSDevice", "write_iops_device", "wiops"),
)


# --- v1 ---------------------------------------------------------------------


def v1_writes(resources: dict[str, Any]) -> list[Write]:
    """The v1 writes for ``resources``, in the order runc makes them.

    Pairs whose valid order depends on the current values (cfs period and
    quota, memory and memory+swap limits) are listed in the usual order; the
    driver retries a write the kernel refused once the others are done.
    ``unified`` is refused: it names v2 files, and runc refuses it on v1 too.
    """
    if resources.get("unified"):
        raise InvalidArgument(
            "linux.resources.unified sets cgroup v2 files, but this node's controllers are on"
            " cgroup v1"
        )
    writes: list[Write] = []
    cpu = _section(resources, "cpu")
    cpus, mems = _str(cpu, "cpus", "cpu"), _str(cpu, "mems", "cpu")
    if cpus:
        writes.append(Write("cpuset", "cpuset.cpus", cpus))
    if mems:
        writes.append(Write("cpuset", "cpuset.mems", mems))
    shares = _int(cpu, "shares", "cpu")
    if shares:
        writes.append(Write("cpu", "cpu.shares", str(shares)))
    period, quota = _int(cpu, "period", "cpu"), _int(cpu, "quota", "cpu")
    if period:
        writes.append(Write("cpu", "cpu.cfs_period_us", str(period)))
    if quota:
        writes.append(Write("cpu", "cpu.cfs_quota_us", str(quota if quota > 0 else -1)))
    burst = _opt_int(cpu, "burst", "cpu")
    if burst is not None:
        writes.append(Write("cpu", "cpu.cfs_burst_us", str(burst)))
    rt_period, rt_runtime = _int(cpu, "realtimePeriod", "cpu"), _int(cpu, "realtimeRuntime", "cpu")
    if rt_period:
        writes.append(Write("cpu", "cpu.rt_period_us", str(rt_period)))
    if rt_runtime:
        writes.append(Write("cpu", "cpu.rt_runtime_us", str(rt_runtime)))
    idle = _opt_int(cpu, "idle", "cpu")
    if idle is not None:
        writes.append(Write("cpu", "cpu.idle", str(idle)))

    memory = _section(resources, "memory")
    limit, swap = _int(memory, "limit", "memory"), _int(memory, "swap", "memory")
    if limit == -1 and swap == 0:
        swap = -1  # runc: "unlimited memory" means unlimited memory+swap too
    if limit:
        writes.append(Write("memory", "memory.limit_in_bytes", str(limit if limit > 0 else -1)))
    if swap:
        # Optional: without swap accounting (no memsw files) there is nothing
        # to limit, which is what CRI-O does too.
        value = str(swap if swap > 0 else -1)
        writes.append(Write("memory", "memory.memsw.limit_in_bytes", value, optional=True))
    reservation = _int(memory, "reservation", "memory")
    if reservation:
        value = str(reservation if reservation > 0 else -1)
        writes.append(Write("memory", "memory.soft_limit_in_bytes", value))
    kernel_tcp = _int(memory, "kernelTCP", "memory")
    if kernel_tcp:
        value = str(kernel_tcp if kernel_tcp > 0 else -1)
        writes.append(Write("memory", "memory.kmem.tcp.limit_in_bytes", value))
    if memory.get("swappiness") is not None:
        swappiness = _int(memory, "swappiness", "memory")
        if not 0 <= swappiness <= 100:
            raise InvalidArgument(f"linux.resources.memory.swappiness {swappiness} is not 0-100")
        writes.append(Write("memory", "memory.swappiness", str(swappiness)))
    if memory.get("disableOOMKiller"):
        writes.append(Write("memory", "memory.oom_control", "1"))

    pids = _section(resources, "pids")
    pids_limit = _int(pids, "limit", "pids")
    if pids_limit:
        writes.append(Write("pids", "pids.max", str(pids_limit) if pids_limit > 0 else "max"))

    for size, hp_limit in _hugepages(resources):
        writes.append(Write("hugetlb", f"hugetlb.{size}.limit_in_bytes", str(hp_limit)))
        rsvd = f"hugetlb.{size}.rsvd.limit_in_bytes"
        writes.append(Write("hugetlb", rsvd, str(hp_limit), optional=True))

    block = _section(resources, "blockIO")
    weight = _int(block, "weight", "blockIO")
    if weight:
        writes.append(Write("blkio", "blkio.bfq.weight", str(weight), alt="blkio.weight"))
    leaf = _int(block, "leafWeight", "blockIO")
    if leaf:
        writes.append(Write("blkio", "blkio.leaf_weight", str(leaf)))
    for dev in _devices(block, "weightDevice"):
        w = _int(dev, "weight", "blockIO.weightDevice")
        if w:
            file, alt = "blkio.bfq.weight_device", "blkio.weight_device"
            writes.append(Write("blkio", file, f"{_dev(dev)} {w}", alt=alt))
        lw = _int(dev, "leafWeight", "blockIO.weightDevice")
        if lw:
            writes.append(Write("blkio", "blkio.leaf_weight_device", f"{_dev(dev)} {lw}"))
    for key, v1_name, _ in _THROTTLE:
        for dev in _devices(block, key):
            rate = _int(dev, "rate", f"blockIO.{key}")
            writes.append(Write("blkio", f"blkio.throttle.{v1_name}", f"{_dev(dev)} {rate}"))
    return writes


# --- v2 ---------------------------------------------------------------------


def v2_writes(resources: dict[str, Any]) -> list[Write]:
    """The v2 writes for ``resources``; ``unified`` entries come last and win.

    Fields v2 has no file for are ignored where runc ignores them
    (memory.kernelTCP, memory.swappiness, disableOOMKiller) and refused where
    silently dropping them would change behaviour (realtime CPU).
    """
    writes: list[Write] = []
    cpu = _section(resources, "cpu")
    cpus, mems = _str(cpu, "cpus", "cpu"), _str(cpu, "mems", "cpu")
    if cpus:
        writes.append(Write("cpuset", "cpuset.cpus", cpus))
    if mems:
        writes.append(Write("cpuset", "cpuset.mems", mems))
    weight = shares_to_weight(_int(cpu, "shares", "cpu"))
    if weight:
        writes.append(Write("cpu", "cpu.weight", str(weight)))
    period, quota = _int(cpu, "period", "cpu"), _int(cpu, "quota", "cpu")
    if quota or period:
        value = str(quota) if quota > 0 else "max"
        if period:
            value += f" {period}"
        writes.append(Write("cpu", "cpu.max", value))
    burst = _opt_int(cpu, "burst", "cpu")
    if burst is not None:
        writes.append(Write("cpu", "cpu.max.burst", str(burst)))
    idle = _opt_int(cpu, "idle", "cpu")
    if idle is not None:
        writes.append(Write("cpu", "cpu.idle", str(idle)))
    if _int(cpu, "realtimePeriod", "cpu") or _int(cpu, "realtimeRuntime", "cpu"):
        raise InvalidArgument("realtime CPU limits are not supported on cgroup v2")

    memory = _section(resources, "memory")
    limit, swap = _int(memory, "limit", "memory"), _int(memory, "swap", "memory")
    swap_max = memory_swap_to_v2(swap, limit)
    if swap_max:
        # Written before memory.max, as runc does; "max" is optional because a
        # kernel without swap has no memory.swap.max and nothing to lift.
        value = str(swap_max) if swap_max > 0 else "max"
        writes.append(Write("memory", "memory.swap.max", value, optional=swap_max < 0))
    if limit:
        writes.append(Write("memory", "memory.max", str(limit) if limit > 0 else "max"))
    reservation = _int(memory, "reservation", "memory")
    if reservation:
        value = str(reservation) if reservation > 0 else "max"
        writes.append(Write("memory", "memory.low", value))

    pids = _section(resources, "pids")
    pids_limit = _int(pids, "limit", "pids")
    if pids_limit:
        writes.append(Write("pids", "pids.max", str(pids_limit) if pids_limit > 0 else "max"))

    for size, hp_limit in _hugepages(resources):
        writes.append(Write("hugetlb", f"hugetlb.{size}.max", str(hp_limit)))
        writes.append(Write("hugetlb", f"hugetlb.{size}.rsvd.max", str(hp_limit), optional=True))

    block = _section(resources, "blockIO")
    io_weight = blkio_weight_to_io_weight(_int(block, "weight", "blockIO"))
    if io_weight:
        writes.append(Write("io", "io.weight", f"default {io_weight}"))
    for dev in _devices(block, "weightDevice"):
        w = blkio_weight_to_io_weight(_int(dev, "weight", "blockIO.weightDevice"))
        if w:
            writes.append(Write("io", "io.weight", f"{_dev(dev)} {w}"))
    for key, _, v2_name in _THROTTLE:
        for dev in _devices(block, key):
            rate = _int(dev, "rate", f"blockIO.{key}")
            writes.append(Write("io", "io.max", f"{_dev(dev)} {v2_name}={rate or 'max'}"))

    writes.extend(unified_writes(resources))
    return writes


def unified_writes(resources: dict[str, Any]) -> list[Write]:
    """``linux.resources.unified``: file name -> value, checked to stay in the cgroup.

    The controller is the part before the first dot; ``cgroup.*`` files need
    no controller. A key that could name a path outside the cgroup directory
    is refused.
    """
    unified = resources.get("unified") or {}
    if not isinstance(unified, dict):
        raise InvalidArgument("linux.resources.unified must be an object of file: value")
    writes = []
    for key, value in unified.items():
        if not isinstance(key, str) or not _UNIFIED_KEY_RE.match(key) or ".." in key:
            raise InvalidArgument(f"linux.resources.unified key {key!r} is not a cgroup file name")
        if not isinstance(value, str):
            raise InvalidArgument(f"linux.resources.unified[{key!r}] must be a string")
        controller = key.split(".", 1)[0]
        writes.append(Write("" if controller == "cgroup" else controller, key, value))
    return writes


def controllers_of(writes: list[Write]) -> set[str]:
    """The controllers ``writes`` need (to enable in cgroup.subtree_control on v2)."""
    return {w.controller for w in writes if w.controller}
