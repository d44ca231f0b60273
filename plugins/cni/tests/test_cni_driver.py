"""The cni driver with the real plugins (/usr/lib/cni), as root.

Each test builds a bridge of its own (``pycrtestN``) on a private /24 inside
10.89.0.0/16 (a random third octet, so tests running side by side never share
a subnet), with host-local IPAM keeping its allocations under tmp_path, and
network namespaces named after the test. Traffic stays inside that bridge
and 127.0.0.1. Every test checks the host afterwards: no veth, no IP
allocation file, no iptables rule or per-pod chain. Finalizers undo
everything through the DEL path first and delete what is left (namespaces,
bridge, tagged iptables rules) as a last resort, even when a test fails.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pycrio import errors
from pycrio.config import defaults
from pycrio.kernel.interfaces import DriverContext, PodNetwork, PortMapping
from pycrio_cni.driver import CNIDriver

CNI_BIN = "/usr/lib/cni"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, bridges)"),
    pytest.mark.skipif(
        not os.path.exists(f"{CNI_BIN}/bridge"), reason="containernetworking-plugins missing"
    ),
    pytest.mark.skipif(not shutil.which("ip"), reason="iproute2 missing"),
    pytest.mark.skipif(not shutil.which("iptables-save"), reason="iptables missing"),
]


def run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


def nat_rules() -> str:
    return run("iptables-save", "-t", "nat", check=False).stdout


def cni_chains(rules: str) -> set[str]:
    """Per-pod CNI chains (the shared CNI-HOSTPORT-* ones legitimately stay)."""
    chains = set(re.findall(r"^:(CNI-\S+)", rules, re.M))
    return {c for c in chains if not c.startswith("CNI-HOSTPORT-")}


def links() -> str:
    return run("ip", "-o", "link").stdout


class Net:
    """One test's world: config dir, bridge, subnet, namespaces, drivers."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tag = f"{random.randint(0, 9999)}"
        self.bridge = f"pycrtest{self.tag}"
        self.octet = random.randint(100, 250)
        self.subnet = f"10.89.{self.octet}.0/24"
        self.name = f"pycrtest-{self.tag}"
        self.netd = tmp / "net.d"
        self.netd.mkdir()
        self.ipam = tmp / "ipam"
        self.state = tmp / "state"
        self.namespaces: list[str] = []
        self.drivers: list[CNIDriver] = []
        self.pods: list[tuple[CNIDriver, PodNetwork]] = []
        self.chains_before = cni_chains(nat_rules())

    def conflist(
        self,
        *,
        ipmasq: bool = True,
        portmap: bool = True,
        extra: list[dict[str, Any]] | None = None,
        ipv6: str = "",
    ) -> dict[str, Any]:
        ranges: list[list[dict[str, str]]] = [[{"subnet": self.subnet}]]
        if ipv6:
            ranges.append([{"subnet": ipv6}])
        plugins: list[dict[str, Any]] = [
            {
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": True,
                "ipMasq": ipmasq,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                    "routes": [{"dst": self.subnet}],
                    "dataDir": str(self.ipam),
                },
            }
        ]
        if portmap:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
        plugins.extend(extra or [])
        return {"cniVersion": "1.0.0", "name": self.name, "plugins": plugins}

    def write(self, doc: dict[str, Any], filename: str = "10-test.conflist") -> None:
        tmp = self.netd / f".{filename}.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.netd / filename)

    def driver(self, plugin_dirs: list[str] | None = None, **options: Any) -> CNIDriver:
        cfg = defaults()
        cfg.data["network"]["network_dir"] = str(self.netd)
        cfg.data["network"]["plugin_dirs"] = plugin_dirs or [CNI_BIN]
        options.setdefault("timeout", "30s")
        drv = CNIDriver(DriverContext("cni", cfg, options, str(self.state), str(self.tmp / "run")))
        self.drivers.append(drv)
        return drv

    def netns(self, suffix: str) -> str:
        name = f"pycrt{self.tag}{suffix}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        return f"/run/netns/{name}"

    def pod(self, drv: CNIDriver, suffix: str, **kw: Any) -> PodNetwork:
        pod = PodNetwork(
            pod_id=f"pycrt{self.tag}pod{suffix}",
            name=f"pod-{suffix}",
            namespace="pycrtest",
            uid=f"uid-{self.tag}-{suffix}",
            netns_path=self.netns(suffix),
            **kw,
        )
        self.pods.append((drv, pod))
        return pod

    def allocations(self) -> list[str]:
        """host-local's per-IP files (its lock and last_reserved_ip files aside)."""
        d = self.ipam / self.name
        if not d.exists():
            return []
        return [n for n in os.listdir(d) if n != "lock" and not n.startswith("last_reserved_ip")]

    def assert_clean(self, pods: list[PodNetwork], veths: list[str]) -> None:
        """Nothing of these pods is left on the host."""
        assert self.allocations() == []
        rules = nat_rules() + run("iptables-save", "-t", "filter", check=False).stdout
        for pod in pods:
            assert pod.pod_id not in rules
        assert cni_chains(nat_rules()) <= self.chains_before
        listed = links()
        for veth in veths:
            assert f" {veth}@" not in listed and f" {veth}:" not in listed
        results = self.state / "results"
        assert not results.exists() or os.listdir(results) == []

    def cleanup(self) -> None:
        for drv, pod in reversed(self.pods):
            try:
                drv.teardown(pod)
            except Exception as e:  # noqa: BLE001 - keep cleaning
                print(f"cleanup teardown of {pod.pod_id}: {e}", file=sys.stderr)
        for drv in self.drivers:
            drv.close()
        for name in self.namespaces:
            run("ip", "netns", "del", name, check=False)
        run("ip", "link", "del", self.bridge, check=False)
        self._purge_iptables()

    def _purge_iptables(self) -> None:
        """Last resort: delete rules tagged with this test's network, then its orphan chains."""
        rules = nat_rules()
        chain = ""
        for line in rules.splitlines():
            if line.startswith("-A ") and f'name: \\"{self.name}\\"' in line:
                args = shlex.split(line)
                chain = args[1]
                run("iptables", "-t", "nat", "-D", chain, *args[2:], check=False)
        for chain in cni_chains(nat_rules()) - self.chains_before:
            if f"-j {chain}" not in nat_rules():
                run("iptables", "-t", "nat", "-F", chain, check=False)
                run("iptables", "-t", "nat", "-X", chain, check=False)


