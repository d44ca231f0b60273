"""The Metrics core plugin: wires the metric set, the endpoint and the hooks."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cri_api.v1 import api_pb2

from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.kernel import Kernel

if TYPE_CHECKING:
    from pycrio.metrics.registry import MetricSet
    from pycrio.metrics.server import MetricsServer
    from pycrio.stats.server import StatsServer

log = logging.getLogger("pycrio.metrics")


def metrics_enabled(kernel: Kernel) -> bool:
    """``[metrics] enable_metrics``; False for configs built without the table (tests)."""
    return bool(kernel.config.data.get("metrics", {}).get("enable_metrics", False))


class Metrics:
    """Prometheus metrics (when enabled) and the CRI pod-metrics calls (always)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.set: MetricSet | None = None
        self.server: MetricsServer | None = None
        self.stats: StatsServer | None = None  # set by core_plugins: it reads pods and containers
        if metrics_enabled(kernel):
            # Imported here so that a daemon with metrics off never loads prometheus_client.
            from pycrio.metrics.registry import MetricSet
            from pycrio.metrics.state import StateCollector

            self.set = MetricSet(StateCollector(kernel))

    def plugins(self) -> list[object]:
        """The extra plugins to register after this one: the call wrappers, when enabled."""
        if self.set is None:
            return []
        from pycrio.metrics.operations import OperationMetrics

        return [OperationMetrics(self.set)]

    # --- lifecycle -------------------------------------------------------------

    @hookimpl
    def pycrio_startup(self, kernel: Kernel) -> None:
        if self.set is None:
            return
        from pycrio.metrics.server import MetricsServer

        table: dict[str, Any] = kernel.config.data["metrics"]
        self.server = MetricsServer(
            self.set.registry,
            table["metrics_host"],
            int(table["metrics_port"]),
            table.get("metrics_cert", ""),
            table.get("metrics_key", ""),
        )
        self.server.start()

    @hookimpl
    def pycrio_shutdown(self, kernel: Kernel) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # --- events ----------------------------------------------------------------

    @hookimpl
    def pycrio_container_event(self, event: str, container: Any, sandbox: Any) -> None:
        if self.set is not None and event == "stopped":
            if getattr(container, "reason", "") == "OOMKilled":
                self.set.oom_killed(container.name)

    @hookimpl
    def pycrio_image_pulled(self, fetched_layer_sizes: list[int], reused_layers: int) -> None:
        if self.set is not None:
            self.set.pulled(fetched_layer_sizes, reused_layers)

    # --- CRI -------------------------------------------------------------------

    @hookimpl
    def cri_list_metric_descriptors(
        self, request: api_pb2.ListMetricDescriptorsRequest, ctx: CallContext
    ) -> api_pb2.ListMetricDescriptorsResponse:
        descriptors = self.stats.descriptors() if self.stats is not None else []
        return api_pb2.ListMetricDescriptorsResponse(descriptors=descriptors)

    @hookimpl
    def cri_list_pod_sandbox_metrics(
        self, request: api_pb2.ListPodSandboxMetricsRequest, ctx: CallContext
    ) -> api_pb2.ListPodSandboxMetricsResponse:
        metrics = self.stats.pod_metrics() if self.stats is not None else []
        return api_pb2.ListPodSandboxMetricsResponse(pod_metrics=metrics)
