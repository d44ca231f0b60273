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
    """Bytes from the client, read by the backend; ``b""`` means end of stream.

    A full queue holds the transport's reader back (backpressure) until the
    backend reads on or the stream is aborted: once nobody will read (the
    process ended, the client left), a reader blocked here must be let go.
    """

    def __init__(self) -> None:
        self._chunks: queue.Queue[bytes] = queue.Queue(MAX_QUEUED_CHUNKS)
        self._ended = False
        self._marker_queued = False
        self._aborted = threading.Event()

    def _put(self, item: bytes) -> None:
        while not self._aborted.is_set():
            try:
                self._chunks.put(item, timeout=0.2)
            except queue.Full:
                continue
            if not item:
                self._marker_queued = True
            return

    def feed(self, data: bytes) -> None:
        if data and not self._ended:
            self._put(bytes(data))

    def close(self) -> None:
        """The client's end of input, after what it sent."""
        if not self._ended:
            self._ended = True
            self._put(b"")

    def abort(self) -> None:
        """The input is over for good: release blocked feeders and end the stream.

        What the client sent up to a normal end (close) is kept for the reader;
        otherwise the unread rest is dropped to make room for the end.
        """
        self._ended = True
        self._aborted.set()
        if self._marker_queued:
            return
        while True:
            try:
                self._chunks.get_nowait()
            except queue.Empty:
                break
        self._chunks.put_nowait(b"")
        self._marker_queued = True

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
        """The client or the session is done: no more stdin, no more resizes."""
        if self.stdin is not None:
            self.stdin.abort()
        if self.resize is not None:
            self.resize.put(None)


def background(target: Callable[..., object], *args: object) -> threading.Thread:
    """A daemon thread running ``target(*args)``: one per direction of a session."""
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


#: Runs an exec or attach on the session's streams. Returns the exit code
#: (None for attach, which has none); raises to report a failure.
SessionRunner = Callable[[SessionIO], "int | None"]
