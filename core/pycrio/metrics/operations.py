"""Per-call wrappers: one ``wrapper=True`` hook implementation per CRI hook.

They are generated from CRI_HOOKS (pycrio.kernel.wrappers) so a call added to
the hookspecs is measured without touching this module, and they live on a
class of their own so that a daemon with metrics off does not register them
at all (no wrapper, no cost on the call path).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from pycrio.kernel.wrappers import cri_wrapper_class, status_code

if TYPE_CHECKING:
    from pycrio.metrics.registry import MetricSet


__all__ = ["OperationMetrics", "status_code"]


def _wrapper(service: str, method: str) -> Callable[..., Generator[None, Any, Any]]:
    def wrap(self: Any) -> Generator[None, Any, Any]:
        started = time.perf_counter()
        try:
            result = yield
        except BaseException as err:
            self.metrics.observe(method, status_code(err), time.perf_counter() - started)
            raise
        # No implementation answered: dispatch replies UNIMPLEMENTED.
        code = "OK" if result is not None else "UNIMPLEMENTED"
        self.metrics.observe(method, code, time.perf_counter() - started)
        return result

    wrap.__doc__ = f"Count and time {method}, labelled with its status code."
    return wrap


#: ``OperationMetrics(metric_set)`` is the plugin object to register.
OperationMetrics: Callable[[MetricSet], object] = cri_wrapper_class(
    "OperationMetrics",
    "Counts and times every CRI call (registered only with metrics on).",
    _wrapper,
    lambda self, metrics: setattr(self, "metrics", metrics),
)
