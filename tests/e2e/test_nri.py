"""NRI end to end: plugins written here speak NRI's wire protocol to the daemon's socket.

Each test drives the daemon over its CRI socket as the kubelet would and
checks what the plugins saw (events, their order and metadata) and what
their answers did to real containers run by runc.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import registry_env
from container_e2e import EXITED, RUNNING, Pod, daemon_config, pod_config, rpc_error, wait_until
from cri_api.v1 import api_pb2
from image_e2e import pull
from nri_stub import NRIStub, Refuse, mask

from pycrio_nri import api

pytestmark = pytest.mark.e2e
SUPPORT = Path(__file__).parent.parent / "support"


def nri_config(tmp: Path, request_timeout: str = "2s", **extra: str) -> str:
    lines = [
        "[nri]",
        "enable_nri = true",
        f"nri_listen = {json.dumps(str(tmp / 'nri.sock'))}",
        f"nri_plugin_dir = {json.dumps(str(tmp / 'nri-plugins'))}",
        f"nri_plugin_config_dir = {json.dumps(str(tmp / 'nri-conf'))}",
        f'nri_plugin_request_timeout = "{request_timeout}"',
        *[f"{k} = {v}" for k, v in extra.items()],
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def nri_daemon(start_daemon, tmp_path: Path, registry, images: registry_env.TestImages):
    def start(**kw: str):
        conf = daemon_config(tmp_path / "conf", registry.host, nri_config(tmp_path, **kw))
        d = start_daemon(config=conf)
        pull(d, images.busybox.name)
        return d

    return start


def sock(tmp_path: Path) -> str:
    return str(tmp_path / "nri.sock")


def nri_condition(d) -> api_pb2.RuntimeCondition:
    status = d.runtime().Status(api_pb2.StatusRequest(), timeout=10).status
    (cond,) = [c for c in status.conditions if c.type == "NRIPlugins"]
    return cond


def wait_connected(d, name: str, present: bool = True) -> None:
    wait_until(
        lambda: (name in nri_condition(d).message) == present,
        10,
        f"NRI plugin {name} to be {'connected' if present else 'gone'}",
    )


def test_lifecycle_events_in_order_with_metadata_and_adjustments(
    nri_daemon, tmp_path: Path, images: registry_env.TestImages
) -> None:
    d = nri_daemon()

    def adjust(req):
        if req.container.name != "adjusted":
            return None
        return api.CreateContainerResponse(
            adjust=api.ContainerAdjustment(
                annotations={"nri.test/seen": "yes"},
                env=[api.KeyValue(key="FROM_NRI", value="hello")],
                args=["sleep", "300"],
                mounts=[
                    api.Mount(
                        destination="/nri",
                        type="bind",
                        source=str(tmp_path),
                        options=["rbind", "ro"],
                    )
                ],
                rlimits=[api.POSIXRlimit(type="RLIMIT_NOFILE", hard=321, soft=321)],
                linux=api.LinuxContainerAdjustment(
                    oom_score_adj=api.OptionalInt(value=456),
                    resources=api.LinuxResources(
                        memory=api.LinuxMemory(limit=api.OptionalInt64(value=64 << 20))
                    ),
                ),
            )
        )

    stub = NRIStub("recorder", "10", handlers={"CreateContainer": adjust}).connect(sock(tmp_path))
    only_create = NRIStub("creates", "20", events=mask("CREATE_CONTAINER")).connect(sock(tmp_path))
    wait_connected(d, "10-recorder")
    wait_connected(d, "20-creates")
    assert stub.configure_request.runtime_name == "pycrio"
    assert stub.configure_request.request_timeout == 2000

    pod = Pod(d, pod_config("nri-pod", tmp_path / "logs"))
    cid = pod.run("adjusted", images.busybox.name, command=["sleep", "1"])
    exits = pod.run("exits", images.busybox.name, command=["sh", "-c", "exit 3"])

    # the adjustments are in the real container
    assert pod.out(cid, "sh", "-c", "echo $FROM_NRI") == "hello\n"
    with open(f"/proc/{pod.info(cid)['pid']}/cmdline") as f:
        assert f.read().split("\0") == ["sleep", "300", ""]
    assert pod.out(cid, "sh", "-c", "ulimit -n") == "321\n"
    assert pod.out(cid, "cat", "/proc/self/oom_score_adj") == "456\n"
    assert pod.exec(cid, "test", "-d", "/nri").exit_code == 0
    status = pod.status(cid)
    spec = json.loads((Path(pod.info(cid)["bundle"]) / "config.json").read_text())
    assert spec["annotations"]["nri.test/seen"] == "yes"
    assert status.status.resources.linux.memory_limit_in_bytes == 64 << 20

    # a container that exits by itself gets StopContainer with its exit code
    stub.wait_for(lambda got: any(m == "StopContainer" for m, _ in got))
    (stopped,) = stub.of("StopContainer")
    assert (stopped.container.name, stopped.container.exit_code) == ("exits", 3)
    assert stopped.container.state == api.ContainerState.Value("CONTAINER_STOPPED")

    pod.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
    pod.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
    pod.remove()
    stub.wait_for(lambda got: got[-1][0] == "RemovePodSandbox")

    def seq(name: str) -> list[str]:
        out = []
        for m, msg in stub.received:
            if m in ("Configure", "Synchronize"):
                continue
            if "container" in msg.DESCRIPTOR.fields_by_name and msg.container.name != name:
                continue
            out.append(m)
        return out

    assert seq("adjusted") == [
        "RunPodSandbox",
        "CreateContainer",
        "PostCreateContainer",
        "StartContainer",
        "PostStartContainer",
        "StopContainer",
        "StopPodSandbox",
        "RemoveContainer",
        "RemovePodSandbox",
    ]
    assert stub.methods().count("StopPodSandbox") == 1  # idempotent Stop: one event
    (run,) = stub.of("RunPodSandbox")
    assert (run.pod.name, run.pod.namespace, run.pod.uid) == ("nri-pod", "ctr", "uid-nri-pod")
    assert run.pod.id == pod.id and run.pod.labels["pod"] == "nri-pod"
    (started,) = [m for m in stub.of("PostStartContainer") if m.container.name == "adjusted"]
    assert started.container.pid > 0 and started.container.id == cid
    assert started.container.state == api.ContainerState.Value("CONTAINER_RUNNING")
    assert started.container.pod_sandbox_id == pod.id
    # the subscription mask: only CreateContainer
    assert set(only_create.methods()) == {"Configure", "Synchronize", "CreateContainer"}
    assert len(only_create.of("CreateContainer")) == 2
    stub.close()
    only_create.close()
