"""The daemon SIGKILLed in the middle of each CRI call, then restarted on the same state.

For every call a few iterations of: issue the call in a thread, SIGKILL the
daemon after a delay, restart it on the same root and runroot, and check that

- List calls work and show only complete objects (valid states, a READY pod
  has its pinned namespaces, a RUNNING container has a live process, no
  record on disk that the CRI does not show);
- a retried call succeeds (or reports that its object already exists);
- a bystander container started before the kill still runs, same pid;

and at the end, once everything is removed through the CRI and the daemon
is stopped, nothing is left on the host (see ``leaks.host_leaks``).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import registry_env
from container_e2e import CREATED, EXITED, RUNNING, alive, daemon_config
from container_e2e import pod_config as host_pod_config
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from image_e2e import pull
from leaks import cmdlines, host_leaks, record_ids

pytestmark = pytest.mark.e2e

NET = "[network]\ndriver = 'testnet'\nhostport_manager = 'none'\n"
POD_STATES = {api_pb2.SANDBOX_READY, api_pb2.SANDBOX_NOTREADY}
CONTAINER_STATES = {CREATED, RUNNING, EXITED}
IGNORES_TERM = ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]


def net_pod_config(name: str, tmp: Path) -> api_pb2.PodSandboxConfig:
    """A pod with its own (testnet) network namespace."""
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="crash", uid=f"uid-{name}"),
        hostname=name,
        log_directory=str(tmp / "logs" / name),
        labels={"pod": name},
    )


def container_config(name: str, image: str, command: list[str]) -> api_pb2.ContainerConfig:
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=name),
        image=api_pb2.ImageSpec(image=image),
        command=command,
        log_path=f"{name}.log",
    )


class Harness:
    """One daemon, killed and restarted; remembers every id it met for the leak check."""

    def __init__(self, d: DaemonProcess, image: str) -> None:
        self.d = d
        self.image = image
        self.root = d.tmp / "root"
        self.runroot = d.tmp / "runroot"
        self.ids: set[str] = set()
        self.pids: set[int] = set()
        self.outcomes: list[str] = []  # what each interrupted call got, printed with -s

    @property
    def rt(self) -> Any:
        return self.d.runtime()

    # --- building blocks -------------------------------------------------------

    def run_pod(self, config: api_pb2.PodSandboxConfig) -> str:
        pod_id = self.rt.RunPodSandbox(
            api_pb2.RunPodSandboxRequest(config=config), timeout=30
        ).pod_sandbox_id
        self.ids.add(pod_id)
        return pod_id

    def create(self, pod_id: str, pod: api_pb2.PodSandboxConfig, name: str, cmd: list[str]) -> str:
        cid = self.rt.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod_id,
                config=container_config(name, self.image, cmd),
                sandbox_config=pod,
            ),
            timeout=60,
        ).container_id
        self.ids.add(cid)
        return cid

    def start(self, cid: str) -> int:
        self.rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid), timeout=30)
        pid = self.pid(cid)
        self.pids.add(pid)
        return pid

    def pid(self, cid: str) -> int:
        status = self.rt.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=cid, verbose=True), timeout=10
        )
        return int(json.loads(status.info["info"])["pid"])

    def status(self, cid: str) -> api_pb2.ContainerStatus:
        return self.rt.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=cid), timeout=10
        ).status

    def pods(self) -> dict[str, api_pb2.PodSandbox]:
        items = self.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        return {p.id: p for p in items}

    def containers(self) -> dict[str, api_pb2.Container]:
        items = self.rt.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
        return {c.id: c for c in items}

    # --- the crash -------------------------------------------------------------

    def crash_during(
        self, call: Callable[[], Any], delay: float | Callable[[], bool]
    ) -> tuple[Any, BaseException | None]:
        """Run ``call`` in a thread, SIGKILL the daemon after ``delay`` seconds (or
        once ``delay()`` is true), restart it; return the call's result or error."""
        result: list[Any] = [None, None]

        def run() -> None:
            try:
                result[0] = call()
            except BaseException as e:  # noqa: BLE001 - reported to the test
                result[1] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        if callable(delay):
            deadline = time.monotonic() + 30
            while not delay():
                assert time.monotonic() < deadline, "the call never reached the kill point"
                time.sleep(0.01)
        else:
            time.sleep(delay)
        self.d.proc.kill()
        self.d.wait(timeout=30)
        t.join(30)
        assert not t.is_alive(), "the CRI call did not return after the daemon died"
        err = result[1]
        self.outcomes.append(
            "completed" if err is None else getattr(err, "code", lambda: repr(err))().name
        )
        self.ids |= record_ids(self.root)  # half-made objects too: none may leak
        self.d.stop()
        self.d.start()
        return result[0], result[1]

    # --- the checks ------------------------------------------------------------

    def assert_consistent(self) -> None:
        pods = self.pods()
        for pod in pods.values():
            assert pod.state in POD_STATES, pod
            info = json.loads(
                self.rt.PodSandboxStatus(
                    api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod.id, verbose=True),
                    timeout=10,
                ).info["info"]
            )
            if pod.state == api_pb2.SANDBOX_READY:
                with open("/proc/self/mountinfo") as f:
                    points = {line.split()[4] for line in f}
                for kind, path in info["namespaces"].items():
                    assert os.path.exists(path), f"READY pod {pod.id}: {kind} pin {path} is gone"
                    if kind != "pid":
                        assert path in points, f"READY pod {pod.id}: {path} is not mounted"
        containers = self.containers()
        for c in containers.values():
            assert c.state in CONTAINER_STATES, c
            assert c.pod_sandbox_id in pods, f"container {c.id} of an unlisted pod"
            if c.state == RUNNING:
                pid = self.pid(c.id)
                assert alive(pid), f"RUNNING container {c.id}: pid {pid} is dead"
            elif c.state == CREATED:
                # created, not started: its process is still runc's init, waiting
                pid = self.pid(c.id)
                if pid > 0 and alive(pid):
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        argv = f.read().split(b"\0")
                    assert argv[1:2] == [b"init"], (
                        f"container {c.id} is listed CREATED but runs {argv}"
                    )
        # every record on disk is shown by the CRI: no half-made object survived the restart
        infra = {
            json.loads(p.read_text()).get("id")
            for p in (self.root / "containers").glob("*.json")
            if json.loads(p.read_text()).get("infra")
        }
        on_disk = record_ids(self.root) - infra
        assert on_disk == set(pods) | set(containers), (on_disk, set(pods), set(containers))

    def assert_still_runs(self, cid: str, pid: int, killed_at: int) -> None:
        s = self.status(cid)
        assert s.state == RUNNING, s
        assert 0 < s.started_at < killed_at
        assert self.pid(cid) == pid and alive(pid)

    def remove_everything_and_check_host(self) -> None:
        for c in self.containers().values():
            self.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=c.id), timeout=60)
        for pod_id in self.pods():
            self.rt.RemovePodSandbox(
                api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60
            )
        assert self.pods() == {} and self.containers() == {}
        self.ids |= record_ids(self.root)
        self.d.stop()
        deadline = time.monotonic() + 10
        while True:
            leaks = host_leaks(self.root, self.runroot, self.ids, pids=self.pids)
            if not leaks or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert leaks == [], "\n".join(leaks)
        print(f"interrupted calls: {self.outcomes}", end=" ")


