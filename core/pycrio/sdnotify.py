"""systemd's sd_notify protocol: readiness, reload and stop notices for a Type=notify unit.

The service manager passes an AF_UNIX datagram socket in ``$NOTIFY_SOCKET``
(a path, or an abstract name starting with ``@``); each notice is one
datagram of newline-separated ``KEY=VALUE`` assignments. Without the
variable every call is a no-op, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

ENV = "NOTIFY_SOCKET"


def format_message(**fields: object) -> bytes:
    """``format_message(READY=1, MAINPID=42)`` -> b"READY=1\\nMAINPID=42\\n"."""
    lines = []
    for key, value in fields.items():
        text = str(value)
        if not key or "=" in key or "\n" in key or "\n" in text:
            raise ValueError(f"invalid sd_notify assignment {key}={text!r}")
        lines.append(f"{key}={text}\n")
    return "".join(lines).encode()


def socket_address(value: str) -> str | bytes | None:
    """The address to send to: ``@name`` is an abstract socket (leading NUL)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not supported


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd wants in MONOTONIC_USEC with RELOADING=1."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def notify(env: Mapping[str, str] | None = None, **fields: object) -> bool:
    """Send one notice to $NOTIFY_SOCKET; False when there is none or sending fails."""
    address = socket_address((os.environ if env is None else env).get(ENV, ""))
    if address is None:
        return False
    data = format_message(**fields)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(data, address)
    except OSError:
        return False
    return True
