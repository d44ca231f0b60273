"""Pod and container stats and metrics through the socket, read the way the kubelet reads them.

The kubelet's summary API (/stats/summary, and from it metrics-server and
``kubectl top``) is built from ListPodSandboxStats: each pod with its
containers' stats in ``linux.containers`` and CPU rates in
``usage_nano_cores``. /metrics/cadvisor is built from ListMetricDescriptors
and ListPodSandboxMetrics. Real runc containers, real cgroups.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from container_e2e import Pod, module_daemon, pod_config, rpc_error
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from kubelet_metrics import KUBELET_METRICS

pytestmark = pytest.mark.e2e

MiB = 1 << 20
BUSY = ["sh", "-c", "while :; do :; done"]


def host_can(what: str) -> bool:
    """Whether this node can measure a host-dependent metric family (what the daemon checks)."""
    cgroups = Path("/sys/fs/cgroup")
    if what == "pressure":
        try:
            return Path("/proc/pressure/cpu").read_text() != "" and (
                (cgroups / "unified").is_dir() or (cgroups / "cgroup.controllers").exists()
            )
        except OSError:
            return False
    if what == "hugetlb":
        return (cgroups / "hugetlb").is_dir()
    return True


@pytest.fixture(scope="module")
def crio(
    tmp_path_factory: pytest.TempPathFactory, registry: Any, images: Any
) -> Iterator[DaemonProcess]:
    with module_daemon(tmp_path_factory.mktemp("stats"), registry.host, [images.busybox.name]) as d:
        yield d


@pytest.fixture
def pod(crio: DaemonProcess, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pod]:
    name = request.node.name.split("[")[0].replace("_", "-")[:40].strip("-")
    p = Pod(crio, pod_config(name, tmp_path / "logs"))
    yield p
    p.remove()


def limited(mib: int) -> api_pb2.LinuxContainerConfig:
    return api_pb2.LinuxContainerConfig(
        resources=api_pb2.LinuxContainerResources(memory_limit_in_bytes=mib * MiB)
    )


def rate(earlier: api_pb2.CpuUsage, later: api_pb2.CpuUsage) -> int:
    """Nano cores between two readings, as the runtime computes usage_nano_cores."""
    used = later.usage_core_nano_seconds.value - earlier.usage_core_nano_seconds.value
    return used * 1_000_000_000 // (later.timestamp - earlier.timestamp)


def pod_stats(pod: Pod) -> api_pb2.PodSandboxStats:
    listed = pod.rt.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest()).stats
    mine = [s for s in listed if s.attributes.id == pod.id]
    assert len(mine) == 1, [s.attributes.id for s in listed]
    return mine[0]


def test_summary_stats_carry_containers_and_cpu_rates(pod: Pod, images: Any) -> None:
    busy = pod.run("busy", images.busybox.name, command=BUSY, linux=limited(64))
    idle = pod.run("idle", images.busybox.name, command=["sleep", "300"])

    first = pod_stats(pod)
    before = {c.attributes.id: c for c in first.linux.containers}
    assert not before[busy].cpu.HasField("usage_nano_cores")  # nothing to compare with yet
    time.sleep(1.0)
    second = pod_stats(pod)
    containers = {c.attributes.id: c for c in second.linux.containers}
    assert set(containers) == {busy, idle}
    assert containers[busy].attributes.metadata.name == "busy"

    b = containers[busy]
    # the rate is the CPU used between the two readings over the time between them
    assert b.cpu.HasField("usage_nano_cores")
    assert b.cpu.usage_nano_cores.value == rate(before[busy].cpu, b.cpu)
    assert b.cpu.usage_nano_cores.value > 20_000_000  # a spinning shell, on a loaded machine
    assert b.memory.working_set_bytes.value > 0
    assert b.memory.HasField("available_bytes")
    assert 0 < b.memory.available_bytes.value <= 64 * MiB
    assert b.writable_layer.fs_id.mountpoint

    i = containers[idle]
    assert i.cpu.usage_nano_cores.value == rate(before[idle].cpu, i.cpu)
    assert i.cpu.usage_nano_cores.value < b.cpu.usage_nano_cores.value
    assert not i.memory.HasField("available_bytes")  # no limit: unset, not 0

    # the pod keeps its own cgroup counters, with a rate of its own
    linux = second.linux
    assert linux.cpu.usage_core_nano_seconds.value > first.linux.cpu.usage_core_nano_seconds.value
    assert linux.cpu.usage_nano_cores.value == rate(first.linux.cpu, linux.cpu)
    assert linux.cpu.usage_nano_cores.value >= b.cpu.usage_nano_cores.value * 9 // 10
    assert linux.memory.working_set_bytes.value > 0
    assert not linux.memory.HasField("available_bytes")
    assert linux.process.process_count.value >= 2

    # PodSandboxStats answers the same shape; ContainerStats has a rate too, measured
    # from the same first reading: the later ones were less than a second apart
    single = pod.rt.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod.id)).stats
    assert {c.attributes.id for c in single.linux.containers} == {busy, idle}
    time.sleep(0.5)
    one = pod.rt.ContainerStats(api_pb2.ContainerStatsRequest(container_id=busy)).stats
    assert one.cpu.usage_nano_cores.value == rate(before[busy].cpu, one.cpu) > 20_000_000

    # a stopped container is no longer listed under its pod
    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=busy, timeout=0))
    assert [c.attributes.id for c in pod_stats(pod).linux.containers] == [idle]


def metrics_by_name(metrics: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for m in metrics:
        out.setdefault(m.name, []).append(m)
    return out


def test_every_described_metric_has_values_for_pods_and_containers(pod: Pod, images: Any) -> None:
    rt = pod.rt
    descriptors = {
        d.name: d
        for d in rt.ListMetricDescriptors(api_pb2.ListMetricDescriptorsRequest()).descriptors
    }
    assert KUBELET_METRICS <= set(descriptors), KUBELET_METRICS - set(descriptors)
    for name, d in descriptors.items():
        assert d.help, name
        assert list(d.label_keys)[:3] == ["id", "name", "image"], name
    expected = {"container_spec_cpu_quota", "container_spec_memory_reservation_limit_bytes",
                "container_ulimits_soft"}  # fmt: skip
    if host_can("pressure"):
        expected.add("container_pressure_cpu_waiting_seconds_total")
    if host_can("hugetlb"):
        expected.add("container_hugetlb_usage_bytes")
    assert expected <= set(descriptors), expected - set(descriptors)

    writer = pod.run(
        "writer", images.busybox.name,
        command=["sh", "-c", "head -c 2000000 /dev/zero > /big; sleep 300"], linux=limited(32),
    )  # fmt: skip
    sleeper = pod.run("sleeper", images.busybox.name, command=["sleep", "300"])
    time.sleep(0.3)
    response = rt.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest())
    (entry,) = [p for p in response.pod_metrics if p.pod_sandbox_id == pod.id]

    pod_values = metrics_by_name(entry.metrics)
    assert set(pod_values) == set(descriptors), set(descriptors) ^ set(pod_values)
    network = {n for n in descriptors if n.startswith("container_network_")}
    containers = {c.container_id: metrics_by_name(c.metrics) for c in entry.container_metrics}
    assert set(containers) == {writer, sleeper}
    for values in containers.values():
        # network counters belong to the pod's namespace, reported once, as cadvisor does
        assert set(values) == set(descriptors) - network, set(descriptors) - network ^ set(values)
    for values, labels in [
        (pod_values, [pod.id, pod.config.metadata.name, ""]),
        *[(containers[c], [c]) for c in containers],
    ]:
        for name, samples in values.items():
            for m in samples:
                assert len(m.label_values) == len(descriptors[name].label_keys), (name, m)
                assert list(m.label_values)[: len(labels)] == labels
                assert m.timestamp > 0

    w = containers[writer]

    def value(name: str, **labels: str) -> int:
        keys = list(descriptors[name].label_keys)
        for m in w[name]:
            found = dict(zip(keys, m.label_values, strict=True))
            if all(found[k] == v for k, v in labels.items()):
                return m.value.value
        raise AssertionError(f"no {name} with {labels}: {w[name]}")

    assert value("container_spec_memory_limit_bytes") == 32 * MiB
    assert value("container_spec_memory_limit_bytes") >= value("container_memory_usage_bytes")
    assert value("container_fs_usage_bytes") >= 2_000_000
    assert value("container_processes") == 1
    assert value("container_threads") >= 1
    assert value("container_file_descriptors") >= 3  # stdio
    assert value("container_ulimits_soft", ulimit="max_open_files") > 0
    assert value("container_start_time_seconds") <= time.time()
    assert abs(value("container_last_seen") - time.time()) < 60
    assert value("container_cpu_usage_seconds_total", cpu="total") >= 0
    assert len(w["container_memory_failures_total"]) == 4
    assert pod_values["container_network_receive_bytes_total"]  # the node's, host network


@pytest.fixture(scope="module")
def cached(
    tmp_path_factory: pytest.TempPathFactory, registry: Any, images: Any
) -> Iterator[DaemonProcess]:
    extra = "[stats]\ncollection_period = 2\nincluded_pod_metrics = ['cpu', 'memory']\n"
    with module_daemon(
        tmp_path_factory.mktemp("stats-cached"), registry.host, [images.busybox.name], extra
    ) as d:
        yield d


def test_included_metrics_and_collection_period(
    cached: DaemonProcess, images: Any, tmp_path: Path
) -> None:
    rt = cached.runtime()
    names = {
        d.name for d in rt.ListMetricDescriptors(api_pb2.ListMetricDescriptorsRequest()).descriptors
    }
    assert "container_cpu_usage_seconds_total" in names
    assert "container_memory_working_set_bytes" in names
    assert "container_last_seen" in names  # always
    assert not any(n.startswith(("container_network_", "container_fs_")) for n in names)
    assert "container_processes" not in names

    pod = Pod(cached, pod_config("cached", tmp_path / "logs"))
    try:
        busy = pod.run("busy", images.busybox.name, command=BUSY)
        # Until the collector has seen the pod, a call reads it on the spot; then the
        # calls answer from the collection, the same reading until the next period.
        deadline = time.monotonic() + 10
        while True:
            a = pod_stats(pod)
            b = pod_stats(pod)
            if [c.attributes.id for c in a.linux.containers] == [busy] and a == b:
                break
            assert time.monotonic() < deadline, "the collection never caught up"
            time.sleep(0.2)
        time.sleep(2.5)
        later = pod_stats(pod)
        assert later.linux.cpu.timestamp > a.linux.cpu.timestamp
        (c,) = later.linux.containers
        assert c.cpu.usage_nano_cores.value > 20_000_000  # the rate spans one period
        metrics = rt.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest()).pod_metrics
        (entry,) = [p for p in metrics if p.pod_sandbox_id == pod.id]
        assert {m.name for m in entry.metrics} == names
    finally:
        pod.remove()


def test_bad_stats_configuration_is_refused(start_daemon: Any) -> None:
    d = start_daemon(config="[stats]\nincluded_pod_metrics = ['cpu', 'gpu']\n", wait=False)
    assert d.wait(timeout=30) == 2
    err = d.stderr()
    assert "stats.included_pod_metrics" in err and "'gpu'" in err, err


def test_stats_of_unknown_pod_is_not_found(crio: DaemonProcess) -> None:
    err = rpc_error(
        lambda: crio.runtime().PodSandboxStats(
            api_pb2.PodSandboxStatsRequest(pod_sandbox_id="f" * 64)
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
