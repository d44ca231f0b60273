"""Translate an OCI ``linux.resources`` object into systemd unit properties.

Why properties and not cgroup files: systemd owns every cgroup below a unit
and rewrites the files from the unit's properties on each reload; a limit
written behind its back is lost. So each limit systemd knows becomes a
property (as runc's systemd driver and the kubelet do), and only the few it
has no property for (hugetlb, v1 swap, unknown ``unified`` keys)
are written to the unit's cgroup files afterwards.

Values are jeepney variants, ``(signature, value)``. Zero means "leave
unchanged" (nothing is sent), -1 means unlimited: systemd's infinity,
``2**64 - 1``. The mapping is pure and has a v1 form (cgroup v1 and hybrid
machines, where systemd's v1 property names apply) and a v2 form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pycrio.errors import InvalidArgument
from pycrio.kernel.oci_resources import integer
from pycrio.kernel.oci_resources import section as _section

INFINITY = (1 << 64) - 1
#: systemd's CPUQuotaPerSecUSec has a granularity of 10ms (runc rounds up too).
_QUOTA_STEP_USEC = 10_000
_DEFAULT_PERIOD_USEC = 100_000
_PAGE_SIZE_RE = re.compile(r"^[1-9][0-9]*(KB|MB|GB|TB|PB)$")
_RANGE_RE = re.compile(r"^\d+(-\d+)?$")

Property = tuple[str, tuple[str, Any]]


@dataclass(frozen=True)
class FileWrite:
    """A value systemd has no property for, written to the unit's cgroup file.

    ``controller`` picks the v1 hierarchy (ignored on v2). ``optional``
    writes are skipped when the file does not exist (swap accounting off).
    """

    controller: str
    file: str
    value: str
    optional: bool = False


@dataclass
class Translation:
    properties: list[Property]
    files: list[FileWrite]


def accounting_properties(v2: bool) -> list[Property]:
    """Turn on the controllers a pod or container cgroup needs (usage stats, limits)."""
    props: list[Property] = [
        ("CPUAccounting", ("b", True)),
        ("MemoryAccounting", ("b", True)),
        ("TasksAccounting", ("b", True)),
    ]
    props.append(("IOAccounting", ("b", True)) if v2 else ("BlockIOAccounting", ("b", True)))
    return props


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares -> v2 CPUWeight, runc's mapping ([2, 262144] onto [1, 10000])."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def quota_per_sec(quota: int, period: int) -> int:
    """CFS quota/period (µs) -> CPUQuotaPerSecUSec, rounded up to systemd's 10ms step."""
    per_sec = quota * 1_000_000 // period
    if per_sec % _QUOTA_STEP_USEC:
        per_sec = (per_sec // _QUOTA_STEP_USEC + 1) * _QUOTA_STEP_USEC
    return per_sec


def cpu_mask(text: str, where: str) -> bytes:
    """A cpuset list ("0-3,6") as systemd's AllowedCPUs byte mask (bit n of byte n//8)."""
    cpus: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not _RANGE_RE.match(item):
            raise InvalidArgument(f"linux.resources.{where} {text!r} is not a list like 0-3,6")
        first, _, last = item.partition("-")
        lo, hi = int(first), int(last or first)
        if hi < lo or hi > 8191:
            raise InvalidArgument(f"linux.resources.{where} {text!r} has an invalid range")
        cpus.update(range(lo, hi + 1))
    mask = bytearray((max(cpus) // 8) + 1)
    for cpu in cpus:
        mask[cpu // 8] |= 1 << (cpu % 8)
    return bytes(mask)


def _int(part: dict[str, Any], key: str, where: str) -> int:
    value = integer(part, key, where)
    if value < -1:
        raise InvalidArgument(f"linux.resources.{where}.{key} must be -1 or more, not {value}")
    return value


def _limit(value: int) -> int:
    return INFINITY if value == -1 else value


def _cpu(cpu: dict[str, Any], v2: bool, out: Translation) -> None:
    shares = _int(cpu, "shares", "cpu")
    if shares > 0:
        out.properties.append(
            ("CPUWeight", ("t", shares_to_weight(shares)))
            if v2
            else ("CPUShares", ("t", min(max(shares, 2), 262144)))
        )
    quota = _int(cpu, "quota", "cpu")
    period = _int(cpu, "period", "cpu")
    if period > 0:
        out.properties.append(("CPUQuotaPeriodUSec", ("t", period)))
    if quota > 0:
        per_sec = quota_per_sec(quota, period or _DEFAULT_PERIOD_USEC)
        out.properties.append(("CPUQuotaPerSecUSec", ("t", per_sec)))
    elif quota == -1:
        out.properties.append(("CPUQuotaPerSecUSec", ("t", INFINITY)))
    for key, prop in (("cpus", "AllowedCPUs"), ("mems", "AllowedMemoryNodes")):
        value = cpu.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise InvalidArgument(f"linux.resources.cpu.{key} must be a string, not {value!r}")
        mask = cpu_mask(value, f"cpu.{key}")
        if not v2:
            # systemd has no cpuset on v1 and makes no cpuset directory for a
            # slice; runc handles the containers' own, the pod level is refused
            raise InvalidArgument(
                f"linux.resources.cpu.{key} on a pod slice needs cgroup v2 with the systemd"
                " driver (systemd has no cpuset support on cgroup v1)"
            )
        out.properties.append((prop, ("ay", mask)))


def _memory(memory: dict[str, Any], v2: bool, out: Translation) -> None:
    limit = _int(memory, "limit", "memory")
    if limit:
        out.properties.append(("MemoryMax" if v2 else "MemoryLimit", ("t", _limit(limit))))
    reservation = _int(memory, "reservation", "memory")
    if reservation > 0:
        if v2:
            out.properties.append(("MemoryLow", ("t", reservation)))
        else:
            out.files.append(FileWrite("memory", "memory.soft_limit_in_bytes", str(reservation)))
    swap = _int(memory, "swap", "memory")
    if not swap:
        return
    if not v2:
        value = "-1" if swap == -1 else str(swap)
        out.files.append(FileWrite("memory", "memory.memsw.limit_in_bytes", value, optional=True))
        return
    if swap == -1:
        out.properties.append(("MemorySwapMax", ("t", INFINITY)))
        return
    if limit <= 0:
        raise InvalidArgument("linux.resources.memory.swap needs memory.limit on cgroup v2")
    if swap < limit:
        raise InvalidArgument(
            f"linux.resources.memory.swap (memory+swap) {swap} is lower than memory.limit {limit}"
        )
    out.properties.append(("MemorySwapMax", ("t", swap - limit)))


def _hugepages(resources: dict[str, Any], v2: bool, out: Translation) -> None:
    items = resources.get("hugepageLimits") or []
    if not isinstance(items, list):
        raise InvalidArgument("linux.resources.hugepageLimits must be a list")
    for item in items:
        if not isinstance(item, dict):
            raise InvalidArgument(f"linux.resources.hugepageLimits entry {item!r} is not an object")
        size = item.get("pageSize")
        if not isinstance(size, str) or not _PAGE_SIZE_RE.match(size):
            raise InvalidArgument(f"hugepageLimits pageSize {size!r} is not like 2MB or 1GB")
        limit = _int(item, "limit", "hugepageLimits")
        file = f"hugetlb.{size}.max" if v2 else f"hugetlb.{size}.limit_in_bytes"
        value = ("max" if v2 else "-1") if limit == -1 else str(limit)
        out.files.append(FileWrite("hugetlb", file, value))


#: ``unified`` keys systemd has a property for; the rest are written as files.
_UNIFIED_PROPERTIES = {
    "memory.max": "MemoryMax",
    "memory.high": "MemoryHigh",
    "memory.low": "MemoryLow",
    "memory.min": "MemoryMin",
    "memory.swap.max": "MemorySwapMax",
    "pids.max": "TasksMax",
    "cpu.weight": "CPUWeight",
}
_UNIFIED_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*\.[A-Za-z0-9_.]+$")


def _unified(resources: dict[str, Any], v2: bool, out: Translation) -> None:
    unified = _section(resources, "unified")
    if not unified:
        return
    if not v2:
        raise InvalidArgument(
            "linux.resources.unified needs cgroup v2; this node's cgroups are v1 or hybrid"
        )
    for key, value in sorted(unified.items()):
        if not isinstance(value, str) or not _UNIFIED_KEY_RE.match(key) or "\n" in value:
            raise InvalidArgument(f"linux.resources.unified {key!r}: {value!r} is not valid")
        prop = _UNIFIED_PROPERTIES.get(key)
        if prop is None:
            out.files.append(FileWrite(key.split(".", 1)[0], key, value))
            continue
        text = value.strip()
        if text == "max":
            number = INFINITY
        elif text.isdigit():
            number = int(text)
        else:
            raise InvalidArgument(f"linux.resources.unified {key!r} must be a number or max")
        out.properties.append((prop, ("t", number)))


def translate(resources: dict[str, Any] | None, v2: bool) -> Translation:
    """Properties and file writes for ``resources``; INVALID_ARGUMENT on bad input.

    Everything is checked here, before any unit is created or changed.
    """
    out = Translation([], [])
    if resources is None:
        return out
    if not isinstance(resources, dict):
        raise InvalidArgument(f"linux.resources must be an object, not {resources!r}")
    _cpu(_section(resources, "cpu"), v2, out)
    _memory(_section(resources, "memory"), v2, out)
    pids = _int(_section(resources, "pids"), "limit", "pids")
    if pids:
        out.properties.append(("TasksMax", ("t", _limit(pids))))
    weight = _int(_section(resources, "blockIO"), "weight", "blockIO")
    if weight > 0:
        if v2:
            io_weight = 1 + ((min(max(weight, 10), 1000) - 10) * 9999) // 990
            out.properties.append(("IOWeight", ("t", io_weight)))
        else:
            out.properties.append(("BlockIOWeight", ("t", min(max(weight, 10), 1000))))
    _hugepages(resources, v2, out)
    _unified(resources, v2, out)
    return out
