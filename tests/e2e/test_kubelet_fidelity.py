"""Behaviours the kubelet expects as CRI-O has them, through the daemon's socket.

PID 1 of a shared PID namespace, the namespaces of containers in a
host-network pod, RunAsGroup without a user, image volumes and
UpdateRuntimeConfig (issue 14). Real runc, conmon and registry images; one
daemon for the module, a pod per test (on the node's network, so no CNI):
the ``crio`` and ``pod`` fixtures of conftest.py.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import registry_env
from container_e2e import (
    Pod,
    assert_nothing_left,
    host_mounts,
    pod_config,
    rpc_error,
    wait_until,
)
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from image_e2e import pull

pytestmark = pytest.mark.e2e

Images = registry_env.TestImages
IMAGE_REF_ANNOTATION = "io.kubernetes.cri.image-ref"


def proc_table(pod: Pod, cid: str) -> dict[int, tuple[str, str, int]]:
    """pid -> (comm, state, ppid) of every process the container sees, from /proc."""
    out = pod.out(cid, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null; true")
    table = {}
    for line in out.splitlines():
        head, _, rest = line.rpartition(")")
        pid, _, comm = head.partition(" (")
        fields = rest.split()
        table[int(pid)] = (comm, fields[0], int(fields[1]))
    return table


# --- 1. PID 1 of the pod's shared PID namespace ----------------------------------------


def test_pod_pid1_is_a_reaping_pause(pod: Pod, images: Images) -> None:
    cid = pod.run("main", images.busybox.name, command=["tail", "-f", "/dev/null"])
    # what CRI-O pods show: pause as PID 1, and no `sleep` for pgrep to trip on
    assert pod.out(cid, "cat", "/proc/1/comm").strip() == "pause"
    ps = pod.out(cid, "ps")
    assert "pause" in ps and "sleep" not in ps, ps

    # an orphan is adopted by PID 1, and reaped by it when it exits
    pod.out(cid, "sh", "-c", "sleep 2 </dev/null >/dev/null 2>&1 & exit 0")
    adopted = [p for p, (_, _, ppid) in proc_table(pod, cid).items() if ppid == 1]
    assert adopted, "the orphan was not reparented to PID 1"

    def reaped() -> bool:
        table = proc_table(pod, cid)
        return all(p not in table for p in adopted)

    wait_until(reaped, 10, f"orphan {adopted} to be reaped")
    zombies = {p: v for p, v in proc_table(pod, cid).items() if v[1] == "Z"}
    assert zombies == {}


# --- 2. containers of a host-network pod are on the host's network ----------------------


def ns_of(pod: Pod, cid: str, kind: str) -> str:
    """The container's namespace of ``kind`` as ``kind:[inode]`` (busybox has no readlink)."""
    return pod.out(cid, "ls", "-l", f"/proc/self/ns/{kind}").split(" -> ")[1].strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_container_of_host_network_pod_shares_the_host_network(pod: Pod, images: Images) -> None:
    assert pod.config.linux.security_context.namespace_options.network == api_pb2.NODE
    port = free_port()
    body = "hello from the pod"
    script = f"printf 'HTTP/1.0 200 OK\\r\\n\\r\\n{body}' | nc -l -p {port}"
    # the container's own namespace_options are left unset (POD): it still joins its pod's
    cid = pod.run("web", images.busybox.name, command=["sh", "-c", script])
    got = b""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                while body.encode() not in got:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            break
        except ConnectionRefusedError:
            time.sleep(0.1)
    assert body.encode() in got, got
    # and the host's UTS namespace: the node's hostname, not the pod's
    assert pod.status(cid).status.state in (api_pb2.CONTAINER_RUNNING, api_pb2.CONTAINER_EXITED)
    other = pod.run("uts", images.busybox.name, command=["tail", "-f", "/dev/null"])
    assert pod.out(other, "hostname").strip() == socket.gethostname()
    assert ns_of(pod, other, "net") == os.readlink("/proc/self/ns/net")


