"""Run a little work inside a pod's pinned network namespace, without forking.

setns changes only the calling thread's namespace, so a short-lived thread
joins the pod's namespace, does its work and goes back. A socket made there
stays in the pod's namespace wherever it is used afterwards: that is how port
forwarding reaches the pod's localhost.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from pycrio.errors import DeadlineExceeded, NotFound
from pycrio.linux import libc

T = TypeVar("T")


def run_in(netns_path: str, fn: Callable[[], T], timeout: float = 5.0) -> T:
    """``fn()`` on a thread inside the namespace pinned at ``netns_path``."""
    result: list[T] = []
    errors: list[BaseException] = []

    def inside() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                errors.append(NotFound(f"network namespace {netns_path} is gone"))
                return
            try:
                try:
                    libc.setns(target, libc.CLONE_NEWNET)
                except OSError as e:
                    errors.append(OSError(e.errno, f"setns into the pod network: {e.strerror}"))
                    return
                try:
                    result.append(fn())
                except BaseException as e:  # noqa: BLE001 - re-raised on the caller's thread
                    errors.append(e)
                finally:
                    # this thread ends right after; going back keeps it tidy anyway
                    libc.setns(own, libc.CLONE_NEWNET)
            finally:
                os.close(target)
        finally:
            os.close(own)

    worker = threading.Thread(target=inside, name="netns", daemon=True)
    worker.start()
    worker.join(timeout)
    if errors:
        raise errors[0]
    if not result:
        raise DeadlineExceeded(f"work in network namespace {netns_path} took over {timeout:g}s")
    return result[0]


def dial_localhost(netns_path: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to localhost:``port`` in the namespace ("" = the host's).

    IPv4 first, then IPv6, like a client resolving "localhost".
    """
    errors = []
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):

        def make(family: int = family) -> socket.socket:
            return socket.socket(family, socket.SOCK_STREAM)

        sock = run_in(netns_path, make) if netns_path else make()
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
        except OSError as e:
            sock.close()
            errors.append(f"{address}: {e.strerror or e}")
            continue
        sock.settimeout(None)
        return sock
    tried = "; ".join(errors)
    raise ConnectionRefusedError(f"cannot connect to localhost:{port} in the pod ({tried})")
