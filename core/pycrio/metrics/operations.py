"""Per-call wrappers: one ``wrapper=True`` hook implementation per CRI hook.

They are generated from CRI_HOOKS rather than written out so a call added to
the hookspecs is measured without touching this module, and they live on a
class of their own so that a daemon with metrics off does not register them
at all (no wrapper, no cost on the call path).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from pycrio.errors import CRIError
from pycrio.kernel.hookspecs import CRI_HOOKS, hookimpl

if TYPE_CHECKING:
    from pycrio.metrics.registry import MetricSet


def status_code(err: BaseException) -> str:
    """The gRPC status code name the caller sees for ``err`` (as dispatch maps it)."""
    return err.code.name if isinstance(err, CRIError) else "INTERNAL"


def _wrapper(method: str) -> Callable[..., Generator[None, Any, Any]]:
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


def _build_class() -> type:
    attrs: dict[str, Any] = {
        "__doc__": "Counts and times every CRI call (registered only with metrics on).",
        "__init__": lambda self, metrics: setattr(self, "metrics", metrics),
    }
    for hook, (_service, method) in CRI_HOOKS.items():
        fn = _wrapper(method)
        fn.__name__ = fn.__qualname__ = hook
        attrs[hook] = hookimpl(wrapper=True)(fn)
    return type("OperationMetrics", (), attrs)


#: ``OperationMetrics(metric_set)`` is the plugin object to register.
OperationMetrics: Callable[[MetricSet], object] = _build_class()
