"""ListMetricDescriptors and ListPodSandboxMetrics: cadvisor-named pod and container metrics.

One table (METRICS) describes every metric, the group that includes it
(CRI-O's ``included_pod_metrics`` groups), its label keys and how to read its
values from a :class:`Subject` (one pod or container: its cgroup counters,
its processes, its filesystem, its network), so the descriptors the kubelet
is told about and the values it then receives cannot disagree: every value
carries exactly the descriptor's label keys, and every described metric has
at least one value for each pod and each running container (network metrics
for the pod only, as cadvisor reports them on the pod's sandbox). Names,
help texts and label keys are cadvisor's, as CRI-O's, so dashboards written
for either keep working.

CRI metric values are unsigned integers, hence whole seconds of CPU (as
CRI-O reports them) and 2**64-1 for an unlimited ulimit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cri_api.v1 import api_pb2

from pycrio.config.schema import POD_METRIC_GROUPS
from pycrio.kernel.interfaces import (
    MEASURE_CPU_QUOTA,
    MEASURE_HUGETLB,
    MEASURE_MEMORY_RESERVATION,
    MEASURE_PRESSURE,
    BlkioDevice,
    CgroupStats,
)
from pycrio.sandbox.netstats import InterfaceCounters
from pycrio.stats.procfs import ProcessUsage

#: Label keys of every metric: the pod's or container's id, its name, its image.
LABEL_KEYS = ("id", "name", "image")

COUNTER = api_pb2.COUNTER
GAUGE = api_pb2.GAUGE
SECOND = 1_000_000_000

#: included_pod_metrics groups, in the order descriptors are listed (the schema's, minus "all").
GROUPS = tuple(g for g in POD_METRIC_GROUPS if g != "all")
ALWAYS = ""  # container_last_seen: described whatever the groups


@dataclass
class FsUsage:
    """The filesystem holding containers' writable layers, and what one subject wrote to it."""

    usage_bytes: int = 0
    inodes_used: int = 0
    limit_bytes: int = 0
    inodes_total: int = 0
    inodes_free: int = 0
    device: BlkioDevice | None = None  # its block device, for I/O counters with no I/O yet


@dataclass
class Subject:
    """One pod or container, with everything its metrics are computed from."""

    labels: list[str]
    cgroup: CgroupStats
    process: ProcessUsage
    fs: FsUsage
    start_time_ns: int
    now_ns: int
    network: list[InterfaceCounters] | None = None  # pods only
    devices: dict[tuple[int, int], str] = field(default_factory=dict)  # (major, minor) -> name


Values = list[tuple[list[str], int]]  # (extra label values, value)


@dataclass(frozen=True)
class PodMetric:
    name: str
    help: str
    type: int  # COUNTER or GAUGE
    group: str
    values: Callable[[Subject], Values]
    extra_labels: tuple[str, ...] = ()
    requires: str = ""  # a CgroupDriver.measurable() item, when not every node has it
    pod_only: bool = False

    @property
    def label_keys(self) -> list[str]:
        return [*LABEL_KEYS, *self.extra_labels]


def one(read: Callable[[Subject], int]) -> Callable[[Subject], Values]:
    return lambda s: [([], read(s))]


def _interfaces(s: Subject, read: Callable[[InterfaceCounters], int]) -> Values:
    return [([i.name], read(i)) for i in s.network or []]


def _devices(s: Subject) -> list[BlkioDevice]:
    """The subject's block devices; the storage device with zeros when it did no I/O yet."""
    if s.cgroup.blkio:
        return s.cgroup.blkio
    return [s.fs.device] if s.fs.device is not None else []


def _device_name(s: Subject, d: BlkioDevice) -> str:
    return s.devices.get((d.major, d.minor), f"{d.major}:{d.minor}")


def _per_device(attr: str, op: str) -> Callable[[Subject], Values]:
    return lambda s: [([_device_name(s, d)], getattr(d, attr).get(op, 0)) for d in _devices(s)]


def _blkio_usage(s: Subject) -> Values:
    out: Values = []
    for d in _devices(s):
        for op, value in sorted(d.bytes.items()):
            out.append(([_device_name(s, d), str(d.major), str(d.minor), op], value))
    return out


