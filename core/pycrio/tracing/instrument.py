"""Child spans for the work under a call: image pulls and driver calls.

Instead of editing the puller and every driver, the running objects are
wrapped at startup: each runtime and network driver slot gets a proxy whose
public methods open a span (``runtime.create``, ``network.setup``, ...), and
the image service's ``puller.pull`` is replaced on the instance by one that
opens an ``image.pull`` span. A child span is only made when the thread is
inside a traced call, so background work (the reaper, garbage collection)
starts no traces of its own.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from pycrio.kernel.wrappers import grpc_status

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from pycrio.kernel.kernel import Kernel

log = logging.getLogger("pycrio.tracing")


@contextlib.contextmanager
def child_span(tracer: Tracer | None, name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    """A span under the current one; nothing when no recording span is current."""
    if tracer is None or not trace.get_current_span().is_recording():
        yield None
        return
    with tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as err:
            span.record_exception(err)
            span.set_status(Status(StatusCode.ERROR, f"{grpc_status(err).name}: {err}"))
            raise


def _id_attributes(args: tuple[Any, ...]) -> dict[str, Any]:
    """Ids worth recording from a driver call's first argument."""
    if not args:
        return {}
    first = args[0]
    if isinstance(first, str):
        return {"cri.container_id": first}
    out = {}
    for field, attribute in (
        ("container_id", "cri.container_id"),
        ("pod_id", "cri.pod_sandbox_id"),
    ):
        value = getattr(first, field, None)
        if isinstance(value, str) and value:
            out[attribute] = value
    return out


class TracedDriver:
    """Delegates to a driver; its public methods run in a child span."""

    def __init__(self, driver: Any, tracer: Tracer, kind: str, attributes: dict[str, Any]) -> None:
        self.__dict__["_driver"] = driver
        self.__dict__["_tracer"] = tracer
        self.__dict__["_kind"] = kind
        self.__dict__["_attributes"] = attributes

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._driver, name)
        if name.startswith("_") or not callable(value):
            return value
        span_name = f"{self._kind}.{name}"

        @functools.wraps(value)
        def traced(*args: Any, **kwargs: Any) -> Any:
            with child_span(self._tracer, span_name, {**self._attributes, **_id_attributes(args)}):
                return value(*args, **kwargs)

        return traced

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._driver, name, value)

    def __repr__(self) -> str:
        return f"TracedDriver({self._driver!r})"


def traced_call(tracer: Tracer, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        attributes = {"cri.image": args[0]} if args and isinstance(args[0], str) else {}
        with child_span(tracer, name, attributes):
            return fn(*args, **kwargs)

    traced.__pycrio_traced__ = True  # type: ignore[attr-defined]
    return traced


def instrument_kernel(kernel: Kernel, tracer: Tracer) -> None:
    """Wrap the runtime and network drivers and the image puller (idempotent)."""
    for handler, slot in kernel.runtimes.items():
        if slot.driver is not None and not isinstance(slot.driver, TracedDriver):
            slot.driver = TracedDriver(
                slot.driver, tracer, "runtime", {"pycrio.runtime_handler": handler}
            )  # type: ignore[assignment]
    net = kernel.network
    if net is not None and net.driver is not None and not isinstance(net.driver, TracedDriver):
        net.driver = TracedDriver(
            net.driver, tracer, "network", {"pycrio.network_driver": net.name}
        )  # type: ignore[assignment]
    images = kernel.pm.get_plugin("pycrio.core:ImageService")
    puller = getattr(images, "puller", None)
    if puller is None:
        log.debug("tracing: no image puller to instrument")
        return
    if not getattr(puller.pull, "__pycrio_traced__", False):
        puller.pull = traced_call(tracer, "image.pull", puller.pull)
