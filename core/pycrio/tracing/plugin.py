"""The Tracing core plugin: provider, exporter, call wrappers, child spans."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.kernel import Kernel

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

log = logging.getLogger("pycrio.tracing")

#: The instrumentation scope of every pycrio span.
SCOPE = "pycrio"

# The tracer of the running daemon, for span(); None while tracing is off.
_tracer: Tracer | None = None


def tracing_table(kernel: Kernel) -> dict[str, Any]:
    """``[tracing]``; empty for configs built without the table (tests)."""
    return kernel.config.data.get("tracing", {})


def tracing_enabled(kernel: Kernel) -> bool:
    return bool(tracing_table(kernel).get("enable_tracing", False))


@contextlib.contextmanager
def _child(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    from pycrio.tracing import instrument

    with instrument.child_span(_tracer, name, attributes) as s:
        yield s


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current call's span, for work worth timing on its own.

    A no-op (yielding None) when tracing is off or when no call is being
    traced on this thread, so code may use it unconditionally.
    """
    if _tracer is None:
        return contextlib.nullcontext()
    return _child(name, attributes)


class Tracing:
    """OpenTelemetry spans for the CRI calls (registered wrappers only when enabled)."""

    def __init__(self, kernel: Kernel, exporter: SpanExporter | None = None) -> None:
        """``exporter`` replaces the OTLP one (tests pass an in-memory exporter)."""
        self.kernel = kernel
        self.provider: TracerProvider | None = None
        self.tracer: Tracer | None = None
        if not tracing_enabled(kernel):
            return
        from pycrio.tracing import provider

        table = tracing_table(kernel)
        made = provider.make_provider(
            rate_per_million=int(table.get("tracing_sampling_rate_per_million", 0)),
            endpoint=str(table.get("tracing_endpoint", "127.0.0.1:4317")),
            exporter=exporter,
        )
        if made is None:
            return  # the SDK is not installed; already logged
        self.provider = made
        self.tracer = made.get_tracer(SCOPE)

    def plugins(self) -> list[object]:
        """The extra plugins to register after this one: the call wrappers, when enabled."""
        if self.tracer is None:
            return []
        from pycrio.tracing.calls import CallTracing

        return [CallTracing(self.tracer)]

    # --- lifecycle -------------------------------------------------------------

    # tryfirst: call_each runs it after the other startups, so the image
    # service's puller exists by then.
    @hookimpl(tryfirst=True)
    def pycrio_startup(self, kernel: Kernel) -> None:
        global _tracer
        if self.tracer is None:
            return
        from pycrio.tracing import instrument

        _tracer = self.tracer
        instrument.instrument_kernel(kernel, self.tracer)

    @hookimpl
    def pycrio_shutdown(self, kernel: Kernel) -> None:
        global _tracer
        if self.provider is None:
            return
        if _tracer is self.tracer:
            _tracer = None
        self.provider.shutdown()  # flushes the spans not exported yet
        self.provider = None

    # --- events ----------------------------------------------------------------

    @hookimpl
    def pycrio_image_pulled(
        self, image_id: str, size: int, fetched_layer_sizes: list[int], reused_layers: int
    ) -> None:
        if self.tracer is None:
            return
        from opentelemetry import trace

        current = trace.get_current_span()
        if current.is_recording():
            current.add_event(
                "image committed",
                {
                    "cri.image_ref": image_id,
                    "pycrio.image.size": size,
                    "pycrio.image.fetched_layers": len(fetched_layer_sizes),
                    "pycrio.image.fetched_bytes": sum(fetched_layer_sizes),
                    "pycrio.image.reused_layers": reused_layers,
                },
            )
