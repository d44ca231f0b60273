"""Helpers for e2e container tests: a daemon that can pull from the test registry,
host-network pods, containers and what is left of them on the host.

Pods use the node's network (NamespaceOption network=NODE) so the tests do not
depend on CNI; every daemon gets its own registries.conf and policy.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import cgroups
import grpc
import image_e2e
from cri_api.v1 import api_pb2
from daemon import DaemonProcess

#: A CRI log line: RFC 3339 time with nanoseconds, stream, partial/full tag, text.
LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(?:Z|[+-]\d\d:\d\d)) (stdout|stderr) ([PF]) (.*)$"
)
EXITED = api_pb2.CONTAINER_EXITED
RUNNING = api_pb2.CONTAINER_RUNNING
CREATED = api_pb2.CONTAINER_CREATED


def daemon_config(tmp: Path, registry_host: str, extra: str = "", image: str = "") -> str:
    """pycrio.conf text: the test registry as insecure, accept-all policy, ``extra`` on top.

    ``image``: more keys of the ``[image]`` table (TOML lines).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "registries.conf").write_text(image_e2e.insecure(registry_host))
    (tmp / "policy.json").write_text(json.dumps(image_e2e.ACCEPT_ALL))
    (tmp / "certs.d").mkdir(exist_ok=True)
    toml = image_e2e.toml_str
    return (
        f"{extra}\n"
        "[image]\n"
        f"registries_conf = {toml(tmp / 'registries.conf')}\n"
        f"registries_conf_dir = {toml(tmp / 'registries.conf.d')}\n"
        f"signature_policy = {toml(tmp / 'policy.json')}\n"
        f"certs_dirs = [{toml(tmp / 'certs.d')}]\n"
        f"{image}\n"
    )


@contextlib.contextmanager
def module_daemon(
    tmp: Path, registry_host: str, pulls: Iterable[str], extra: str = "", image: str = ""
) -> Iterator[DaemonProcess]:
    """A daemon shared by a test module, with images pulled; its pods go with it.

    ``extra`` is configuration (TOML) put before the harness's own tables,
    ``image`` more keys of its ``[image]`` table.
    """
    d = DaemonProcess(tmp, [], dict(os.environ))
    d.config.write_text(daemon_config(tmp / "conf", registry_host, extra, image))
    d.start()
    try:
        for name in pulls:
            image_e2e.pull(d, name)
        yield d
    finally:
        d.remove_all_pods()
        d.stop()


def pod_config(
    name: str, log_dir: Path, *, privileged: bool = False, uid: str = ""
) -> api_pb2.PodSandboxConfig:
    ns = api_pb2.NamespaceOption(network=api_pb2.NODE)
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="ctr", uid=uid or f"uid-{name}"),
        hostname=name,
        log_directory=str(log_dir),
        labels={"pod": name},
        linux=api_pb2.LinuxPodSandboxConfig(
            security_context=api_pb2.LinuxSandboxSecurityContext(
                namespace_options=ns, privileged=privileged
            )
        ),
    )


