"""The status API on its unix socket, and `pycrio status` reading it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cgroups
import pytest
import registry_env
import runtime_mode
from container_e2e import Pod, module_daemon, pod_config
from cri_api.v1 import api_pb2
from daemon import DaemonProcess

pytestmark = pytest.mark.e2e


def status_socket(d: DaemonProcess) -> str:
    return os.path.join(os.path.dirname(d.socket), "pycrio-status.sock")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def get(d: DaemonProcess, url: str, method: str = "GET") -> tuple[int, str, str]:
    conn = UnixConnection(status_socket(d))
    try:
        conn.request(method, url)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read().decode()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def crio(
    tmp_path_factory: pytest.TempPathFactory, registry: Any, images: Any
) -> Iterator[DaemonProcess]:
    with module_daemon(
        tmp_path_factory.mktemp("status"), registry.host, [images.busybox.name]
    ) as d:
        yield d


@pytest.fixture(scope="module")
def running(
    crio: DaemonProcess, tmp_path_factory: pytest.TempPathFactory, images: registry_env.TestImages
) -> Iterator[tuple[Pod, str]]:
    pod = Pod(crio, pod_config("status", tmp_path_factory.mktemp("status-logs")))
    cid = pod.run("sleeper", images.busybox.name, command=["sleep", "3600"])
    yield pod, cid
    pod.remove()


def frozen(crio: DaemonProcess, cid: str) -> bool:
    """Whether the container's cgroup is frozen: what pausing means for runc and the shim."""
    status = crio.runtime().ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=cid, verbose=True), timeout=10
    )
    return cgroups.frozen(json.loads(status.info["info"])["cgroups_path"])


def test_socket_mode(crio: DaemonProcess) -> None:
    assert os.stat(status_socket(crio)).st_mode & 0o777 == 0o660


def test_info(crio: DaemonProcess) -> None:
    code, ctype, body = get(crio, "/info")
    assert code == 200 and ctype == "application/json"
    info = json.loads(body)
    assert info["root"] == str(crio.tmp / "root")
    assert info["runroot"] == str(crio.tmp / "runroot")
    assert info["storage_driver"] in ("overlay", "vfs")
    assert info["default_runtime"] == runtime_mode.default_handler()
    assert info["cgroup_driver"] and info["version"]


def test_config_is_the_effective_toml(crio: DaemonProcess) -> None:
    code, _, body = get(crio, "/config")
    assert code == 200
    cfg = tomllib.loads(body)
    assert cfg["api"]["listen"] == crio.socket
    assert cfg["root"] == str(crio.tmp / "root")
    assert "status_listen" in cfg["api"]


def test_container_details(crio: DaemonProcess, running: tuple[Pod, str]) -> None:
    pod, cid = running
    code, _, body = get(crio, f"/containers/{cid}")
    assert code == 200, body
    c = json.loads(body)
    assert c["id"] == cid and c["name"] == "sleeper" and c["sandbox"] == pod.id
    assert c["state"] == "running" and c["pid"] > 0
    assert c["log_path"].endswith("sleeper_0.log") and c["root"]
    assert isinstance(c["ip_addresses"], list)


@pytest.mark.parametrize("url", ["/containers/" + "0" * 64, "/nope", "/containers/", "/debug/x"])
def test_unknown_is_404_with_a_json_error(crio: DaemonProcess, url: str) -> None:
    code, ctype, body = get(crio, url)
    assert code == 404 and ctype == "application/json"
    assert json.loads(body)["error"]


def test_pause_and_unpause(crio: DaemonProcess, running: tuple[Pod, str]) -> None:
    _, cid = running
    code, _, body = get(crio, f"/pause/{cid}", method="POST")
    assert code == 200, body
    try:
        assert frozen(crio, cid)
    finally:
        code, _, body = get(crio, f"/unpause/{cid}")
        assert code == 200, body
    assert not frozen(crio, cid)
    assert (
        crio.runtime()
        .ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid), timeout=10)
        .status.state
        == api_pb2.CONTAINER_RUNNING
    )
    assert get(crio, "/pause/" + "0" * 64)[0] == 404


def test_debug_threads_and_heap(crio: DaemonProcess) -> None:
    code, ctype, body = get(crio, "/debug/threads")
    assert code == 200 and ctype.startswith("text/plain")
    assert 'Thread "MainThread"' in body
    assert 'Thread "status-api"' in body and 'Thread "exit-watcher"' in body
    code, _, body = get(crio, "/debug/heap")
    heap = json.loads(body)
    assert code == 200 and heap["mode"] in ("gc", "tracemalloc") and heap["top"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pycrio", *args],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip


def test_cli_status(crio: DaemonProcess, running: tuple[Pod, str]) -> None:
    _, cid = running
    cp = cli("--config", str(crio.config), "--listen", crio.socket, "status", "info")
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["root"] == str(crio.tmp / "root")
    cp = cli("status", "--socket", status_socket(crio), "config")
    assert cp.returncode == 0, cp.stderr
    assert tomllib.loads(cp.stdout)["api"]["listen"] == crio.socket
    cp = cli("status", "--socket", status_socket(crio), "containers", cid)
    assert cp.returncode == 0 and json.loads(cp.stdout)["id"] == cid
    cp = cli("status", "--socket", status_socket(crio), "containers", "0" * 64)
    assert cp.returncode == 1 and "not found" in cp.stderr


def test_cli_without_a_daemon(tmp_path: Path) -> None:
    cp = cli("status", "--socket", str(tmp_path / "none.sock"), "info")
    assert cp.returncode == 1
    assert "is the daemon running" in cp.stderr
    assert "Traceback" not in cp.stderr
