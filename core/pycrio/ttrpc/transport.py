"""Moving bytes between a stream socket and a sans-IO connection, on one thread."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("pycrio.ttrpc")

READ_CHUNK = 64 << 10


def hang_up(sock: socket.socket) -> None:
    """Shut ``sock`` both ways (a reader blocked in recv or accept wakes up), then close it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer is already gone
    sock.close()


def sender(sock: socket.socket) -> Callable[[bytes], None]:
    """A thread-safe ``send(data)`` for ``sock``: frames from concurrent calls never interleave."""
    lock = threading.Lock()

    def send(data: bytes) -> None:
        with lock:
            sock.sendall(data)

    return send


def start_reader(
    sock: socket.socket,
    feed: Callable[[bytes], None],
    lost: Callable[[str], None],
    name: str,
) -> threading.Thread:
    """Read ``sock`` on a daemon thread, handing each chunk to ``feed``; ``lost`` at the end."""

    def run() -> None:
        reason = "connection closed by peer"
        try:
            while True:
                data = sock.recv(READ_CHUNK)
                if not data:
                    break
                feed(data)
        except OSError as e:
            reason = f"connection error: {e}"
        except Exception as e:  # noqa: BLE001 - a protocol error ends this connection only
            reason = f"{type(e).__name__}: {e}"
            log.warning("%s: %s", name, reason)
        lost(reason)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
