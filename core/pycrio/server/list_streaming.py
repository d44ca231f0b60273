"""The server-streaming list calls of cri-api v0.36 (KEP-5825, CRIListStreaming).

StreamPodSandboxes, StreamContainers, StreamContainerStats,
StreamPodSandboxStats, StreamPodSandboxMetrics and StreamImages are the
kubelet's alternative to the List* calls when the result would not fit in one
gRPC message. The generated stubs package (cri_api.v1) predates them, so their
request and response messages are built here at import time from a
FileDescriptorProto in package ``runtime.v1`` that imports the stubs' own
api.proto for the element and filter types; serialization is protobuf's.

Each call has a hook ``cri_stream_<name>`` like every other CRI call. The
default implementation (:class:`ListStreaming`) answers it with the matching
List* hook, so a stream carries exactly what the List call returns, one item
per response (see ``CHUNK_ITEMS``); an empty list streams no response at all.
The handlers are generic handlers for the same service names as the stubs'
ones and are tried after them (gRPC asks each generic handler in turn and the
stubs' handler knows none of these methods). Should a newer stubs package
define a method, its own handler serves it and ours is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from cri_api.v1 import api_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from pycrio.kernel.hookspecs import hookimpl
from pycrio.server.dispatch import _stream, hook_name

if TYPE_CHECKING:
    from pycrio.kernel.context import CallContext
    from pycrio.kernel.kernel import Kernel

PACKAGE = "runtime.v1"
FILE_NAME = "pycrio/runtime/v1/list_streaming.proto"

#: A response carries one item. The KEP's proto declares a singular field
#: (``PodSandbox pod_sandbox = 1``) where implementations use a repeated one
#: with the same number: one item per message is the same bytes under both,
#: whereas several would be merged into one by a singular-field parser.
CHUNK_ITEMS = 1
#: ... and is closed once its items add up to this many bytes.
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class StreamCall:
    """One streaming list call and the List call whose result it streams."""

    service: str  # "RuntimeService" or "ImageService"
    method: str  # e.g. "StreamPodSandboxes"
    filter_type: str | None  # request field 1 ``filter``; None: the request is empty
    field: str  # the response's repeated field 1
    element: str  # its message type, from api.proto
    list_method: str  # e.g. "ListPodSandbox"
    list_field: str  # the field of the List response holding the items

    @property
    def request(self) -> str:
        return f"{self.method}Request"

    @property
    def response(self) -> str:
        return f"{self.method}Response"

    @property
    def hook(self) -> str:
        return hook_name(self.method)

    @property
    def list_hook(self) -> str:
        return hook_name(self.list_method)


# As cri-api v0.36 defines them: ``filter = 1`` in the request, one repeated
# field numbered 1 in the response. StreamPodSandboxMetricsRequest is built
# empty like ListPodSandboxMetricsRequest (protobuf ignores a field it does
# not know, so a caller that sends one is still understood).
CALLS: tuple[StreamCall, ...] = (
    StreamCall(
        "RuntimeService",
        "StreamPodSandboxes",
        "PodSandboxFilter",
        "pod_sandboxes",
        "PodSandbox",
        "ListPodSandbox",
        "items",
    ),
    StreamCall(
        "RuntimeService",
        "StreamContainers",
        "ContainerFilter",
        "containers",
        "Container",
        "ListContainers",
        "containers",
    ),
    StreamCall(
        "RuntimeService",
        "StreamContainerStats",
        "ContainerStatsFilter",
        "stats",
        "ContainerStats",
        "ListContainerStats",
        "stats",
    ),
    StreamCall(
        "RuntimeService",
        "StreamPodSandboxStats",
        "PodSandboxStatsFilter",
        "stats",
        "PodSandboxStats",
        "ListPodSandboxStats",
        "stats",
    ),
    StreamCall(
        "RuntimeService",
        "StreamPodSandboxMetrics",
        None,
        "pod_sandbox_metrics",
        "PodSandboxMetrics",
        "ListPodSandboxMetrics",
        "pod_metrics",
    ),
    StreamCall(
        "ImageService",
        "StreamImages",
        "ImageFilter",
        "images",
        "Image",
        "ListImages",
        "images",
    ),
)
CALLS_BY_METHOD = {c.method: c for c in CALLS}


def _generated(name: str) -> bool:
    return name in api_pb2.DESCRIPTOR.message_types_by_name


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """The messages of :data:`CALLS` the stubs lack, as a .proto file would declare them."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name=FILE_NAME,
        package=PACKAGE,
        syntax="proto3",
        dependency=[api_pb2.DESCRIPTOR.name],
    )
    for call in CALLS:
        if _generated(call.request) or _generated(call.response):
            continue
        request = fdp.message_type.add(name=call.request)
        if call.filter_type is not None:
            request.field.add(
                name="filter",
                number=1,
                label=F.LABEL_OPTIONAL,
                type=F.TYPE_MESSAGE,
                type_name=f".{PACKAGE}.{call.filter_type}",
                json_name="filter",
            )
        response = fdp.message_type.add(name=call.response)
        response.field.add(
            name=call.field,
            number=1,
            label=F.LABEL_REPEATED,
            type=F.TYPE_MESSAGE,
            type_name=f".{PACKAGE}.{call.element}",
            json_name=_camel(call.field),
        )
    return fdp


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(p.capitalize() for p in rest)


