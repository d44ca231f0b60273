"""Streaming: exec round-trip latency and port-forward throughput, against direct baselines.

Starts a registry and a daemon of its own, runs a busybox container in a pod
with its own network namespace (a private bridge, 10.89.x.0/24), then measures,
alternating in one run:

- exec latency: Exec RPC + WebSocket (v4.channel.k8s.io) + ``true`` + exit
  status, against ``runc exec <id> true`` (the OCI runtime's floor) and
  ``nsenter -t <pid> -a true`` (entering the namespaces, no runtime);
- port-forward throughput: PortForward RPC + WebSocket port-forward, reading
  ``--mb`` MiB that a server in the pod's network namespace sends, against
  ``nsenter --net=<netns>`` + a socket copy to a pipe (the pre-CRI way).

Usage: .venv/bin/python bench/streaming.py [--rounds N] [--mb M]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "core"))

import registry_env  # noqa: E402
import websocket  # noqa: E402
from cri_api.v1 import api_pb2  # noqa: E402
from daemon import DaemonProcess  # noqa: E402

from pycrio.streaming import channels, status  # noqa: E402
from pycrio.streaming.portforward_ws import ClientPortForwardDecoder  # noqa: E402

PORT = 9000
SOURCE = """
import socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(8)
print("listening", flush=True)
chunk = b"x" * (1 << 20)
while True:
    c, _ = s.accept()
    left = size
    while left > 0:
        left -= c.send(chunk[: min(left, len(chunk))])
    c.close()
"""
SINK = """
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
out = sys.stdout.buffer
while data := c.recv(1 << 20):
    out.write(data)
