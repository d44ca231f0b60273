"""One connection shared by a reader thread and any number of writer threads.

A streaming session reads the client's frames on one thread while exec output,
status and port-forward data are written from others. A plain socket allows
that; an ``ssl.SSLSocket`` does not (OpenSSL objects must not be read and
written at once), so TLS runs on memory BIOs here: one lock guards the TLS
state, a second keeps the encrypted bytes in order on the wire, and the raw
socket is only ever read by the reader and written under the send lock.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Protocol


class ByteStream(Protocol):
    """What a SPDY session runs over: a socket (:class:`Duplex`) or a WebSocket tunnel."""

    @property
    def last_activity(self) -> float: ...

    def recv(self, timeout: float | None = None) -> bytes | None: ...

    def sendall(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Duplex:
    def __init__(self, sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._tls_lock = threading.Lock()
        self._tls: ssl.SSLObject | None = None
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        if tls is not None:
            self._tls = tls.wrap_bio(self._in, self._out, server_side=True)
        self.last_activity = time.monotonic()
        self._closed = False
        self._pushed_back = b""

    def push_back(self, data: bytes) -> None:
        """Bytes read too early (behind a request head): the next recv returns them."""
        self._pushed_back += data

    @property
    def tls(self) -> bool:
        return self._tls is not None

    def handshake(self, timeout: float) -> None:
        """The TLS handshake (no-op for plain sockets); raises OSError or ssl.SSLError."""
        if self._tls is None:
            return
        deadline = time.monotonic() + timeout
        while not self._handshake_step():
            data = self._raw_recv(deadline - time.monotonic())
            if data is None:
                raise TimeoutError("TLS handshake timed out")
            if not data:
                raise ConnectionError("client closed the connection during the TLS handshake")
            with self._tls_lock:
                self._in.write(data)

    def _handshake_step(self) -> bool:
        """Advance the handshake; True when done. Sends what it produced either way."""
        assert self._tls is not None
        try:
            with self._tls_lock:
                self._tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        self._flush()
        return done

    def _raw_recv(self, timeout: float | None) -> bytes | None:
        """Bytes from the socket, b"" at EOF, None when ``timeout`` passed first."""
        if timeout is not None:
            if timeout <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return None
        try:
            data = self.sock.recv(256 * 1024)
        except (ConnectionResetError, BrokenPipeError):
            return b""
        except OSError:
            if self._closed:
                return b""
            raise
        self.last_activity = time.monotonic()
        return data

    def recv(self, timeout: float | None = None) -> bytes | None:
        """Plaintext from the client: b"" at EOF, None when ``timeout`` passed first."""
        if self._pushed_back:
            data, self._pushed_back = self._pushed_back, b""
            return data
        if self._tls is None:
            return self._raw_recv(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._tls_lock:
                try:
                    return self._tls.read(256 * 1024)
                except ssl.SSLWantReadError:
                    pass  # no whole record buffered yet: read more from the socket below
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return b""
            self._flush()
            data = self._raw_recv(None if deadline is None else deadline - time.monotonic())
            if not data:
                return data
            with self._tls_lock:
                self._in.write(data)

    def sendall(self, data: bytes) -> None:
        if not data:
            return
        with self._send_lock:
            if self._tls is None:
                self.sock.sendall(data)
            else:
                with self._tls_lock:
                    self._tls.write(data)
                    wire = self._out.read()
                self.sock.sendall(wire)
            self.last_activity = time.monotonic()

    def _flush(self) -> None:
        """Send what the TLS layer produced on its own (handshake, session tickets)."""
        with self._send_lock:
            with self._tls_lock:
                wire = self._out.read()
            if wire:
                self.sock.sendall(wire)

    def close(self) -> None:
        """Shut the connection both ways: a reader blocked in recv wakes up with EOF.

        The descriptor itself stays open until :meth:`release`, so a thread still
        inside select or recv never sees it reused.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the peer is already gone: nothing left to shut

    def release(self) -> None:
        """Free the socket; only the connection's owner calls this, last."""
        self.close()
        self.sock.close()
