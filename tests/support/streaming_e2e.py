"""What the streaming e2e modules share: a CNI bridge of their own and a daemon on it.

Port forwarding must reach into a pod's own network namespace, so these modules
run pods on a real CNI bridge (a private /24 in 10.89.0.0/16, host-local IPAM)
rather than on the node's network.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from container_e2e import daemon_config
from daemon import DaemonProcess
from image_e2e import pull

CNI_BRIDGE = "/usr/lib/cni/bridge"


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
