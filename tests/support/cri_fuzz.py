"""The CRI fuzzer's harness: a real pod and running container, baselines, verdicts.

Every RPC of RuntimeService and ImageService (read from the descriptor, so a
new RPC is fuzzed as soon as the stubs know it) is called with a valid
*baseline* request that reaches deep code (the real pod's id, the running
container's id, a pullable image) merged with a sparse hostile message drawn
from the request's descriptor (see ``proto_strategies``). The verdict allows
only status codes the CRI documents for bad input; INTERNAL and UNKNOWN are
bugs, and so is a call that outlives its deadline.
"""

from __future__ import annotations

import base64
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from container_e2e import pod_config
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from google.protobuf.message import Message

SERVICES = ("RuntimeService", "ImageService")
#: The codes a CRI call may answer bad input with. INTERNAL and UNKNOWN are
#: the daemon's own failures; DEADLINE_EXCEEDED only when the daemon said it
#: (ExecSync's own timeout), never the client's deadline.
ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.OUT_OF_RANGE,
}
CALL_TIMEOUT = 45.0
#: The running container: ends on SIGTERM so a fuzzed StopContainer is quick.
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


def methods() -> list[tuple[str, str]]:
    """(service, method) of every CRI RPC the stubs define."""
    return [
        (service, m.name)
        for service in SERVICES
        for m in api_pb2.DESCRIPTOR.services_by_name[service].methods
    ]


def method_descriptor(service: str, method: str) -> Any:
    return api_pb2.DESCRIPTOR.services_by_name[service].methods_by_name[method]


@dataclass
class Target:
    """The real pod, its running container and the image they use."""

    d: DaemonProcess
    image: str
    log_dir: Path
    pod_id: str = ""
    pod_cfg: api_pb2.PodSandboxConfig = field(default_factory=api_pb2.PodSandboxConfig)
    container_id: str = ""
    image_id: str = ""
    #: ids of every pod and container the fuzzed calls created (and the harness)
    created: set[str] = field(default_factory=set)
    pids: set[int] = field(default_factory=set)
    recreated: int = 0
    #: the daemon's (threads, fds) with the target running, before any fuzzing
    baseline_usage: tuple[int, int] = (0, 0)
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def rt(self) -> Any:
        return self.d.runtime()

    @property
    def img(self) -> Any:
        return self.d.images()

    @property
    def registry_port(self) -> int:
        return int(self.image.split("/", 1)[0].rsplit(":", 1)[1])

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{os.getpid()}-{next(self._names)}"

    def ensure(self) -> None:
        """Bring back the image, pod and running container a fuzzed call took away."""
        self._ensure_image()
        if not self._pod_ready():
            if self.pod_id:
                self._remove_pod(self.pod_id)
            self.pod_cfg = pod_config(self.unique("fuzz"), self.log_dir)
            self.pod_id = self.rt.RunPodSandbox(
                api_pb2.RunPodSandboxRequest(config=self.pod_cfg), timeout=CALL_TIMEOUT
            ).pod_sandbox_id
            self.created.add(self.pod_id)
            self.container_id = ""
            self.recreated += 1
        if not self._container_running():
            if self.container_id:
                self._remove_container(self.container_id)
            cfg = api_pb2.ContainerConfig(
                metadata=api_pb2.ContainerMetadata(name=self.unique("sleeper")),
                image=api_pb2.ImageSpec(image=self.image),
                command=SLEEPER,
                log_path="sleeper.log",
                labels={"fuzz": "target"},
            )
            cid = self.rt.CreateContainer(
                api_pb2.CreateContainerRequest(
                    pod_sandbox_id=self.pod_id, config=cfg, sandbox_config=self.pod_cfg
                ),
                timeout=CALL_TIMEOUT,
            ).container_id
            self.created.add(cid)
            self.rt.StartContainer(
                api_pb2.StartContainerRequest(container_id=cid), timeout=CALL_TIMEOUT
            )
            self.container_id = cid
            pid = self._pid(cid)
            if pid:
                self.pids.add(pid)
            self.recreated += 1

    def _ensure_image(self) -> None:
        status = self.img.ImageStatus(
            api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=self.image)),
            timeout=CALL_TIMEOUT,
        )
        if not status.image.id:
            self.img.PullImage(
                api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=self.image)),
                timeout=120,
            )
            status = self.img.ImageStatus(
                api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=self.image)),
                timeout=CALL_TIMEOUT,
            )
        self.image_id = status.image.id

    def _pod_ready(self) -> bool:
        if not self.pod_id:
            return False
        try:
            s = self.rt.PodSandboxStatus(
                api_pb2.PodSandboxStatusRequest(pod_sandbox_id=self.pod_id), timeout=CALL_TIMEOUT
            )
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return s.status.state == api_pb2.SANDBOX_READY

    def _container_running(self) -> bool:
        if not self.container_id:
            return False
        try:
            s = self.rt.ContainerStatus(
                api_pb2.ContainerStatusRequest(container_id=self.container_id),
                timeout=CALL_TIMEOUT,
            )
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return s.status.state == api_pb2.CONTAINER_RUNNING

    def _pid(self, cid: str) -> int:
        import json

        s = self.rt.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=cid, verbose=True), timeout=CALL_TIMEOUT
        )
        try:
            return int(json.loads(s.info.get("info", "{}")).get("pid", 0))
        except (ValueError, TypeError):
            return 0

    def _remove_container(self, cid: str) -> None:
        self.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)

    def _remove_pod(self, pid: str) -> None:
        self.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pid), timeout=60)

    def forget_extras(self) -> None:
        """Remove what successful fuzzed calls made besides the target pod/container."""
        for c in self.rt.ListContainers(api_pb2.ListContainersRequest(), timeout=30).containers:
            self.created.add(c.id)
            if c.id != self.container_id:
                self._remove_container(c.id)
        for p in self.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items:
            self.created.add(p.id)
            if p.id != self.pod_id:
                self._remove_pod(p.id)


