"""Fixtures for the real host port tests: a pod-like netns with a server in it.

Traffic stays on 127.0.0.0/8 and on a veth pair of the test's own with the
private subnet 10.91.0.0/24 (host side .1, "pod" side .2). Everything made
here (netns, veth, server process, the pods' rules) is removed in finalizers,
also when a test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pycrio_hostport.common import HostportBase, pod_hash

from pycrio.config import defaults
from pycrio.errors import FailedPrecondition
from pycrio.kernel.interfaces import DriverContext, PortMapping

HOST_IP = "10.91.0.1"
POD_IP = "10.91.0.2"
POD_PORT = 8080
PREFIX = "pychp"

# Answers every TCP connection and UDP datagram with "pong <peer address>",
# so a test sees both that it got through and which source the pod saw.
SERVER = """
import socket, sys, threading
ip, port = sys.argv[1], int(sys.argv[2])
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((ip, port))
    while True:
        data, peer = u.recvfrom(100)
        u.sendto(b"pong " + peer[0].encode(), peer)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((ip, port))
t.listen(16)
while True:
    c, peer = t.accept()
    c.sendall(b"pong " + peer[0].encode())
    c.close()
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def need_root_net() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces and nat rules")
    if not shutil.which("ip"):
        pytest.skip("needs iproute2 (ip)")


def tcp_request(host: str, port: int, timeout: float = 3.0) -> str:
    """Connect and read the server's reply; raises OSError when nothing answers."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        return s.recv(100).decode()


def udp_request(host: str, port: int, timeout: float = 3.0) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(b"ping", (host, port))
        return s.recvfrom(100)[0].decode()


def free_port() -> int:
    """A port nothing on the host listens on (TCP and UDP) right now."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


@dataclass
class PodNet:
    """A network namespace standing in for a pod, with a server on POD_IP:POD_PORT."""

    netns: str
    host_if: str
    server: subprocess.Popen | None = None

    def in_pod(self, code: str, *args: str) -> subprocess.CompletedProcess:
        """Run python code inside the pod's namespace (a client on the 'outside')."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=30,
        )


def _drop_stale_links() -> None:
    """Delete veths a killed earlier run left holding 10.91.0.0/24; refuse anyone else's."""
    out = _ip("-o", "-4", "addr", "show", "to", "10.91.0.0/24").stdout
    for line in out.splitlines():
        name = line.split()[1].split("@")[0]
        if name.startswith(PREFIX):
            _ip("link", "del", name, check=False)
        else:
            pytest.skip(f"10.91.0.0/24 is already used on the host by {name}")


