"""What the streaming e2e modules share: a CNI bridge of their own and a daemon on it.

Port forwarding must reach into a pod's own network namespace, so these modules
run pods on a real CNI bridge (a private /24 in 10.89.0.0/16, host-local IPAM)
rather than on the node's network. The exec/attach helpers below get a URL from
the CRI and open the session over SPDY or WebSocket (stream_client.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import stream_client as sc
from container_e2e import daemon_config
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from image_e2e import pull

CNI_BRIDGE = "/usr/lib/cni/bridge"
URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/(exec|attach|portforward)/([^/?#]+)$")


class BridgeNetwork:
    """A CNI bridge network with its own bridge device and /24."""

    def __init__(self, tmp: Path, prefix: str, third_octets: tuple[int, int]) -> None:
        tag = random.randint(0, 99999)
        self.bridge = f"{prefix}{tag}"
        netd = tmp / "net.d"
        netd.mkdir(parents=True)
        ipam = {
            "type": "host-local",
            "dataDir": str(tmp / "ipam"),
            "ranges": [[{"subnet": f"10.89.{random.randint(*third_octets)}.0/24"}]],
        }
        bridge = {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False}
        doc = {"cniVersion": "1.0.0", "name": self.bridge, "plugins": [{**bridge, "ipam": ipam}]}
        (netd / "10-bridge.conflist").write_text(json.dumps(doc))
        self.config = (
            f"[network]\ndriver = 'cni'\nnetwork_dir = '{netd}'\n"
            "plugin_dirs = ['/usr/lib/cni']\nhostport_manager = 'none'\n"
        )

    def cleanup(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


@contextlib.contextmanager
def bridge_network(
    tmp: Path, prefix: str, third_octets: tuple[int, int]
) -> Iterator[BridgeNetwork | None]:
    """A bridge network, or None when the CNI plugins are not installed."""
    if not os.path.exists(CNI_BRIDGE):
        yield None
        return
    net = BridgeNetwork(tmp, prefix, third_octets)
    try:
        yield net
    finally:
        net.cleanup()


@contextlib.contextmanager
def streaming_daemon(
    tmp: Path,
    registry_host: str,
    image: str,
    network: BridgeNetwork | None,
    api: str = "",
    check_sigterm: bool = False,
) -> Iterator[DaemonProcess]:
    """A daemon with a streaming port of its own, ``image`` pulled; its pods go with it.

    With ``check_sigterm`` it must still stop on SIGTERM at the end (after many
    exec'd processes and their SIGCHLDs); the assertion comes after cleanup.
    """
    api = "[api]\nstream_address = '127.0.0.1'\nstream_port = '0'\n" + api
    d = DaemonProcess(tmp, [], dict(os.environ))
    d.config.write_text(
        daemon_config(tmp / "conf", registry_host, api + (network.config if network else ""))
    )
    d.start()
    rc: int | None = 0
    try:
        pull(d, image)
        yield d
    finally:
        d.remove_all_pods()
        if check_sigterm:
            d.signal(signal.SIGTERM)
            try:
                rc = d.wait(timeout=20)
            except subprocess.TimeoutExpired:
                rc = None
        d.stop()
    assert rc == 0, f"the daemon did not stop on SIGTERM (rc {rc}):\n{d.stderr()[-3000:]}"


# --- exec and attach sessions ------------------------------------------------------------


def check_url(url: str, kind: str) -> str:
    m = URL.match(url)
    assert m, f"unexpected streaming URL {url!r}"
    assert m.group(2) == kind and int(m.group(1)) > 0
    return m.group(3)


def exec_url(
    rt: Any,
    cid: str,
    cmd: list[str],
    *,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
) -> str:
    req = api_pb2.ExecRequest(
        container_id=cid, cmd=cmd, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty
    )
    url = rt.Exec(req, timeout=10).url
    check_url(url, "exec")
    return url


def attach_url(
    rt: Any,
    cid: str,
    *,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
) -> str:
    req = api_pb2.AttachRequest(
        container_id=cid, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty
    )
    url = rt.Attach(req, timeout=10).url
    check_url(url, "attach")
    return url


def open_exec(transport: str, rt: Any, cid: str, cmd: list[str], **streams: Any):
    """Exec ``cmd`` and open the session over ``transport`` with the same streams."""
    protocols = streams.pop("protocols", None)
    url = exec_url(rt, cid, cmd, **streams)
    return sc.remote_command(transport, url, protocols=protocols, **streams)


def run_exec(
    transport: str, rt: Any, cid: str, cmd: list[str], stdin_data: bytes | None = None, **kw: Any
) -> sc.Result:
    """Exec to completion: send ``stdin_data`` (then EOF), collect output and status."""
    with open_exec(transport, rt, cid, cmd, stdin=stdin_data is not None, **kw) as s:
        if stdin_data is not None:
            if stdin_data:
                s.write_stdin(stdin_data)
            s.close_stdin()
        return s.wait()


def is_success(r: sc.Result) -> bool:
    return r.status.success and r.exit_code == 0


#: waits (boundedly) until the terminal has a size, then prints it
def await_size(size: str) -> str:
    return (
        f"n=0; until [ \"$(stty size)\" = '{size}' ] || [ $n -gt 200 ];"
        ' do n=$((n+1)); sleep 0.05; done; echo "size=$(stty size)"'
    )
