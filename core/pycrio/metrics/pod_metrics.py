"""ListMetricDescriptors and ListPodSandboxMetrics: cadvisor-named cgroup metrics.

One table (METRICS) describes every metric and how to read it from
CgroupStats, so the descriptors the kubelet is told about and the values it
then receives cannot disagree. Names are cadvisor's, as CRI-O's, so
dashboards written for either keep working. CRI metric values are unsigned
integers, hence whole seconds of CPU (as CRI-O reports them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.container import record as container_record
from pycrio.errors import CRIError
from pycrio.kernel.interfaces import CgroupStats
from pycrio.kernel.kernel import Kernel
from pycrio.metrics.state import core_store
from pycrio.sandbox import record as sandbox_record

#: Label keys of every metric: the pod's or container's id, its name, its image.
LABEL_KEYS = ("id", "name", "image")


@dataclass(frozen=True)
class PodMetric:
    name: str
    help: str
    type: int  # api_pb2.COUNTER or api_pb2.GAUGE
    value: Callable[[CgroupStats], int]


METRICS: tuple[PodMetric, ...] = (
    PodMetric(
        "container_cpu_usage_seconds_total",
        "Cumulative CPU time consumed, in whole seconds.",
        api_pb2.COUNTER,
        lambda s: s.cpu_usage_ns // 1_000_000_000,
    ),
    PodMetric(
        "container_memory_usage_bytes",
        "Current memory usage, including all memory regardless of when it was accessed.",
        api_pb2.GAUGE,
        lambda s: s.memory_usage_bytes,
    ),
    PodMetric(
        "container_memory_working_set_bytes",
        "Current working set: usage minus inactive file cache (what the OOM killer sees).",
        api_pb2.GAUGE,
        lambda s: s.memory_working_set_bytes,
    ),
    PodMetric(
        "container_memory_rss",
        "Size of RSS (anonymous memory and swap cache) in bytes.",
        api_pb2.GAUGE,
        lambda s: s.memory_rss_bytes,
    ),
    PodMetric(
        "container_processes",
        "Number of processes (and threads) running in the cgroup.",
        api_pb2.GAUGE,
        lambda s: s.pids,
    ),
)


def descriptors() -> list[api_pb2.MetricDescriptor]:
    return [
        api_pb2.MetricDescriptor(name=m.name, help=m.help, label_keys=list(LABEL_KEYS))
        for m in METRICS
    ]


def pod_metrics(kernel: Kernel) -> list[api_pb2.PodSandboxMetrics]:
    """Metrics of every pod sandbox and of its running containers."""
    pods: Any = core_store(kernel, "SandboxService")
    containers: Any = core_store(kernel, "ContainerService")
    if pods is None:
        return []
    by_pod: dict[str, list[Any]] = {}
    for c in containers.all() if containers is not None else []:
        if c.state == container_record.RUNNING and not c.infra:
            by_pod.setdefault(c.sandbox_id, []).append(c)
    out = []
    for pod in pods.all():
        if pod.state == sandbox_record.CREATING:
            continue
        entry = api_pb2.PodSandboxMetrics(pod_sandbox_id=pod.id)
        entry.metrics.extend(values(kernel, pod.cgroup_path, [pod.id, pod.name, ""]))
        for c in by_pod.get(pod.id, []):
            entry.container_metrics.append(
                api_pb2.ContainerMetrics(
                    container_id=c.id,
                    metrics=values(kernel, c.cgroups_path, [c.id, c.name, c.image_ref or c.image]),
                )
            )
        out.append(entry)
    return out


def values(kernel: Kernel, path: str, labels: list[str]) -> list[api_pb2.Metric]:
    """Every METRICS value of one cgroup, labelled; none when it is gone or unreadable."""
    driver = kernel.cgroup_driver
    if driver is None or not path:
        return []
    try:
        stats = driver.stats(path)
    except (CRIError, OSError):
        return []  # removed while we looked, or no such controller: report nothing
    now = time.time_ns()
    out = []
    for m in METRICS:
        metric = api_pb2.Metric(name=m.name, timestamp=now, metric_type=m.type, label_values=labels)
        metric.value.value = max(0, int(m.value(stats)))
        out.append(metric)
    return out
