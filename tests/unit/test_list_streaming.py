"""The streaming list calls' messages, default implementation and handlers."""

from __future__ import annotations

import collections
from types import SimpleNamespace

import grpc
import pytest
from cri_api.v1 import api_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from pycrio.errors import NotFound
from pycrio.server import dispatch, list_streaming
from pycrio.server.list_streaming import CALLS, MESSAGES, ListStreaming, chunks

# The messages as cri-api v0.36's api.proto declares them, written out here
# independently of list_streaming's table.
PROTO_FACTS = """
name: "independent/stream.proto" package: "runtime.v1" syntax: "proto3"
dependency: "%(api)s"
message_type { name: "StreamPodSandboxesRequest"
  field { name: "filter" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".runtime.v1.PodSandboxFilter" } }
message_type { name: "StreamPodSandboxesResponse"
  field { name: "pod_sandboxes" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".runtime.v1.PodSandbox" } }
message_type { name: "StreamContainersRequest"
  field { name: "filter" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".runtime.v1.ContainerFilter" } }
message_type { name: "StreamContainersResponse"
  field { name: "containers" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".runtime.v1.Container" } }
message_type { name: "StreamContainerStatsRequest"
  field { name: "filter" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".runtime.v1.ContainerStatsFilter" } }
message_type { name: "StreamContainerStatsResponse"
  field { name: "stats" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".runtime.v1.ContainerStats" } }
message_type { name: "StreamPodSandboxStatsRequest"
  field { name: "filter" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".runtime.v1.PodSandboxStatsFilter" } }
message_type { name: "StreamPodSandboxStatsResponse"
  field { name: "stats" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".runtime.v1.PodSandboxStats" } }
message_type { name: "StreamPodSandboxMetricsRequest" }
message_type { name: "StreamPodSandboxMetricsResponse"
  field { name: "pod_sandbox_metrics" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".runtime.v1.PodSandboxMetrics" } }
message_type { name: "StreamImagesRequest"
  field { name: "filter" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".runtime.v1.ImageFilter" } }
message_type { name: "StreamImagesResponse"
  field { name: "images" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".runtime.v1.Image" } }
"""


@pytest.fixture(scope="module")
def independent() -> dict[str, type]:
    """The same messages in a pool of their own, from PROTO_FACTS."""
    pool = descriptor_pool.DescriptorPool()
    api = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(api)
    pool.Add(api)
    facts = text_format.Parse(
        PROTO_FACTS % {"api": api_pb2.DESCRIPTOR.name}, descriptor_pb2.FileDescriptorProto()
    )
    pool.Add(facts)
    return {
        m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"runtime.v1.{m.name}"))
        for m in facts.message_type
    }


def test_every_message_has_the_published_fields(independent: dict[str, type]) -> None:
    assert set(MESSAGES) == set(independent)
    for name, cls in MESSAGES.items():
        ours, theirs = cls.DESCRIPTOR, independent[name].DESCRIPTOR
        assert ours.full_name == theirs.full_name == f"runtime.v1.{name}"
        assert [
            (f.name, f.number, f.is_repeated, f.type, f.message_type.full_name) for f in ours.fields
        ] == [
            (f.name, f.number, f.is_repeated, f.type, f.message_type.full_name)
            for f in theirs.fields
        ], name


def test_element_and_filter_types_are_the_stubs_own() -> None:
    response = list_streaming.response_class("StreamPodSandboxes")()
    response.pod_sandboxes.append(api_pb2.PodSandbox(id="p1"))  # no copy, no conversion
    request = list_streaming.request_class("StreamImages")(
        filter=api_pb2.ImageFilter(image=api_pb2.ImageSpec(image="busybox"))
    )
    assert request.filter.image.image == "busybox"
    for call in CALLS:
        field = MESSAGES[call.response].DESCRIPTOR.fields_by_name[call.field]
        assert field.message_type is api_pb2.DESCRIPTOR.message_types_by_name[call.element]


def test_round_trip_through_the_independent_descriptor(independent: dict[str, type]) -> None:
    pods = [
        api_pb2.PodSandbox(
            id=f"id{i}",
            metadata=api_pb2.PodSandboxMetadata(name=f"p{i}", namespace="ns", uid=f"u{i}"),
            state=api_pb2.SANDBOX_READY,
            created_at=1000 + i,
            labels={"app": "x"},
        )
        for i in range(3)
    ]
    ours = MESSAGES["StreamPodSandboxesResponse"](pod_sandboxes=pods)
    theirs = independent["StreamPodSandboxesResponse"].FromString(ours.SerializeToString())
    assert [p.SerializeToString() for p in theirs.pod_sandboxes] == [
        p.SerializeToString() for p in pods
    ]
    back = MESSAGES["StreamPodSandboxesResponse"].FromString(theirs.SerializeToString())
    assert back == ours

    flt = api_pb2.ContainerFilter(pod_sandbox_id="abc", label_selector={"a": "b"})
    request_cls = independent["StreamContainersRequest"]
    filter_cls = message_factory.GetMessageClass(
        request_cls.DESCRIPTOR.fields_by_name["filter"].message_type
    )
    wire = request_cls(filter=filter_cls.FromString(flt.SerializeToString())).SerializeToString()
    assert MESSAGES["StreamContainersRequest"].FromString(wire).filter == flt
    # A List response and a stream response of the same items are the same bytes.
    listed = api_pb2.ListPodSandboxResponse(items=pods).SerializeToString()
    assert listed == ours.SerializeToString()