@pytest.fixture
def harness(start_daemon, plugin_site: Path, tmp_path: Path, registry, images, request):
    setup_delay = getattr(request, "param", 0)
    extra = NET + f"[plugins.testnet]\nsetup_delay = {setup_delay}\nips = ['10.89.0.7']\n"
    conf = tmp_path / "conf"
    d = start_daemon(
        env={"PYTHONPATH": str(plugin_site)},
        config=daemon_config(conf, registry.host, extra),
    )
    pull(d, images.busybox.name)
    h = Harness(d, images.busybox.name)
    # a bystander: must run through every crash, untouched
    bystander = host_pod_config("bystander", tmp_path / "logs")
    pod_id = h.run_pod(bystander)
    h.bystander = h.create(pod_id, bystander, "steady", ["sleep", "600"])
    h.bystander_pid = h.start(h.bystander)
    yield h


def timed(call: Callable[[], Any]) -> float:
    t0 = time.monotonic()
    call()
    return time.monotonic() - t0


def kill_points(duration: float, n: int, seed: int) -> list[float]:
    """``n`` delays spread over a call that takes ``duration`` seconds, jittered."""
    rng = random.Random(seed)
    return [duration * (i + rng.uniform(0.1, 0.9)) / n for i in range(n)]


def unavailable_or_none(err: BaseException | None) -> None:
    """The interrupted call either finished or lost its connection."""
    if err is not None:
        assert isinstance(err, grpc.RpcError), err
        assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), err


