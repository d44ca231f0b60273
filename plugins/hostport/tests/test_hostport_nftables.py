"""Real tests of the nftables driver: its own nft table, real packets.

Skipped with the reason when nft is missing or the kernel lacks nf_tables
(or the nat/fib expressions the driver needs).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from pycrio_hostport.nftables import NftablesHostport

pytestmark = pytest.mark.integration

PROBE_TABLE = "pychp-probe"


def nft_ruleset() -> str:
    proc = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _nft(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=30
    )


@pytest.fixture(scope="module")
def nft_usable() -> None:
    """Skip unless nft can make a nat chain with fib and masquerade here."""
    if not shutil.which("nft"):
        pytest.skip("nft is not installed (package nftables)")
    probe = (
        f"add table ip {PROBE_TABLE}\n"
        f"add chain ip {PROBE_TABLE} out {{ type nat hook output priority -100; }}\n"
        f"add chain ip {PROBE_TABLE} post {{ type nat hook postrouting priority 100; }}\n"
        f"add rule ip {PROBE_TABLE} out fib daddr type local tcp dport 1 dnat to 127.0.0.2:1\n"
        f"add rule ip {PROBE_TABLE} post ip saddr 127.0.0.0/8 masquerade\n"
    )
    try:
        made = _nft(probe)
    finally:
        _nft(f"delete table ip {PROBE_TABLE}\n")
    if made.returncode != 0:
        pytest.skip(f"the kernel or nft lacks nf_tables nat support: {made.stderr.strip()}")


@pytest.fixture
def scenarios(nft_usable, scenarios_for):
    return scenarios_for(NftablesHostport, nft_ruleset)


def test_nftables_maps_localhost_and_outside_then_removes(scenarios, pod_net) -> None:
    scenarios.maps_and_removes(pod_net)


def test_nftables_honours_host_ip(scenarios, pod_net) -> None:
    scenarios.honours_host_ip(pod_net)


def test_nftables_conflict_between_pods(scenarios, pod_net) -> None:
    scenarios.conflicts(pod_net)


def test_nftables_remove_after_restart(scenarios, pod_net) -> None:
    scenarios.survives_restart(pod_net)


def test_nftables_ipv6_rules(scenarios) -> None:
    scenarios.ipv6_rules()
