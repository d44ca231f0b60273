"""The streams of one exec or attach session, independent of the transport.

A transport (SPDY or WebSocket) fills :class:`InStream` objects from the
client's frames and supplies :class:`OutStream` writers; the backend that runs
the process only sees these, so exec and attach are written once for both.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .channels import TerminalSize

#: Chunks the transport may queue ahead of a slow consumer before it blocks,
#: which holds the client back (TCP backpressure) rather than growing memory.
MAX_QUEUED_CHUNKS = 64


class OutStream(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class InStream:
    """Bytes from the client, read by the backend; ``b""`` means end of stream."""

    def __init__(self) -> None:
        self._chunks: queue.Queue[bytes] = queue.Queue(MAX_QUEUED_CHUNKS)
        self._closed = threading.Event()

    def feed(self, data: bytes) -> None:
        if data and not self._closed.is_set():
            self._chunks.put(bytes(data))

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._chunks.put(b"")

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next chunk, ``b""`` at the end, None if ``timeout`` passed first."""
        try:
            return self._chunks.get(timeout=timeout)
        except queue.Empty:
            return None


class ResizeQueue:
    """Terminal sizes from the client; None marks the end."""

    def __init__(self) -> None:
        self._sizes: queue.Queue[TerminalSize | None] = queue.Queue()

    def put(self, size: TerminalSize | None) -> None:
        self._sizes.put(size)

    def get(self, timeout: float | None = None) -> TerminalSize | None:
        """The next size; None at the end or when ``timeout`` passed."""
        try:
            return self._sizes.get(timeout=timeout)
        except queue.Empty:
            return None


@dataclass
class SessionIO:
    stdin: InStream | None = None
    stdout: OutStream | None = None
    stderr: OutStream | None = None
    resize: ResizeQueue | None = None
    #: set when the client went away: the backend stops what it runs
    disconnected: threading.Event = field(default_factory=threading.Event)

    def end_input(self) -> None:
        """The client is gone or done: no more stdin, no more resizes."""
        if self.stdin is not None:
            self.stdin.close()
        if self.resize is not None:
            self.resize.put(None)


#: Runs an exec or attach on the session's streams. Returns the exit code
#: (None for attach, which has none); raises to report a failure.
SessionRunner = Callable[[SessionIO], "int | None"]
