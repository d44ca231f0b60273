"""Metrics end to end: CRI calls over the socket, then a Prometheus scrape."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2

pytestmark = pytest.mark.e2e

NET = "[network]\ndriver = 'testnet'\nhostport_manager = 'none'\n"
NET += "[plugins.testnet]\nips = ['10.89.0.7']\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in the exposition text (labels in any order)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, number = line.rpartition(" ")
        head, _, rest = series.partition("{")
        if head != name:
            continue
        found = dict(p.split("=", 1) for p in rest.rstrip("}").split(",") if p)
        if {k: v.strip('"') for k, v in found.items()} == labels:
            return float(number)
    return None


def host_pod(name: str, tmp: Path) -> api_pb2.PodSandboxConfig:
    opts = api_pb2.NamespaceOption(network=api_pb2.NODE)
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="ns1", uid=f"uid-{name}"),
        hostname=name,
        log_directory=str(tmp / "logs" / name),
        linux=api_pb2.LinuxPodSandboxConfig(
            security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=opts)
        ),
    )


def test_calls_are_counted_and_pods_have_metrics(start_daemon, plugin_site, tmp_path) -> None:
    port = free_port()
    d = start_daemon(
        env={"PYTHONPATH": str(plugin_site)},
        config=NET + f"[metrics]\nenable_metrics = true\nmetrics_port = {port}\n",
    )
    rt, img = d.runtime(), d.images()
    before = scrape(port)  # the harness itself called Version to see the daemon ready
    versions = sample(before, "pycrio_operations_total", code="OK", operation="Version") or 0
    rt.Version(api_pb2.VersionRequest())
    rt.Version(api_pb2.VersionRequest())
    rt.Status(api_pb2.StatusRequest())
    absent = api_pb2.ImageSpec(image="localhost/absent:latest")
    assert not img.ImageStatus(api_pb2.ImageStatusRequest(image=absent)).HasField("image")
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=api_pb2.PodSandboxConfig()))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    text = scrape(port)
    ops = "pycrio_operations_total"
    assert sample(text, ops, code="OK", operation="Version") == versions + 2
    assert sample(text, ops, code="OK", operation="Status") == 1
    assert sample(text, ops, code="OK", operation="ImageStatus") == 1
    assert sample(text, ops, code="INVALID_ARGUMENT", operation="RunPodSandbox") == 1
    errors = "pycrio_operations_errors_total"
    assert sample(text, errors, code="INVALID_ARGUMENT", operation="RunPodSandbox") == 1
    latency = "pycrio_operations_latency_seconds_count"
    assert sample(text, latency, code="OK", operation="Version") == versions + 2
    assert sample(text, latency, code="INVALID_ARGUMENT", operation="RunPodSandbox") == 1
    assert "process_resident_memory_bytes" in text
    assert "process_open_fds" in text

    descriptors = rt.ListMetricDescriptors(api_pb2.ListMetricDescriptorsRequest()).descriptors
    names = {x.name for x in descriptors}
    assert {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"} <= names

    pod_id = rt.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=host_pod("metricpod", tmp_path))
    ).pod_sandbox_id
    response = rt.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest())
    entries = {p.pod_sandbox_id: p for p in response.pod_metrics}
    assert pod_id in entries
    for metric in entries[pod_id].metrics:
        assert metric.name in names
        assert list(metric.label_values)[:2] == [pod_id, "metricpod"]
    assert sample(scrape(port), "pycrio_pods", state="ready") == 1
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def test_disabled_metrics_listen_nowhere(start_daemon, plugin_site) -> None:
    port = free_port()
    d = start_daemon(
        env={"PYTHONPATH": str(plugin_site)},
        config=NET + f"[metrics]\nmetrics_port = {port}\n",
    )
    d.runtime().Version(api_pb2.VersionRequest())
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
    # The CRI calls are answered whether or not Prometheus metrics are on.
    rt = d.runtime()
    assert rt.ListMetricDescriptors(api_pb2.ListMetricDescriptorsRequest()).descriptors
