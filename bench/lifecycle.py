"""Pod and container lifecycle latency against the floor: runc + conmon, no daemon.

Starts a registry and a daemon of its own, runs one host-network pod (the
cheapest real setup the e2e tests use), then alternates, in one run (each
round in another order, so that no step always runs after the same one):

- **container**: CreateContainer + StartContainer + StopContainer (timeout 0)
  + RemoveContainer of a busybox ``sleep`` in that pod;
- **floor**: the same container lifecycle done directly, with no daemon:
  conmon (its double fork and sync pipe, with the daemon's flags) runs
  ``runc create``, then ``runc start``, ``runc kill --all KILL``, the wait
  for conmon's exit file, ``runc delete``; plus the external work every
  runtime must do and the daemon does too (a durable record, the overlay
  rootfs, conmon in the pod's cgroup: see :class:`Floor`). Its bundle is a
  copy of the daemon's own config.json for a container of the same pod
  (same mounts, namespaces, seccomp);
- **bare floor**: runc and conmon alone, on one rootfs mounted for all
  rounds (what this benchmark called the floor before), for reference;
- **pod**: RunPodSandbox + StopPodSandbox + RemovePodSandbox of a
  host-network pod (its IPC, UTS namespaces pinned; no infra container).

Prints p50/p99 of each, the ratio of the daemon's container lifecycle to
the floor (the target is at most 1.20) and to the bare floor, and the load
average (the machine may be shared: compare figures of one run only). With ``--baseline DIR`` (a
checkout of another pycrio, e.g. ``git archive main | tar -x -C DIR``) a
second daemon runs that code (its core and plugins on PYTHONPATH) and its
lifecycles alternate with the others in the same run.

Usage: .venv/bin/python bench/lifecycle.py [--rounds N] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

import registry_env  # noqa: E402
from container_e2e import pod_config  # noqa: E402
from cri_api.v1 import api_pb2  # noqa: E402
from cri_bench import TIMEOUT, container_lifecycle, percentile, sleeper, start_daemon  # noqa: E402

from pycrio.linux import libc  # noqa: E402


def daemon_pod(rt, log_dir: Path, n: int) -> None:  # noqa: ANN001
    config = pod_config(f"bench-pod-{n}", log_dir)
    pod_id = rt.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=config), timeout=TIMEOUT
    ).pod_sandbox_id
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=TIMEOUT)
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=TIMEOUT)


def overlay_of(mountpoint: str) -> tuple[str, str]:
    """(lowerdir, extra options) of the overlay the daemon mounted at ``mountpoint``.

    The extra options are those among ours that change what an unmount
    costs: ``volatile`` (shown as ``fsync=volatile`` by newer kernels).
    """
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] != mountpoint:
                continue
            opts = right.split()[2].split(",")
            lower = next(o.removeprefix("lowerdir=") for o in opts if o.startswith("lowerdir="))
            volatile = "volatile" in opts or "fsync=volatile" in opts
            return lower, ",volatile" if volatile else ""
    raise RuntimeError(f"no overlay mounted at {mountpoint}")


def cgroups_of(pid: int) -> list[str]:
    """The cgroup directories (one per hierarchy) process ``pid`` is in."""
    out = []
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            name = controllers.removeprefix("name=").split(",")[0] or "unified"
            mount = f"/sys/fs/cgroup/{name}"
            if not controllers and not os.path.isdir(mount):
                mount = "/sys/fs/cgroup"  # cgroup v2 alone
            if os.path.isdir(mount + path):
                out.append(mount + path)
    return out


def write_durable(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync of the directory: a record a crash keeps."""
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Floor:
    """The container lifecycle without a daemon: what any CRI runtime must do.

    ``bare`` is runc and conmon alone, on a rootfs mounted once for all
    rounds. Otherwise (the floor the ratio is taken against) also the
    external work no runtime can skip, done the way the daemon under test
    does it, each item checked against that daemon's template container:

    - the container's record written durably before anything is created
      (temp file, fsync, rename, fsync of the directory): a runtime killed
      at any point must find the container again, so CRI-O's
      containers/storage syncs its containers.json too; removed at the end;
    - the container's writable layer: upper/work dirs and an overlay mount
      of the image's layers with the daemon's options (``volatile`` when it
      uses it), unmounted (MNT_DETACH, as the daemon) and deleted on remove;
    - conmon moved into the cgroup the daemon puts its monitors in (the
      pod's, as CRI-O's conmon_cgroup = "pod"), at the same point: after
      conmon's double fork, while ``runc create`` runs.

    Not included, because the daemon can avoid it: its gRPC round trips,
    JSON of records and the OCI spec, events, other record writes.
    """

    def __init__(
        self,
        work: Path,
        template: dict,
        rootfs: str,
        cgroup_parent: str,
        monitor_cgroups: list[str],
        record: bytes,
        *,
        bare: bool,
    ) -> None:
        self.work = work
        self.template = template
        self.rootfs = rootfs
        self.lowerdir, self.overlay_extra = overlay_of(rootfs)
        self.cgroup_parent = cgroup_parent
        self.monitor_cgroups = monitor_cgroups
        self.record = record
        self.bare = bare
        self.root = str(work / "runc-root")
        self.exits = work / "exits"
        self.exits.mkdir(parents=True, exist_ok=True)
        (work / "attach").mkdir()
        (work / "records").mkdir()
        (work / "layers").mkdir()
        self.conmon = shutil.which("conmon")
        self.runc = shutil.which("runc")

    def runc_cmd(self, *args: str) -> None:
        subprocess.run(
            [self.runc, "--root", self.root, *args],
            check=True,
            timeout=TIMEOUT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def run(self, n: int) -> None:
        cid = f"floor{os.getpid()}x{n}"
        state = self.work / cid
        record = self.work / "records" / f"{cid}.json"
        layer = self.work / "layers" / cid
        rootfs = self.rootfs
        if not self.bare:
            write_durable(record, self.record)
            for d in ("upper", "work", "merged"):
                (layer / d).mkdir(parents=True)
            rootfs = str(layer / "merged")
            options = f"lowerdir={self.lowerdir},upperdir={layer}/upper,workdir={layer}/work"
            libc.mount("overlay", rootfs, "overlay", 0, options + self.overlay_extra)
        bundle = state / "bundle"
        bundle.mkdir(parents=True)
        spec = json.loads(json.dumps(self.template))
        spec["root"] = {"path": rootfs, "readonly": False}
        spec["hooks"] = {}
        spec.setdefault("linux", {})["cgroupsPath"] = f"{self.cgroup_parent}/{cid}"
        (bundle / "config.json").write_text(json.dumps(spec))
        sync_r, sync_w = os.pipe()
        start_r, start_w = os.pipe()
        env = dict(os.environ, _OCI_SYNCPIPE=str(sync_w), _OCI_STARTPIPE=str(start_r))
        argv = [
            self.conmon, "--api-version", "1", "-c", cid, "-u", cid, "-r", self.runc,
            "-b", str(bundle), "-p", str(state / "pidfile"), "-P", str(state / "conmon.pid"),
            "-l", f"k8s-file:{state / 'ctr.log'}", "--exit-dir", str(self.exits),
            "--persist-dir", str(state), "--socket-dir-path", str(self.work / "attach"),
            "--log-level", "info", "--runtime-arg", f"--root={self.root}",
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv,
            cwd=bundle,
            env=env,
            pass_fds=(sync_w, start_r),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        os.close(sync_w)
        os.close(start_r)
        os.write(start_w, b"\0")
        os.close(start_w)
        _, err = proc.communicate(timeout=TIMEOUT)
        if not self.bare:
            monitor = (state / "conmon.pid").read_text().strip()
            for cgroup in self.monitor_cgroups:
                with open(f"{cgroup}/cgroup.procs", "w", encoding="ascii") as f:
                    f.write(monitor)
        ready, _, _ = select.select([sync_r], [], [], TIMEOUT)
        line = os.read(sync_r, 4096) if ready else b""
        os.close(sync_r)
        if not line.strip() or json.loads(line.splitlines()[0]).get("data", -1) <= 0:
            raise RuntimeError(f"floor create failed: {line!r} {err!r}")
        self.runc_cmd("start", cid)
        self.runc_cmd("kill", "--all", cid, "KILL")
        exit_file = self.exits / cid
        deadline = time.monotonic() + TIMEOUT
        while not exit_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("floor container did not exit")
            time.sleep(0.001)
        self.runc_cmd("delete", cid)
        exit_file.unlink()
        link = self.work / "attach" / cid
        if link.is_symlink():
            link.unlink()
        shutil.rmtree(state, ignore_errors=True)
        if not self.bare:
            libc.umount2(rootfs, libc.MNT_DETACH)
            shutil.rmtree(layer)
            record.unlink()


def timed(fn, *args) -> float:  # noqa: ANN001
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def baseline_env(source: Path) -> dict[str, str]:
    """Run the daemon from another checkout: its core and plugins first on the path."""
    paths = [str(source / "core")] + sorted(str(p) for p in (source / "plugins").iterdir())
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another pycrio checkout to compare")
    args = parser.parse_args()

    results: dict[str, list[float]] = {"container": [], "floor": [], "bare floor": [], "pod": []}
    if args.baseline:
        results.update({"base container": [], "base pod": []})
    with tempfile.TemporaryDirectory(prefix="pycrio-bench-") as tmp_:
        tmp = Path(tmp_)
        registry = registry_env.RegistryServer(tmp / "registry").start()
        daemon = base = None
        try:
            images = registry_env.build_and_push_standard_images(tmp / "images", registry)
            image = images.busybox.name
            daemon = start_daemon(tmp / "pycrio", registry.host, image, dict(os.environ))
            rt = daemon.runtime()
            if args.baseline:
                env = baseline_env(args.baseline.resolve())
                base = start_daemon(tmp / "base", registry.host, image, env)
                base_rt = base.runtime()
                base_pod_id = base_rt.RunPodSandbox(
                    api_pb2.RunPodSandboxRequest(config=pod_config("base", tmp / "blogs")),
                    timeout=TIMEOUT,
                ).pod_sandbox_id
            pod = pod_config("bench", tmp / "logs")
            pod_id = rt.RunPodSandbox(
                api_pb2.RunPodSandboxRequest(config=pod), timeout=TIMEOUT
            ).pod_sandbox_id
            # a created (never started) container of the pod: its spec and rootfs feed the floor
            template_id = rt.CreateContainer(
                api_pb2.CreateContainerRequest(
                    pod_sandbox_id=pod_id,
                    sandbox_config=pod,
                    config=sleeper("template", image),
                ),
                timeout=TIMEOUT,
            ).container_id
            info = json.loads(
                rt.ContainerStatus(
                    api_pb2.ContainerStatusRequest(container_id=template_id, verbose=True)
                ).info["info"]
            )
            spec = json.loads((Path(info["bundle"]) / "config.json").read_text())
            cgroups = spec.get("linux", {}).get("cgroupsPath", "")
            # where the daemon put the template's monitor, unless it left it in its own cgroups
            pid_file = next((tmp / "pycrio" / "runroot").rglob(f"{template_id}/conmon.pid"))
            placed = cgroups_of(int(pid_file.read_text()))
            if placed == cgroups_of(daemon.proc.pid):
                placed = []
            record = rt.ContainerStatus(
                api_pb2.ContainerStatusRequest(container_id=template_id, verbose=True)
            ).info["info"]
            floors = {
                kind: Floor(
                    tmp / kind,
                    spec,
                    info["rootfs"],
                    os.path.dirname(cgroups) or "/",
                    placed,
                    record.encode(),
                    bare=kind == "bare floor",
                )
                for kind in ("floor", "bare floor")
            }

            steps: dict[str, Callable[[int], None]] = {
                "container": lambda n: container_lifecycle(rt, pod_id, pod, f"c{n}", image),
                "floor": floors["floor"].run,
                "bare floor": floors["bare floor"].run,
                "pod": lambda n: daemon_pod(rt, tmp / "logs", n),
            }
            if base is not None:
                base_pod = pod_config("base", tmp / "blogs")
                steps["base container"] = lambda n: container_lifecycle(
                    base_rt, base_pod_id, base_pod, f"c{n}", image
                )
                steps["base pod"] = lambda n: daemon_pod(base_rt, tmp / "blogs", n)
            order = random.Random(1)  # each round in another order: no step always follows another
            for n in range(args.warmup + args.rounds):
                keys = list(steps)
                order.shuffle(keys)
                times = {key: timed(steps[key], n) for key in keys}
                if n >= args.warmup:
                    for key, value in times.items():
                        results[key].append(value)
        finally:
            for d in (daemon, base):
                if d is not None:
                    d.remove_all_pods()
                    d.stop()
            registry.stop_all()

    ms = 1000.0
    print(f"lifecycle latency, {args.rounds} rounds alternating (ms):")
    print(f"  {'':46} {'p50':>8} {'p99':>8}")
    labels = {
        "container": "pycrio create+start+stop+remove container",
        "floor": "floor: + record, rootfs, conmon cgroup",
        "bare floor": "bare floor: conmon+runc create/start/kill/delete",
        "pod": "pycrio run+stop+remove pod sandbox",
        "base container": "baseline: container lifecycle",
        "base pod": "baseline: pod lifecycle",
    }
    for key, label in labels.items():
        if key not in results:
            continue
        xs = results[key]
        print(f"  {label:46} {statistics.median(xs) * ms:8.1f} {percentile(xs, 99) * ms:8.1f}")
    for floor in ("floor", "bare floor"):
        ratio = statistics.median(results["container"]) / statistics.median(results[floor])
        target = "  (target <= 1.20)" if floor == "floor" else ""
        print(f"  ratio container/{floor} (p50): {ratio:.2f}{target}")
    if args.baseline:
        ratio = statistics.median(results["base container"]) / statistics.median(results["floor"])
        print(f"  ratio baseline container/floor (p50): {ratio:.2f}")
    if args.baseline:
        for kind in ("container", "pod"):
            change = statistics.median(results[kind]) / statistics.median(results[f"base {kind}"])
            print(f"  {kind} lifecycle p50, this checkout / baseline: {change:.2f}")
    print("  load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
