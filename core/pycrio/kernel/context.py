"""Per-call context handed to every CRI hook."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CallContext:
    """What a hook may need to know about the call it serves.

    Kept free of gRPC types so plugins and the core can be exercised without a
    server: ``metadata`` is the caller's invocation metadata (for example a W3C
    ``traceparent``), ``deadline`` is a ``time.monotonic()`` instant or None.
    ``is_active`` tells a long-running stream (GetContainerEvents) whether its
    client is still there, so it can stop waiting for one that hung up.
    """

    method: str
    metadata: dict[str, str] = field(default_factory=dict)
    deadline: float | None = None
    peer: str = ""
    started: float = field(default_factory=time.monotonic)
    is_active: Callable[[], bool] = field(default=lambda: True, repr=False, compare=False)

    def time_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())
