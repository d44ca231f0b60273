"""OpenTelemetry tracing of the CRI calls and the work under them.

`Tracing` is a core plugin. With ``[tracing] enable_tracing = true`` it builds
a TracerProvider sampling ``tracing_sampling_rate_per_million`` root calls
(parent-based: a call carrying a W3C ``traceparent`` follows its caller),
exports to ``tracing_endpoint`` over OTLP/gRPC when the ``tracing`` extra is
installed, wraps every CRI call in a span and adds child spans for image pulls
and runtime and network driver calls. With tracing off (the default) it
registers no wrapper and imports nothing from OpenTelemetry.
"""

from __future__ import annotations

from pycrio.tracing.plugin import Tracing, span

__all__ = ["Tracing", "span"]
