"""Name reservations that let a kubelet retry join the call still in progress.

The kubelet gives RunPodSandbox and CreateContainer a deadline (4 minutes by
default). When a slow CNI plugin or image unpack outlives it, the kubelet
retries with the same name while the first call is still working. Refusing
the retry with "name is reserved" (what containerd does) makes the kubelet
back off and retry again, often for minutes; instead, like CRI-O's resource
store, the retry waits for the first call and returns its result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from pycrio.errors import AlreadyExists, DeadlineExceeded

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    owner: str  # the id of the object holding the name
    future: Future  # resolved when the creating call finishes


class Reservations(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self._names: dict[str, _Entry[T]] = {}

    def restore(self, name: str, owner: str, value: T) -> None:
        """Re-reserve a name held by an existing object (after a daemon restart)."""
        future: Future = Future()
        future.set_result(value)
        with self._lock:
            self._names[name] = _Entry(owner, future)

    def create(
        self,
        name: str,
        owner: str,
        make: Callable[[], T],
        timeout: float | None = None,
    ) -> T:
        """Run ``make`` under ``name``; a concurrent retry gets the same result.

        A name held by a finished object is AlreadyExists naming the holder. A
        failed ``make`` frees the name, so the next retry starts afresh.
        """
        with self._lock:
            entry = self._names.get(name)
            if entry is None:
                entry = _Entry(owner, Future())
                self._names[name] = entry
                leader = True
            else:
                leader = False
        if not leader:
            if entry.future.done():
                if entry.future.exception() is None:
                    raise AlreadyExists(
                        f"{self.kind} name {name!r} is reserved by {self.kind} {entry.owner}"
                    )
            try:
                return entry.future.result(timeout=timeout)
            except TimeoutError as e:
                raise DeadlineExceeded(
                    f"{self.kind} {name!r} is still being created by an earlier request"
                    f" ({entry.owner}); try again"
                ) from e
        try:
            value = make()
        except BaseException as e:
            with self._lock:
                self._names.pop(name, None)
            entry.future.set_exception(e)
            raise
        entry.future.set_result(value)
        return value

    def release(self, name: str, owner: str) -> None:
        with self._lock:
            entry = self._names.get(name)
            if entry is not None and entry.owner == owner:
                del self._names[name]

    def holder(self, name: str) -> str | None:
        with self._lock:
            entry = self._names.get(name)
            return entry.owner if entry else None
