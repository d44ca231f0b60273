"""The TracerProvider: CRI-O's sampler and an OTLP/gRPC exporter.

Only imported with tracing enabled. opentelemetry-api is a core dependency;
the SDK and the exporter come with the ``tracing`` extra.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("pycrio.tracing")

SERVICE_NAME = "pycrio"
EXTRA_HINT = "install pycrio[tracing] (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-grpc)"


def sampler_ratio(rate_per_million: int) -> float:
    """The fraction of root calls sampled, from ``tracing_sampling_rate_per_million``."""
    return min(max(rate_per_million, 0), 1_000_000) / 1_000_000


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pycrio")
    except metadata.PackageNotFoundError:
        return ""


def make_provider(
    rate_per_million: int, endpoint: str, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """A provider exporting to ``endpoint`` (or to ``exporter``); None without the SDK."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as e:
        log.warning(
            "tracing is enabled but the OpenTelemetry SDK is missing (%s): %s", e, EXTRA_HINT
        )
        return None

    sampler = ParentBased(TraceIdRatioBased(sampler_ratio(rate_per_million)))
    resource = Resource.create({"service.name": SERVICE_NAME, "service.version": _version()})
    provider = TracerProvider(sampler=sampler, resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as e:
        log.warning(
            "tracing is enabled but the OTLP exporter is missing (%s): spans are recorded"
            " and dropped, export is unavailable; %s",
            e,
            EXTRA_HINT,
        )
        return provider
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    )
    log.info(
        "tracing: exporting spans to %s over OTLP/gRPC, sampling %d per million root calls",
        endpoint,
        rate_per_million,
    )
    return provider