def hints(t: Target) -> dict[str, list[Any]]:
    """Values, by field name, that make a fuzzed field point at something real."""
    ids = [t.pod_id, t.container_id]
    return {
        "pod_sandbox_id": [t.pod_id],
        "container_id": [t.container_id],
        "id": ids,
        "image": [t.image, t.image_id],
        "cmd": ["true", "/bin/true", "echo"],
        "command": ["/bin/sh", "sh"],
        "port": [80, 65535, 0],
        "name": ["sleeper", "fuzz"],
        "namespace": ["ctr", "default"],
        "key": ["pod", "fuzz", "io.kubernetes.pod.name"],
        "runtime_handler": ["", "runc"],
        "log_path": ["x.log", "../x.log"],
    }


def baseline(method: str, t: Target) -> Message:
    """A request that succeeds (or fails cleanly) and reaches deep code."""
    cid, pid = t.container_id, t.pod_id
    r = api_pb2
    meta = r.ContainerMetadata(name=t.unique("c"))
    ctr = r.ContainerConfig(
        metadata=meta,
        image=r.ImageSpec(image=t.image),
        command=["/bin/true"],
        log_path=f"{meta.name}.log",
    )
    table: dict[str, Callable[[], Message]] = {
        "RunPodSandbox": lambda: r.RunPodSandboxRequest(
            config=pod_config(t.unique("p"), t.log_dir)
        ),
        "StopPodSandbox": lambda: r.StopPodSandboxRequest(pod_sandbox_id=pid),
        "RemovePodSandbox": lambda: r.RemovePodSandboxRequest(pod_sandbox_id=pid),
        "PodSandboxStatus": lambda: r.PodSandboxStatusRequest(pod_sandbox_id=pid, verbose=True),
        "ListPodSandbox": lambda: r.ListPodSandboxRequest(filter=r.PodSandboxFilter(id=pid)),
        "CreateContainer": lambda: r.CreateContainerRequest(
            pod_sandbox_id=pid, config=ctr, sandbox_config=t.pod_cfg
        ),
        "StartContainer": lambda: r.StartContainerRequest(container_id=cid),
        "StopContainer": lambda: r.StopContainerRequest(container_id=cid, timeout=5),
        "RemoveContainer": lambda: r.RemoveContainerRequest(container_id=cid),
        "ListContainers": lambda: r.ListContainersRequest(
            filter=r.ContainerFilter(pod_sandbox_id=pid)
        ),
        "ContainerStatus": lambda: r.ContainerStatusRequest(container_id=cid, verbose=True),
        "UpdateContainerResources": lambda: r.UpdateContainerResourcesRequest(
            container_id=cid, linux=r.LinuxContainerResources(cpu_shares=512)
        ),
        "ReopenContainerLog": lambda: r.ReopenContainerLogRequest(container_id=cid),
        "ExecSync": lambda: r.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10),
        "Exec": lambda: r.ExecRequest(container_id=cid, cmd=["sh"], stdout=True),
        "Attach": lambda: r.AttachRequest(container_id=cid, stdout=True),
        "PortForward": lambda: r.PortForwardRequest(pod_sandbox_id=pid, port=[80]),
        "ContainerStats": lambda: r.ContainerStatsRequest(container_id=cid),
        "ListContainerStats": lambda: r.ListContainerStatsRequest(
            filter=r.ContainerStatsFilter(pod_sandbox_id=pid)
        ),
        "PodSandboxStats": lambda: r.PodSandboxStatsRequest(pod_sandbox_id=pid),
        "ListPodSandboxStats": lambda: r.ListPodSandboxStatsRequest(
            filter=r.PodSandboxStatsFilter(id=pid)
        ),
        "CheckpointContainer": lambda: r.CheckpointContainerRequest(container_id=cid),
        "UpdatePodSandboxResources": lambda: r.UpdatePodSandboxResourcesRequest(pod_sandbox_id=pid),
        "ImageStatus": lambda: r.ImageStatusRequest(image=r.ImageSpec(image=t.image)),
        "PullImage": lambda: r.PullImageRequest(image=r.ImageSpec(image=t.image)),
        "RemoveImage": lambda: r.RemoveImageRequest(image=r.ImageSpec(image=t.image)),
    }
    make = table.get(method)
    if make is not None:
        return make()
    service = "ImageService" if method in _IMAGE_METHODS else "RuntimeService"
    return request_class(service, method)()