"""


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, timeout=60, stdout=subprocess.DEVNULL)


def ws_exec(rt, cid: str) -> None:  # noqa: ANN001
    url = rt.Exec(api_pb2.ExecRequest(container_id=cid, cmd=["true"], stdout=True)).url
    ws = websocket.create_connection(
        url.replace("http", "ws", 1), subprotocols=["v4.channel.k8s.io"], timeout=30
    )
    try:
        while True:
            message = ws.recv()
            if not message:
                continue
            channel, data = channels.decode(message)
            if channel == channels.ERROR:
                assert status.parse_status(data).exit_code == 0, data
                return
    finally:
        ws.close()


def ws_port_forward(rt, pod_id: str, size: int) -> None:  # noqa: ANN001
    url = rt.PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=pod_id, port=[PORT])).url
    ws = websocket.create_connection(
        url.replace("http", "ws", 1), subprotocols=["v4.channel.k8s.io"], timeout=30
    )
    decoder = ClientPortForwardDecoder((PORT,))
    got = 0
    try:
        while got < size:
            message = ws.recv()
            if not message:
                break
            decoded = decoder.feed(message)
            if decoded is not None:
                _, is_error, data = decoded
                assert not (is_error and data), data
                got += len(data)
    finally:
        ws.close()
    assert got == size, (got, size)


def nsenter_copy(netns: str, size: int) -> None:
    proc = subprocess.Popen(
        ["nsenter", f"--net={netns}", sys.executable, "-c", SINK, str(PORT)], stdout=subprocess.PIPE
    )
    got = 0
    while data := proc.stdout.read1(1 << 20):
        got += len(data)
    proc.wait(timeout=60)
    assert got == size, (got, size)


def timed(fn, *args) -> float:  # noqa: ANN001
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30, help="exec rounds")
    parser.add_argument("--mb", type=int, default=256, help="MiB per port-forward round")
    parser.add_argument("--pf-rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.mb << 20

    with tempfile.TemporaryDirectory(prefix="pycrio-bench-") as tmp_:
        tmp = Path(tmp_)
        registry = registry_env.RegistryServer(tmp / "registry").start()
        bridge = f"pycrb{random.randint(0, 99999)}"
        source = None
        daemon = None
        try:
            images = registry_env.build_and_push_standard_images(tmp / "images", registry)
            netd = tmp / "net.d"
            netd.mkdir()
            subnet = f"10.89.{random.randint(100, 199)}.0/24"
            (netd / "10-bench.conflist").write_text(
                json.dumps(
                    {
                        "cniVersion": "1.0.0",
                        "name": "bench",
                        "plugins": [
                            {
                                "type": "bridge",
                                "bridge": bridge,
                                "ipam": {
                                    "type": "host-local",
                                    "dataDir": str(tmp / "ipam"),
                                    "ranges": [[{"subnet": subnet}]],
                                },
                            }
                        ],
                    }
                )
            )
            (tmp / "registries.conf").write_text(
                f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
            )
            (tmp / "policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
            (tmp / "pycrio").mkdir()
            daemon = DaemonProcess(tmp / "pycrio", [], dict(os.environ))
            daemon.config.write_text(
                f'[image]\nregistries_conf = "{tmp}/registries.conf"\n'
                f'registries_conf_dir = "{tmp}/none"\nsignature_policy = "{tmp}/policy.json"\n'
                f"[network]\nnetwork_dir = '{netd}'\nplugin_dirs = ['/usr/lib/cni']\n"
            )
            daemon.start()
            rt = daemon.runtime()
            image = images.busybox.name
            daemon.images().PullImage(
                api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=120
            )
            pod_config = api_pb2.PodSandboxConfig(
                metadata=api_pb2.PodSandboxMetadata(name="bench", namespace="b", uid="bench"),
                log_directory=str(tmp / "logs"),
            )
            pod_id = rt.RunPodSandbox(
                api_pb2.RunPodSandboxRequest(config=pod_config), timeout=60
            ).pod_sandbox_id
            cid = rt.CreateContainer(
                api_pb2.CreateContainerRequest(
                    pod_sandbox_id=pod_id,
                    sandbox_config=pod_config,
                    config=api_pb2.ContainerConfig(
                        metadata=api_pb2.ContainerMetadata(name="sleeper"),
                        image=api_pb2.ImageSpec(image=image),
                        command=["sleep", "3600"],
                        log_path="sleeper.log",
                    ),
                ),
                timeout=60,
            ).container_id
            rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid), timeout=30)
            info = json.loads(
                rt.ContainerStatus(
                    api_pb2.ContainerStatusRequest(container_id=cid, verbose=True)
                ).info["info"]
            )
            pid = info["pid"]
            runc_root = str(daemon.tmp / "runroot" / "drivers" / "runc" / "root")
            netns = json.loads(
                rt.PodSandboxStatus(
                    api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
                ).info["info"]
            )["namespaces"]["net"]
            source = subprocess.Popen(
                ["nsenter", f"--net={netns}", sys.executable, "-c", SOURCE, str(PORT), str(size)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert source.stdout.readline().strip() == "listening"

            pycrio_exec, runc_exec, nsenter_exec = [], [], []
            for _ in range(args.rounds):
                pycrio_exec.append(timed(ws_exec, rt, cid))
                runc_exec.append(timed(run, ["runc", "--root", runc_root, "exec", cid, "true"]))
                nsenter_exec.append(
                    timed(run, ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "true"])
                )
            pycrio_pf, nsenter_pf = [], []
            for _ in range(args.pf_rounds):
                pycrio_pf.append(timed(ws_port_forward, rt, pod_id, size))
                nsenter_pf.append(timed(nsenter_copy, netns, size))
        finally:
            if source is not None:
                source.kill()
                source.wait()
            if daemon is not None:
                daemon.remove_all_pods()
                daemon.stop()
            registry.stop_all()
            subprocess.run(["ip", "link", "del", bridge], check=False, timeout=30)

    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    mbps = lambda xs: args.mb / statistics.median(xs)  # noqa: E731
    print(f"exec round trip (median of {args.rounds}):")
    print(f"  pycrio Exec + WebSocket:  {ms(pycrio_exec):7.1f} ms")
    print(f"  runc exec (floor):        {ms(runc_exec):7.1f} ms")
    print(f"  nsenter -a true:          {ms(nsenter_exec):7.1f} ms")
    print(f"  ratio pycrio/runc:        {ms(pycrio_exec) / ms(runc_exec):.2f}")
    print(f"port-forward {args.mb} MiB (median of {args.pf_rounds}):")
    print(f"  pycrio WebSocket:         {mbps(pycrio_pf):7.1f} MiB/s")
    print(f"  nsenter + socket copy:    {mbps(nsenter_pf):7.1f} MiB/s")
    print(f"  ratio pycrio/nsenter:     {mbps(pycrio_pf) / mbps(nsenter_pf):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
