"""What the CRI benchmarks share: a daemon of their own, a sleeper container, percentiles.

Imported by the bench scripts (``python bench/<name>.py`` puts this directory
on the path), which put tests/support (the e2e tests' daemon harness) on the
path first.
"""

from __future__ import annotations

from pathlib import Path

from container_e2e import daemon_config
from cri_api.v1 import api_pb2
from daemon import DaemonProcess

TIMEOUT = 120


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def sleeper(name: str, image: str) -> api_pb2.ContainerConfig:
    """A busybox ``sleep 3600``: a container that runs until it is stopped."""
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=name),
        image=api_pb2.ImageSpec(image=image),
        command=["sleep", "3600"],
        log_path=f"{name}.log",
    )


def start_daemon(work: Path, registry_host: str, image: str, env: dict[str, str]) -> DaemonProcess:
    """A daemon in ``work`` that pulls from the test registry, with ``image`` pulled."""
    work.mkdir()
    daemon = DaemonProcess(work, [], env)
    daemon.config.write_text(daemon_config(work / "conf", registry_host))
    daemon.start()
    daemon.images().PullImage(
        api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=TIMEOUT
    )
    return daemon


def create_and_start(rt, pod_id: str, pod: api_pb2.PodSandboxConfig, name: str, image: str) -> str:  # noqa: ANN001
    cid = rt.CreateContainer(
        api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod_id, sandbox_config=pod, config=sleeper(name, image)
        ),
        timeout=TIMEOUT,
    ).container_id
    rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid), timeout=TIMEOUT)
    return cid


def container_lifecycle(
    rt, pod_id: str, pod: api_pb2.PodSandboxConfig, name: str, image: str
) -> None:  # noqa: ANN001
    """CreateContainer + StartContainer + StopContainer (timeout 0) + RemoveContainer."""
    cid = create_and_start(rt, pod_id, pod, name, image)
    rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0), timeout=TIMEOUT)
    rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=TIMEOUT)