def test_container_of_host_ipc_pod_shares_the_host_ipc(
    crio: DaemonProcess, tmp_path: Path, images: Images
) -> None:
    config = pod_config("host-ipc", tmp_path / "logs")
    config.linux.security_context.namespace_options.ipc = api_pb2.NODE
    pod = Pod(crio, config)
    try:
        # the container's options are left unset (POD): it shares its pod's, the host's
        cid = pod.run("ipc", images.busybox.name, command=["tail", "-f", "/dev/null"])
        assert ns_of(pod, cid, "ipc") == os.readlink("/proc/self/ns/ipc")
    finally:
        pod.remove()
    assert_nothing_left(crio, pod.containers)


# --- 3. RunAsGroup without a user ---------------------------------------------------------


def test_run_as_group_without_user_is_refused(pod: Pod, images: Images) -> None:
    sc = api_pb2.LinuxContainerSecurityContext()
    sc.run_as_group.value = 1000
    config = pod.container_config(
        "group-only",
        images.busybox.name,
        command=["true"],
        linux=api_pb2.LinuxContainerConfig(security_context=sc),
    )
    err = rpc_error(lambda: pod.create(config))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user group is specified without user or username" in err.details()
    listed = pod.rt.ListContainers(api_pb2.ListContainersRequest()).containers
    assert [c for c in listed if c.pod_sandbox_id == pod.id] == []
    # with a user it is fine
    sc.run_as_user.value = 1000
    cid = pod.run("with-user", images.busybox.name, command=["id"],
                  linux=api_pb2.LinuxContainerConfig(security_context=sc))  # fmt: skip
    assert pod.wait_exit(cid).exit_code == 0


# --- 5. image volumes -----------------------------------------------------------------------


def image_mount(path: str, image: str, sub_path: str = "", readonly: bool = True) -> api_pb2.Mount:
    return api_pb2.Mount(
        container_path=path,
        image=api_pb2.ImageSpec(image=image),
        image_sub_path=sub_path,
        readonly=readonly,
    )


def remove_image(d: DaemonProcess, name: str) -> None:
    d.images().RemoveImage(
        api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=name)), timeout=30
    )


def test_image_volume(pod: Pod, crio: DaemonProcess, images: Images) -> None:
    tools = images.multilayer
    cid = pod.run(
        "reader",
        images.busybox.name,
        command=["tail", "-f", "/dev/null"],
        mounts=[
            image_mount("/tools", tools.name),
            image_mount("/sub", tools.name, sub_path="etc/pycrio-test"),
        ],
    )
    # the image's filesystem, its top layer winning, its programs runnable, read-only
    assert pod.out(cid, "cat", "/tools/etc/pycrio-test/layer") == "layer 3\n"
    assert (
        pod.out(cid, "/tools/bin/busybox", "echo", "ran from the image") == "ran from the image\n"
    )
    assert pod.out(cid, "cat", "/sub/layer") == "layer 3\n"
    denied = pod.exec(cid, "touch", "/tools/new-file")
    assert denied.exit_code != 0 and b"Read-only file system" in denied.stderr

    # status: the image id (what the kubelet's image GC matches), the name asked, the digest
    by_path = {m.container_path: m for m in pod.status(cid).status.mounts}
    assert set(by_path) == {"/tools", "/sub"}
    mount = by_path["/tools"]
    assert mount.readonly and mount.host_path == ""
    assert mount.image.image == tools.built.config.digest
    assert mount.image.user_specified_image == tools.name
    assert mount.image.annotations[IMAGE_REF_ANNOTATION] == tools.by_digest
    assert by_path["/sub"].image_sub_path == "etc/pycrio-test"

    # in use while mounted: RemoveImage refuses, naming the container
    err = rpc_error(lambda: remove_image(crio, tools.name))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "in use" in err.details() and cid[:12] in err.details()

    # released with the container: its mounts go, and the image can be removed
    pod.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)
    assert "image-volumes" not in host_mounts()
    remove_image(crio, tools.name)
    status = crio.images().ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=tools.name)), timeout=10
    )
    assert not status.HasField("image")
    pull(crio, tools.name)  # back, for the other tests


