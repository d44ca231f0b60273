"""The Prometheus metrics pycrio exposes, on a registry of its own.

A private CollectorRegistry (not prometheus_client's global one) keeps the
endpoint to exactly what docs/metrics.md lists, lets tests build as many
independent sets as they like, and keeps plugins that import
prometheus_client from leaking their metrics into ours by accident. Names
follow CRI-O's (crio_ -> pycrio_) where the meaning is the same.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.registry import Collector

# Latency buckets from 1ms (in-memory List calls) to 5 min (a big PullImage).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
)  # fmt: skip
# Compressed layer sizes: 1 KiB .. 4 GiB in powers of 4.
LAYER_SIZE_BUCKETS = tuple(float(1024 * 4**i) for i in range(12))


class MetricSet:
    """Every metric object, created once per daemon and updated from hooks."""

    def __init__(self, state: Collector | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.operations = Counter(
            "pycrio_operations",
            "CRI calls, by method and gRPC status code.",
            ["operation", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "pycrio_operations_latency_seconds",
            "Time to answer a CRI call, by method and gRPC status code.",
            ["operation", "code"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "pycrio_operations_errors",
            "CRI calls that failed, by method and gRPC status code.",
            ["operation", "code"],
            registry=r,
        )
        self.pull_bytes = Counter(
            "pycrio_image_pulls_bytes",
            "Compressed layer bytes downloaded by image pulls.",
            registry=r,
        )
        self.pull_success = Counter(
            "pycrio_image_pulls_success", "PullImage calls that succeeded.", registry=r
        )
        self.pull_failures = Counter(
            "pycrio_image_pulls_failure",
            "PullImage calls that failed, by reason (the gRPC status code).",
            ["reason"],
            registry=r,
        )
        self.layer_size = Histogram(
            "pycrio_image_pulls_layer_size",
            "Compressed size in bytes of each layer an image pull downloaded.",
            buckets=LAYER_SIZE_BUCKETS,
            registry=r,
        )
        self.layer_reuse = Counter(
            "pycrio_image_layer_reuse",
            "Layers an image pull did not download because the store had them.",
            registry=r,
        )
        self.oom = Counter(
            "pycrio_containers_oom", "Containers killed by the OOM killer.", registry=r
        )
        self.oom_by_name = Counter(
            "pycrio_containers_oom_count",
            "Containers killed by the OOM killer, by container name.",
            ["name"],
            registry=r,
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        if state is not None:
            r.register(state)

    def observe(self, operation: str, code: str, seconds: float) -> None:
        """Record one finished CRI call."""
        self.operations.labels(operation, code).inc()
        self.latency.labels(operation, code).observe(seconds)
        if code != "OK":
            self.errors.labels(operation, code).inc()
        if operation == "PullImage":
            if code == "OK":
                self.pull_success.inc()
            else:
                self.pull_failures.labels(code).inc()

    def pulled(self, fetched_layer_sizes: list[int], reused_layers: int) -> None:
        """Record what one committed pull transferred."""
        for size in fetched_layer_sizes:
            self.layer_size.observe(size)
        self.pull_bytes.inc(sum(fetched_layer_sizes))
        self.layer_reuse.inc(reused_layers)

    def oom_killed(self, name: str) -> None:
        self.oom.inc()
        self.oom_by_name.labels(name).inc()
