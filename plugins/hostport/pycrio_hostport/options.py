"""``[plugins.iptables]`` and ``[plugins.nftables]``: the host port drivers' options."""

from __future__ import annotations

from pycrio.kernel.options import NUMBER, Option


def _options(name: str) -> tuple[Option, ...]:
    return (
        Option(
            f"plugins.{name}",
            "timeout",
            NUMBER,
            30.0,
            f"Seconds one {name} command may take.",
        ),
    )


IPTABLES: tuple[Option, ...] = _options("iptables")
NFTABLES: tuple[Option, ...] = _options("nftables")
