"""Stats and metrics: what the kubelet's stats calls cost, read on demand or from the collection.

Starts a registry and two daemons side by side on the same machine: one with
``[stats] collection_period = 0`` (every call reads the cgroups, /proc and
the writable layers), one with a collection period (calls answer from what a
thread read last). Each gets ``--pods`` host-network pods with
``--containers`` sleeping busybox containers each. Then, alternating between
the daemons in one run, it times the calls the kubelet makes for its summary
API and /metrics/cadvisor: ListPodSandboxStats, ListContainerStats,
ListPodSandboxMetrics; and, as the floor, reading every pod's and container's
cgroup files directly in this process with the same code the driver uses
(``pycrio.kernel.cgroup_stats``), no gRPC and no /proc.

Usage: .venv/bin/python bench/stats.py [--pods N] [--containers M] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

import registry_env  # noqa: E402
from container_e2e import Pod, daemon_config, pod_config  # noqa: E402
from cri_api.v1 import api_pb2  # noqa: E402
from daemon import DaemonProcess  # noqa: E402
from image_e2e import pull  # noqa: E402

from pycrio.kernel.cgroup_stats import stats_v1  # noqa: E402

PERIOD = 10


def start(
    tmp: Path, registry: registry_env.RegistryServer, image: str, extra: str
) -> DaemonProcess:
    tmp.mkdir(parents=True)
    d = DaemonProcess(tmp, [], dict(os.environ))
    d.config.write_text(daemon_config(tmp / "conf", registry.host, extra))
    d.start()
    pull(d, image)
    return d


def populate(d: DaemonProcess, image: str, pods: int, containers: int, logs: Path) -> list[Pod]:
    out = []
    for i in range(pods):
        pod = Pod(d, pod_config(f"bench-{i}", logs / str(i)))
        for j in range(containers):
            pod.run(f"c{j}", image, command=["sleep", "3600"])
        out.append(pod)
    return out


def cgroup_floor(paths: list[str]) -> None:
    """Read every cgroup's files as the driver does (v1 layout of this machine)."""
    mounts = {c: f"/sys/fs/cgroup/{c}" for c in ("cpu", "cpuacct", "memory", "pids", "blkio")}

    for path in paths:

        def read(controller: str, file: str, path: str = path) -> str | None:
            mount = mounts.get(controller)
            try:
                with open(f"{mount}{path}/{file}") as f:
                    return f.read()
            except OSError:
                return None

        stats_v1(read)


def timed(fn: Callable[..., object], *args: object) -> float:
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--containers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (runc, cgroups)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pycrio-bench-stats-") as tmpdir:
        tmp = Path(tmpdir)
        registry = registry_env.RegistryServer(tmp / "registry").start()
        daemons: list[DaemonProcess] = []
        try:
            images = registry_env.build_and_push_standard_images(tmp / "images", registry)
            image = images.busybox.name
            on_demand = start(tmp / "on-demand", registry, image, "")
            daemons.append(on_demand)
            cached = start(
                tmp / "cached", registry, image, f"[stats]\ncollection_period = {PERIOD}\n"
            )
            daemons.append(cached)
            print(f"{args.pods} pods x {args.containers} containers in each daemon ...", flush=True)
            for d in daemons:
                populate(d, image, args.pods, args.containers, tmp / "logs" / d.tmp.name)
            rt = on_demand.runtime()
            paths = [
                _cgroup_of(rt, p.id)
                for p in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
            ]
            paths += [
                _container_cgroup(rt, c.id)
                for c in rt.ListContainers(api_pb2.ListContainersRequest()).containers
            ]
            time.sleep(PERIOD + 1)  # the cached daemon has collected once

            calls: dict[str, Callable[[DaemonProcess], object]] = {
                "ListPodSandboxStats": lambda d: d.runtime().ListPodSandboxStats(
                    api_pb2.ListPodSandboxStatsRequest(), timeout=60
                ),
                "ListContainerStats": lambda d: d.runtime().ListContainerStats(
                    api_pb2.ListContainerStatsRequest(), timeout=60
                ),
                "ListPodSandboxMetrics": lambda d: d.runtime().ListPodSandboxMetrics(
                    api_pb2.ListPodSandboxMetricsRequest(), timeout=60
                ),
            }
            times: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                times.setdefault("floor: read the cgroups in-process", []).append(
                    timed(cgroup_floor, paths)
                )
                for name, call in calls.items():
                    for label, d in (("on demand", on_demand), (f"period {PERIOD}s", cached)):
                        times.setdefault(f"{name} ({label})", []).append(timed(call, d))
            floor = statistics.median(times["floor: read the cgroups in-process"])
            print(f"\n{len(paths)} cgroups; p50 and p90 in ms over {args.rounds} rounds")
            print(f"{'':48} {'p50':>9} {'p90':>9} {'p50/floor':>10}")
            for name, values in times.items():
                values.sort()
                p50 = statistics.median(values)
                p90 = values[int(len(values) * 0.9) - 1]
                print(f"{name:48} {p50:9.2f} {p90:9.2f} {p50 / floor:10.1f}")
        finally:
            for d in daemons:
                d.remove_all_pods()
                d.stop()
            registry.stop_all()
    return 0


def _cgroup_of(rt, pod_id: str) -> str:  # noqa: ANN001
    status = rt.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
    )
    return json.loads(status.info["info"])["cgroup_path"]


def _container_cgroup(rt, container_id: str) -> str:  # noqa: ANN001
    status = rt.ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=container_id, verbose=True)
    )
    return json.loads(status.info["info"])["cgroups_path"]


if __name__ == "__main__":
    sys.exit(main())
