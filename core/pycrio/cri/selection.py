"""What the CRI's list filters and stats messages have in common for pods and containers."""

from __future__ import annotations

from typing import Any

from cri_api.v1 import api_pb2

from pycrio.kernel.interfaces import CgroupStats


def selected(f: Any, *, id: str, labels: dict[str, str], state: int = -1, pod: str = "") -> bool:
    """Whether an object passes a CRI filter (any of the pod, container and stats filters).

    Ids match by prefix, as crictl and the kubelet use them; every label of
    the selector must match; state and pod apply only to filters that have them.
    """
    if f is None:
        return True
    if f.id and not id.startswith(f.id):
        return False
    if "state" in f.DESCRIPTOR.fields_by_name and f.HasField("state") and f.state.state != state:
        return False
    pod_filter = getattr(f, "pod_sandbox_id", "")
    if pod_filter and not pod.startswith(pod_filter):
        return False
    return all(labels.get(k) == v for k, v in f.label_selector.items())


def fill_usage(
    cpu: api_pb2.CpuUsage, memory: api_pb2.MemoryUsage, usage: CgroupStats, now: int
) -> None:
    """CPU and memory usage messages from a cgroup's counters."""
    cpu.timestamp = now
    cpu.usage_core_nano_seconds.value = usage.cpu_usage_ns
    memory.timestamp = now
    memory.working_set_bytes.value = usage.memory_working_set_bytes
    memory.usage_bytes.value = usage.memory_usage_bytes
    memory.rss_bytes.value = usage.memory_rss_bytes
    memory.page_faults.value = usage.memory_page_faults
    memory.major_page_faults.value = usage.memory_major_page_faults
    memory.available_bytes.value = usage.memory_available_bytes
