"""Pods on a real bridge network through the daemon: CNI, host ports, and a clean host.

Each test gets a bridge of its own (``pycre<N>``) on a private /24 in
10.89.0.0/16, host-local IPAM state in tmp_path, and talks only to pod
addresses on that bridge and to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cgroups
import grpc
import pytest
from cri_api.v1 import api_pb2

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="no CNI plugins"),
    pytest.mark.skipif(not shutil.which("iptables-save"), reason="iptables missing"),
]

BUSYBOX = "/bin/busybox"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=check)


class Network:
    def __init__(self, tmp: Path, portmap: bool) -> None:
        self.tag = random.randint(0, 99999)
        self.bridge = f"pycre{self.tag}"
        self.prefix = f"10.89.{random.randint(1, 99)}"
        self.netd = tmp / "net.d"
        self.netd.mkdir()
        self.ipam = tmp / "ipam"
        plugins = [
            {
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": True,
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(self.ipam),
                    "ranges": [[{"subnet": f"{self.prefix}.0/24"}]],
                },
            }
        ]
        if portmap:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
        doc = {"cniVersion": "1.0.0", "name": f"pycre-{self.tag}", "plugins": plugins}
        (self.netd / "10-test.conflist").write_text(json.dumps(doc))

    def config(self, hostport: str) -> str:
        return (
            f"[network]\ndriver = 'cni'\nnetwork_dir = '{self.netd}'\n"
            f"plugin_dirs = ['/usr/lib/cni']\nhostport_manager = '{hostport}'\n"
        )

    def allocations(self) -> list[str]:
        if not self.ipam.exists():
            return []
        return [p.name for p in self.ipam.rglob("*") if p.is_file() and p.name[0].isdigit()]

    def cleanup(self) -> None:
        run("ip", "link", "del", self.bridge, check=False)


@pytest.fixture
def network(tmp_path: Path, request):
    net = Network(tmp_path, portmap=request.param == "portmap")
    yield net
    net.cleanup()


def pod(name: str, tmp: Path, ports: list[tuple[int, int]] = ()) -> api_pb2.PodSandboxConfig:
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="net", uid=f"uid-{name}"),
        hostname=name,
        log_directory=str(tmp / "logs" / name),
        port_mappings=[
            api_pb2.PortMapping(protocol=api_pb2.TCP, host_port=h, container_port=c)
            for h, c in ports
        ],
        linux=api_pb2.LinuxPodSandboxConfig(
            security_context=api_pb2.LinuxSandboxSecurityContext(
                namespace_options=api_pb2.NamespaceOption(pid=api_pb2.CONTAINER)
            )
        ),
    )


def netns_of(rt, pod_id: str) -> str:
    req = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
    return json.loads(rt.PodSandboxStatus(req).info["info"])["namespaces"]["net"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(4); s.settimeout(20)
print("listening", flush=True)
c, _ = s.accept(); c.sendall(b"hello from the pod"); c.close()
"""


