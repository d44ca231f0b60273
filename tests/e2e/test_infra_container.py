"""Pods with an infra (pause) container: drop_infra_ctr = false."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2
from image_e2e import image_daemon, insecure

pytestmark = pytest.mark.e2e


def pod_config(name: str, tmp: Path) -> api_pb2.PodSandboxConfig:
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="infra", uid=f"uid-{name}"),
        hostname=name,
        log_directory=str(tmp / "logs" / name),
        linux=api_pb2.LinuxPodSandboxConfig(
            security_context=api_pb2.LinuxSandboxSecurityContext(
                namespace_options=api_pb2.NamespaceOption(
                    network=api_pb2.NODE, pid=api_pb2.CONTAINER
                )
            )
        ),
    )


def test_infra_container_runs_in_the_pod_and_goes_with_it(
    start_daemon, registry, pause_image, plugin_site, tmp_path: Path
) -> None:
    d = image_daemon(
        lambda **kw: start_daemon(env={"PYTHONPATH": str(plugin_site)}, **kw),
        tmp_path,
        registries=insecure(registry.host),
        top="[runtime]\ndrop_infra_ctr = false\n",
        image=f"pause_image = '{pause_image.name}'\npause_command = ''\n",
    )
    rt = d.runtime()
    pod_id = rt.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=pod_config("withinfra", tmp_path))
    ).pod_sandbox_id
    info = json.loads(
        rt.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
        ).info["info"]
    )
    infra_id = info["infra_id"]
    assert len(infra_id) == 64
    # pulled on demand, hidden from the kubelet's container list
    pulled = d.images().ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=pause_image.name))
    )
    assert list(pulled.image.repo_tags) == [pause_image.name]
    assert rt.ListContainers(api_pb2.ListContainersRequest()).containers == []
    status = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=infra_id)).status
    assert status.state == api_pb2.CONTAINER_RUNNING
    # plugins adjust the infra container's spec through the sandbox-spec hook
    bundle = d.tmp / "runroot" / "containers" / infra_id / "bundle" / "config.json"
    annotations = json.loads(bundle.read_text())["annotations"]
    assert annotations["io.pycrio.test/adjusted-as"] == "sandbox"
    verbose = rt.ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=infra_id, verbose=True)
    ).info["info"]
    pid = json.loads(verbose)["pid"]
    # the infra container joins the pod's pinned IPC namespace, and the
    # host's network and UTS namespaces of this host-network pod
    assert os.stat(info["namespaces"]["ipc"]).st_ino == os.stat(f"/proc/{pid}/ns/ipc").st_ino
    for kind in ("net", "uts"):
        assert os.stat(f"/proc/{pid}/ns/{kind}").st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino
    # the pause image cannot go while the pod uses it
    with pytest.raises(grpc.RpcError) as err:
        d.images().RemoveImage(
            api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=pause_image.name))
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    status = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=infra_id)).status
    assert status.state == api_pb2.CONTAINER_EXITED
    assert not os.path.exists(f"/proc/{pid}")
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    with pytest.raises(grpc.RpcError) as err:
        rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=infra_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert not (d.tmp / "root" / "storage" / "overlay-containers" / infra_id).exists()


def test_missing_pause_image_fails_the_pod_and_leaves_nothing(
    start_daemon, registry, tmp_path: Path
) -> None:
    d = image_daemon(
        start_daemon,
        tmp_path,
        registries=insecure(registry.host),
        top="[runtime]\ndrop_infra_ctr = false\n",
        image=f"pause_image = '{registry.host}/test/no-such-pause:1'\n",
    )
    rt = d.runtime()
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod_config("nopause", tmp_path)))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-pause" in err.value.details()
    assert rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []
    with open("/proc/self/mountinfo") as f:
        assert str(d.tmp / "runroot" / "ns") + "/" not in f.read()