SHARED_JUMPS = (
    ("PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"),
    ("OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"),
    (
        "POSTROUTING",
        "-m",
        "comment",
        "--comment",
        "CNI portfwd requiring masquerade",
        "-j",
        "CNI-HOSTPORT-MASQ",
    ),
)
SHARED_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK")


@pytest.fixture(scope="module", autouse=True)
def restore_host_state() -> Iterator[None]:
    """Put back what the plugins change for the whole host, not per pod.

    The bridge plugin turns on IPv4 forwarding for gateways, and portmap
    creates shared CNI-HOSTPORT-* chains it never deletes (CRI-O nodes keep
    them too). They are removed only if this module created them and no pod
    of anyone's uses them any more (no per-pod jump left in the DNAT chain).
    """
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    forward_before = forward.read_text().strip()
    shared_before = ":CNI-HOSTPORT-DNAT " in nat_rules()
    yield
    rules = nat_rules()
    if not shared_before and ":CNI-HOSTPORT-DNAT " in rules and "-A CNI-HOSTPORT-DNAT" not in rules:
        for jump in SHARED_JUMPS:
            run("iptables", "-t", "nat", "-D", *jump, check=False)
        for chain in SHARED_CHAINS:
            run("iptables", "-t", "nat", "-F", chain, check=False)
            run("iptables", "-t", "nat", "-X", chain, check=False)
    if forward_before == "0" and not re.search(r"\bpycrio0\b", links()):
        forward.write_text("0\n")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    try:
        yield n
    finally:
        n.cleanup()


