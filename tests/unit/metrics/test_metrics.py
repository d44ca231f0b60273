"""The metrics plugin counted against hooks called directly, with no daemon."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from cri_api.v1 import api_pb2
from prometheus_client import generate_latest

from pycrio.config.load import defaults
from pycrio.errors import NotFound
from pycrio.kernel.hookspecs import CRI_HOOKS, hookimpl
from pycrio.kernel.kernel import Kernel, new_plugin_manager
from pycrio.metrics import Metrics


class Fake:
    """Core-like implementations: one that answers, one CRI error, one crash."""

    @hookimpl
    def cri_version(self, request, ctx):
        return api_pb2.VersionResponse(version="0.1.0")

    @hookimpl
    def cri_status(self, request, ctx):
        raise NotFound("gone")

    @hookimpl
    def cri_image_status(self, request, ctx):
        raise ValueError("a bug")

    @hookimpl
    def cri_pull_image(self, request, ctx):
        raise NotFound("no such image")


def make_kernel(enabled: bool) -> tuple[Kernel, Metrics]:
    config = defaults()
    config.data["metrics"]["enable_metrics"] = enabled
    kernel = Kernel(config=config, pm=new_plugin_manager(), found=[])
    metrics = Metrics(kernel)
    for plugin in (metrics, *metrics.plugins(), Fake()):
        kernel.pm.register(plugin, name=f"pycrio.core:{type(plugin).__name__}")
    return kernel, metrics


def value(metrics: Metrics, sample: str, /, **labels: str) -> float | None:
    assert metrics.set is not None
    return metrics.set.registry.get_sample_value(sample, labels)


def test_success_and_failures_are_counted_with_their_codes() -> None:
    kernel, metrics = make_kernel(enabled=True)
    kernel.hook.cri_version(request=api_pb2.VersionRequest(), ctx=None)
    with pytest.raises(NotFound):
        kernel.hook.cri_status(request=api_pb2.StatusRequest(), ctx=None)
    with pytest.raises(ValueError):
        kernel.hook.cri_image_status(request=api_pb2.ImageStatusRequest(), ctx=None)
    assert kernel.hook.cri_list_images(request=api_pb2.ListImagesRequest(), ctx=None) is None

    ops = "pycrio_operations_total"
    assert value(metrics, ops, operation="Version", code="OK") == 1
    assert value(metrics, ops, operation="Status", code="NOT_FOUND") == 1
    assert value(metrics, ops, operation="ImageStatus", code="INTERNAL") == 1
    assert value(metrics, ops, operation="ListImages", code="UNIMPLEMENTED") == 1
    errors = "pycrio_operations_errors_total"
    assert value(metrics, errors, operation="Version", code="OK") is None
    assert value(metrics, errors, operation="Status", code="NOT_FOUND") == 1
    latency = "pycrio_operations_latency_seconds_count"
    assert value(metrics, latency, operation="Version", code="OK") == 1
    assert value(metrics, latency, operation="Status", code="NOT_FOUND") == 1


def test_every_cri_hook_is_wrapped() -> None:
    kernel, _ = make_kernel(enabled=True)
    for hook in CRI_HOOKS:
        impls = getattr(kernel.hook, hook).get_hookimpls()
        assert any(i.wrapper and i.plugin_name.endswith("OperationMetrics") for i in impls), hook


def test_pull_failures_bytes_reuse_and_oom() -> None:
    kernel, metrics = make_kernel(enabled=True)
    with pytest.raises(NotFound):
        kernel.hook.cri_pull_image(request=api_pb2.PullImageRequest(), ctx=None)
    kernel.hook.pycrio_image_pulled(
        image_id="sha256:x", size=10, fetched_layer_sizes=[1000, 3000], reused_layers=2
    )
    container = SimpleNamespace(name="app", reason="OOMKilled")
    kernel.hook.pycrio_container_event(event="stopped", container=container, sandbox=None)
    other = SimpleNamespace(name="app", reason="Completed")
    kernel.hook.pycrio_container_event(event="stopped", container=other, sandbox=None)

    assert value(metrics, "pycrio_image_pulls_failure_total", reason="NOT_FOUND") == 1
    assert value(metrics, "pycrio_image_pulls_bytes_total") == 4000
    assert value(metrics, "pycrio_image_layer_reuse_total") == 2
    assert value(metrics, "pycrio_image_pulls_layer_size_count") == 2
    assert value(metrics, "pycrio_containers_oom_total") == 1
    assert value(metrics, "pycrio_containers_oom_count_total", name="app") == 1


def test_exposition_has_state_gauges_and_process_metrics() -> None:
    _, metrics = make_kernel(enabled=True)
    assert metrics.set is not None
    text = generate_latest(metrics.set.registry).decode()
    assert 'pycrio_pods{state="ready"} 0.0' in text
    assert 'pycrio_containers{state="running"} 0.0' in text
    assert "process_resident_memory_bytes" in text


def test_disabled_registers_no_wrapper_and_no_metric_set() -> None:
    kernel, metrics = make_kernel(enabled=False)
    assert metrics.set is None
    assert metrics.plugins() == []
    assert not any(i.wrapper for i in kernel.hook.cri_version.get_hookimpls())
    kernel.hook.pycrio_startup(kernel=kernel)  # starts no server
    assert metrics.server is None
