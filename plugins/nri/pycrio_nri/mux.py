"""NRI's connection multiplexer (containerd/nri pkg/net/multiplex).

One stream socket per plugin carries several logical connections. Each
write is a frame: connection id (u32, big-endian), payload length (u32),
payload. Each logical connection is a byte stream made of its frames'
payloads in order (a ttrpc frame may span several mux frames, or share one).
Connection 1 carries the plugin's ``Plugin`` service (the runtime is the
ttrpc client), connection 2 the runtime's ``Runtime`` service (the plugin is
the client). :class:`Demux` is the sans-IO part; :class:`Mux` runs it on a
socket with one reader thread.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Callable

from pycrio.ttrpc.transport import hang_up

log = logging.getLogger("pycrio.nri")

HEADER = struct.Struct(">II")
PLUGIN_SERVICE_CONN = 1
RUNTIME_SERVICE_CONN = 2
#: A ttrpc frame at its largest: 10-byte header plus 4 MiB.
MAX_PAYLOAD = 10 + (4 << 20)


class MuxError(Exception):
    """The trunk carried something that is not NRI multiplexing."""


def encode(conn_id: int, payload: bytes) -> bytes:
    """Frames for ``payload`` on ``conn_id`` (split when longer than MAX_PAYLOAD)."""
    if conn_id == 0:
        raise ValueError("mux connection id 0 is reserved")
    out = bytearray()
    for start in range(0, max(len(payload), 1), MAX_PAYLOAD):
        chunk = payload[start : start + MAX_PAYLOAD]
        out += HEADER.pack(conn_id, len(chunk)) + chunk
    return bytes(out)


class Demux:
    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """(connection id, payload) for each complete frame; MuxError on nonsense."""
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            conn_id, length = HEADER.unpack_from(self._buf)
            if length > MAX_PAYLOAD:
                raise MuxError(f"mux frame of {length} bytes exceeds the {MAX_PAYLOAD} maximum")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            out.append((conn_id, bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return out


class Mux:
    """A socket carrying multiplexed connections; start() after adding channels."""

    def __init__(self, sock: socket.socket, name: str = "nri-mux") -> None:
        self.sock = sock
        self.name = name
        self._demux = Demux()
        self._send_lock = threading.Lock()
        self._channels: dict[int, tuple[Callable[[bytes], None], Callable[[str], None]]] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    def channel(
        self, conn_id: int, on_data: Callable[[bytes], None], on_close: Callable[[str], None]
    ) -> Callable[[bytes], None]:
        """Route ``conn_id``'s bytes to ``on_data``; returns its ``send``."""
        self._channels[conn_id] = (on_data, on_close)
        return lambda data: self.send(conn_id, data)

    def send(self, conn_id: int, data: bytes) -> None:
        if self._closed:
            raise OSError("mux closed")
        frame = encode(conn_id, data)
        with self._send_lock:
            self.sock.sendall(frame)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._read, name=self.name, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        reason = "connection closed by peer"
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                for conn_id, payload in self._demux.feed(data):
                    channel = self._channels.get(conn_id)
                    if channel is not None:
                        channel[0](payload)
        except OSError as e:
            reason = f"connection error: {e}"
        except Exception as e:  # noqa: BLE001 - garbage ends this plugin's connection only
            reason = f"{type(e).__name__}: {e}"
        self._lost(reason)

    def _lost(self, reason: str) -> None:
        if not self._closed:
            self.close()
        for _, on_close in list(self._channels.values()):
            on_close(reason)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        hang_up(self.sock)