def after_kill(h: Harness, err: BaseException | None, killed_at: int) -> None:
    unavailable_or_none(err)
    h.assert_consistent()
    h.assert_still_runs(h.bystander, h.bystander_pid, killed_at)


# --- pods ---------------------------------------------------------------------------------


@pytest.mark.parametrize("harness", [1.0], indirect=True)
def test_kill_during_run_pod_sandbox(harness: Harness, tmp_path: Path) -> None:
    h = harness
    rng = random.Random(7)
    for i in range(3):
        config = net_pod_config(f"slow-{i}", tmp_path)
        killed_at = time.time_ns()
        _, err = h.crash_during(
            lambda c=config: h.rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=c), timeout=30),
            rng.uniform(0.1, 1.4),
        )
        after_kill(h, err, killed_at)
        named = [p for p in h.pods().values() if p.metadata.name == f"slow-{i}"]
        try:
            pod_id = h.run_pod(config)  # the kubelet's retry
        except grpc.RpcError as e:
            # the first call had finished: the name is taken by that complete pod
            assert e.code() == grpc.StatusCode.ALREADY_EXISTS, e
            assert len(named) == 1 and named[0].id in e.details()
            pod_id = named[0].id
        pods = h.pods()
        assert pods[pod_id].state == api_pb2.SANDBOX_READY
        assert [p.id for p in pods.values() if p.metadata.name == f"slow-{i}"] == [pod_id]
        h.assert_consistent()
    h.remove_everything_and_check_host()


@pytest.mark.parametrize("kind", ["net", "pid"])
@pytest.mark.parametrize("harness", [1.0], indirect=True)
def test_kill_while_pinning_namespaces(harness: Harness, tmp_path: Path, kind: str) -> None:
    """Killed once a pin file exists but before its pinning returned (``unshare``
    for net, ipc and uts; the PID namespace's holder for pid): the next start must
    know the pins (recorded before they were made), remove them and stop the holder."""
    h = harness
    pins = h.runroot / "ns" / kind
    before = set(pins.iterdir()) if pins.exists() else set()
    holders = {c for c in cmdlines().values() if f"--pid={h.runroot}" in c}
    config = net_pod_config(f"pinning-{kind}", tmp_path)
    killed_at = time.time_ns()
    _, err = h.crash_during(
        lambda: h.rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=30),
        lambda: pins.exists() and set(pins.iterdir()) != before,
    )
    after_kill(h, err, killed_at)
    assert not [p for p in h.pods().values() if p.metadata.name == f"pinning-{kind}"]
    assert set(pins.iterdir()) == before, f"an interrupted pod's {kind} namespace pin leaked"
    left = {c for c in cmdlines().values() if f"--pid={h.runroot}" in c} - holders
    assert not left, f"an interrupted pod's PID namespace holder still runs: {left}"
    h.run_pod(config)  # the kubelet's retry
    h.assert_consistent()
    h.remove_everything_and_check_host()


def pod_with_containers(h: Harness, name: str, tmp: Path) -> tuple[str, list[str]]:
    config = net_pod_config(name, tmp)
    pod_id = h.run_pod(config)
    cids = [h.create(pod_id, config, f"c{j}", ["sleep", "600"]) for j in range(2)]
    for cid in cids:
        h.start(cid)
    return pod_id, cids


