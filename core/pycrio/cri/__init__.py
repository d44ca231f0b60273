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
    from pycrio.events import ContainerEvents
    from pycrio.metrics import Metrics
    from pycrio.server.status_api import StatusAPI

    # First, so that its call wrappers (when metrics are on) see every call.
    metrics = Metrics(kernel)
    images = ImageService(kernel)
    sandboxes = SandboxService(kernel)
    containers = ContainerService(kernel, images, sandboxes)
    sandboxes.containers = containers
    events = ContainerEvents(kernel, sandboxes, containers)
    status_api = StatusAPI(kernel, sandboxes, containers)
    return [
        metrics,
        *metrics.plugins(),
        RuntimeInfo(kernel),
        images,
        sandboxes,
        containers,
        events,
        status_api,
    ]
