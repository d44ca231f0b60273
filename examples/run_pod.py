#!/usr/bin/env python3
"""Run a pod and a container through pycrio's CRI socket, as the kubelet does.

Pulls an image, starts a pod sandbox, creates and starts a container in it,
waits for the container to finish, prints its log and removes the pod. It
speaks the CRI (gRPC, ``runtime.v1``) with the generated stubs of the
``container-runtime-interface-api`` package, which pycrio's .venv has:

    make run &                                   # the daemon, on /run/pycrio/pycrio.sock
    .venv/bin/python examples/run_pod.py         # busybox, echoing a greeting
    .venv/bin/python examples/run_pod.py --image docker.io/library/alpine:3 -- cat /etc/os-release

Run it as root (the socket is mode 0660, owned by root).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import grpc
from cri_api.v1 import api_pb2, api_pb2_grpc

DEFAULT_COMMAND = ["sh", "-c", "echo Hello from a container of pod $POD_NAME; uname -sm"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", default="/run/pycrio/pycrio.sock")
    parser.add_argument("--image", default="docker.io/library/busybox:latest")
    parser.add_argument(
        "--host-network", action="store_true", help="use the node's network (no CNI)"
    )
    parser.add_argument("command", nargs="*", help="the container's command (after --)")
    args = parser.parse_args()

    channel = grpc.insecure_channel(f"unix:{args.socket}")
    runtime = api_pb2_grpc.RuntimeServiceStub(channel)
    images = api_pb2_grpc.ImageServiceStub(channel)
    version = runtime.Version(api_pb2.VersionRequest(), timeout=10)
    print(f"talking to {version.runtime_name} {version.runtime_version} on {args.socket}")

    # 1. The image, pulled the way the kubelet pulls it.
    image = api_pb2.ImageSpec(image=args.image)
    image_id = images.PullImage(api_pb2.PullImageRequest(image=image), timeout=600).image_ref
    print(f"pulled {args.image} ({image_id})")

    # 2. The pod: its namespaces, files, cgroup and (unless --host-network) its network.
    log_dir = tempfile.mkdtemp(prefix="pycrio-example-")
    namespaces = api_pb2.NamespaceOption(network=api_pb2.NODE if args.host_network else api_pb2.POD)
    pod_config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(
            name="example", namespace="default", uid=f"example-{os.getpid()}"
        ),
        hostname="example",
        log_directory=log_dir,
        linux=api_pb2.LinuxPodSandboxConfig(
            security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=namespaces)
        ),
    )
    pod_id = runtime.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=pod_config), timeout=120
    ).pod_sandbox_id
    print(f"pod {pod_id[:12]} is ready")
    try:
        # 3. The container: created, then started (two calls, as for the kubelet).
        config = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name="hello"),
            image=image,
            command=args.command or DEFAULT_COMMAND,
            envs=[api_pb2.KeyValue(key="POD_NAME", value="example")],
            log_path="hello.log",  # relative to the pod's log_directory
        )
        container_id = runtime.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config
            ),
            timeout=120,
        ).container_id
        runtime.StartContainer(api_pb2.StartContainerRequest(container_id=container_id), timeout=60)
        print(f"container {container_id[:12]} started")

        # 4. Wait for it to finish, as the kubelet sees it: through ContainerStatus.
        while True:
            status = runtime.ContainerStatus(
                api_pb2.ContainerStatusRequest(container_id=container_id), timeout=10
            ).status
            if status.state == api_pb2.CONTAINER_EXITED:
                break
            time.sleep(0.2)
        print(f"container exited with {status.exit_code} ({status.reason})")

        # 5. Its log, in the CRI format: "<time> <stream> <F|P> <text>" per line.
        print(f"--- {status.log_path}")
        with open(status.log_path) as log:
            for line in log:
                _time, stream, tag, text = line.rstrip("\n").split(" ", 3)
                print(text, end="\n" if tag == "F" else "", file=getattr(sys, stream))
        return status.exit_code
    finally:
        # 6. Stop and remove the pod: its containers go with it.
        runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=120)
        runtime.RemovePodSandbox(
            api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=120
        )
        print(f"pod {pod_id[:12]} removed")
        shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