def _memory_failures(s: Subject) -> Values:
    c = s.cgroup
    return [
        (["pgfault", "container"], c.memory_page_faults),
        (["pgfault", "hierarchy"], c.memory_page_faults),
        (["pgmajfault", "container"], c.memory_major_page_faults),
        (["pgmajfault", "hierarchy"], c.memory_major_page_faults),
    ]


def _hugetlb(index: int) -> Callable[[Subject], Values]:
    return lambda s: [([size], pair[index]) for size, pair in sorted(s.cgroup.hugetlb.items())]


def _pressure(resource: str, full: bool) -> Callable[[Subject], Values]:
    def read(s: Subject) -> Values:
        totals = s.cgroup.pressure.get(resource)
        if totals is None:
            return []
        return [([], (totals.full_us if full else totals.some_us) // 1_000_000)]

    return read


def _cpu(
    name: str, help: str, read: Callable[[CgroupStats], int], kind: int = COUNTER
) -> PodMetric:
    return PodMetric(name, help, kind, "cpu", one(lambda s: read(s.cgroup)))


def _memory(
    name: str, help: str, read: Callable[[CgroupStats], int], kind: int = GAUGE
) -> PodMetric:
    return PodMetric(name, help, kind, "memory", one(lambda s: read(s.cgroup)))


def _network(name: str, help: str, read: Callable[[InterfaceCounters], int]) -> PodMetric:
    return PodMetric(
        name, help, COUNTER, "network", lambda s: _interfaces(s, read), ("interface",),
        pod_only=True,
    )  # fmt: skip


def _spec(name: str, help: str, read: Callable[[Subject], int], requires: str = "") -> PodMetric:
    return PodMetric(name, help, GAUGE, "spec", one(read), requires=requires)


METRICS: tuple[PodMetric, ...] = (
    PodMetric(
        "container_last_seen",
        "Last time a container was seen by the exporter",
        GAUGE,
        ALWAYS,
        one(lambda s: s.now_ns // SECOND),
    ),
    # --- cpu
    _cpu(
        "container_cpu_user_seconds_total",
        "Cumulative user CPU time consumed in seconds.",
        lambda c: c.cpu_user_ns // SECOND,
    ),
    _cpu(
        "container_cpu_system_seconds_total",
        "Cumulative system CPU time consumed in seconds.",
        lambda c: c.cpu_system_ns // SECOND,
    ),
    PodMetric(
        "container_cpu_usage_seconds_total",
        "Cumulative CPU time consumed in seconds.",
        COUNTER,
        "cpu",
        lambda s: [(["total"], s.cgroup.cpu_usage_ns // SECOND)],
        ("cpu",),
    ),
    _cpu(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        lambda c: c.cpu_periods,
    ),
    _cpu(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        lambda c: c.cpu_throttled_periods,
    ),
    _cpu(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        lambda c: c.cpu_throttled_ns // SECOND,
    ),
    # --- memory
    _memory(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        lambda c: c.memory_cache_bytes,
    ),
    _memory("container_memory_rss", "Size of RSS in bytes.", lambda c: c.memory_rss_bytes),
    _memory(
        "container_memory_kernel_usage",
        "Size of kernel memory allocated in bytes.",
        lambda c: c.memory_kernel_bytes,
    ),
    _memory(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        lambda c: c.memory_mapped_file_bytes,
    ),
    _memory(
        "container_memory_swap", "Container swap usage in bytes.", lambda c: c.memory_swap_bytes
    ),
    _memory(
        "container_memory_failcnt",
        "Number of memory usage hits limits",
        lambda c: c.memory_failcnt,
        COUNTER,
    ),
    _memory(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        lambda c: c.memory_usage_bytes,
    ),
    _memory(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
        lambda c: c.memory_max_usage_bytes,
    ),
    _memory(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        lambda c: c.memory_working_set_bytes,
    ),
    PodMetric(
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        COUNTER,
        "memory",
        _memory_failures,
        ("failure_type", "scope"),
    ),
    # --- network (the pod's namespace; not repeated for each of its containers)
    _network(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        lambda i: i.rx_bytes,
    ),
    _network(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        lambda i: i.rx_packets,
    ),
    _network(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        lambda i: i.rx_dropped,
    ),
    _network(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        lambda i: i.rx_errors,
    ),
    _network(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        lambda i: i.tx_bytes,
    ),
    _network(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        lambda i: i.tx_packets,
    ),
    _network(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        lambda i: i.tx_dropped,
    ),
    _network(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        lambda i: i.tx_errors,
    ),
    # --- oom
    PodMetric(
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        COUNTER,
        "oom",
        one(lambda s: s.cgroup.memory_oom_kills),
    ),
    # --- process
    PodMetric(
        "container_processes",
        "Number of processes running inside the container.",
        GAUGE,
        "process",
        one(lambda s: s.process.processes),
    ),
    PodMetric(
        "container_file_descriptors",
        "Number of open file descriptors for the container.",
        GAUGE,
        "process",
        one(lambda s: s.process.file_descriptors),
    ),
    PodMetric(
        "container_sockets",
        "Number of open sockets for the container.",
        GAUGE,
        "process",
        one(lambda s: s.process.sockets),
    ),
    PodMetric(
        "container_threads",
        "Number of threads running inside the container",
        GAUGE,
        "process",
        one(lambda s: s.process.threads),
    ),
    PodMetric(
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero",
        GAUGE,
        "process",
        one(lambda s: s.cgroup.pids_limit),
    ),
    PodMetric(
        "container_ulimits_soft",
        "Soft ulimit values for the container root process. Unlimited if 2^64-1",
        GAUGE,
        "process",
        lambda s: [([name], value) for name, value in sorted(s.process.ulimits.items())],
        ("ulimit",),
    ),
    # --- spec
    _spec(
        "container_spec_cpu_period",
        "CPU period of the container.",
        lambda s: s.cgroup.cpu_period_us,
    ),
    _spec(
        "container_spec_cpu_shares", "CPU share of the container.", lambda s: s.cgroup.cpu_shares
    ),
    _spec(
        "container_spec_cpu_quota",
        "CPU quota of the container.",
        lambda s: s.cgroup.cpu_quota_us,
        MEASURE_CPU_QUOTA,
    ),
    _spec(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container in bytes.",
        lambda s: s.cgroup.memory_limit_bytes,
    ),
    _spec(
        "container_spec_memory_reservation_limit_bytes",
        "Memory reservation limit for the container.",
        lambda s: s.cgroup.memory_reservation_bytes,
        MEASURE_MEMORY_RESERVATION,
    ),
    _spec(
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container.",
        lambda s: s.cgroup.memory_swap_limit_bytes,
    ),
    _spec(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        lambda s: s.start_time_ns // SECOND,
    ),
    # --- disk (the filesystem of the writable layers)
    PodMetric(
        "container_fs_inodes_free",
        "Number of free inodes.",
        GAUGE,
        "disk",
        one(lambda s: s.fs.inodes_free),
    ),  # fmt: skip
    PodMetric(
        "container_fs_inodes_total",
        "Total number of inodes.",
        GAUGE,
        "disk",
        one(lambda s: s.fs.inodes_total),
    ),  # fmt: skip
    PodMetric(
        "container_fs_limit_bytes",
        "Filesystem limit in bytes.",
        GAUGE,
        "disk",
        one(lambda s: s.fs.limit_bytes),
    ),  # fmt: skip
    PodMetric(
        "container_fs_usage_bytes",
        "Current filesystem usage in bytes.",
        GAUGE,
        "disk",
        one(lambda s: s.fs.usage_bytes),
    ),  # fmt: skip
    # --- diskIO (the cgroup's block I/O)
    PodMetric(
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read",
        COUNTER,
        "diskIO",
        _per_device("bytes", "Read"),
        ("device",),
    ),  # fmt: skip
    PodMetric(
        "container_fs_reads_total",
        "Cumulative count of reads completed",
        COUNTER,
        "diskIO",
        _per_device("ios", "Read"),
        ("device",),
    ),  # fmt: skip
    PodMetric(
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written",
        COUNTER,
        "diskIO",
        _per_device("bytes", "Write"),
        ("device",),
    ),  # fmt: skip
    PodMetric(
        "container_fs_writes_total",
        "Cumulative count of writes completed",
        COUNTER,
        "diskIO",
        _per_device("ios", "Write"),
        ("device",),
    ),  # fmt: skip
    PodMetric(
        "container_blkio_device_usage_total",
        "Blkio Device bytes usage",
        COUNTER,
        "diskIO",
        _blkio_usage,
        ("device", "major", "minor", "operation"),
    ),  # fmt: skip
    # --- hugetlb
    PodMetric(
        "container_hugetlb_usage_bytes",
        "Current hugepage usage",
        GAUGE,
        "hugetlb",
        _hugetlb(0),
        ("pagesize",),
        MEASURE_HUGETLB,
    ),  # fmt: skip
    PodMetric(
        "container_hugetlb_max_usage_bytes",
        "Maximum hugepage usages recorded",
        GAUGE,
        "hugetlb",
        _hugetlb(1),
        ("pagesize",),
        MEASURE_HUGETLB,
    ),  # fmt: skip
    # --- pressure (PSI)
    PodMetric(
        "container_pressure_cpu_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to CPU congestion.",
        COUNTER,
        "pressure",
        _pressure("cpu", True),
        requires=MEASURE_PRESSURE,
    ),  # fmt: skip
    PodMetric(
        "container_pressure_cpu_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to CPU congestion.",
        COUNTER,
        "pressure",
        _pressure("cpu", False),
        requires=MEASURE_PRESSURE,
    ),  # fmt: skip
    PodMetric(
        "container_pressure_memory_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to memory"
        " congestion.",
        COUNTER,
        "pressure",
        _pressure("memory", True),
        requires=MEASURE_PRESSURE,
    ),  # fmt: skip
    PodMetric(
        "container_pressure_memory_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to memory congestion.",
        COUNTER,
        "pressure",
        _pressure("memory", False),
        requires=MEASURE_PRESSURE,
    ),  # fmt: skip
    PodMetric(
        "container_pressure_io_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to IO congestion.",
        COUNTER,
        "pressure",
        _pressure("io", True),
        requires=MEASURE_PRESSURE,
    ),  # fmt: skip
    PodMetric(
        "container_pressure_io_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to IO congestion.",
        COUNTER,
        "pressure",
        _pressure("io", False),
        requires=MEASURE_PRESSURE,
    ),  # fmt: skip
)


def enabled_groups(included: Iterable[str]) -> frozenset[str]:
    """The groups ``[stats] included_pod_metrics`` selects: empty or "all" means every one."""
    chosen = set(included)
    if not chosen or "all" in chosen:
        return frozenset(GROUPS)
    return frozenset(chosen)


def selected(groups: frozenset[str], measurable: frozenset[str]) -> list[PodMetric]:
    """The metrics to describe and report: in a chosen group and measurable on this node."""
    return [
        m
        for m in METRICS
        if (m.group == ALWAYS or m.group in groups) and (not m.requires or m.requires in measurable)
    ]


def descriptors(metrics: list[PodMetric]) -> list[api_pb2.MetricDescriptor]:
    return [
        api_pb2.MetricDescriptor(name=m.name, help=m.help, label_keys=m.label_keys) for m in metrics
    ]


def values(metrics: list[PodMetric], subject: Subject, *, pod: bool) -> list[api_pb2.Metric]:
    """Every value of ``metrics`` for one pod (``pod=True``) or container."""
    out = []
    for m in metrics:
        if m.pod_only and not pod:
            continue
        for extra, value in m.values(subject):
            metric = api_pb2.Metric(
                name=m.name,
                timestamp=subject.now_ns,
                metric_type=m.type,
                label_values=[*subject.labels, *extra],
            )
            metric.value.value = min(max(0, int(value)), (1 << 64) - 1)
            out.append(metric)
    return out


def block_device_names() -> dict[tuple[int, int], str]:
    """(major, minor) -> /dev/<name> of the node's block devices, cadvisor's device label."""
    out = {}
    try:
        entries = os.listdir("/sys/dev/block")
    except OSError:
        return out
    for entry in entries:
        major, _, minor = entry.partition(":")
        if not (major.isdigit() and minor.isdigit()):
            continue
        name = os.path.basename(os.path.realpath(f"/sys/dev/block/{entry}"))
        out[(int(major), int(minor))] = f"/dev/{name}"
    return out
