"""Tracing: a span per CRI call, its parent from the caller's traceparent, child spans."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from cri_api.v1 import api_pb2

from pycrio.config.load import defaults
from pycrio.errors import NotFound
from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import CRI_HOOKS, hookimpl
from pycrio.kernel.kernel import Kernel, new_plugin_manager
from pycrio.tracing import Tracing, span
from pycrio.tracing.provider import sampler_ratio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


class Fake:
    """Core-like implementations: answers with ids, a CRI error, a runtime call."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    @hookimpl
    def cri_version(self, request, ctx):
        return api_pb2.VersionResponse(version="0.1.0")

    @hookimpl
    def cri_run_pod_sandbox(self, request, ctx):
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id="pod1")

    @hookimpl
    def cri_create_container(self, request, ctx):
        return api_pb2.CreateContainerResponse(container_id="ctr1")

    @hookimpl
    def cri_start_container(self, request, ctx):
        self.kernel.runtime_driver("runc").start(request.container_id)
        return api_pb2.StartContainerResponse()

    @hookimpl
    def cri_container_status(self, request, ctx):
        raise NotFound(f"container {request.container_id} not found")

    @hookimpl
    def cri_pull_image(self, request, ctx):
        images = self.kernel.pm.get_plugin("pycrio.core:ImageService")
        ref = images.puller.pull(request.image.image, None)
        return api_pb2.PullImageResponse(image_ref=ref)


class FakeDriver:
    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, container_id: str) -> None:
        self.started.append(container_id)


class FakePuller:
    def pull(self, name, credentials, namespace=""):
        return "sha256:" + "a" * 64


class FakeImages:
    def __init__(self) -> None:
        self.puller = FakePuller()


def make_kernel(enabled: bool, exporter=None) -> tuple[Kernel, Tracing]:
    config = defaults()
    config.data["tracing"]["enable_tracing"] = enabled
    kernel = Kernel(config=config, pm=new_plugin_manager(), found=[])
    kernel.runtimes["runc"] = SimpleNamespace(driver=FakeDriver())
    tracing = Tracing(kernel, exporter=exporter)
    for plugin in (tracing, *tracing.plugins(), Fake(kernel), FakeImages()):
        name = {"FakeImages": "ImageService"}.get(type(plugin).__name__, type(plugin).__name__)
        kernel.pm.register(plugin, name=f"pycrio.core:{name}")
    return kernel, tracing


@pytest.fixture
def traced():
    pytest.importorskip("opentelemetry.sdk", reason="the tracing extra (opentelemetry-sdk)")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    kernel, tracing = make_kernel(enabled=True, exporter=exporter)
    # Not the daemon's pycrio_startup of every core plugin: only ours.
    tracing.pycrio_startup(kernel=kernel)
    yield kernel, exporter
    tracing.pycrio_shutdown(kernel=kernel)


def ctx(method: str, traceparent: str = TRACEPARENT) -> CallContext:
    return CallContext(method=method, metadata={"traceparent": traceparent, "tracestate": "k=v"})


def test_disabled_registers_no_wrappers_and_imports_no_sdk() -> None:
    sdk_loaded = "opentelemetry.sdk" in sys.modules
    kernel, tracing = make_kernel(enabled=False)
    assert tracing.plugins() == []
    for hook in CRI_HOOKS:
        impls = getattr(kernel.hook, hook).get_hookimpls()
        assert not any(i.wrapper or i.hookwrapper for i in impls), hook
    if not sdk_loaded:
        assert "opentelemetry.sdk" not in sys.modules
    with span("anything") as s:  # the helper is a no-op
        assert s is None


def test_every_cri_hook_is_wrapped_when_enabled(traced) -> None:
    kernel, _ = traced
    for hook in CRI_HOOKS:
        impls = getattr(kernel.hook, hook).get_hookimpls()
        assert any(i.wrapper and i.plugin_name.endswith("CallTracing") for i in impls), hook


def test_span_named_after_the_method_with_the_callers_parent(traced) -> None:
    kernel, exporter = traced
    kernel.hook.cri_version(request=api_pb2.VersionRequest(), ctx=ctx("Version"))
    (s,) = exporter.get_finished_spans()
    assert s.name == "runtime.v1.RuntimeService/Version"
    assert format(s.context.trace_id, "032x") == TRACE_ID
    assert format(s.parent.span_id, "016x") == PARENT_ID
    assert s.parent.is_remote
    assert str(s.context.trace_state) == "k=v" or s.context.trace_state.get("k") == "v"
    assert s.attributes["rpc.grpc.status_code"] == 0
    assert s.attributes["rpc.method"] == "Version"
    assert s.status.is_ok


