"""Tracing end to end: a CRI call with a traceparent reaches an OTLP/gRPC receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from cri_api.v1 import api_pb2

pytestmark = pytest.mark.e2e

pytest.importorskip("opentelemetry.sdk", reason="the tracing extra (opentelemetry-sdk)")
pytest.importorskip(
    "opentelemetry.exporter.otlp.proto.grpc", reason="opentelemetry-exporter-otlp-proto-grpc"
)
from opentelemetry.proto.collector.trace.v1 import (  # noqa: E402
    trace_service_pb2,
    trace_service_pb2_grpc,
)

NET = "[network]\ndriver = 'testnet'\nhostport_manager = 'none'\n"
NET += "[plugins.testnet]\nips = ['10.89.0.7']\n"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """A tiny OTLP/gRPC collector that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list = []
        self.changed = threading.Condition()

    def Export(self, request, context):  # noqa: N802 - the gRPC method name
        with self.changed:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend(scope.spans)
            self.changed.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, name: str, timeout: float = 20) -> list:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [s for s in self.spans if s.name == name]
                if found or time.monotonic() > deadline:
                    return found
                self.changed.wait(0.2)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    r = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(r, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield r, port
    server.stop(0)


def test_version_with_traceparent_is_exported(start_daemon, plugin_site, receiver) -> None:
    r, port = receiver
    d = start_daemon(
        # Export within 100 ms rather than the SDK's default 5 s batch delay.
        env={"PYTHONPATH": str(plugin_site), "OTEL_BSP_SCHEDULE_DELAY": "100"},
        config=NET + f"[tracing]\nenable_tracing = true\ntracing_endpoint = '127.0.0.1:{port}'\n",
    )
    rt = d.runtime()
    rt.Version(api_pb2.VersionRequest(), metadata=(("traceparent", TRACEPARENT),))
    with pytest.raises(grpc.RpcError):
        rt.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id="nosuch"),
            metadata=(("traceparent", TRACEPARENT),),
        )

    (version,) = r.wait_for("runtime.v1.RuntimeService/Version")
    assert version.trace_id.hex() == TRACE_ID
    (status,) = r.wait_for("runtime.v1.RuntimeService/ContainerStatus")
    assert status.trace_id.hex() == TRACE_ID
    attributes = {a.key: a.value for a in status.attributes}
    assert attributes["cri.container_id"].string_value == "nosuch"
    assert attributes["rpc.grpc.status_code"].int_value == grpc.StatusCode.NOT_FOUND.value[0]
    # The harness's own readiness Version carried no traceparent: rate 0 drops it.
    assert all(s.trace_id.hex() == TRACE_ID for s in r.spans)
