"""Status and List calls with many containers, while lifecycle calls run alongside.

The kubelet relists every second: ListPodSandbox, ListContainers and a
status call per pod and container. These must be served from memory,
whatever else the daemon is doing. This starts a registry and a daemon of
its own, runs ``--pods`` host-network pods (the cheapest real setup the e2e
tests use) with ``--per-pod`` running busybox containers each (500 in 100
by default), then measures, from one client thread, p50/p99 of:

- ContainerStatus of a random container, PodSandboxStatus of a random pod;
- ListContainers (all of them) and ListPodSandbox (all of them);

first with the daemon idle, then while another thread keeps creating,
starting, stopping and removing containers in a further pod (a
``Version`` call, the cheapest RPC there is, is measured alongside as the
gRPC floor). Targets: each p50 at most 1 ms under load, ListContainers of
500 at most 5 ms.

Usage: .venv/bin/python bench/status.py [--pods 100] [--per-pod 5] [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

import registry_env  # noqa: E402
from container_e2e import pod_config  # noqa: E402
from cri_api.v1 import api_pb2  # noqa: E402
from cri_bench import (  # noqa: E402
    TIMEOUT,
    container_lifecycle,
    create_and_start,
    percentile,
    start_daemon,
)


def populate(rt, log_dir: Path, image: str, pods: int, per_pod: int) -> tuple[list, list]:  # noqa: ANN001
    """``pods`` pods with ``per_pod`` running containers each, made 4 pods at a time."""

    def one(n: int) -> tuple[str, list[str]]:
        config = pod_config(f"status-{n}", log_dir)
        pod_id = rt.RunPodSandbox(
            api_pb2.RunPodSandboxRequest(config=config), timeout=TIMEOUT
        ).pod_sandbox_id
        ids = [create_and_start(rt, pod_id, config, f"c{i}", image) for i in range(per_pod)]
        return pod_id, ids

    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(one, range(pods)))
    return [p for p, _ in made], [c for _, ids in made for c in ids]


def churn(rt, log_dir: Path, image: str, stop: threading.Event, counter: list[int]) -> None:  # noqa: ANN001
    """Container lifecycles back to back in a pod of their own, until ``stop``."""
    config = pod_config("churn", log_dir)
    pod_id = rt.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=config), timeout=TIMEOUT
    ).pod_sandbox_id
    n = 0
    while not stop.is_set():
        container_lifecycle(rt, pod_id, config, f"x{n}", image)
        n += 1
        counter[0] = n


def measure(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Each call ``rounds`` times, interleaved so load changes hit them all alike."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            out[name].append(time.perf_counter() - started)
    return out


def report(title: str, results: dict[str, list[float]]) -> None:
    print(title)
    print(f"  {'':28} {'p50 ms':>8} {'p99 ms':>8}")
    for name, xs in results.items():
        print(f"  {name:28} {statistics.median(xs) * 1e3:8.2f} {percentile(xs, 99) * 1e3:8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--per-pod", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls of each kind per phase")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pycrio-bench-") as tmp_:
        tmp = Path(tmp_)
        registry = registry_env.RegistryServer(tmp / "registry").start()
        daemon = None
        stop = threading.Event()
        churner = None
        try:
            images = registry_env.build_and_push_standard_images(tmp / "images", registry)
            image = images.busybox.name
            daemon = start_daemon(tmp / "pycrio", registry.host, image, dict(os.environ))
            rt = daemon.runtime()
            started = time.monotonic()
            pods, containers = populate(rt, tmp / "logs", image, args.pods, args.per_pod)
            print(
                f"{len(containers)} running containers in {len(pods)} pods,"
                f" made in {time.monotonic() - started:.0f}s"
            )
            rng = random.Random(1)
            calls = {
                "Version (gRPC floor)": lambda: rt.Version(api_pb2.VersionRequest()),
                "ContainerStatus": lambda: rt.ContainerStatus(
                    api_pb2.ContainerStatusRequest(container_id=rng.choice(containers))
                ),
                "PodSandboxStatus": lambda: rt.PodSandboxStatus(
                    api_pb2.PodSandboxStatusRequest(pod_sandbox_id=rng.choice(pods))
                ),
                f"ListContainers ({len(containers)})": lambda: rt.ListContainers(
                    api_pb2.ListContainersRequest()
                ),
                f"ListPodSandbox ({len(pods)})": lambda: rt.ListPodSandbox(
                    api_pb2.ListPodSandboxRequest()
                ),
            }
            listed = rt.ListContainers(api_pb2.ListContainersRequest()).containers
            assert len(listed) == len(containers), (len(listed), len(containers))
            idle = measure(calls, args.calls)
            counter = [0]
            churner = threading.Thread(
                target=churn, args=(rt, tmp / "logs", image, stop, counter), daemon=True
            )
            churner.start()
            time.sleep(1.0)
            began, before = time.monotonic(), counter[0]
            busy = measure(calls, args.calls)
            lifecycles = (counter[0] - before) / (time.monotonic() - began)
        finally:
            stop.set()
            if churner is not None:
                churner.join(timeout=120)
            if daemon is not None:
                daemon.remove_all_pods()
                daemon.stop()
            registry.stop_all()

    report(f"idle daemon ({args.calls} calls each):", idle)
    report(
        f"while container lifecycles run alongside ({lifecycles:.1f} create+start+stop+remove/s):",
        busy,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