@pytest.fixture
def pod_net() -> Iterator[PodNet]:
    need_root_net()
    _drop_stale_links()
    tag = secrets.token_hex(3)
    net = PodNet(netns=f"{PREFIX}-{tag}", host_if=f"{PREFIX}h{tag}")
    pod_if = f"{PREFIX}p{tag}"
    try:
        _ip("netns", "add", net.netns)
        _ip("link", "add", net.host_if, "type", "veth", "peer", "name", pod_if, "netns", net.netns)
        _ip("addr", "add", f"{HOST_IP}/24", "dev", net.host_if)
        _ip("link", "set", net.host_if, "up")
        # Packets from "outside" (the pod itself, for the PREROUTING check) are
        # forwarded back out of this veth; enable forwarding on it alone
        # rather than touching the host-wide net.ipv4.ip_forward.
        Path(f"/proc/sys/net/ipv4/conf/{net.host_if}/forwarding").write_text("1\n")
        _ip("-n", net.netns, "addr", "add", f"{POD_IP}/24", "dev", pod_if)
        _ip("-n", net.netns, "link", "set", pod_if, "up")
        _ip("-n", net.netns, "link", "set", "lo", "up")
        net.server = subprocess.Popen(
            ["ip", "netns", "exec", net.netns, sys.executable, "-c", SERVER, POD_IP, str(POD_PORT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                tcp_request(POD_IP, POD_PORT, timeout=0.5)
                break
            except OSError:
                if net.server.poll() is not None or time.monotonic() > deadline:
                    err = net.server.stderr.read() if net.server.stderr else b""
                    raise RuntimeError(f"test server did not start: {err.decode()}") from None
                time.sleep(0.05)
        yield net
    finally:
        if net.server is not None:
            net.server.kill()
            net.server.wait(timeout=10)
        _ip("link", "del", net.host_if, check=False)
        _ip("netns", "del", net.netns, check=False)


@dataclass
class Drivers:
    """Makes driver instances sharing one state dir, and removes every test pod at the end."""

    cls: type[HostportBase]
    state_dir: Path
    pods: set[str] = field(default_factory=set)

    def new(self) -> HostportBase:
        """A driver as a (re)started daemon would construct it."""
        ctx = DriverContext(
            self.cls.__name__.lower(),
            defaults(),
            {"timeout": 30},
            str(self.state_dir),
            str(self.state_dir.parent / "run"),
        )
        return self.cls(ctx)

    def pod_id(self) -> str:
        pod = f"{PREFIX}-test-{secrets.token_hex(8)}"
        self.pods.add(pod)
        return pod

    def cleanup(self) -> None:
        """Remove the test pods' rules through the state, then straight from the kernel."""
        drv = self.new()
        for pod in self.pods:
            drv.remove(pod)
            for family in (4, 6):
                drv._withdraw(family, pod)


@pytest.fixture
def drivers_for(tmp_path: Path) -> Iterator[Callable[[type[HostportBase]], Drivers]]:
    made: list[Drivers] = []

    def make(cls: type[HostportBase]) -> Drivers:
        d = Drivers(cls, tmp_path / "state")
        made.append(d)
        return d

    yield make
    errors = []
    for d in made:
        try:
            d.cleanup()
        except Exception as e:  # noqa: BLE001 - report every failed cleanup, then fail
            errors.append(e)
    if errors:
        raise errors[0]


# --- the real scenarios, run once per driver --------------------------------

HAIRPIN_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
    print(s.recv(100).decode())
"""


@dataclass
class Scenarios:
    """The same real checks for both drivers; ``ruleset`` reads the kernel's nat rules."""

    drivers: Drivers
    ruleset: Callable[[], str]

    def assert_no_trace(self, pod: str) -> None:
        rules = self.ruleset()
        assert pod not in rules
        assert pod_hash(pod) not in rules

    def maps_and_removes(self, net: PodNet) -> None:
        drv = self.drivers.new()
        pod, port = self.drivers.pod_id(), free_port()
        drv.add(
            pod, POD_IP, [PortMapping(port, POD_PORT, "tcp"), PortMapping(port, POD_PORT, "udp")]
        )
        assert pod in self.ruleset()
        with open("/proc/sys/net/ipv4/conf/all/route_localnet") as f:
            assert f.read().strip() == "1"
        # through loopback: OUTPUT DNAT, then masquerade to the host's veth address
        assert tcp_request("127.0.0.1", port) == f"pong {HOST_IP}"
        assert udp_request("127.0.0.1", port) == f"pong {HOST_IP}"
        # through one of the host's own non-loopback addresses
        assert tcp_request(HOST_IP, port) == f"pong {HOST_IP}"
        # from outside the host (PREROUTING): here the pod itself, which needs hairpin NAT
        got = net.in_pod(HAIRPIN_CLIENT, HOST_IP, str(port))
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == f"pong {HOST_IP}"

        drv.remove(pod)
        self.assert_no_trace(pod)
        with pytest.raises(OSError):
            tcp_request("127.0.0.1", port)
        drv.remove(pod)  # idempotent

    def honours_host_ip(self, net: PodNet) -> None:
        drv = self.drivers.new()
        pod, port = self.drivers.pod_id(), free_port()
        drv.add(pod, POD_IP, [PortMapping(port, POD_PORT, "tcp", "127.0.0.1")])
        assert tcp_request("127.0.0.1", port) == f"pong {HOST_IP}"
        with pytest.raises(OSError):
            tcp_request(HOST_IP, port)
        drv.remove(pod)
        self.assert_no_trace(pod)

    def conflicts(self, net: PodNet) -> None:
        drv = self.drivers.new()
        a, b = self.drivers.pod_id(), self.drivers.pod_id()
        port, other = free_port(), free_port()
        drv.add(a, POD_IP, [PortMapping(port, POD_PORT)])
        with pytest.raises(FailedPrecondition, match=a):
            drv.add(b, "10.91.0.3", [PortMapping(port, 9090)])
        with pytest.raises(FailedPrecondition, match=a):
            drv.add(b, "10.91.0.3", [PortMapping(port, 9090, "tcp", "127.0.0.1")])
        assert b not in self.ruleset()
        drv.add(b, "10.91.0.3", [PortMapping(other, 9090), PortMapping(port, 9090, "udp")])
        assert tcp_request("127.0.0.1", port) == f"pong {HOST_IP}"
        drv.remove(a)
        self.assert_no_trace(a)
        assert b in self.ruleset()  # the other pod's rules survive
        drv.remove(b)
        self.assert_no_trace(b)

    def survives_restart(self, net: PodNet) -> None:
        pod, port = self.drivers.pod_id(), free_port()
        self.drivers.new().add(pod, POD_IP, [PortMapping(port, POD_PORT)])
        restarted = self.drivers.new()
        with pytest.raises(FailedPrecondition, match=pod):
            restarted.add(self.drivers.pod_id(), "10.91.0.3", [PortMapping(port, 1)])
        assert tcp_request("127.0.0.1", port) == f"pong {HOST_IP}"
        restarted.remove(pod)
        self.assert_no_trace(pod)
        with pytest.raises(OSError):
            tcp_request("127.0.0.1", port)
        self.drivers.new().remove(pod)

    def ipv6_rules(self) -> None:
        """IPv6 rules are written and removed (no IPv6 traffic: no subnet of ours for it)."""
        drv = self.drivers.new()
        pod, port = self.drivers.pod_id(), free_port()
        drv.add(pod, "fd00:91::2", [PortMapping(port, POD_PORT, "sctp")])
        rules = self.ruleset()
        assert pod in rules and "fd00:91::2" in rules
        drv.remove(pod)
        self.assert_no_trace(pod)


@pytest.fixture
def scenarios_for(
    drivers_for: Callable[[type[HostportBase]], Drivers],
) -> Callable[[type[HostportBase], Callable[[], str]], Scenarios]:
    """Factory: the real scenarios for one driver class and its ruleset reader."""

    def make(cls: type[HostportBase], ruleset: Callable[[], str]) -> Scenarios:
        need_root_net()
        return Scenarios(drivers_for(cls), ruleset)

    return make
