"""The real ``kubectl`` exec, attach and port-forward into pycrio's containers.

kubectl talks to an API server, which proxies to the kubelet, which proxies to the URL
the runtime's Exec/Attach/PortForward returned. Here a fake API server + kubelet
(tests/support/fake_apiserver.py) stands in for both: it serves the pod JSON kubectl
asks for, turns each streaming request into the CRI RPC and pipes the connection
through to pycrio's streaming server, headers and all. So what runs here is kubectl's
own client code against pycrio's server: WebSocket (v5.channel.k8s.io) first, SPDY/3.1
when ``KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false``; port forwarding through the WebSocket
tunnel (SPDY/3.1+portforward.k8s.io) first, SPDY/3.1 when
``KUBECTL_PORT_FORWARD_WEBSOCKETS=false``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import shutil
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import registry_env
from container_e2e import Pod, assert_nothing_left, pod_config, wait_until
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from fake_apiserver import FakeApiServer, FakePod, Seen
from streaming_e2e import CNI_BRIDGE, BridgeNetwork, bridge_network, streaming_daemon

KUBECTL = shutil.which("kubectl")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (not on PATH)"),
]

Images = registry_env.TestImages
NS = "default"
#: how kubectl is told to use SPDY for exec and attach (a client feature gate, on by default)
NO_WEBSOCKETS = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}
TRANSPORTS = ["websocket", "spdy"]
TIMEOUT = 20


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeNetwork | None]:
    with bridge_network(tmp_path_factory.mktemp("cni"), "pycrk", (200, 250)) as net:
        yield net


@pytest.fixture(scope="module")
def crio(
    tmp_path_factory: pytest.TempPathFactory,
    registry: Any,
    images: Images,
    network: BridgeNetwork | None,
) -> Iterator[DaemonProcess]:
    with streaming_daemon(
        tmp_path_factory.mktemp("crio"), registry.host, images.busybox.name, network
    ) as d:
        yield d


class Kube:
    """The fake API server and a kubectl configured for it (its own HOME and kubeconfig)."""

    def __init__(self, api: FakeApiServer, home: Path) -> None:
        self.api = api
        self.home = home
        self.kubeconfig = home / "kubeconfig"
        self.kubeconfig.write_text(api.kubeconfig(NS))

    def argv(self, *args: str) -> list[str]:
        return [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.lower().endswith("_proxy") and not k.startswith("KUBE")
        }
        return {**env, "HOME": str(self.home), **(extra or {})}

    def run(
        self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.argv(*args),
            input=input,
            capture_output=True,
            env=self.env(env),
            timeout=TIMEOUT,
            check=False,
        )

    @contextlib.contextmanager
    def popen(self, *args: str, **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
        """kubectl in the background; stopped (SIGTERM, then SIGKILL) when the block ends."""
        env = self.env(kw.pop("env", None))
        proc = subprocess.Popen(self.argv(*args), env=env, **kw)
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


@pytest.fixture(scope="module")
def kube(crio: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    with FakeApiServer(crio.runtime) as api:
        yield Kube(api, tmp_path_factory.mktemp("kubectl-home"))
        assert not api.errors, api.errors


@pytest.fixture(scope="module")
def sleeper(
    crio: DaemonProcess, kube: Kube, tmp_path_factory: pytest.TempPathFactory, images: Images
) -> Iterator[str]:
    """``shell``: a pod whose one container (``main``) sleeps, for the exec tests."""
    p = Pod(crio, pod_config("kubectl-exec", tmp_path_factory.mktemp("exec-logs")))
    try:
        cid = p.run("main", images.busybox.name, command=["sleep", "3600"])
        kube.api.add_pod(FakePod(NS, "shell", p.id, {"main": cid}))
        yield "shell"
    finally:
        kube.api.remove_pod(NS, "shell")
        p.remove()
    assert_nothing_left(crio, p.containers)


INDEX = b"served to kubectl port-forward\n"
HTTPD = f"mkdir -p /www && echo '{INDEX.decode().strip()}' > /www/index.html" + (
    " && exec busybox httpd -f -p 80 -h /www"
)


@pytest.fixture
def web(
    crio: DaemonProcess, kube: Kube, network: BridgeNetwork | None, tmp_path: Path, images: Images
) -> Iterator[str]:
    """``web``: a pod with its own network namespace (CNI) and busybox httpd on port 80,
    which only a connection made inside that namespace reaches on localhost."""
    if network is None:
        pytest.skip(f"no CNI plugins ({CNI_BRIDGE} missing)")
    config = pod_config("kubectl-web", tmp_path / "logs")
    config.linux.security_context.namespace_options.network = api_pb2.POD
    p = Pod(crio, config)
    try:
        cid = p.run("httpd", images.busybox.name, command=["sh", "-c", HTTPD])

        def serving() -> bool:
            r = p.exec(cid, "wget", "-q", "-O", "-", "http://127.0.0.1/index.html")
            return r.exit_code == 0 and r.stdout == INDEX

        wait_until(serving, 15, "httpd in the pod")
        kube.api.add_pod(FakePod(NS, "web", p.id, {"httpd": cid}))
        yield "web"
    finally:
        kube.api.remove_pod(NS, "web")
        p.remove()
    assert_nothing_left(crio, p.containers)


@pytest.fixture(autouse=True)
def fresh_log(kube: Kube) -> None:
    """Each test sees only its own requests in ``kube.api.requests``."""
    kube.api.clear()


# --- helpers -------------------------------------------------------------------------------


def transport_env(transport: str) -> dict[str, str]:
    return NO_WEBSOCKETS if transport == "spdy" else {}


def last(kube: Kube, subresource: str) -> Seen:
    seen = kube.api.seen(subresource)
    assert seen, f"kubectl made no {subresource} request: {kube.api.requests}"
    return seen[-1]


def assert_transport(kube: Kube, subresource: str, transport: str) -> None:
    """The last ``subresource`` request went over ``transport`` with the newest protocol."""
    s = last(kube, subresource)
    if transport == "spdy":
        assert (s.upgrade.lower(), s.status, s.chosen) == ("spdy/3.1", 101, "v4.channel.k8s.io"), s
    else:
        assert (s.upgrade.lower(), s.status, s.chosen) == ("websocket", 101, "v5.channel.k8s.io"), s


def output(r: subprocess.CompletedProcess[bytes]) -> str:
    return f"rc {r.returncode}\nstdout: {r.stdout!r}\nstderr: {r.stderr.decode(errors='replace')}"


def read_until(fd: int, pattern: bytes, timeout: float = 10) -> bytes:
    """Read ``fd`` (a pipe or a terminal) until ``pattern`` (a regex) matches what came."""
    data = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, data):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {pattern!r} within {timeout}s; got {data!r}")
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side of the terminal is closed
            chunk = b""
        if not chunk:
            raise AssertionError(f"EOF before {pattern!r}; got {data!r}")
        data += chunk
    return data


# --- exec ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_echo(kube: Kube, sleeper: str, transport: str) -> None:
    r = kube.run("exec", sleeper, "--", "echo", "hello", env=transport_env(transport))
    assert (r.returncode, r.stdout) == (0, b"hello\n"), output(r)
    assert_transport(kube, "exec", transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_exit_code(kube: Kube, sleeper: str, transport: str) -> None:
    script = "echo out; echo err >&2; exit 3"
    r = kube.run("exec", sleeper, "--", "sh", "-c", script, env=transport_env(transport))
    assert r.returncode == 3, output(r)
    assert r.stdout == b"out\n" and r.stderr.startswith(b"err\n"), output(r)
    assert b"command terminated with exit code 3" in r.stderr, output(r)
    assert_transport(kube, "exec", transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_stdin(kube: Kube, sleeper: str, transport: str) -> None:
    data = b"".join(b"line %05d through kubectl\n" % i for i in range(5000))  # ~120 KiB
    r = kube.run("exec", "-i", sleeper, "--", "cat", input=data, env=transport_env(transport))
    assert r.returncode == 0, output(r)
    assert len(r.stdout) == len(data) and r.stdout == data
    assert_transport(kube, "exec", transport)


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def await_size(rows: int, cols: int) -> str:
    """Shell: wait (boundedly) until the terminal is ``rows`` x ``cols``, then print it."""
    return (
        f"n=0; until [ \"$(stty size)\" = '{rows} {cols}' ] || [ $n -gt 200 ];"
        ' do n=$((n+1)); sleep 0.05; done; echo "size=$(stty size)"'
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_tty_size_follows_the_terminal(kube: Kube, sleeper: str, transport: str) -> None:
    """``exec -it`` from a terminal: kubectl sends its size, then each change (SIGWINCH)."""
    master, slave = os.openpty()
    set_size(slave, 33, 111)

    def controlling_terminal() -> None:  # kubectl's own terminal, so it gets SIGWINCH
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    script = f"{await_size(33, 111)}; read x; echo got-$x; {await_size(44, 122)}; exit 5"
    try:
        with kube.popen(
            "exec", "-it", sleeper, "--", "sh", "-c", script,
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=controlling_terminal, env=transport_env(transport),
        ) as proc:  # fmt: skip
            os.close(slave)
            slave = -1
            out = read_until(master, rb"size=\d+ \d+\r\n")
            assert b"size=33 111\r\n" in out, out
            os.write(master, b"typed\r")
            out += read_until(master, rb"got-typed\r\n")
            set_size(master, 44, 122)
            out += read_until(master, rb"size=44 \d+\r\n")
            assert b"size=44 122\r\n" in out, out
            assert proc.wait(TIMEOUT) == 5, out
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert_transport(kube, "exec", transport)


# --- attach --------------------------------------------------------------------------------

TICKER = "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.1; done"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach_to_a_container_that_prints(
    crio: DaemonProcess, kube: Kube, tmp_path: Path, images: Images, transport: str
) -> None:
    p = Pod(crio, pod_config(f"kubectl-attach-{transport}", tmp_path / "logs"))
    try:
        idle = p.run("idle", images.busybox.name, command=["sleep", "3600"])
        cid = p.run("ticker", images.busybox.name, command=["sh", "-c", TICKER])
        kube.api.add_pod(FakePod(NS, "ticking", p.id, {"idle": idle, "ticker": cid}))
        with kube.popen(
            "attach", "ticking", "-c", "ticker",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=transport_env(transport),
        ) as proc:  # fmt: skip
            out = read_until(proc.stdout.fileno(), rb"tick-(\d+)\n")
            start = int(re.search(rb"tick-(\d+)\n", out).group(1))
            out += read_until(proc.stdout.fileno(), b"tick-%d\n" % (start + 3))
            assert proc.poll() is None  # attached until stopped
        ticks = [int(t) for t in re.findall(rb"tick-(\d+)\n", out)]
        assert ticks[ticks.index(start) :][:4] == list(range(start, start + 4)), out
        assert_transport(kube, "attach", transport)
        assert p.status(cid).status.state == api_pb2.CONTAINER_RUNNING  # detaching is harmless
    finally:
        kube.api.remove_pod(NS, "ticking")
        p.remove()
    assert_nothing_left(crio, p.containers)


# --- port-forward --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_port_forward_to_httpd_in_the_pod(kube: Kube, web: str, transport: str) -> None:
    env = {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"} if transport == "spdy" else {}
    with kube.popen(
        "port-forward", "--address", "127.0.0.1", f"pod/{web}", ":80",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    ) as proc:  # fmt: skip
        out = read_until(proc.stdout.fileno(), rb"Forwarding from 127\.0\.0\.1:(\d+) -> 80\n")
        port = int(re.search(rb"127\.0\.0\.1:(\d+) -> 80", out).group(1))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(2):
            with opener.open(f"http://127.0.0.1:{port}/index.html", timeout=10) as resp:
                assert (resp.status, resp.read()) == (200, INDEX)
        assert proc.poll() is None
    (seen,) = kube.api.seen("portforward")  # one request: no fallback was needed
    if transport == "spdy":
        assert seen.upgrade.lower() == "spdy/3.1", seen
        assert (seen.status, seen.chosen) == (101, "portforward.k8s.io"), seen
    else:
        # kubectl 1.31+ tunnels SPDY through WebSocket first
        assert seen.upgrade.lower() == "websocket", seen
        assert (seen.status, seen.chosen) == (101, "SPDY/3.1+portforward.k8s.io"), seen
