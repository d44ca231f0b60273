"""One span per CRI call: a ``wrapper=True`` implementation of every CRI hook.

The span is named after the gRPC method (``runtime.v1.RuntimeService/RunPodSandbox``),
its parent is the caller's W3C trace context from the gRPC metadata
(``traceparent``, ``tracestate``), and it carries the pod sandbox, container
and image ids found in the request and the response, and the gRPC status.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pycrio.kernel.wrappers import cri_wrapper_class, grpc_status

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

PACKAGE = "runtime.v1"
PROPAGATOR = TraceContextTextMapPropagator()

# CRI message field -> span attribute, looked for in requests and responses.
ID_FIELDS = {
    "pod_sandbox_id": "cri.pod_sandbox_id",
    "container_id": "cri.container_id",
    "image_ref": "cri.image_ref",
}


def span_name(service: str, method: str) -> str:
    return f"{PACKAGE}.{service}/{method}"


def add_ids(span: Span, message: Any) -> None:
    """Set the id attributes of the fields ``message`` has and filled in."""
    fields = getattr(getattr(message, "DESCRIPTOR", None), "fields_by_name", None)
    if not fields:
        return
    for field, attribute in ID_FIELDS.items():
        if field in fields:
            value = getattr(message, field)
            if isinstance(value, str) and value:
                span.set_attribute(attribute, value)


def _wrapper(service: str, method: str) -> Callable[..., Generator[None, Any, Any]]:
    name = span_name(service, method)

    def wrap(self: Any, request: Any, ctx: Any) -> Generator[None, Any, Any]:
        metadata = getattr(ctx, "metadata", None) or {}
        parent = PROPAGATOR.extract(metadata) if metadata else None
        with self.tracer.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": f"{PACKAGE}.{service}",
                "rpc.method": method,
            },  # fmt: skip
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            recording = span.is_recording()
            if recording:
                add_ids(span, request)
            try:
                result = yield
            except BaseException as err:
                if recording:
                    code = grpc_status(err)
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    span.record_exception(err)
                    span.set_status(Status(StatusCode.ERROR, f"{code.name}: {err}"))
                raise
            if recording:
                if result is None:  # nobody answered: dispatch replies UNIMPLEMENTED
                    span.set_attribute("rpc.grpc.status_code", 12)
                    span.set_status(Status(StatusCode.ERROR, "UNIMPLEMENTED"))
                else:
                    span.set_attribute("rpc.grpc.status_code", 0)
                    add_ids(span, result)
            return result

    wrap.__doc__ = f"Trace {name} in a span of its own."
    return wrap


#: ``CallTracing(tracer)`` is the plugin object to register.
CallTracing: Callable[[Tracer], object] = cri_wrapper_class(
    "CallTracing",
    "A span for every CRI call (registered only with tracing on).",
    _wrapper,
    lambda self, tracer: setattr(self, "tracer", tracer),
)