def test_kill_during_stop_pod_sandbox(harness: Harness, tmp_path: Path) -> None:
    h = harness
    net_state = h.root / "drivers" / "testnet" / "pods.json"
    probe, _ = pod_with_containers(h, "probe", tmp_path)
    took = timed(lambda: h.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=probe)))
    for i, delay in enumerate(kill_points(took, 4, seed=1)):
        pod_id, cids = pod_with_containers(h, f"stop-{i}", tmp_path)
        killed_at = time.time_ns()
        _, err = h.crash_during(
            lambda p=pod_id: h.rt.StopPodSandbox(
                api_pb2.StopPodSandboxRequest(pod_sandbox_id=p), timeout=30
            ),
            delay,
        )
        after_kill(h, err, killed_at)
        assert pod_id in h.pods()
        h.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=30)
        assert h.pods()[pod_id].state == api_pb2.SANDBOX_NOTREADY
        assert {h.status(c).state for c in cids} == {EXITED}
        assert pod_id not in json.loads(net_state.read_text())
        h.assert_consistent()
    h.remove_everything_and_check_host()


def test_kill_during_remove_pod_sandbox(harness: Harness, tmp_path: Path) -> None:
    h = harness
    probe, _ = pod_with_containers(h, "probe", tmp_path)
    took = timed(
        lambda: h.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=probe))
    )
    for i, delay in enumerate(kill_points(took, 4, seed=2)):
        pod_id, cids = pod_with_containers(h, f"rm-{i}", tmp_path)
        if i % 2:
            h.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=30)
        killed_at = time.time_ns()
        _, err = h.crash_during(
            lambda p=pod_id: h.rt.RemovePodSandbox(
                api_pb2.RemovePodSandboxRequest(pod_sandbox_id=p), timeout=60
            ),
            delay,
        )
        after_kill(h, err, killed_at)
        for _ in range(2):  # the retry, and Remove is idempotent
            h.rt.RemovePodSandbox(
                api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60
            )
        assert pod_id not in h.pods()
        assert not set(cids) & set(h.containers())
        h.assert_consistent()
    h.remove_everything_and_check_host()


# --- images -------------------------------------------------------------------------------


def test_kill_during_pull_image(
    start_daemon, plugin_site: Path, tmp_path: Path, registry, images
) -> None:
    stalling = registry_env.StallingRegistry(
        images.busybox.built, "pycrio-test/stall", "v1"
    ).start()
    try:
        conf = tmp_path / "conf"
        config = daemon_config(conf, registry.host, NET)
        with (conf / "registries.conf").open("a") as f:
            f.write(f'[[registry]]\nlocation = "{stalling.host}"\ninsecure = true\n')
        d = start_daemon(env={"PYTHONPATH": str(plugin_site)}, config=config)
        h = Harness(d, images.busybox.name)
        for i in range(3):
            stalling.stalled.clear()
            kill_when: float | Callable[[], bool] = stalling.stalled.is_set if i < 2 else 0.05
            _, err = h.crash_during(lambda: pull(d, stalling.name, timeout=30), kill_when)
            unavailable_or_none(err)
            listed = d.images().ListImages(api_pb2.ListImagesRequest(), timeout=10).images
            assert not any(stalling.name in img.repo_tags for img in listed)
            st = d.images().ImageStatus(
                api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=stalling.name)),
                timeout=10,
            )
            assert not st.HasField("image")
            tmp_dir = h.root / "storage" / "tmp"
            assert not tmp_dir.exists() or os.listdir(tmp_dir) == []
        # the retry, from a registry that answers: the same layer, unpacked whole
        ref = pull(d, images.busybox.name)
        assert ref
        h.assert_consistent()
        h.remove_everything_and_check_host()
    finally:
        stalling.stop()


# --- containers ---------------------------------------------------------------------------


def host_pod(h: Harness, name: str, tmp: Path) -> tuple[str, api_pb2.PodSandboxConfig]:
    config = host_pod_config(name, tmp / "logs")
    return h.run_pod(config), config