def _build() -> dict[str, type]:
    pool = descriptor_pool.Default()
    fdp = file_descriptor_proto()
    if fdp.message_type:
        try:
            pool.FindFileByName(FILE_NAME)
        except KeyError:
            pool.Add(fdp)
    classes: dict[str, type] = {}
    for call in CALLS:
        for name in (call.request, call.response):
            if _generated(name):
                classes[name] = getattr(api_pb2, name)
            else:
                desc = pool.FindMessageTypeByName(f"{PACKAGE}.{name}")
                classes[name] = message_factory.GetMessageClass(desc)
    return classes


#: Message classes by name: StreamPodSandboxesRequest, StreamPodSandboxesResponse, ...
MESSAGES: dict[str, type] = _build()


def request_class(method: str) -> type:
    return MESSAGES[CALLS_BY_METHOD[method].request]


def response_class(method: str) -> type:
    return MESSAGES[CALLS_BY_METHOD[method].response]


def chunks(items: Iterable[Any], max_items: int = CHUNK_ITEMS, max_bytes: int = CHUNK_BYTES):
    """Split ``items`` (messages) into lists of at most ``max_items`` / about ``max_bytes``."""
    batch: list[Any] = []
    size = 0
    for item in items:
        item_size = item.ByteSize()
        if batch and (len(batch) >= max_items or size + item_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


def _list_request(call: StreamCall, request: Any) -> Any:
    list_request = getattr(api_pb2, f"{call.list_method}Request")()
    if call.filter_type is not None and request.HasField("filter"):
        list_request.filter.CopyFrom(request.filter)
    return list_request


class ListStreaming:
    """Default ``cri_stream_*`` implementations: the List* hook's items, in chunks."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    def stream(self, method: str, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        call = CALLS_BY_METHOD[method]
        # The List call runs now, not when the stream is first read, so that its
        # failure is this call's failure for every wrapper of the hook.
        listed = getattr(self.kernel.hook, call.list_hook)(
            request=_list_request(call, request), ctx=ctx
        )
        if listed is None:
            return None  # the List call is unimplemented, and so is this one
        items = list(getattr(listed, call.list_field))
        response_cls = MESSAGES[call.response]

        def responses() -> Iterator[Any]:
            for batch in chunks(items):
                response = response_cls()
                getattr(response, call.field).extend(batch)
                yield response

        return responses()

    @hookimpl
    def cri_stream_pod_sandboxes(self, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        return self.stream("StreamPodSandboxes", request, ctx)

    @hookimpl
    def cri_stream_containers(self, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        return self.stream("StreamContainers", request, ctx)

    @hookimpl
    def cri_stream_container_stats(self, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        return self.stream("StreamContainerStats", request, ctx)

    @hookimpl
    def cri_stream_pod_sandbox_stats(self, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        return self.stream("StreamPodSandboxStats", request, ctx)

    @hookimpl
    def cri_stream_pod_sandbox_metrics(
        self, request: Any, ctx: CallContext
    ) -> Iterator[Any] | None:
        return self.stream("StreamPodSandboxMetrics", request, ctx)

    @hookimpl
    def cri_stream_images(self, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        return self.stream("StreamImages", request, ctx)


def generic_handlers(kernel: Kernel) -> list[grpc.GenericRpcHandler]:
    """Handlers for the streaming list calls the stubs' services lack.

    To be passed to the server after :func:`pycrio.server.dispatch.generic_handlers`.
    """
    result = []
    for service_name in ("RuntimeService", "ImageService"):
        known = {m.name for m in api_pb2.DESCRIPTOR.services_by_name[service_name].methods}
        methods = {}
        for call in CALLS:
            if call.service != service_name or call.method in known:
                continue
            methods[call.method] = grpc.unary_stream_rpc_method_handler(
                _stream(kernel, call.method),
                request_deserializer=MESSAGES[call.request].FromString,
                response_serializer=MESSAGES[call.response].SerializeToString,
            )
        if methods:
            result.append(
                grpc.method_handlers_generic_handler(f"{PACKAGE}.{service_name}", methods)
            )
    return result
