"""CRI usage messages from cgroup counters, and CPU rates from successive readings.

The kubelet's summary API (and so metrics-server and ``kubectl top``) reads
``usage_nano_cores``: the CPU rate since the previous reading. As CRI-O does,
the runtime computes it from an earlier reading it took of the same pod or
container, at least a second older (see :class:`CpuRates`); until there is
one, it is left unset and the kubelet computes a rate itself. ``available_bytes`` is set
only when the cgroup has a memory limit: the kubelet reads an unset value as
"no limit", and 0 as "nothing left".
"""

from __future__ import annotations

import threading

from cri_api.v1 import api_pb2

from pycrio.kernel.interfaces import CgroupStats

#: The shortest time a rate is computed over: the kubelet reads pod stats and
#: container stats in one burst, and a rate over a few milliseconds is noise.
MIN_WINDOW_NS = 1_000_000_000


class CpuRates:
    """Recent CPU readings of each pod and container, to turn the next one into a rate.

    Each key keeps a *baseline* and its *latest* reading. A new reading becomes
    the latest; the previous latest becomes the baseline only when it is at
    least MIN_WINDOW_NS old, so readings in quick succession are all measured
    against the same older baseline instead of against each other.
    """

    def __init__(self) -> None:
        self._readings: dict[str, tuple[tuple[int, int] | None, tuple[int, int]]] = {}
        self._lock = threading.Lock()

    def rate(self, key: str, now: int, usage_ns: int) -> int | None:
        """Nano cores used since the baseline reading of ``key``; None while there is none.

        A counter that went backwards (a cgroup recreated under the same id)
        starts over.
        """
        with self._lock:
            baseline, latest = self._readings.get(key, (None, None))  # type: ignore[arg-type]
            if latest is not None and usage_ns < latest[1]:
                baseline, latest = None, None  # reset
            if latest is not None and now - latest[0] >= MIN_WINDOW_NS:
                baseline = latest
            self._readings[key] = (baseline, (now, usage_ns))
        if baseline is None or now <= baseline[0]:
            return None
        then, before = baseline
        return (usage_ns - before) * 1_000_000_000 // (now - then)

    def forget(self, keep: set[str]) -> None:
        """Drop the readings of pods and containers that are gone."""
        with self._lock:
            for key in set(self._readings) - keep:
                del self._readings[key]

    def __len__(self) -> int:
        return len(self._readings)


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
