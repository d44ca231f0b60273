"""Real tests of the iptables driver: nat rules in the host's kernel, real packets.

Run as root; a netns with a server stands in for the pod (conftest.py). The
scenarios are shared with the nftables driver's tests.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from pycrio_hostport.iptables import IptablesHostport

pytestmark = pytest.mark.integration


def iptables_nat_rules() -> str:
    """Both families' nat tables, as an operator would look at them."""
    out = []
    for save in ("iptables-save", "ip6tables-save"):
        proc = subprocess.run([save, "-t", "nat"], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        out.append(proc.stdout)
    return "".join(out)


@pytest.fixture
def scenarios(scenarios_for):
    for tool in ("iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    return scenarios_for(IptablesHostport, iptables_nat_rules)


def test_iptables_maps_localhost_and_outside_then_removes(scenarios, pod_net) -> None:
    scenarios.maps_and_removes(pod_net)


def test_iptables_honours_host_ip(scenarios, pod_net) -> None:
    scenarios.honours_host_ip(pod_net)


def test_iptables_conflict_between_pods(scenarios, pod_net) -> None:
    scenarios.conflicts(pod_net)


def test_iptables_remove_after_restart(scenarios, pod_net) -> None:
    scenarios.survives_restart(pod_net)


def test_iptables_ipv6_rules(scenarios) -> None:
    scenarios.ipv6_rules()
