"""Collapse concurrent calls for the same key into one execution.

Two kubelet workers pulling the same image, or two images sharing a layer,
must cause one download: the first caller does the work, the others wait for
its result (or its exception).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class SingleFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, Future] = {}

    def do(self, key: Hashable, fn: Callable[[], T]) -> T:
        with self._lock:
            future = self._calls.get(key)
            leader = future is None
            if leader:
                future = Future()
                self._calls[key] = future
        if not leader:
            return future.result()
        try:
            result = fn()
        except BaseException as e:
            future.set_exception(e)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._lock:
                del self._calls[key]

    def in_flight(self) -> int:
        with self._lock:
            return len(self._calls)
