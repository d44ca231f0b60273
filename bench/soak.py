"""Soak: pods with a container each, created and destroyed in a loop for a fixed time.

Starts Debian's docker-registry on 127.0.0.1 with the busybox test image and a
fresh pycrio on a temporary root, prints the idle daemon's RSS (target: at
most 55 MB), then for ``--duration`` seconds

- worker threads fill ``--pods`` slots with host-network pods (no CNI needed),
  each running one ``sleep`` container, and then keep replacing them: stop and
  remove a pod, run a new one with a new container in its slot;
- reader threads call ListPodSandbox, ListContainers and Status continuously;
- a sampler reads the daemon's VmRSS and open fd count every ``--interval`` s.

At the end it prints the samples, first/last/max, whether RSS and fds stayed
flat once every slot was filled (the last-quarter median within 10% of the
first-quarter median), removes everything through the CRI, stops the daemon
and lists whatever is left on the host (mounts, ns pins, cgroups, conmon/runc
processes, files under the run and storage dirs).

Usage: .venv/bin/python bench/soak.py [--duration S] [--pods N] [--workers W]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

import grpc  # noqa: E402
import registry_env  # noqa: E402
from container_e2e import daemon_config, pod_config  # noqa: E402
from cri_api.v1 import api_pb2  # noqa: E402
from daemon import DaemonProcess  # noqa: E402
from leaks import host_leaks, mounts_under  # noqa: E402


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def flat(values: list[float], tolerance: float = 0.10) -> tuple[bool, float, float]:
    """Is the last-quarter median within ``tolerance`` of the first-quarter median?"""
    q = max(len(values) // 4, 1)
    first, last = median(values[:q]), median(values[-q:])
    return (abs(last - first) <= tolerance * first if first else last == 0), first, last


class Soak:
    def __init__(self, d: DaemonProcess, image: str, args: argparse.Namespace) -> None:
        self.d = d
        self.image = image
        self.args = args
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.error_examples: dict[str, str] = {}
        self.ids: set[str] = set()
        self.pids: set[int] = set()
        self.slots: list[str | None] = [None] * args.pods
        self.filled = threading.Event()
        self.filled_count = 0
        self.cycles = 0

    def call(self, what: str, fn, *a, **kw):
        try:
            out = fn(*a, **kw)
        except grpc.RpcError as e:
            with self.lock:
                self.errors[what] += 1
                self.error_examples.setdefault(what, f"{e.code().name}: {e.details()}")
            raise
        with self.lock:
            self.calls[what] += 1
        return out

    # --- pods ------------------------------------------------------------------

    def up(self, slot: int, gen: int) -> str:
        rt = self.d.runtime()
        config = pod_config(f"soak-{slot}", self.logs, uid=f"uid-{slot}-{gen}")
        pod_id = self.call(
            "RunPodSandbox",
            rt.RunPodSandbox,
            api_pb2.RunPodSandboxRequest(config=config),
            timeout=60,
        ).pod_sandbox_id
        with self.lock:
            self.ids.add(pod_id)
        cconfig = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name="sleeper"),
            image=api_pb2.ImageSpec(image=self.image),
            command=["sleep", "3600"],
            log_path=f"sleeper-{slot}-{gen}.log",
        )
        cid = self.call(
            "CreateContainer",
            rt.CreateContainer,
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod_id, config=cconfig, sandbox_config=config
            ),
            timeout=60,
        ).container_id
        with self.lock:
            self.ids.add(cid)
        self.call(
            "StartContainer",
            rt.StartContainer,
            api_pb2.StartContainerRequest(container_id=cid),
            timeout=60,
        )
        return pod_id

    def down(self, pod_id: str) -> None:
        rt = self.d.runtime()
        self.call(
            "StopPodSandbox",
            rt.StopPodSandbox,
            api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id),
            timeout=60,
        )
        self.call(
            "RemovePodSandbox",
            rt.RemovePodSandbox,
            api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
            timeout=60,
        )

    def worker(self, index: int) -> None:
        mine = list(range(index, self.args.pods, self.args.workers))
        gen = 0
        for slot in mine:  # fill
            if self.stop.is_set():
                return
            try:
                self.slots[slot] = self.up(slot, gen)
            except grpc.RpcError:
                pass
            with self.lock:
                self.filled_count += 1
                if self.filled_count == self.args.pods:
                    self.filled.set()
        while not self.stop.is_set():  # replace, round robin
            gen += 1
            for slot in mine:
                if self.stop.is_set():
                    return
                try:
                    if self.slots[slot]:
                        self.down(self.slots[slot])
                        self.slots[slot] = None
                    self.slots[slot] = self.up(slot, gen)
                    with self.lock:
                        self.cycles += 1
                except grpc.RpcError:
                    time.sleep(0.1)

    def reader(self, what: str) -> None:
        rt = self.d.runtime()
        req = {
            "ListPodSandbox": (rt.ListPodSandbox, api_pb2.ListPodSandboxRequest()),
            "ListContainers": (rt.ListContainers, api_pb2.ListContainersRequest()),
            "Status": (rt.Status, api_pb2.StatusRequest(verbose=True)),
        }[what]
        while not self.stop.is_set():
            try:
                self.call(what, req[0], req[1], timeout=30)
            except grpc.RpcError:
                time.sleep(0.1)
            time.sleep(self.args.read_pause)

    def pod_count(self) -> int:
        try:
            return len(
                self.d.runtime().ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items
            )
        except grpc.RpcError:
            return -1

    def container_pids(self) -> None:
        """Remember the container processes, to check they are gone at the end."""
        rt = self.d.runtime()
        for c in rt.ListContainers(api_pb2.ListContainersRequest(), timeout=30).containers:
            try:
                info = rt.ContainerStatus(
                    api_pb2.ContainerStatusRequest(container_id=c.id, verbose=True), timeout=30
                ).info.get("info", "{}")
            except grpc.RpcError:
                continue
            pid = json.loads(info).get("pid", 0)
            if pid:
                self.pids.add(pid)

    def remove_all(self) -> None:
        rt = self.d.runtime()
        for pod in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=60).items:
            rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)

    def run(self) -> int:
        args = self.args
        self.logs = Path(self.d.tmp) / "logs"
        pid = self.d.proc.pid
        threads = [
            threading.Thread(target=self.worker, args=(i,), daemon=True)
            for i in range(args.workers)
        ]
        threads += [
            threading.Thread(target=self.reader, args=(what,), daemon=True)
            for what in ("ListPodSandbox", "ListContainers", "Status")
            for _ in range(args.readers)
        ]
        samples: list[tuple[float, int, int, int, int, bool]] = []
        start = time.monotonic()
        deadline = start + args.duration
        for t in threads:
            t.start()
        print(f"\n{'t(s)':>6} {'RSS(MB)':>8} {'fds':>5} {'pods':>5} {'cycles':>7} phase")
        pid_sample_at = start + args.duration / 2
        while time.monotonic() < deadline:
            time.sleep(min(args.interval, max(deadline - time.monotonic(), 0)))
            now = time.monotonic() - start
            rss, fds, pods = rss_kb(pid), fd_count(pid), self.pod_count()
            steady = self.filled.is_set()
            samples.append((now, rss, fds, pods, self.cycles, steady))
            phase = "steady" if steady else "filling"
            print(
                f"{now:6.1f} {rss / 1024:8.1f} {fds:5d} {pods:5d} {self.cycles:7d} {phase}",
                flush=True,
            )
            if pid_sample_at and time.monotonic() > pid_sample_at:
                self.container_pids()
                pid_sample_at = 0
        self.stop.set()
        for t in threads:
            t.join(120)
        print()
        print("calls:", dict(sorted(self.calls.items())))
        print("errors:", dict(sorted(self.errors.items())) or "none")
        for what, example in self.error_examples.items():
            print(f"  {what}: {example[:300]}")
        print(f"pod replacements (stop+remove+run+create+start): {self.cycles}")

        ok = True
        for label, col in (("RSS (MB)", 1), ("open fds", 2)):
            scale = 1024 if col == 1 else 1
            values = [s[col] / scale for s in samples]
            steady = [s[col] / scale for s in samples if s[5]]
            print(
                f"{label}: first {values[0]:.1f}, last {values[-1]:.1f}, max {max(values):.1f}"
                if values
                else f"{label}: no samples"
            )
            if len(steady) >= 4:
                is_flat, q1, q4 = flat(steady)
                ok &= is_flat
                print(
                    f"  steady phase ({len(steady)} samples): first-quarter median {q1:.1f}, "
                    f"last-quarter median {q4:.1f} -> {'FLAT' if is_flat else 'GROWING'}"
                )
            else:
                print("  too few steady-phase samples to judge flatness (run longer)")
        return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--pods", type=int, default=200, help="pods kept alive at once")
    parser.add_argument("--workers", type=int, default=8, help="threads making and removing pods")
    parser.add_argument("--readers", type=int, default=1, help="threads per List/Status call")
    parser.add_argument("--read-pause", type=float, default=0.05, help="pause between reads (s)")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between samples")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    args.workers = max(1, min(args.workers, args.pods))

    reason = registry_env.missing_tools_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    tmpdir = tempfile.mkdtemp(prefix="pycrio-soak-")
    tmp = Path(tmpdir)
    registry = registry_env.RegistryServer(tmp / "registry").start()
    d: DaemonProcess | None = None
    status = 0
    try:
        layout = registry_env.OCILayout(tmp / "layout")
        base = registry_env.compress_layer(registry_env.busybox_rootfs_tar())
        built = layout.build_image([base], tag="busybox")
        pushed = registry_env.push(
            registry_env.Skopeo(tmp / "skopeo"), layout, "busybox", registry,
            "soak/busybox", "latest", built=built,
        )  # fmt: skip
        daemon_dir = tmp / "daemon"
        daemon_dir.mkdir()
        (daemon_dir / "run").mkdir()
        d = DaemonProcess(daemon_dir, [], dict(os.environ))
        d.config.write_text(daemon_config(daemon_dir / "conf", registry.host))
        d.start()
        time.sleep(3)  # let start-up work settle
        idle = rss_kb(d.proc.pid)
        verdict = "OK" if idle <= 55 * 1024 else "ABOVE TARGET"
        print(f"idle daemon: RSS {idle / 1024:.1f} MB (target <= 55 MB: {verdict}), ", end="")
        print(f"{fd_count(d.proc.pid)} open fds")
        d.images().PullImage(
            api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=pushed.name)), timeout=120
        )
        print(
            f"load: {args.pods} host-network pods x 1 container ({pushed.name}), "
            f"{args.workers} workers, {3 * args.readers} readers, {args.duration:.0f} s"
        )
        soak = Soak(d, pushed.name, args)
        status = soak.run()
        after = rss_kb(d.proc.pid)
        t0 = time.monotonic()
        soak.remove_all()
        print(f"removed the remaining pods in {time.monotonic() - t0:.1f} s; RSS after: ", end="")
        print(f"{after / 1024:.1f} MB under load, {rss_kb(d.proc.pid) / 1024:.1f} MB emptied")
        root, runroot = daemon_dir / "root", daemon_dir / "runroot"
        d.stop()
        leaks: list[str] = []
        for _ in range(50):
            leaks = host_leaks(root, runroot, soak.ids, pids=soak.pids)
            if not leaks:
                break
            time.sleep(0.2)
        if leaks:
            status = 1
            print(f"host leaks ({len(leaks)}):")
            for line in leaks[:50]:
                print("  " + line)
        else:
            print(
                f"host leaks: none ({len(soak.ids)} pod/container ids, "
                f"{len(soak.pids)} container pids checked)"
            )
    finally:
        if d is not None:
            d.stop()
        registry.stop_all()
        if args.keep or mounts_under(tmp):
            print(f"kept {tmpdir}")
        else:
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
