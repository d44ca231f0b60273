"""Pod sandboxes through the daemon's socket: lifecycle, validation, restart."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import cgroups
import grpc
import pytest
import runtime_mode
from cri_api.v1 import api_pb2

pytestmark = pytest.mark.e2e

NET = "[network]\ndriver = 'testnet'\nhostport_manager = 'none'\n"


def pod_config(name: str, tmp: Path, **kw) -> api_pb2.PodSandboxConfig:
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="ns1", uid=f"uid-{name}"),
        hostname=name,
        log_directory=str(tmp / "logs" / name),
        labels={"app": name, "tier": "test"},
        **kw,
    )


def host_linux(**kw) -> api_pb2.LinuxPodSandboxConfig:
    opts = api_pb2.NamespaceOption(network=api_pb2.NODE, **kw)
    return api_pb2.LinuxPodSandboxConfig(
        security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=opts)
    )


def mounts_of(pod_id: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if pod_id in line]


@pytest.fixture
def daemon(start_daemon, plugin_site: Path):
    return start_daemon(
        env={"PYTHONPATH": str(plugin_site)},
        config=NET + "[plugins.testnet]\nips = ['10.89.0.7', 'fd00::7']\n",
    )


def test_pod_lifecycle_with_pinned_namespaces(daemon, tmp_path: Path) -> None:
    rt = daemon.runtime()
    # The pod's IPC-namespaced sysctl differs from the host's, so both sides can be checked.
    host_shmmni = Path("/proc/sys/kernel/shmmni").read_text().strip()
    pod_shmmni = str(int(host_shmmni) - 1)
    linux = api_pb2.LinuxPodSandboxConfig(
        sysctls={"net.ipv4.ip_forward": "1", "kernel.shmmni": pod_shmmni}
    )
    dns = api_pb2.DNSConfig(servers=["10.89.0.10"], searches=["ns1.svc.local"], options=["ndots:5"])
    config = pod_config("web", tmp_path, linux=linux, dns_config=dns)
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id
    assert len(pod_id) == 64

    status = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id[:12]))
    s = status.status
    assert s.id == pod_id and s.state == api_pb2.SANDBOX_READY
    assert (s.metadata.name, s.metadata.namespace, s.metadata.uid) == ("web", "ns1", "uid-web")
    assert s.network.ip == "10.89.0.7"
    assert [ip.ip for ip in s.network.additional_ips] == ["fd00::7"]
    assert s.runtime_handler == runtime_mode.default_handler() and s.labels["app"] == "web"

    info = json.loads(
        rt.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
        ).info["info"]
    )
    ns = info["namespaces"]
    assert set(ns) == {"net", "ipc", "uts", "pid"}  # pid: POD is the default mode
    for path in ns.values():
        assert path in mounts_of(pod_id)
    run_dir = Path(info["run_dir"])
    assert (run_dir / "hostname").read_text() == "web\n"
    assert (run_dir / "resolv.conf").read_text() == (
        "nameserver 10.89.0.10\nsearch ns1.svc.local\noptions ndots:5\n"
    )
    assert "10.89.0.7\tweb" in (run_dir / "hosts").read_text()
    assert str(run_dir / "shm") in mounts_of(pod_id)
    assert (tmp_path / "logs" / "web").is_dir()

    def in_pod(*argv: str) -> str:
        import subprocess

        return subprocess.run(
            ["nsenter", f"--net={ns['net']}", f"--uts={ns['uts']}", f"--ipc={ns['ipc']}", *argv],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()

    assert in_pod("hostname") == "web"
    assert in_pod("cat", "/proc/sys/net/ipv4/ip_forward") == "1"
    assert in_pod("cat", "/proc/sys/kernel/shmmni") == pod_shmmni
    assert Path("/proc/sys/kernel/shmmni").read_text().strip() == host_shmmni  # host unchanged

    state_file = daemon.tmp / "root" / "drivers" / "testnet" / "pods.json"
    assert pod_id in json.loads(state_file.read_text())

    # the pod cgroup, from the cgroupfs driver (installed with every plugin)
    cgroup = cgroups.controller_dir("pids", info["cgroup_path"])
    assert info["cgroup_path"].endswith(pod_id) and cgroup.is_dir()
    stats = rt.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats
    assert stats.attributes.id == pod_id
    assert stats.linux.cpu.timestamp > 0 and stats.linux.memory.timestamp > 0
    # no container yet: only the infra (pause) container's process, if the pod has one, and
    # its monitor, which lives in the pod's cgroup (conmon, or the pod's shim v2)
    expected = 2 if info.get("infra_id") else 0
    assert stats.linux.process.process_count.value == expected

    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert (
        rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.state
        == api_pb2.SANDBOX_NOTREADY
    )
    assert pod_id not in json.loads(state_file.read_text())  # network torn down
    assert mounts_of(pod_id) == []
    assert not any(os.path.exists(p) for p in ns.values())
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))  # idempotent

    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert not run_dir.exists()
    assert not cgroup.exists()
    with pytest.raises(grpc.RpcError) as err:
        rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []
    # the name is free again
    rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config))


def test_host_namespaces_and_shared_pid(daemon, tmp_path: Path) -> None:
    rt = daemon.runtime()
    config = pod_config("hostpod", tmp_path, linux=host_linux(pid=api_pb2.POD, ipc=api_pb2.NODE))
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id
    info = json.loads(
        rt.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
        ).info["info"]
    )
    assert set(info["namespaces"]) == {"pid"} and info["pid_holder"] > 0
    assert info["shm_path"] == "" and info["network_up"] is False
    holder = info["pid_holder"]
    assert os.path.exists(f"/proc/{holder}")
    status = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    assert status.linux.namespaces.options.network == api_pb2.NODE
    assert status.linux.namespaces.options.pid == api_pb2.POD
    assert status.network.ip == ""
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    import time

    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{holder}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{holder}")
    assert mounts_of(pod_id) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hostname": "Not_Valid"}, "not a valid RFC 1123 host name"),
        ({"dns_config": api_pb2.DNSConfig(servers=["dns.example"])}, "is not an IP address"),
        ({"dns_config": api_pb2.DNSConfig(options=["ndots 5"])}, "DNS option 'ndots 5'"),
        (
            {"linux": api_pb2.LinuxPodSandboxConfig(sysctls={"vm.swappiness": "1"})},
            "'vm.swappiness' is not namespaced",
        ),
        (
            {"linux": host_linux()},
            None,  # host network with a net sysctl: set below
        ),
        ({"port_mappings": [api_pb2.PortMapping(container_port=0)]}, "container_port 0"),
        ({"log_directory": "relative/logs"}, "must be an absolute path"),
    ],
)
def test_bad_requests_are_invalid_argument_and_leave_nothing(
    daemon, tmp_path: Path, change, message
) -> None:
    config = pod_config("bad", tmp_path)
    for key, value in change.items():
        if isinstance(value, list):
            getattr(config, key).extend(value)
        else:
            getattr(config, key).CopyFrom(value) if hasattr(value, "CopyFrom") and not isinstance(
                value, str
            ) else setattr(config, key, value)
    if message is None:
        config.linux.sysctls["net.core.somaxconn"] = "1024"
        message = "cannot be set on a pod using the host network"
    with pytest.raises(grpc.RpcError) as err:
        daemon.runtime().RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    assert daemon.runtime().ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []
    assert not list((daemon.tmp / "root" / "sandboxes").glob("*.json"))


def test_unknown_handler_missing_metadata_unknown_ids(daemon, tmp_path: Path) -> None:
    rt = daemon.runtime()
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(
            api_pb2.RunPodSandboxRequest(config=pod_config("x", tmp_path), runtime_handler="kata")
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    configured = ", ".join(runtime_mode.handlers())
    assert f"'kata' is not configured; configured handlers: {configured}" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=api_pb2.PodSandboxConfig()))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata.name is empty" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id="f" * 64))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        rt.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id="f" * 64))
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id="f" * 64))


def test_duplicate_name_and_list_filters(daemon, tmp_path: Path) -> None:
    rt = daemon.runtime()
    a = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod_config("a", tmp_path)))
    b = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod_config("b", tmp_path)))
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod_config("a", tmp_path)))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert a.pod_sandbox_id in err.value.details()
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=b.pod_sandbox_id))

    def ids(**filter_args) -> set[str]:
        f = api_pb2.PodSandboxFilter(**filter_args)
        return {p.id for p in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(filter=f)).items}

    assert ids() == {a.pod_sandbox_id, b.pod_sandbox_id}
    assert ids(id=a.pod_sandbox_id[:10]) == {a.pod_sandbox_id}
    ready = api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY)
    assert ids(state=ready) == {a.pod_sandbox_id}
    assert ids(label_selector={"app": "b"}) == {b.pod_sandbox_id}
    assert ids(label_selector={"app": "b", "tier": "other"}) == set()
    stats = rt.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest())
    assert {s.attributes.id for s in stats.stats} == {a.pod_sandbox_id, b.pod_sandbox_id}


def test_retry_of_a_slow_run_pod_sandbox_joins_it(start_daemon, plugin_site, tmp_path) -> None:
    d = start_daemon(
        env={"PYTHONPATH": str(plugin_site)},
        config=NET + "[plugins.testnet]\nsetup_delay = 1.5\n",
    )
    rt = d.runtime()
    config = pod_config("slow", tmp_path)
    results: list[str] = []
    errors: list[grpc.RpcError] = []

    def first() -> None:
        try:
            rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=0.5)
        except grpc.RpcError as e:  # the kubelet's deadline passes; asserted below
            errors.append(e)

    t = threading.Thread(target=first)
    t.start()
    t.join(5)
    assert errors and errors[0].code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # the kubelet retries while the first call is still working
    retry = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=10)
    results.append(retry.pod_sandbox_id)
    items = rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
    assert [p.id for p in items] == results


def test_failed_network_setup_is_undone(start_daemon, plugin_site, tmp_path) -> None:
    d = start_daemon(
        env={"PYTHONPATH": str(plugin_site)},
        config=NET + "[plugins.testnet]\nfail_setup = 'no more addresses in 10.89.0.0/24'\n",
    )
    with pytest.raises(grpc.RpcError) as err:
        d.runtime().RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod_config("f", tmp_path)))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no more addresses" in err.value.details()
    assert d.runtime().ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []
    with open("/proc/self/mountinfo") as f:
        assert str(d.tmp / "runroot" / "ns" / "net") + "/" not in f.read()
    assert list((d.tmp / "runroot" / "pods").iterdir()) == []


def test_pods_survive_a_restart_and_stop_tears_down_after_it(daemon, tmp_path: Path) -> None:
    rt = daemon.runtime()
    pod_id = rt.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=pod_config("keep", tmp_path))
    ).pod_sandbox_id
    daemon.stop()
    daemon.start()
    rt = daemon.runtime()
    items = rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
    assert [(p.id, p.state) for p in items] == [(pod_id, api_pb2.SANDBOX_READY)]
    state_file = daemon.tmp / "root" / "drivers" / "testnet" / "pods.json"
    assert pod_id in json.loads(state_file.read_text())
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert pod_id not in json.loads(state_file.read_text())
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod_config("keep", tmp_path)))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert mounts_of(pod_id) == []


def test_host_ports_of_a_dual_stack_pod_are_mapped_for_both_families(
    start_daemon, plugin_site, tmp_path
) -> None:
    import subprocess

    d = start_daemon(
        env={"PYTHONPATH": str(plugin_site)},
        config="[network]\ndriver = 'testnet'\nhostport_manager = 'iptables'\n"
        "[plugins.testnet]\nips = ['10.89.0.7', 'fd00::7']\n",
    )
    config = pod_config("dual", tmp_path)
    config.port_mappings.append(
        api_pb2.PortMapping(protocol=api_pb2.TCP, host_port=38081, container_port=80)
    )
    rt = d.runtime()
    pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id

    def rules(tool: str) -> str:
        return subprocess.run(
            [tool, "-t", "nat"], capture_output=True, text=True, timeout=30, check=True
        ).stdout

    assert "10.89.0.7:80" in rules("iptables-save")
    assert "[fd00::7]:80" in rules("ip6tables-save")
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert "10.89.0.7:80" not in rules("iptables-save")
    assert "fd00::7" not in rules("ip6tables-save")