class Pod:
    """A running pod and the containers a test made in it."""

    def __init__(
        self, d: DaemonProcess, config: api_pb2.PodSandboxConfig, runtime_handler: str = ""
    ) -> None:
        self.d = d
        self.config = config
        request = api_pb2.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler)
        self.id = d.runtime().RunPodSandbox(request, timeout=30).pod_sandbox_id
        self.containers: list[str] = []

    @property
    def rt(self) -> Any:
        return self.d.runtime()

    @property
    def log_dir(self) -> Path:
        return Path(self.config.log_directory)

    def container_config(
        self, name: str, image: str, *, command: Iterable[str] = (), args: Iterable[str] = (),
        attempt: int = 0, **kw: Any,
    ) -> api_pb2.ContainerConfig:  # fmt: skip
        return api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=name, attempt=attempt),
            image=api_pb2.ImageSpec(image=image),
            command=list(command),
            args=list(args),
            log_path=f"{name}_{attempt}.log",
            **kw,
        )

    def create(self, config: api_pb2.ContainerConfig) -> str:
        cid = self.rt.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=self.id, config=config, sandbox_config=self.config
            ),
            timeout=60,
        ).container_id
        self.containers.append(cid)
        return cid

    def run(self, name: str, image: str, **kw: Any) -> str:
        """Create and start a container."""
        cid = self.create(self.container_config(name, image, **kw))
        self.rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid), timeout=30)
        return cid

    def status(self, cid: str, verbose: bool = False) -> api_pb2.ContainerStatusResponse:
        return self.rt.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=cid, verbose=verbose), timeout=10
        )

    def info(self, cid: str) -> dict[str, Any]:
        return json.loads(self.status(cid, verbose=True).info["info"])

    def pod_info(self) -> dict[str, Any]:
        status = self.rt.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=self.id, verbose=True), timeout=10
        )
        return json.loads(status.info["info"])

    def shims(self) -> set[int]:
        """Pids of the shim v2 processes serving this pod's live containers (none with runc).

        A shim is its containers' parent (their subreaper), so it is found from
        them, whatever its command line looks like.
        """
        try:
            infra = self.pod_info().get("infra_id", "")
        except grpc.RpcError:
            return set()  # removed by the test: it checked what it needed
        ids = [infra, *self.containers]
        found = set()
        for cid in filter(None, ids):
            try:
                pid = int(self.info(cid).get("pid") or 0)
            except grpc.RpcError:
                continue  # removed by the test
            parent = parent_pid(pid) if pid > 0 else 0
            if parent and is_shim(parent):
                found.add(parent)
        return found

    def wait_exit(self, cid: str, timeout: float = 15) -> api_pb2.ContainerStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.status(cid).status
            if s.state == EXITED:
                return s
            time.sleep(0.05)
        raise AssertionError(f"container {cid} did not exit within {timeout}s")

    def exec(self, cid: str, *cmd: str, timeout: int = 10) -> api_pb2.ExecSyncResponse:
        return self.rt.ExecSync(
            api_pb2.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=timeout),
            timeout=timeout + 20,
        )

    def out(self, cid: str, *cmd: str) -> str:
        """stdout of a command that must succeed."""
        r = self.exec(cid, *cmd)
        assert r.exit_code == 0, (cmd, r.exit_code, r.stderr)
        return r.stdout.decode()

    def log_lines(self, name: str, attempt: int = 0) -> list[tuple[str, str, str, str]]:
        return parse_log(self.log_dir / f"{name}_{attempt}.log")

    def remove(self) -> None:
        self.rt.RemovePodSandbox(
            api_pb2.RemovePodSandboxRequest(pod_sandbox_id=self.id), timeout=60
        )


@contextlib.contextmanager
def pod_per_test(d: DaemonProcess, tmp: Path, test_name: str) -> Iterator[Pod]:
    """A host-network pod named after the test; removed after it, leaving nothing behind."""
    name = test_name.split("[")[0].replace("_", "-")[:40].strip("-")
    p = Pod(d, pod_config(name, tmp / "logs"))
    yield p
    shims = p.shims()
    p.remove()
    assert_nothing_left(d, p.containers)
    wait_until(lambda: not any(map(alive, shims)), 10, f"the shims {shims} of the pod to exit")


def parent_pid(pid: int) -> int:
    """``pid``'s parent, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def is_shim(pid: int) -> bool:
    """True if ``pid`` runs a containerd shim v2 binary (containerd-shim-<name>-v2)."""
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
    return exe.startswith("containerd-shim-") and exe.endswith("-v2")


def parse_log(path: Path) -> list[tuple[str, str, str, str]]:
    """(time, stream, tag, text) of every line; fails on a line not in the CRI format."""
    out = []
    # lines end with \n only: a TTY's output keeps its \r (read_text and splitlines cut there)
    for line in path.read_bytes().decode().split("\n")[:-1]:
        m = LOG_LINE.match(line)
        assert m, f"not a CRI log line: {line!r}"
        out.append((m.group(1), m.group(2), m.group(3), m.group(4)))
    return out


def texts(lines: list[tuple[str, str, str, str]], stream: str = "stdout") -> list[str]:
    return [t for _, s, _, t in lines if s == stream]


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    try:
        result = call()
    except grpc.RpcError as e:
        return e
    raise AssertionError(f"expected a gRPC error, got {result!r}")


def processes_mentioning(*needles: str, all_of: str = "") -> list[tuple[int, str]]:
    """(pid, cmdline) of host processes whose command line contains any needle
    (and ``all_of``, when given)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        cmdline = processes_cmdline(int(entry))
        if any(n in cmdline for n in needles) and all_of in cmdline:
            out.append((int(entry), cmdline))
    return out


def processes_cmdline(pid: int) -> str:
    """``pid``'s command line, arguments joined by spaces; empty when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    image_e2e.wait_for(predicate, timeout, what)


def host_mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def assert_nothing_left(d: DaemonProcess, container_ids: Iterable[str]) -> None:
    """No monitor, runtime state, rootfs mount or cgroup of these containers remains."""
    ids = list(container_ids)
    if not ids:
        return
    wait_until(lambda: not processes_mentioning(*ids), 10, f"conmon/runc of {ids} to exit")
    mounts = host_mounts()
    runc_root = d.tmp / "runroot"
    for cid in ids:
        assert cid not in mounts, f"a mount of {cid} is left"
        assert not list(runc_root.rglob(cid)), f"runtime state of {cid} is left"
        assert not cgroups.matching(f"*{cid}*"), f"cgroup of {cid} left"
