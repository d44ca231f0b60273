"""The streaming HTTP server: accepts connections, reads one request, hands it on.

Exec, attach and port-forward URLs point here. The server only parses the
HTTP/1.1 request (h11) and answers plain errors; what happens after an
upgrade (SPDY/3.1 or WebSocket) belongs to the handler. One thread per
connection: streams are long-lived and their work (pumping a process's output)
blocks anyway.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import h11

from .duplex import Duplex

log = logging.getLogger("pycrio.streaming")

#: Time a client has to finish its TLS handshake and send its request head.
HANDSHAKE_TIMEOUT = 30.0
MAX_REQUEST_HEAD = 64 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]  # names lowercased, in order
    raw: bytes  # the request head as received (wsproto parses it again)
    trailing: bytes  # bytes the client sent after the head

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split."""
        out: list[str] = []
        for key, value in self.headers:
            if key == name:
                out.extend(v.strip() for v in value.split(",") if v.strip())
        return out

    def wants_upgrade(self, protocol: str) -> bool:
        tokens = [v.lower() for v in self.header_values("upgrade")]
        return protocol.lower() in tokens


Handler = Callable[[Request, Duplex], None]


def http_response(
    status: int, text: str = "", headers: list[tuple[str, str]] | None = None
) -> bytes:
    """A complete HTTP/1.1 response with a plain-text body; the connection then closes."""
    body = text.encode() + (b"\n" if text and not text.endswith("\n") else b"")
    conn = h11.Connection(h11.SERVER)
    # h11 needs to have seen a request before it writes a response
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    head = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *(headers or []),
    ]
    return (
        conn.send(h11.Response(status_code=status, headers=head))
        + conn.send(h11.Data(data=body))
        + conn.send(h11.EndOfMessage())
    )


def read_request(duplex: Duplex, timeout: float = HANDSHAKE_TIMEOUT) -> Request | None:
    """Parse the request head; None when the client sent nothing usable (answered)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    raw = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            duplex.sendall(http_response(400, f"bad request: {e}"))
            return None
        if event is h11.NEED_DATA:
            data = duplex.recv(timeout)
            if data is None:
                duplex.sendall(http_response(408, "request head not received in time"))
                return None
            if not data:
                return None
            raw += data
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            split = urlsplit(event.target.decode("latin-1"))
            trailing, _ = conn.trailing_data
            head_len = len(raw) - len(trailing)
            return Request(
                method=event.method.decode("ascii"),
                path=split.path,
                query=parse_qs(split.query),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
                raw=bytes(raw[:head_len]),
                trailing=bytes(trailing),
            )
        return None


class StreamServer:
    """A TCP listener serving one :data:`Handler` call per connection."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.tls = tls
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(128)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._live: set[Duplex] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._accept, name="stream-accept", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and end every live stream (their sessions clean up)."""
        self._stopping = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # not connected: accept() is woken by close below on Linux anyway
        self._listener.close()
        with self._lock:
            live = list(self._live)
        for duplex in live:
            duplex.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopping:
            try:
                sock, peer = self._listener.accept()
            except OSError:
                if self._stopping:
                    return
                log.exception("streaming server: accept failed")
                continue
            threading.Thread(
                target=self._serve, args=(sock, peer), name="stream-conn", daemon=True
            ).start()

    def _serve(self, sock: socket.socket, peer: object) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        duplex = Duplex(sock, self.tls)
        with self._lock:
            self._live.add(duplex)
        try:
            duplex.handshake(HANDSHAKE_TIMEOUT)
            request = read_request(duplex)
            if request is not None:
                self.handler(request, duplex)
        except (OSError, ssl.SSLError) as e:
            log.debug("streaming connection from %s ended: %s", peer, e)
        except Exception:
            log.exception("streaming connection from %s failed", peer)
        finally:
            with self._lock:
                self._live.discard(duplex)
            duplex.release()
