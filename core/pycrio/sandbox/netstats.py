"""Network counters of a pod, read inside its pinned network namespace.

/proc/net/dev shows the namespace of the reader, so a short-lived thread
joins the pod's namespace (setns changes only the calling thread), reads
/proc/thread-self/net/dev and goes back: no process is forked per call.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

from pycrio.errors import NotFound

CLONE_NEWNET = 0x40000000
READ_TIMEOUT = 5.0
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class InterfaceCounters:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int


def parse_net_dev(text: str) -> list[InterfaceCounters]:
    """The per-interface lines of /proc/net/dev (after its two header lines)."""
    out = []
    for line in text.splitlines()[2:]:
        name, _, fields = line.partition(":")
        values = fields.split()
        if len(values) < 16:
            continue
        out.append(
            InterfaceCounters(
                name=name.strip(),
                rx_bytes=int(values[0]),
                rx_errors=int(values[2]),
                tx_bytes=int(values[8]),
                tx_errors=int(values[10]),
            )
        )
    return out


def read(netns_path: str) -> list[InterfaceCounters]:
    """Counters of every interface in the namespace pinned at ``netns_path``."""
    result: list[str] = []
    errors: list[BaseException] = []

    def inside() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as e:
            os.close(own)
            errors.append(NotFound(f"network namespace {netns_path} is gone"))
            del e
            return
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                errors.append(OSError(ctypes.get_errno(), "setns into the pod network"))
                return
            try:
                with open("/proc/thread-self/net/dev") as f:
                    result.append(f.read())
            finally:
                # this thread ends right after; going back keeps it tidy anyway
                _libc.setns(own, CLONE_NEWNET)
        finally:
            os.close(target)
            os.close(own)

    worker = threading.Thread(target=inside, name="netstats", daemon=True)
    worker.start()
    worker.join(READ_TIMEOUT)
    if errors:
        raise errors[0]
    if not result:
        raise NotFound(f"could not read network counters of {netns_path}")
    return parse_net_dev(result[0])
