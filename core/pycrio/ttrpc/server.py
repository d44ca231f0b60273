"""A ttrpc server: handlers keyed by (service, method), each call on its own thread.

A handler takes the request payload and the :class:`CallReceived` (metadata,
timeout) and returns the response payload. Raising TtrpcError answers with
its code; a pycrio.errors error with its gRPC code; anything else UNKNOWN,
as ttrpc answers a Go error without a status.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

import grpc

from pycrio.ttrpc import transport
from pycrio.ttrpc.errors import ProtocolError, TtrpcError
from pycrio.ttrpc.protocol import CallReceived, ServerConnection, response_frame

log = logging.getLogger("pycrio.ttrpc")

Handler = Callable[[bytes, CallReceived], bytes]


def _error_of(exc: BaseException) -> TtrpcError:
    if isinstance(exc, TtrpcError):
        return exc
    code = getattr(exc, "code", None)
    if isinstance(code, grpc.StatusCode):
        return TtrpcError(code, getattr(exc, "message", str(exc)))
    return TtrpcError(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")


class Session:
    """One connection being served; ``feed`` it the bytes the peer sent."""

    def __init__(self, server: Server, send: Callable[[bytes], None]) -> None:
        self._server = server
        self._send = send
        self._conn = ServerConnection()
        self.closed = False

    def feed(self, data: bytes) -> None:
        calls, replies = self._conn.receive(data)
        if replies:
            self._reply(replies)
        for call in calls:
            threading.Thread(
                target=self._run, args=(call,), name=f"ttrpc-{call.method}", daemon=True
            ).start()

    def _run(self, call: CallReceived) -> None:
        handler = self._server.handlers.get((call.service, call.method))
        if handler is None:
            known = any(s == call.service for s, _ in self._server.handlers)
            err = TtrpcError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{call.service}/{call.method}: "
                + ("method not found" if known else "service not found"),
            )
            self._reply(response_frame(call.stream_id, error=err))
            return
        try:
            payload = handler(call.payload, call)
        except Exception as e:  # noqa: BLE001 - becomes the call's status
            self._reply(response_frame(call.stream_id, error=_error_of(e)))
            return
        self._reply(response_frame(call.stream_id, payload))

    def _reply(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._send(data)
        except OSError as e:
            log.debug("ttrpc: reply dropped, connection gone: %s", e)
            self.closed = True

    def connection_lost(self, reason: str = "") -> None:
        self.closed = True


class Server:
    def __init__(self, handlers: dict[tuple[str, str], Handler] | None = None) -> None:
        self.handlers: dict[tuple[str, str], Handler] = dict(handlers or {})
        self._listeners: list[socket.socket] = []
        self._stopping = False

    def register(self, service: str, method: str, handler: Handler) -> None:
        self.handlers[(service, method)] = handler

    def session(self, send: Callable[[bytes], None]) -> Session:
        return Session(self, send)

    def serve_socket(self, sock: socket.socket) -> Session:
        """Serve one connected socket on a reader thread."""
        session = self.session(transport.sender(sock))

        def feed(data: bytes) -> None:
            try:
                session.feed(data)
            except ProtocolError:
                sock.close()
                raise

        def lost(reason: str) -> None:
            session.connection_lost(reason)
            sock.close()

        transport.start_reader(sock, feed, lost, "ttrpc-server")
        return session

    def serve(self, listener: socket.socket) -> None:
        """Accept connections on ``listener`` until :meth:`stop`; blocks."""
        self._listeners.append(listener)
        while not self._stopping:
            try:
                conn, _ = listener.accept()
            except OSError:
                if self._stopping:
                    return
                raise
            self.serve_socket(conn)

    def stop(self) -> None:
        self._stopping = True
        for listener in self._listeners:
            transport.hang_up(listener)
