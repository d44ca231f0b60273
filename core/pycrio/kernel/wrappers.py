"""Generate one ``wrapper=True`` hook implementation per CRI hook.

Observers of every call (metrics, tracing) are built from CRI_HOOKS rather
than written out, so a call added to the hookspecs is covered without
touching them, and each lives on a class of its own so that a daemon with the
feature off does not register it at all (no wrapper, no cost on the call path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from pycrio.errors import CRIError
from pycrio.kernel.hookspecs import CRI_HOOKS, hookimpl


def grpc_status(err: BaseException) -> grpc.StatusCode:
    """The gRPC status the caller sees for ``err`` (as dispatch maps it)."""
    return err.code if isinstance(err, CRIError) else grpc.StatusCode.INTERNAL


def status_code(err: BaseException) -> str:
    """The name of the gRPC status code the caller sees for ``err``."""
    return grpc_status(err).name


def cri_wrapper_class(
    name: str,
    doc: str,
    make_wrapper: Callable[[str, str], Callable[..., Any]],
    init: Callable[..., None],
) -> type:
    """A class with a ``wrapper=True`` implementation of every CRI hook.

    ``make_wrapper(service, method)`` returns the generator function for one
    call (``def wrap(self, ...)``, yielding once to the implementations);
    ``init`` becomes the class's ``__init__``.
    """
    attrs: dict[str, Any] = {"__doc__": doc, "__init__": init}
    for hook, (service, method) in CRI_HOOKS.items():
        fn = make_wrapper(service, method)
        fn.__name__ = fn.__qualname__ = hook
        attrs[hook] = hookimpl(wrapper=True)(fn)
    return type(name, (), attrs)
