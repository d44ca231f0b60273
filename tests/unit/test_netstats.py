from __future__ import annotations

import pytest

from pycrio.errors import NotFound
from pycrio.sandbox import netstats

COLUMNS = "bytes packets errs drop fifo frame compressed multicast"
SAMPLE = "\n".join(
    [
        "Inter-|   Receive  |  Transmit",
        f" face |{COLUMNS}|{COLUMNS}",
        "    lo: 140 2 0 0 0 0 0 0 140 2 0 0 0 0 0 0",
        "  eth0: 1234 10 3 1 0 0 0 0 5678 12 4 2 0 0 0 0",
    ]
)


def test_parse_net_dev() -> None:
    parsed = netstats.parse_net_dev(SAMPLE)
    assert [c.name for c in parsed] == ["lo", "eth0"]
    eth0 = parsed[1]
    assert (eth0.rx_bytes, eth0.rx_errors, eth0.tx_bytes, eth0.tx_errors) == (1234, 3, 5678, 4)
    assert (eth0.rx_packets, eth0.rx_dropped, eth0.tx_packets, eth0.tx_dropped) == (10, 1, 12, 2)


def test_read_own_is_the_daemons_namespace() -> None:
    own = {c.name for c in netstats.read_own()}
    assert own == {c.name for c in netstats.read("/proc/self/ns/net")}


def test_read_the_current_namespace_and_a_missing_one() -> None:
    names = [c.name for c in netstats.read("/proc/self/ns/net")]
    assert "lo" in names
    with pytest.raises(NotFound, match="is gone"):
        netstats.read("/nonexistent/netns")