def test_ids_from_request_and_response(traced) -> None:
    kernel, exporter = traced
    kernel.hook.cri_run_pod_sandbox(request=api_pb2.RunPodSandboxRequest(), ctx=ctx("x"))
    kernel.hook.cri_create_container(
        request=api_pb2.CreateContainerRequest(pod_sandbox_id="pod1"), ctx=ctx("x")
    )
    run, create = exporter.get_finished_spans()
    assert run.name == "runtime.v1.RuntimeService/RunPodSandbox"
    assert run.attributes["cri.pod_sandbox_id"] == "pod1"
    assert create.attributes["cri.pod_sandbox_id"] == "pod1"
    assert create.attributes["cri.container_id"] == "ctr1"


def test_errors_are_recorded_with_their_status(traced) -> None:
    from opentelemetry.trace import StatusCode

    kernel, exporter = traced
    with pytest.raises(NotFound):
        kernel.hook.cri_container_status(
            request=api_pb2.ContainerStatusRequest(container_id="gone"), ctx=ctx("x")
        )
    (s,) = exporter.get_finished_spans()
    assert s.attributes["cri.container_id"] == "gone"
    assert s.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND
    assert s.status.status_code is StatusCode.ERROR
    assert "NOT_FOUND" in s.status.description
    assert [e.name for e in s.events] == ["exception"]


def test_unanswered_call_is_unimplemented(traced) -> None:
    kernel, exporter = traced
    kernel.hook.cri_list_images(request=api_pb2.ListImagesRequest(), ctx=ctx("x"))
    (s,) = exporter.get_finished_spans()
    assert s.attributes["rpc.grpc.status_code"] == 12


def test_driver_and_pull_child_spans(traced) -> None:
    kernel, exporter = traced
    kernel.hook.cri_start_container(
        request=api_pb2.StartContainerRequest(container_id="ctr1"), ctx=ctx("x")
    )
    kernel.hook.cri_pull_image(
        request=api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image="busybox")), ctx=ctx("x")
    )
    with span("custom", step=1):
        pass  # outside a call: no span
    start_child, start, pull_child, pull = exporter.get_finished_spans()
    assert start_child.name == "runtime.start"
    assert start_child.parent.span_id == start.context.span_id
    assert start_child.attributes["cri.container_id"] == "ctr1"
    assert start_child.attributes["pycrio.runtime_handler"] == "runc"
    assert kernel.runtimes["runc"].driver._driver.started == ["ctr1"]
    assert pull_child.name == "image.pull"
    assert pull_child.parent.span_id == pull.context.span_id
    assert pull_child.attributes["cri.image"] == "busybox"
    assert pull.attributes["cri.image_ref"].startswith("sha256:")


def test_root_calls_follow_the_sampling_rate(traced) -> None:
    kernel, exporter = traced  # the default rate is 0 per million
    kernel.hook.cri_version(request=api_pb2.VersionRequest(), ctx=CallContext(method="x"))
    kernel.hook.cri_version(request=api_pb2.VersionRequest(), ctx=None)
    unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00"
    kernel.hook.cri_version(request=api_pb2.VersionRequest(), ctx=ctx("x", unsampled))
    assert exporter.get_finished_spans() == ()
    assert sampler_ratio(1_000_000) == 1.0
    assert sampler_ratio(500) == 0.0005
    assert sampler_ratio(-3) == 0.0


def test_rate_per_million_samples_root_calls() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the tracing extra (opentelemetry-sdk)")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    config = defaults()
    config.data["tracing"].update(enable_tracing=True, tracing_sampling_rate_per_million=1_000_000)
    kernel = Kernel(config=config, pm=new_plugin_manager(), found=[])
    tracing = Tracing(kernel, exporter=exporter)
    for plugin in (tracing, *tracing.plugins(), Fake(kernel)):
        kernel.pm.register(plugin, name=f"pycrio.core:{type(plugin).__name__}")
    kernel.hook.cri_version(request=api_pb2.VersionRequest(), ctx=None)
    (s,) = exporter.get_finished_spans()
    assert s.parent is None