@pytest.mark.parametrize(
    ("mount", "code", "message"),
    [
        (lambda n: image_mount("/tools", n, sub_path="no/such/dir"),
         grpc.StatusCode.INVALID_ARGUMENT, "image_sub_path: 'no/such/dir' does not exist"),
        (lambda n: image_mount("/tools", n, readonly=False),
         grpc.StatusCode.INVALID_ARGUMENT, "must be read-only"),
        (lambda n: image_mount("/tools", "127.0.0.1:1/never/pulled:1"),
         grpc.StatusCode.NOT_FOUND, "'127.0.0.1:1/never/pulled:1' is not present"),
    ],
)  # fmt: skip
def test_image_volume_errors(
    pod: Pod, images: Images, mount: Any, code: grpc.StatusCode, message: str
) -> None:
    config = pod.container_config(
        "bad-volume", images.busybox.name, command=["true"], mounts=[mount(images.multilayer.name)]
    )
    err = rpc_error(lambda: pod.create(config))
    assert err.code() == code
    assert message in err.details()
    # nothing half-made: no container, no image mount left behind
    listed = pod.rt.ListContainers(api_pb2.ListContainersRequest()).containers
    assert [c for c in listed if c.pod_sandbox_id == pod.id] == []
    assert "image-volumes" not in host_mounts()


# --- 6. UpdateRuntimeConfig -----------------------------------------------------------------


def update_cidr(d: DaemonProcess, cidr: str) -> api_pb2.UpdateRuntimeConfigResponse:
    request = api_pb2.UpdateRuntimeConfigRequest(
        runtime_config=api_pb2.RuntimeConfig(network_config=api_pb2.NetworkConfig(pod_cidr=cidr))
    )
    return d.runtime().UpdateRuntimeConfig(request, timeout=10)


def test_update_runtime_config(crio: DaemonProcess) -> None:
    assert (
        update_cidr(crio, "10.88.0.0/16,fd00:10:88::/64") == api_pb2.UpdateRuntimeConfigResponse()
    )
    info = crio.runtime().Status(api_pb2.StatusRequest(verbose=True), timeout=10).info
    assert info["podCIDR"] == "10.88.0.0/16,fd00:10:88::/64"
    update_cidr(crio, "")  # the kubelet before the node has a CIDR
    assert update_cidr(crio, "10.88.0.0/16") == api_pb2.UpdateRuntimeConfigResponse()
    err = rpc_error(lambda: update_cidr(crio, "10.88.0.0/99"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'10.88.0.0/99' is not a CIDR" in err.details()
    info = crio.runtime().Status(api_pb2.StatusRequest(verbose=True), timeout=10).info
    assert json.loads(json.dumps(info["podCIDR"])) == "10.88.0.0/16"  # kept the last good one


def test_shared_pid_pod_without_its_init_is_refused_before_anything(
    start_daemon: Any, tmp_path: Path
) -> None:
    d = start_daemon(config='[runtime]\npod_init_path = "/nonexistent/catatonit"\n')
    config = pod_config("no-init", tmp_path / "logs")  # pid: POD, the CRI default
    err = rpc_error(
        lambda: d.runtime().RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=30)
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "pod_init_path '/nonexistent/catatonit' is not an executable" in err.details()
    assert d.runtime().ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items == []
    assert str(d.tmp) not in host_mounts()
    # a pod with a PID namespace per container needs no pause
    config.linux.security_context.namespace_options.pid = api_pb2.CONTAINER
    d.runtime().RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=30)