_IMAGE_METHODS = {m.name for m in api_pb2.DESCRIPTOR.services_by_name["ImageService"].methods}


def request_class(service: str, method: str) -> type[Message]:
    return getattr(api_pb2, method_descriptor(service, method).input_type.name)


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    seconds: float
    response: Any = None


def call(t: Target, service: str, method: str, request: Message) -> Outcome:
    """Call ``method`` over the socket; a server-streaming call is read for a moment."""
    stub = t.rt if service == "RuntimeService" else t.img
    fn = getattr(stub, method)
    started = time.monotonic()
    md = method_descriptor(service, method)
    try:
        if md.server_streaming:
            stream = fn(request, timeout=CALL_TIMEOUT)
            # an events stream never ends: read what comes in a moment, then hang up
            timer = threading.Timer(0.3, stream.cancel)
            timer.start()
            items = []
            try:
                for item in stream:
                    items.append(item)
            finally:
                timer.cancel()
                stream.cancel()
            return Outcome(grpc.StatusCode.OK, "", time.monotonic() - started, items)
        response = fn(request, timeout=CALL_TIMEOUT)
        return Outcome(grpc.StatusCode.OK, "", time.monotonic() - started, response)
    except grpc.RpcError as e:
        code = e.code()
        if code == grpc.StatusCode.CANCELLED and md.server_streaming:
            code = grpc.StatusCode.OK  # our own cancel
        return Outcome(code, e.details() or "", time.monotonic() - started)


def verdict(method: str, out: Outcome, request: Message) -> str | None:
    """Why this outcome is a bug, or None."""
    lost = "Stream removed" in out.details or "metadata size exceeds" in out.details
    if out.code == grpc.StatusCode.OK or (out.code in ALLOWED and not lost):
        return None
    if (
        out.code == grpc.StatusCode.DEADLINE_EXCEEDED
        and method == "ExecSync"
        and out.details != "Deadline Exceeded"  # the client's own deadline: a hang
    ):
        return None
    shown = str(request)
    if len(shown) > 3000:
        shown = shown[:3000] + "...<truncated>"
    return f"{method} answered {out.code.name}: {out.details!r}\nrequest:\n{shown}"


def created_by(method: str, out: Outcome) -> list[str]:
    """Ids a successful call created (they are not leaks)."""
    if out.code != grpc.StatusCode.OK or out.response is None:
        return []
    if method == "RunPodSandbox":
        return [out.response.pod_sandbox_id]
    if method == "CreateContainer":
        return [out.response.container_id]
    return []


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _tcp_inodes_to_port(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if int(cols[2].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def threads_and_fds(pid: int, registry_port: int = 0) -> tuple[int, int]:
    """A process's thread and open file counts.

    Keep-alive connections to the test registry do not count: the puller
    keeps a client (and its connection pool) per registry and credentials, up
    to a bound, by design.
    """
    pooled = (
        {f"socket:[{i}]" for i in _tcp_inodes_to_port(registry_port)} if registry_port else set()
    )
    fds = [t for t in fd_targets(pid) if t not in pooled]
    return len(os.listdir(f"/proc/{pid}/task")), len(fds)


#: ``PYCRIO_FUZZ_TRACE=<file>``: append every request and its outcome there.
TRACE_FILE = os.environ.get("PYCRIO_FUZZ_TRACE", "")


def trace(method: str, request: Message, out: Outcome) -> None:
    if not TRACE_FILE:
        return
    shown = str(request).replace("\n", " | ")
    with open(TRACE_FILE, "a") as f:
        f.write(
            f"{method} {out.code.name} {out.seconds:.3f}s {out.details[:300]!r}\n  {shown[:600]}\n"
        )


def fd_targets(pid: int) -> list[str]:
    """What each open file of ``pid`` points to (sorted), for leak messages."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return sorted(out)


def live_processes_of(container_id: str) -> list[str]:
    """``pid state cmdline`` of the container's live processes, from its pids cgroup.

    Zombies and the sleeper loop's ``sleep 1`` are left out.
    """
    out = []
    # os.walk, not rglob: cgroups of other tests come and go while it walks
    dirs = [d for d, _, _ in os.walk("/sys/fs/cgroup/pids") if container_id in os.path.basename(d)]
    for d in dirs:
        try:
            pids = Path(d, "cgroup.procs").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            state = stat.rsplit(")", 1)[1].split()[0]
            if state != "Z" and cmd.strip() != "sleep 1":
                out.append(f"{pid} {state} {cmd.strip()}")
    return out