def test_metrics_request_ignores_a_filter_it_does_not_know() -> None:
    cls = list_streaming.request_class("StreamPodSandboxMetrics")
    assert cls.FromString(b"\x0a\x02\x0a\x00") is not None


def test_chunks_by_count_and_size() -> None:
    items = [api_pb2.PodSandbox(id=str(i)) for i in range(7)]
    assert [len(b) for b in chunks(items, max_items=3)] == [3, 3, 1]
    assert list(chunks([], max_items=3)) == []
    big = [api_pb2.PodSandbox(id="x" * 100) for _ in range(4)]
    assert [len(b) for b in chunks(big, max_items=10, max_bytes=250)] == [2, 2]
    # One item larger than the limit still goes, alone.
    assert [len(b) for b in chunks(big[:2], max_items=10, max_bytes=10)] == [1, 1]


class FakeHook:
    def __init__(self, pods: list[api_pb2.PodSandbox]) -> None:
        self.pods = pods
        self.requests: list[object] = []

    def cri_list_pod_sandbox(self, request, ctx):
        self.requests.append(request)
        return api_pb2.ListPodSandboxResponse(
            items=[p for p in self.pods if not request.filter.id or p.id == request.filter.id]
        )

    def cri_list_images(self, request, ctx):
        raise NotFound("no store")

    def cri_list_pod_sandbox_metrics(self, request, ctx):
        return None


def test_default_implementation_streams_the_list_result(monkeypatch) -> None:
    pods = [api_pb2.PodSandbox(id=f"pod{i}") for i in range(250)]
    hook = FakeHook(pods)
    impl = ListStreaming(SimpleNamespace(hook=hook))
    request = MESSAGES["StreamPodSandboxesRequest"]()
    responses = list(impl.cri_stream_pod_sandboxes(request=request, ctx=None))
    assert [len(r.pod_sandboxes) for r in responses] == [1] * 250  # one item per message
    assert [p.id for r in responses for p in r.pod_sandboxes] == [p.id for p in pods]

    request.filter.id = "pod7"
    responses = list(impl.cri_stream_pod_sandboxes(request=request, ctx=None))
    assert [p.id for r in responses for p in r.pod_sandboxes] == ["pod7"]
    assert hook.requests[-1].filter.id == "pod7"

    request.filter.id = "none"
    assert list(impl.cri_stream_pod_sandboxes(request=request, ctx=None)) == []

    # The List call's failure is raised by the hook itself, not on first read.
    with pytest.raises(NotFound):
        impl.cri_stream_images(request=MESSAGES["StreamImagesRequest"](), ctx=None)
    # An unimplemented List call leaves the stream unimplemented too.
    metrics_request = MESSAGES["StreamPodSandboxMetricsRequest"]()
    assert impl.cri_stream_pod_sandbox_metrics(request=metrics_request, ctx=None) is None


Details = collections.namedtuple("Details", "method invocation_metadata")


def test_generic_handlers_serve_only_the_missing_methods() -> None:
    kernel = SimpleNamespace(hook=SimpleNamespace())
    for call in CALLS:
        setattr(kernel.hook, call.hook, lambda request, ctx: iter(()))
    ours = list_streaming.generic_handlers(kernel)
    assert len(ours) == 2
    stubs = [
        grpc.method_handlers_generic_handler(
            f"runtime.v1.{s}",
            {
                m.name: grpc.unary_unary_rpc_method_handler(lambda r, c: None)
                for m in api_pb2.DESCRIPTOR.services_by_name[s].methods
            },
        )
        for s in dispatch.SERVICES
    ]
    # gRPC asks each generic handler in turn; the stubs' ones know none of these.
    for call in CALLS:
        details = Details(f"/runtime.v1.{call.service}/{call.method}", ())
        assert all(h.service(details) is None for h in stubs), call.method
        found = [h.service(details) for h in ours]
        handler = next(h for h in found if h is not None)
        assert handler.response_streaming and not handler.request_streaming
        assert handler.request_deserializer == MESSAGES[call.request].FromString
    assert ours[0].service(Details("/runtime.v1.RuntimeService/Version", ())) is None
