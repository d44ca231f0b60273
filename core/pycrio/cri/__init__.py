"""The core's implementation of the CRI calls, one module per call group.

Each module contributes a class of hook implementations; `core_plugins`
makes them for a kernel, which registers them as the default plugin.
"""

from __future__ import annotations

from pycrio.kernel.kernel import Kernel


def core_plugins(kernel: Kernel) -> list[object]:
    from pycrio.cri.containers import ContainerService
    from pycrio.cri.images import ImageService
    from pycrio.cri.runtime_info import RuntimeInfo
    from pycrio.cri.sandboxes import SandboxService
    from pycrio.cri.streaming import StreamingService
    from pycrio.events import ContainerEvents
    from pycrio.metrics import Metrics
    from pycrio.server.list_streaming import ListStreaming
    from pycrio.server.status_api import StatusAPI
    from pycrio.stats.server import StatsServer
    from pycrio.tracing import Tracing

    # First, so that their call wrappers (when enabled) see every call; the
    # tracing wrappers, registered later, run outside the metrics ones.
    metrics = Metrics(kernel)
    tracing = Tracing(kernel)
    images = ImageService(kernel)
    sandboxes = SandboxService(kernel)
    containers = ContainerService(kernel, images, sandboxes)
    sandboxes.containers = containers
    stats = StatsServer(kernel, sandboxes, containers)
    sandboxes.stats = containers.stats = metrics.stats = stats
    events = ContainerEvents(kernel, sandboxes, containers)
    status_api = StatusAPI(kernel, sandboxes, containers)
    return [
        metrics,
        *metrics.plugins(),
        tracing,
        *tracing.plugins(),
        RuntimeInfo(kernel),
        images,
        sandboxes,
        containers,
        stats,
        events,
        status_api,
        StreamingService(kernel, sandboxes, containers),
        ListStreaming(kernel),
    ]
