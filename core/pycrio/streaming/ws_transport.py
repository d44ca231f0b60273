"""WebSocket connections of the streaming server, on wsproto over a :class:`Duplex`.

The handshake picks a subprotocol from the client's offer; then one thread
reads (:meth:`WebSocketConn.messages`) while others send whole messages.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Request as WSRequest
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .channels import NegotiationError, choose_protocol
from .duplex import Duplex
from .server import Request, http_response

#: Largest message a client may send; kubectl's stdin chunks are 32 KiB.
MAX_MESSAGE = 16 * 1024 * 1024
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009


class WebSocketConn:
    def __init__(self, duplex: Duplex, ws: WSConnection, protocol: str) -> None:
        self.duplex = duplex
        self.ws = ws
        self.protocol = protocol
        self._lock = threading.Lock()
        self._closed = False

    def _send_event(self, event: object) -> None:
        """Send one frame. wsproto is locked while it makes the frame, not while it is
        written, so a client slow to read never holds up the reader thread."""
        with self._lock:
            if self._closed and not isinstance(event, CloseConnection):
                raise ConnectionError("the WebSocket is closed")
            try:
                data = self.ws.send(event)
            except LocalProtocolError as e:
                raise ConnectionError(f"the WebSocket is closing: {e}") from None
        self.duplex.sendall(data)

    def send(self, message: bytes | str) -> None:
        if isinstance(message, str):
            self._send_event(TextMessage(data=message))
        else:
            self._send_event(BytesMessage(data=message))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame (once) and shut the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.duplex.sendall(self.ws.send(CloseConnection(code=code, reason=reason)))
            except (LocalProtocolError, OSError):
                pass  # the client closed first or is gone: nothing more to say
        self.duplex.close()

    def messages(self, idle_timeout: float) -> Iterator[bytes | str]:
        """Whole messages from the client until it closes, goes away or idles out."""
        parts: list[bytes | str] = []
        size = 0
        while True:
            data = self.duplex.recv(timeout=1.0)
            if data is None:
                if time.monotonic() - self.duplex.last_activity > idle_timeout:
                    self.close(CLOSE_NORMAL, "idle timeout")
                    return
                continue
            if not data:
                return
            try:
                with self._lock:  # wsproto is not thread-safe; writers use it too
                    self.ws.receive_data(data)
                    events = list(self.ws.events())
            except RemoteProtocolError as e:
                self.close(CLOSE_PROTOCOL_ERROR, str(e)[:100])
                return
            for event in events:
                if isinstance(event, (BytesMessage, TextMessage)):
                    parts.append(event.data)
                    size += len(event.data)
                    if size > MAX_MESSAGE:
                        self.close(CLOSE_TOO_BIG, "message too big")
                        return
                    if event.message_finished:
                        message = (
                            b"".join(parts)
                            if isinstance(event, BytesMessage)
                            else "".join(
                                parts  # type: ignore[arg-type]
                            )
                        )
                        parts, size = [], 0
                        yield message
                elif isinstance(event, Ping):
                    self._send_event(event.response())
                elif isinstance(event, CloseConnection):
                    with self._lock:
                        if not self._closed:
                            self._closed = True
                            try:
                                self.duplex.sendall(self.ws.send(event.response()))
                            except (LocalProtocolError, OSError):
                                pass  # already closing or gone
                    return


def accept(request: Request, duplex: Duplex, supported: tuple[str, ...]) -> WebSocketConn | None:
    """Finish the WebSocket handshake with the best subprotocol; None if refused."""
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.receive_data(request.raw + request.trailing)
        events = list(ws.events())
    except RemoteProtocolError as e:
        duplex.sendall(_reject(ws, 400, f"bad WebSocket handshake: {e}"))
        return None
    opened = next((e for e in events if isinstance(e, WSRequest)), None)
    if opened is None:
        return None
    if not valid_key(request.header("sec-websocket-key") or ""):
        duplex.sendall(
            _reject(ws, 400, "bad WebSocket handshake: Sec-WebSocket-Key is not 16 bytes in base64")
        )
        return None
    try:
        chosen = choose_protocol(list(opened.subprotocols), supported)
    except NegotiationError as e:
        duplex.sendall(_reject(ws, 400, str(e)))
        return None
    duplex.sendall(ws.send(AcceptConnection(subprotocol=chosen or None)))
    return WebSocketConn(duplex, ws, chosen)


def valid_key(key: str) -> bool:
    """RFC 6455 4.2.1: the key is a random 16-byte nonce in base64 (wsproto takes any)."""
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except ValueError:  # binascii.Error, or non-ASCII text
        return False


def _reject(ws: WSConnection, status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    try:
        return ws.send(
            RejectConnection(status_code=status, headers=headers, has_body=True)
        ) + ws.send(RejectData(data=body, body_finished=True))
    except LocalProtocolError:
        return http_response(status, text)


class TunnelDuplex:
    """A WebSocket carrying a byte stream (``SPDY/3.1+portforward.k8s.io``).

    kubectl 1.31+ tunnels its SPDY port-forward session through WebSocket
    binary messages; this gives the SPDY session the same recv/sendall/close
    surface as a socket, so the tunnel needs no protocol code of its own.
    """

    def __init__(self, conn: WebSocketConn, idle_timeout: float) -> None:
        self.conn = conn
        self._messages = conn.messages(idle_timeout)

    @property
    def last_activity(self) -> float:
        return self.conn.duplex.last_activity

    def recv(self, timeout: float | None = None) -> bytes:
        """The next message's bytes; b"" when the WebSocket ends (it keeps its own idle timer)."""
        for message in self._messages:
            if isinstance(message, str):
                self.conn.close(CLOSE_PROTOCOL_ERROR, "the tunnel carries binary messages only")
                return b""
            if message:
                return message
        return b""

    def sendall(self, data: bytes) -> None:
        if data:
            self.conn.send(data)

    def close(self) -> None:
        self.conn.close()