def host_veths(status_interfaces: list[dict[str, Any]], bridge: str) -> list[str]:
    return [i["name"] for i in status_interfaces if not i.get("sandbox") and i["name"] != bridge]


def in_netns(netns_path: str, *argv: str, timeout: float = 15) -> subprocess.CompletedProcess:
    return run(
        "ip", "netns", "exec", os.path.basename(netns_path), *argv, check=False, timeout=timeout
    )


def wait_for(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


SERVER = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 8080)); s.listen(1); print('ready', flush=True)\n"
    "s.settimeout(20); c,_=s.accept(); c.sendall(b'hello from pod'); c.close()\n"
)


def test_two_pods_reach_each_other_and_leave_nothing(net: Net) -> None:
    net.write(net.conflist())
    drv = net.driver()
    assert drv.ready() == (True, "", "")
    assert drv.handles_port_mappings()
    host_port = random.randint(20000, 29999)
    pod_a = net.pod(drv, "a", port_mappings=[PortMapping(host_port, 8080, "tcp", "127.0.0.1")])
    pod_b = net.pod(drv, "b")
    st_a = drv.setup(pod_a)
    st_b = drv.setup(pod_b)
    ip_a, ip_b = st_a.ips[0], st_b.ips[0]
    assert ip_a != ip_b
    assert ip_a.startswith(f"10.89.{net.octet}.") and ip_b.startswith(f"10.89.{net.octet}.")
    assert sorted(net.allocations()) == sorted([ip_a, ip_b])

    # lo was brought up by the loopback plugin, eth0 carries the address.
    assert "UP" in in_netns(pod_a.netns_path, "ip", "-o", "link", "show", "lo").stdout
    assert ip_a in in_netns(pod_a.netns_path, "ip", "-o", "addr", "show", "eth0").stdout

    ping = in_netns(pod_a.netns_path, "busybox", "ping", "-c1", "-W2", ip_b)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    # The portmap plugin mapped 127.0.0.1:<host_port> to pod a's 8080.
    assert pod_a.pod_id in nat_rules()
    server = subprocess.Popen(
        ["ip", "netns", "exec", os.path.basename(pod_a.netns_path), sys.executable, "-c", SERVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        with socket.create_connection(("127.0.0.1", host_port), timeout=5) as conn:
            conn.settimeout(5)
            assert conn.recv(100) == b"hello from pod"
    finally:
        server.kill()
        server.wait(timeout=10)

    veths = host_veths(st_a.interfaces, net.bridge) + host_veths(st_b.interfaces, net.bridge)
    assert len(veths) == 2 and all(v in links() for v in veths)
    drv.teardown(pod_a)
    drv.teardown(pod_b)
    drv.teardown(pod_b)  # idempotent
    net.assert_clean([pod_a, pod_b], veths)


def test_restarted_driver_tears_down_from_its_cache(net: Net) -> None:
    net.write(net.conflist())
    first = net.driver()
    pod = net.pod(first, "a", port_mappings=[PortMapping(random.randint(20000, 29999), 80)])
    status = first.setup(pod)
    veths = host_veths(status.interfaces, net.bridge)
    assert net.allocations() == status.ips
    first.close()
    # The config goes away (a network provider being replaced): a new daemon
    # is not ready for new pods but still deletes the old one correctly.
    (net.netd / "10-test.conflist").unlink()
    second = net.driver()
    assert second.ready()[0] is False
    second.teardown(PodNetwork(pod.pod_id, pod.name, pod.namespace, pod.uid, pod.netns_path))
    net.assert_clean([pod], veths)


def test_failing_plugin_undoes_the_whole_chain(net: Net) -> None:
    # tuning fails for real on a sysctl that does not exist, after bridge and
    # portmap have done their work: all of it must be undone.
    bad = {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.pycrio_no_such_sysctl": "1"}}
    net.write(net.conflist(extra=[bad]))
    drv = net.driver()
    assert drv.ready()[0]
    pod = net.pod(drv, "a", port_mappings=[PortMapping(random.randint(20000, 29999), 80)])
    with pytest.raises(errors.Internal) as exc:
        drv.setup(pod)
    assert "plugin 'tuning' failed on ADD" in str(exc.value)
    assert net.name in str(exc.value) and pod.pod_id in str(exc.value)
    assert "eth0" not in in_netns(pod.netns_path, "ip", "-o", "link").stdout
    net.assert_clean([pod], [])


def test_plugin_binary_missing_at_add_time(net: Net, tmp_path: Path) -> None:
    # The config was chosen while the binary existed; it vanishes before the
    # pod comes (an upgrade gone wrong). bridge has run by then: undone.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shutil.copy(f"{CNI_BIN}/tuning", bindir / "pycrtest-tuning")
    doc = net.conflist(portmap=False, extra=[{"type": "pycrtest-tuning"}])
    net.write(doc)
    drv = net.driver(plugin_dirs=[str(bindir), CNI_BIN], poll_interval="1h")
    assert drv.ready()[0]
    (bindir / "pycrtest-tuning").unlink()
    pod = net.pod(drv, "a")
    with pytest.raises(errors.Internal, match=r"plugin 'pycrtest-tuning' failed on ADD.*not found"):
        drv.setup(pod)
    net.assert_clean([pod], [])
    # Once the watcher sees it, the network is not ready, naming the plugin.
    drv.refresh()
    ready, reason, message = drv.ready()
    assert not ready and "plugin 'pycrtest-tuning' not found" in message


def test_check_and_dual_stack_addresses(net: Net) -> None:
    # portmap 1.1.1 fails CHECK on IPv4-only pods (containernetworking/plugins
    # #819), so CHECK is exercised on a list without it.
    net.write(net.conflist(portmap=False, ipmasq=False, ipv6=f"fd89:{net.octet:x}::/64"))
    drv = net.driver()
    pod = net.pod(drv, "a")
    status = drv.setup(pod)
    assert len(status.ips) == 2
    assert ":" not in status.ips[0] and ":" in status.ips[1]  # IPv4 first
    drv.check(pod)
    in_netns(pod.netns_path, "ip", "link", "del", "eth0")
    with pytest.raises(errors.Internal, match="plugin 'bridge' failed on CHECK"):
        drv.check(pod)
    drv.teardown(pod)
    net.assert_clean([pod], [])


def test_teardown_tolerates_a_vanished_netns(net: Net) -> None:
    # Without ipMasq: the bridge plugin finds its masquerade rules through the
    # addresses inside the namespace, so callers must tear down before they
    # delete a namespace; this covers the crash case where it is gone anyway.
    net.write(net.conflist(ipmasq=False, portmap=False))
    drv = net.driver()
    pod = net.pod(drv, "a")
    status = drv.setup(pod)
    veths = host_veths(status.interfaces, net.bridge)
    run("ip", "netns", "del", os.path.basename(pod.netns_path))
    drv.teardown(pod)
    drv.teardown(pod)
    net.assert_clean([pod], veths)


def test_config_written_later_makes_the_network_ready(net: Net) -> None:
    drv = net.driver()
    ready, reason, message = drv.ready()
    assert (ready, reason) == (False, "NetworkPluginNotReady")
    assert f"no CNI configuration file in {net.netd}" in message
    with pytest.raises(errors.Unavailable):
        drv.setup(PodNetwork("pycrtnone", "n", "pycrtest", "u", str(net.tmp)))
    started = time.monotonic()
    net.write(net.conflist())
    assert wait_for(lambda: drv.ready()[0], 5), drv.ready()
    assert time.monotonic() - started < 5
    assert drv.network() is not None and drv.network().name == net.name  # type: ignore[union-attr]