def test_kill_during_create_container(harness: Harness, tmp_path: Path) -> None:
    h = harness
    pod_id, pod = host_pod(h, "create", tmp_path)
    took = timed(lambda: h.create(pod_id, pod, "probe", ["sleep", "600"]))
    for i, delay in enumerate(kill_points(took, 5, seed=3)):
        name = f"new-{i}"
        killed_at = time.time_ns()
        _, err = h.crash_during(lambda n=name: h.create(pod_id, pod, n, ["sleep", "600"]), delay)
        after_kill(h, err, killed_at)
        named = [c for c in h.containers().values() if c.metadata.name == name]
        assert all(c.state == CREATED for c in named) and len(named) <= 1, [
            (c.id, c.state, h.status(c.id).reason, h.status(c.id).message) for c in named
        ]
        try:
            cid = h.create(pod_id, pod, name, ["sleep", "600"])
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.ALREADY_EXISTS, e
            assert len(named) == 1 and named[0].id in e.details()
            cid = named[0].id
        pid = h.start(cid)
        assert alive(pid) and h.status(cid).state == RUNNING
        h.assert_consistent()
    h.remove_everything_and_check_host()


def test_kill_during_start_container(harness: Harness, tmp_path: Path) -> None:
    h = harness
    pod_id, pod = host_pod(h, "start", tmp_path)
    probe = h.create(pod_id, pod, "probe", ["sleep", "600"])
    took = timed(lambda: h.start(probe))
    for i, delay in enumerate(kill_points(took, 5, seed=4)):
        cid = h.create(pod_id, pod, f"s-{i}", ["sleep", "600"])
        killed_at = time.time_ns()
        _, err = h.crash_during(
            lambda c=cid: h.rt.StartContainer(
                api_pb2.StartContainerRequest(container_id=c), timeout=30
            ),
            delay,
        )
        after_kill(h, err, killed_at)
        state = h.status(cid).state
        assert state in (CREATED, RUNNING), state
        if state == CREATED:
            h.start(cid)  # the retry
        pid = h.pid(cid)
        h.pids.add(pid)
        assert h.status(cid).state == RUNNING and alive(pid)
        h.assert_consistent()
    h.remove_everything_and_check_host()


def test_kill_during_stop_container(harness: Harness, tmp_path: Path) -> None:
    h = harness
    pod_id, pod = host_pod(h, "stop", tmp_path)
    for i, delay in enumerate(kill_points(3.5, 3, seed=6)):
        cid = h.create(pod_id, pod, f"t-{i}", IGNORES_TERM)
        pid = h.start(cid)
        killed_at = time.time_ns()
        _, err = h.crash_during(
            lambda c=cid: h.rt.StopContainer(
                api_pb2.StopContainerRequest(container_id=c, timeout=3), timeout=30
            ),
            delay,
        )
        after_kill(h, err, killed_at)
        state = h.status(cid).state
        assert state in (RUNNING, EXITED), state
        assert (state == RUNNING) == alive(pid)
        h.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=1), timeout=30)
        assert h.status(cid).state == EXITED and not alive(pid)
        h.assert_consistent()
    h.remove_everything_and_check_host()


def test_kill_during_remove_container(harness: Harness, tmp_path: Path) -> None:
    h = harness
    pod_id, pod = host_pod(h, "remove", tmp_path)
    probe = h.create(pod_id, pod, "probe", ["sleep", "600"])
    h.start(probe)
    took = timed(lambda: h.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=probe)))
    for i, delay in enumerate(kill_points(took, 4, seed=5)):
        cid = h.create(pod_id, pod, f"r-{i}", ["sleep", "600"])
        if i % 2 == 0:
            h.start(cid)
        killed_at = time.time_ns()
        _, err = h.crash_during(
            lambda c=cid: h.rt.RemoveContainer(
                api_pb2.RemoveContainerRequest(container_id=c), timeout=60
            ),
            delay,
        )
        after_kill(h, err, killed_at)
        for _ in range(2):  # the retry, and Remove is idempotent
            h.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)
        assert cid not in h.containers()
        h.assert_consistent()
    h.remove_everything_and_check_host()
