"""The cadvisor metric table: descriptors and values agree, groups and host limits select."""

from __future__ import annotations

from kubelet_metrics import KUBELET_METRICS

from pycrio.kernel.interfaces import (
    MEASURE_CPU_QUOTA,
    MEASURE_HUGETLB,
    MEASURE_MEMORY_RESERVATION,
    MEASURE_PRESSURE,
    BlkioDevice,
    CgroupStats,
    PressureTotals,
)
from pycrio.metrics import pod_metrics
from pycrio.metrics.pod_metrics import GROUPS, METRICS, FsUsage, Subject, enabled_groups
from pycrio.sandbox.netstats import InterfaceCounters
from pycrio.stats.procfs import UNLIMITED, ProcessUsage

EVERYTHING = frozenset({MEASURE_CPU_QUOTA, MEASURE_HUGETLB, MEASURE_MEMORY_RESERVATION,
                        MEASURE_PRESSURE})  # fmt: skip


def subject(**cgroup: object) -> Subject:
    stats = CgroupStats(
        cpu_usage_ns=3_500_000_000,
        memory_usage_bytes=7,
        memory_page_faults=11,
        hugetlb={"2MB": (4096, 8192)},
        pressure={r: PressureTotals(2_000_000, 1_000_000) for r in ("cpu", "memory", "io")},
        **cgroup,  # type: ignore[arg-type]
    )
    return Subject(
        labels=["c1", "app", "busybox"],
        cgroup=stats,
        process=ProcessUsage(processes=2, threads=3, ulimits={"max_open_files": 1024,
                                                              "max_cpu_time": UNLIMITED}),
        fs=FsUsage(usage_bytes=5, limit_bytes=100, inodes_total=10, inodes_free=4,
                   device=BlkioDevice(8, 0, {"Read": 0, "Write": 0}, {"Read": 0, "Write": 0})),
        start_time_ns=1_700_000_000_123_456_789,
        now_ns=1_800_000_000_000_000_000,
        network=[InterfaceCounters("eth0", 10, 1, 20, 2, 3, 0, 4, 0)],
        devices={(8, 0): "/dev/sda"},
    )  # fmt: skip


def by_name(metrics: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in metrics:
        out.setdefault(m.name, []).append(m)
    return out


def test_every_kubelet_metric_is_described_with_help_and_labels() -> None:
    chosen = pod_metrics.selected(enabled_groups([]), frozenset())
    descriptors = {d.name: d for d in pod_metrics.descriptors(chosen)}
    assert set(KUBELET_METRICS) <= set(descriptors)
    for d in descriptors.values():
        assert d.help and list(d.label_keys)[:3] == ["id", "name", "image"]
    # host-dependent ones only when the node can measure them
    assert not {"container_hugetlb_usage_bytes", "container_spec_cpu_quota",
                "container_pressure_cpu_waiting_seconds_total"} & set(descriptors)  # fmt: skip
    everything = {m.name for m in pod_metrics.selected(enabled_groups(["all"]), EVERYTHING)}
    assert everything == {m.name for m in METRICS}
    assert "container_ulimits_soft" in everything and len(everything) == len(METRICS)


def test_values_carry_exactly_the_descriptor_labels() -> None:
    chosen = pod_metrics.selected(enabled_groups([]), EVERYTHING)
    keys = {m.name: len(m.label_keys) for m in chosen}
    pod = by_name(pod_metrics.values(chosen, subject(), pod=True))
    container = by_name(pod_metrics.values(chosen, subject(), pod=False))
    assert set(pod) == set(keys)
    assert set(container) == {m.name for m in chosen if m.group != "network"}
    for name, samples in [*pod.items(), *container.items()]:
        for m in samples:
            assert len(m.label_values) == keys[name], name
            assert m.metric_type in (pod_metrics.COUNTER, pod_metrics.GAUGE)
    assert pod["container_cpu_usage_seconds_total"][0].value.value == 3  # whole seconds
    assert list(pod["container_cpu_usage_seconds_total"][0].label_values) == [
        "c1", "app", "busybox", "total"]  # fmt: skip
    assert pod["container_start_time_seconds"][0].value.value == 1_700_000_000
    assert len(pod["container_memory_failures_total"]) == 4
    ulimits = {m.label_values[3]: m.value.value for m in pod["container_ulimits_soft"]}
    assert ulimits == {"max_open_files": 1024, "max_cpu_time": (1 << 64) - 1}
    # no I/O yet: the storage device is reported with zeros
    reads = pod["container_fs_reads_bytes_total"]
    assert [(list(m.label_values)[3], m.value.value) for m in reads] == [("/dev/sda", 0)]
    assert pod["container_network_receive_packets_total"][0].value.value == 3
    assert pod["container_pressure_io_stalled_seconds_total"][0].value.value == 1
    assert pod["container_hugetlb_max_usage_bytes"][0].label_values[3] == "2MB"


def test_io_of_the_cgroup_wins_over_the_zero_device() -> None:
    chosen = pod_metrics.selected(frozenset({"diskIO"}), frozenset())
    device = BlkioDevice(253, 1, {"Read": 4096, "Write": 8192, "Total": 12288}, {"Read": 1})
    values = by_name(pod_metrics.values(chosen, subject(blkio=[device]), pod=False))
    assert [m.value.value for m in values["container_fs_writes_bytes_total"]] == [8192]
    usage = values["container_blkio_device_usage_total"]
    assert [list(m.label_values)[3:] for m in usage] == [
        ["253:1", "253", "1", op] for op in ("Read", "Total", "Write")
    ]


def test_groups_choose_what_is_described() -> None:
    assert enabled_groups([]) == enabled_groups(["all"]) == frozenset(GROUPS)
    chosen = pod_metrics.selected(enabled_groups(["cpu"]), EVERYTHING)
    assert {m.group for m in chosen} == {"", "cpu"}
    assert "container_last_seen" in {m.name for m in chosen}
