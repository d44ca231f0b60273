"""Thin gRPC servicers: every runtime.v1 method goes straight to its hook.

The handlers are built from the generated descriptor rather than by
subclassing the generated servicers, so a method the stubs know always has a
handler, the path servicer -> hook -> implementation is one function, and the
mapping from typed errors to status codes lives here and nowhere else.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from cri_api.v1 import api_pb2

import pycrio
from pycrio.errors import CRIError, Unimplemented
from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import CRI_HOOKS, unimplemented_message
from pycrio.kernel.kernel import Kernel
from pycrio.logs import TRACE, redact

log = logging.getLogger("pycrio.server")

SERVICES = ("RuntimeService", "ImageService")


def hook_name(method: str) -> str:
    return "cri_" + re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()


def _context(method: str, grpc_ctx: grpc.ServicerContext) -> CallContext:
    remaining = grpc_ctx.time_remaining()
    metadata = {k: v for k, v in grpc_ctx.invocation_metadata() if isinstance(v, str)}
    return CallContext(
        method=method,
        metadata=metadata,
        deadline=None if remaining is None else time.monotonic() + remaining,
        peer=grpc_ctx.peer(),
        is_active=grpc_ctx.is_active,
    )


#: The most bytes of status message sent, as it goes on the wire. gRPC carries
#: it percent-encoded in a trailer, and a client drops metadata over 8 KiB at
#: random and over 16 KiB always: an error echoing a 70 kB id reached the
#: caller as RESOURCE_EXHAUSTED "Stream removed" instead of its own code.
MAX_MESSAGE_BYTES = 4096


def _wire_size(c: str) -> int:
    # grpc-message keeps printable ASCII but '%' as is and percent-encodes the rest
    return 1 if " " <= c <= "~" and c != "%" else 3 * len(c.encode("utf-8", "replace"))


def bounded(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``message``, cut so that its encoded form stays within ``limit`` bytes."""
    total = 0
    for i, c in enumerate(message):
        total += _wire_size(c)
        if total > limit - 40:  # room for the note
            return f"{message[:i]}... ({len(message) - i} more characters)"
    return message


def _fail(method: str, grpc_ctx: grpc.ServicerContext, err: Exception) -> grpc.StatusCode:
    """Log ``err`` with its context and abort the call with the right code."""
    if isinstance(err, CRIError):
        code, message = err.code, err.message
        level = logging.DEBUG if code == grpc.StatusCode.NOT_FOUND else logging.INFO
        log.log(level, "%s failed: %s: %s", method, code.name, message)
    else:
        code, message = grpc.StatusCode.INTERNAL, f"{method}: internal error: {err}"
        log.error("%s failed with an unexpected error", method, exc_info=err)
    grpc_ctx.abort(code, bounded(message))
    return code  # not reached: abort raises


def _log_call(method: str, code: grpc.StatusCode, started: float) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s %.2fms", method, code.name, (time.monotonic() - started) * 1000)


def _unary(kernel: Kernel, method: str) -> Callable[[Any, grpc.ServicerContext], Any]:
    hook = getattr(kernel.hook, hook_name(method))

    def handle(request: Any, grpc_ctx: grpc.ServicerContext) -> Any:
        started = time.monotonic()
        code = grpc.StatusCode.OK
        if log.isEnabledFor(TRACE):
            log.log(TRACE, "%s request: %s", method, redact(request))
        try:
            response = hook(request=request, ctx=_context(method, grpc_ctx))
            if response is None:
                raise Unimplemented(unimplemented_message(method, pycrio.version()))
            return response
        except Exception as err:  # noqa: BLE001 - mapped to a status code in _fail
            code = err.code if isinstance(err, CRIError) else grpc.StatusCode.INTERNAL
            _fail(method, grpc_ctx, err)
        finally:
            _log_call(method, code, started)

    return handle


def _stream(kernel: Kernel, method: str) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
    hook = getattr(kernel.hook, hook_name(method))

    def handle(request: Any, grpc_ctx: grpc.ServicerContext) -> Iterator[Any]:
        started = time.monotonic()
        code = grpc.StatusCode.OK
        try:
            responses = hook(request=request, ctx=_context(method, grpc_ctx))
            if responses is None:
                raise Unimplemented(unimplemented_message(method, pycrio.version()))
            for response in responses:
                if not grpc_ctx.is_active():
                    break
                yield response
        except Exception as err:  # noqa: BLE001 - mapped to a status code in _fail
            code = err.code if isinstance(err, CRIError) else grpc.StatusCode.INTERNAL
            _fail(method, grpc_ctx, err)
        finally:
            _log_call(method, code, started)

    return handle


def generic_handlers(kernel: Kernel) -> list[grpc.GenericRpcHandler]:
    """One generic handler per CRI service, with a method handler per RPC."""
    result = []
    for service_name in SERVICES:
        service = api_pb2.DESCRIPTOR.services_by_name[service_name]
        methods = {}
        for m in service.methods:
            assert CRI_HOOKS[hook_name(m.name)] == (service_name, m.name), m.name
            request_cls = getattr(api_pb2, m.input_type.name)
            response_cls = getattr(api_pb2, m.output_type.name)
            make_handler = (
                grpc.unary_stream_rpc_method_handler
                if m.server_streaming
                else grpc.unary_unary_rpc_method_handler
            )
            methods[m.name] = make_handler(
                (_stream if m.server_streaming else _unary)(kernel, m.name),
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            )
        result.append(grpc.method_handlers_generic_handler(service.full_name, methods))
    return result
