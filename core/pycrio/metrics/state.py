"""Containers and pods by state, counted when Prometheus scrapes.

Computed from the core services' in-memory record stores at scrape time
rather than kept as gauges updated on every transition: nothing can drift
(a crash, a restart, an exit noticed late), and the call path pays nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pycrio.container import record as container_record
from pycrio.kernel.kernel import Kernel
from pycrio.sandbox import record as sandbox_record

CONTAINER_STATES = (
    container_record.CREATING,
    container_record.CREATED,
    container_record.RUNNING,
    container_record.EXITED,
)
POD_STATES = (sandbox_record.CREATING, sandbox_record.READY, sandbox_record.NOTREADY)


def core_store(kernel: Kernel, service: str) -> Any | None:
    """The record store of a core service (``ContainerService``, ``SandboxService``).

    None until the service opened it at startup, or if a plugin replaced the
    service; metrics then show nothing rather than fail the scrape.
    """
    plugin = kernel.pm.get_plugin(f"pycrio.core:{service}")
    return getattr(plugin, "store", None)


def _family(name: str, doc: str, states: tuple[str, ...], store: Any) -> GaugeMetricFamily:
    counts = Counter(r.state for r in store.all()) if store is not None else Counter()
    family = GaugeMetricFamily(name, doc, labels=["state"])
    for state in (*states, *sorted(set(counts) - set(states))):
        family.add_metric([state], counts.get(state, 0))
    return family


class StateCollector(Collector):
    """Yields pycrio_containers{state} and pycrio_pods{state}."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without describe, registering would call collect() before the stores exist.
        yield GaugeMetricFamily("pycrio_containers", "", labels=["state"])
        yield GaugeMetricFamily("pycrio_pods", "", labels=["state"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield _family(
            "pycrio_containers",
            "Containers known to pycrio, by state (infra containers included).",
            CONTAINER_STATES,
            core_store(self.kernel, "ContainerService"),
        )
        yield _family(
            "pycrio_pods",
            "Pod sandboxes known to pycrio, by state.",
            POD_STATES,
            core_store(self.kernel, "SandboxService"),
        )
