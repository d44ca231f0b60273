"""A client of conmon's attach socket: a running container's stdio, live.

conmon listens on a SOCK_SEQPACKET socket (``<socket dir>/<id>/attach``). Each
packet it sends is one byte naming the stream (conmon's ``stdpipe_t``: 2 for
stdout, 3 for stderr) followed by up to 8 KiB of output; what we send goes to
the container's stdin as is; shutting our side makes conmon close that stdin
(for stdin_once containers). The path can be long, so it is opened with
O_PATH and connected through /proc/self/fd, as podman does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable

from pycrio.kernel.interfaces import STDERR, STDOUT, Attachment

PIPE_STDOUT = 2
PIPE_STDERR = 3
#: conmon's buffer: a packet is at most this much payload, plus the pipe byte.
BUF_SIZE = 8192


def connect(path: str, timeout: float = 5.0) -> socket.socket:
    """Connect to an attach socket; OSError when conmon is not listening."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.settimeout(timeout)
        try:
            sock.connect(f"/proc/self/fd/{fd}")
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        return sock
    finally:
        os.close(fd)


def split_packet(packet: bytes) -> tuple[int, bytes]:
    """``(pipe, payload)`` of one packet from conmon."""
    if not packet:
        raise ValueError("empty attach packet")
    return packet[0], packet[1:]


def send_input(sock: socket.socket, data: bytes) -> None:
    """Send stdin bytes in packets conmon reads whole."""
    view = memoryview(data)
    for start in range(0, len(view), BUF_SIZE):
        sock.sendall(view[start : start + BUF_SIZE])


def end_input(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


class ConmonAttachment(Attachment):
    """The driver's :class:`Attachment`: conmon's attach socket plus its control FIFO."""

    def __init__(self, sock: socket.socket, resize: Callable[[int, int], None]) -> None:
        self._sock = sock
        self._resize = resize
        self._lock = threading.Lock()
        self._closed = False

    def recv(self) -> tuple[int, bytes] | None:
        while True:
            try:
                packet = self._sock.recv(BUF_SIZE + 1)
            except OSError:
                return None
            if not packet:
                return None
            pipe, payload = split_packet(packet)
            if payload:
                return (STDOUT if pipe == PIPE_STDOUT else STDERR), payload

    def send(self, data: bytes) -> None:
        send_input(self._sock, data)

    def close_input(self) -> None:
        end_input(self._sock)

    def resize(self, width: int, height: int) -> None:
        self._resize(width, height)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
