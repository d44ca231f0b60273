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


def daemon_config(tmp: Path, registry_host: str, extra: str = "") -> str:
    """pycrio.conf text: the test registry as insecure, accept-all policy, ``extra`` on top."""
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
    )


@contextlib.contextmanager
def module_daemon(
    tmp: Path, registry_host: str, pulls: Iterable[str], extra: str = ""
) -> Iterator[DaemonProcess]:
    """A daemon shared by a test module, with images pulled; its pods go with it.

    ``extra`` is configuration (TOML) put before the harness's own tables.
    """
    d = DaemonProcess(tmp, [], dict(os.environ))
    d.config.write_text(daemon_config(tmp / "conf", registry_host, extra))
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

    def __init__(self, d: DaemonProcess, config: api_pb2.PodSandboxConfig) -> None:
        self.d = d
        self.config = config
        self.id = (
            d.runtime()
            .RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=30)
            .pod_sandbox_id
        )
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
    p.remove()
    assert_nothing_left(d, p.containers)


def parse_log(path: Path) -> list[tuple[str, str, str, str]]:
    """(time, stream, tag, text) of every line; fails on a line not in the CRI format."""
    out = []
    for line in path.read_text().splitlines():
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
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmdline for n in needles) and all_of in cmdline:
            out.append((int(entry), cmdline))
    return out


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
