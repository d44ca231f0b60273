"""Prometheus metrics and the CRI pod-metrics calls.

`Metrics` is a core plugin: it always answers ListMetricDescriptors and
ListPodSandboxMetrics (the kubelet asks whatever the configuration says), and
with ``[metrics] enable_metrics = true`` it also times every CRI call and
serves a Prometheus endpoint. prometheus_client is imported only then, so a
daemon with metrics off pays neither its import nor a per-call wrapper.
"""

from __future__ import annotations

from pycrio.metrics.plugin import Metrics

__all__ = ["Metrics"]
