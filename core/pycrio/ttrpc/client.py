"""A ttrpc client: concurrent unary calls over any byte transport.

The transport is two functions: ``send(bytes)`` given to the constructor, and
:meth:`Client.feed` / :meth:`Client.connection_lost` called by whatever reads
the other direction (a socket reader thread, or a multiplexer's channel).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from pycrio.ttrpc import transport
from pycrio.ttrpc.errors import ConnectionClosed, ProtocolError, TtrpcError
from pycrio.ttrpc.protocol import CallFailed, ClientConnection


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    payload: bytes = b""
    error: TtrpcError | None = None


class Client:
    def __init__(
        self, send: Callable[[bytes], None], on_close: Callable[[str], None] | None = None
    ) -> None:
        self._send = send
        self._conn = ClientConnection()
        self._waiters: dict[int, _Waiter] = {}
        self._lock = threading.Lock()
        self._closed: str = ""
        self._on_close = on_close
        self._sock: socket.socket | None = None

    @classmethod
    def connect(cls, path: str, timeout: float = 5.0, **kwargs) -> Client:
        """A client on a new connection to the unix socket ``path``."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        return cls.over_socket(sock, **kwargs)

    @classmethod
    def over_socket(cls, sock: socket.socket, **kwargs) -> Client:
        client = cls(transport.sender(sock), **kwargs)
        client._sock = sock

        def lost(reason: str) -> None:
            sock.close()
            client.connection_lost(reason)

        transport.start_reader(sock, client.feed, lost, "ttrpc-client")
        return client

    @property
    def closed(self) -> bool:
        return bool(self._closed)

    def call(
        self,
        service: str,
        method: str,
        payload: bytes,
        timeout: float | None = None,
        metadata: dict[str, str | list[str]] | None = None,
    ) -> bytes:
        """The response payload; raises TtrpcError (DEADLINE_EXCEEDED after ``timeout``)."""
        if self._closed:
            raise ConnectionClosed(f"ttrpc: closed ({self._closed})")
        stream_id, frame = self._conn.request(service, method, payload, timeout, metadata)
        waiter = _Waiter()
        with self._lock:
            self._waiters[stream_id] = waiter
        try:
            try:
                self._send(frame)
            except OSError as e:
                self.connection_lost(f"send failed: {e}")
            if not waiter.done.wait(timeout):
                self._conn.forget(stream_id)
                raise TtrpcError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{service}/{method}: no response within {timeout}s",
                )
        finally:
            with self._lock:
                self._waiters.pop(stream_id, None)
        if waiter.error is not None:
            raise waiter.error
        return waiter.payload

    def feed(self, data: bytes) -> None:
        try:
            events = self._conn.receive(data)
        except ProtocolError as e:
            self.connection_lost(f"protocol error: {e}")
            raise
        for event in events:
            with self._lock:
                waiter = self._waiters.get(event.stream_id)
            if waiter is None:
                continue
            if isinstance(event, CallFailed):
                waiter.error = event.error
            else:
                waiter.payload = event.payload
            waiter.done.set()

    def connection_lost(self, reason: str = "closed") -> None:
        """Fail every pending call; later calls fail at once."""
        with self._lock:
            if self._closed:
                return
            self._closed = reason or "closed"
            waiters = list(self._waiters.values())
        for waiter in waiters:
            waiter.error = ConnectionClosed(f"ttrpc: closed ({self._closed})")
            waiter.done.set()
        if self._on_close is not None:
            self._on_close(self._closed)

    def close(self) -> None:
        if self._sock is not None:
            transport.hang_up(self._sock)
        self.connection_lost("closed by us")