def serve_in(netns: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["nsenter", f"--net={netns}", sys.executable, "-c", SERVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "listening"
    return proc


def fetch(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=5) as c:
        return c.recv(100)


def host_traces(pod_ids: list[str]) -> list[str]:
    """Anything of these pods left on the host: rules, mounts, links."""
    left = []
    rules = run("iptables-save").stdout
    nft = run("nft", "list", "ruleset", check=False).stdout
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    for pod_id in pod_ids:
        for where, text in (("iptables", rules), ("nft", nft), ("mounts", mounts)):
            if pod_id in text:
                left.append(f"{where} mentions {pod_id}")
    return left


@pytest.mark.parametrize("network", ["portmap"], indirect=True)
def test_two_pods_get_distinct_ips_reach_each_other_and_leave_nothing(
    start_daemon, network: Network, tmp_path: Path
) -> None:
    links_before = run("ip", "-o", "link").stdout.count("veth")
    d = start_daemon(config=network.config("iptables"))
    rt = d.runtime()
    status = {c.type: c for c in rt.Status(api_pb2.StatusRequest()).status.conditions}
    assert status["NetworkReady"].status, status["NetworkReady"].message
    a = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod("a", tmp_path))).pod_sandbox_id
    b = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod("b", tmp_path))).pod_sandbox_id
    ip_a = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=a)).status.network.ip
    ip_b = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=b)).status.network.ip
    assert ip_a != ip_b
    assert ip_a.startswith(network.prefix + ".") and ip_b.startswith(network.prefix + ".")
    assert len(network.allocations()) == 2
    ns_a, ns_b = netns_of(rt, a), netns_of(rt, b)
    ping = run("nsenter", f"--net={ns_a}", BUSYBOX, "ping", "-c", "1", "-W", "3", ip_b)
    assert "1 packets received" in ping.stdout
    stats = rt.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id=a)).stats
    net = stats.linux.network
    assert net.default_interface.name == "eth0"
    assert net.default_interface.tx_bytes.value > 0 and net.default_interface.rx_bytes.value > 0
    assert [i.name for i in net.interfaces] == ["eth0"]
    # the cadvisor network metrics: the pod namespace's eth0, the loopback left out
    (metrics,) = [
        p
        for p in rt.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest()).pod_metrics
        if p.pod_sandbox_id == a
    ]
    received = {
        m.label_values[3]: m.value.value
        for m in metrics.metrics
        if m.name == "container_network_receive_packets_total"
    }
    assert list(received) == ["eth0"] and received["eth0"] > 0
    assert run("ip", "-o", "link").stdout.count("veth") == links_before + 2

    for pod_id in (a, b):
        rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert network.allocations() == []
    assert run("ip", "-o", "link").stdout.count("veth") == links_before
    assert not os.path.exists(ns_a) and not os.path.exists(ns_b)
    for pod_id in (a, b):
        rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert host_traces([a, b]) == []
    assert not cgroups.matching(f"*{a}*")


@pytest.mark.parametrize(
    ("network", "hostport"),
    [("portmap", "none"), ("plain", "iptables"), ("plain", "nftables")],
    indirect=["network"],
)
def test_host_port_is_reachable_from_localhost_and_goes_away(
    start_daemon, network: Network, hostport: str, tmp_path: Path
) -> None:
    if hostport == "nftables" and not shutil.which("nft"):
        pytest.skip("nft is not installed")
    d = start_daemon(config=network.config(hostport))
    rt = d.runtime()
    port = free_port()
    pod_id = rt.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=pod("web", tmp_path, [(port, 8080)]))
    ).pod_sandbox_id
    server = serve_in(netns_of(rt, pod_id))
    try:
        assert fetch("127.0.0.1", port) == b"hello from the pod"
    finally:
        server.kill()
        server.wait(timeout=10)
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rules = (
        run("iptables-save", "-t", "nat").stdout + run("nft", "list", "ruleset", check=False).stdout
    )
    assert f"--dport {port} " not in rules and f"dport {port} " not in rules
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert host_traces([pod_id]) == []
    assert network.allocations() == []


@pytest.mark.parametrize("network", ["portmap"], indirect=True)
def test_network_is_torn_down_after_a_daemon_restart(
    start_daemon, network: Network, tmp_path: Path
) -> None:
    d = start_daemon(config=network.config("none"))
    pod_id = (
        d.runtime()
        .RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod("survivor", tmp_path)))
        .pod_sandbox_id
    )
    assert len(network.allocations()) == 1
    d.stop()
    d.start()
    rt = d.runtime()
    assert [p.id for p in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items] == [pod_id]
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert network.allocations() == []
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert host_traces([pod_id]) == []


def test_network_not_ready_without_config(start_daemon, tmp_path: Path) -> None:
    netd = tmp_path / "empty.d"
    netd.mkdir()
    d = start_daemon(config=f"[network]\nnetwork_dir = '{netd}'\nhostport_manager = 'none'\n")
    rt = d.runtime()
    cond = {c.type: c for c in rt.Status(api_pb2.StatusRequest()).status.conditions}
    assert not cond["NetworkReady"].status
    assert cond["NetworkReady"].reason == "NetworkPluginNotReady"
    assert str(netd) in cond["NetworkReady"].message
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod("early", tmp_path)))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "not ready" in err.value.details()
    assert "NetworkPluginNotReady" in err.value.details()
    assert rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []
