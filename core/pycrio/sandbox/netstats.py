"""Network counters of a pod, read inside its pinned network namespace.

/proc/net/dev shows the namespace of the reader, so a short-lived thread
joins the pod's namespace (setns changes only the calling thread), reads
/proc/thread-self/net/dev and goes back: no process is forked per call.
"""

from __future__ import annotations

from dataclasses import dataclass

from pycrio.errors import DeadlineExceeded, NotFound
from pycrio.sandbox import netns

READ_TIMEOUT = 5.0


@dataclass(frozen=True)
class InterfaceCounters:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int
    rx_packets: int = 0
    rx_dropped: int = 0
    tx_packets: int = 0
    tx_dropped: int = 0


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
                rx_packets=int(values[1]),
                rx_dropped=int(values[3]),
                tx_packets=int(values[9]),
                tx_dropped=int(values[11]),
            )
        )
    return out


def read(netns_path: str) -> list[InterfaceCounters]:
    """Counters of every interface in the namespace pinned at ``netns_path``."""

    def net_dev() -> str:
        with open("/proc/thread-self/net/dev") as f:
            return f.read()

    try:
        text = netns.run_in(netns_path, net_dev, READ_TIMEOUT)
    except DeadlineExceeded:
        raise NotFound(f"could not read network counters of {netns_path}") from None
    return parse_net_dev(text)


def read_own() -> list[InterfaceCounters]:
    """Counters of the daemon's own network namespace: the node's, which host-network pods use."""
    with open("/proc/thread-self/net/dev") as f:
        return parse_net_dev(f.read())
