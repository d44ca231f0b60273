"""CRI usage messages from cgroup counters, and CPU rates from successive readings.

The kubelet's summary API (and so metrics-server and ``kubectl top``) reads
``usage_nano_cores``: the CPU rate since the previous reading. As CRI-O does,
the runtime computes it from the last reading it took of the same pod or
container; the first reading of each has none. ``available_bytes`` is set
only when the cgroup has a memory limit: the kubelet reads an unset value as
"no limit", and 0 as "nothing left".
"""

from __future__ import annotations

import threading

from cri_api.v1 import api_pb2

from pycrio.kernel.interfaces import CgroupStats


class CpuRates:
    """The last CPU reading of each pod and container, to turn the next one into a rate."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def rate(self, key: str, now: int, usage_ns: int) -> int | None:
        """Nano cores used since the previous reading of ``key``; None for the first.

        A counter that went backwards (a cgroup recreated under the same id)
        or two readings with the same timestamp give no rate.
        """
        with self._lock:
            previous = self._last.get(key)
            self._last[key] = (now, usage_ns)
        if previous is None:
            return None
        then, before = previous
        if now <= then or usage_ns < before:
            return None
        return (usage_ns - before) * 1_000_000_000 // (now - then)

    def forget(self, keep: set[str]) -> None:
        """Drop the readings of pods and containers that are gone."""
        with self._lock:
            for key in set(self._last) - keep:
                del self._last[key]

    def __len__(self) -> int:
        return len(self._last)


def fill_cpu(cpu: api_pb2.CpuUsage, usage: CgroupStats, now: int, rate: int | None) -> None:
    cpu.timestamp = now
    cpu.usage_core_nano_seconds.value = usage.cpu_usage_ns
    if rate is not None:
        cpu.usage_nano_cores.value = rate


def fill_memory(memory: api_pb2.MemoryUsage, usage: CgroupStats, now: int) -> None:
    memory.timestamp = now
    memory.working_set_bytes.value = usage.memory_working_set_bytes
    memory.usage_bytes.value = usage.memory_usage_bytes
    memory.rss_bytes.value = usage.memory_rss_bytes
    memory.page_faults.value = usage.memory_page_faults
    memory.major_page_faults.value = usage.memory_major_page_faults
    if usage.memory_available_bytes is not None:
        memory.available_bytes.value = usage.memory_available_bytes


def fill_swap(swap: api_pb2.SwapUsage, usage: CgroupStats, now: int) -> None:
    """Swap in use; what is left is not reported (v1 limits memory and swap together)."""
    swap.timestamp = now
    swap.swap_usage_bytes.value = usage.memory_swap_bytes
