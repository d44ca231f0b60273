"""Annotations of the container's OCI spec, with CRI-O's keys.

OCI hooks, monitoring agents and ``runc list`` users recognise containers
by these keys, so pycrio uses CRI-O's names (``io.kubernetes.cri-o.*``)
and the kubelet's label names (``io.kubernetes.pod.*``) rather than new
ones. The kubelet's annotations and labels are copied too (CRI-O does,
hooks match on them), but never over the keys pycrio sets itself.

The runtime handler's ``allowed_annotations`` name annotations that may
change how a container is run (CRI-O's ``io.kubernetes.cri-o.userns-mode``,
``io.kubernetes.cri-o.Devices`` and so on). pycrio implements none of those
behaviours yet, so today no annotation changes the spec beyond being copied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf.json_format import MessageToDict

# CRI-O's internal keys (pkg/annotations).
CONTAINER_ID = "io.kubernetes.cri-o.ContainerID"
CONTAINER_NAME = "io.kubernetes.cri-o.ContainerName"
CONTAINER_TYPE = "io.kubernetes.cri-o.ContainerType"
CREATED = "io.kubernetes.cri-o.Created"
SANDBOX_ID = "io.kubernetes.cri-o.SandboxID"
SANDBOX_NAME = "io.kubernetes.cri-o.SandboxName"
USER_REQUESTED_IMAGE = "io.kubernetes.cri-o.Image"
IMAGE_NAME = "io.kubernetes.cri-o.ImageName"
IMAGE_REF = "io.kubernetes.cri-o.ImageRef"
KUBE_NAME = "io.kubernetes.cri-o.Name"
LOG_PATH = "io.kubernetes.cri-o.LogPath"
TTY = "io.kubernetes.cri-o.TTY"
STDIN = "io.kubernetes.cri-o.Stdin"
STDIN_ONCE = "io.kubernetes.cri-o.StdinOnce"
RESOLV_PATH = "io.kubernetes.cri-o.ResolvPath"
HOSTNAME_PATH = "io.kubernetes.cri-o.HostnamePath"
MOUNT_POINT = "io.kubernetes.cri-o.MountPoint"
SECCOMP_PROFILE_PATH = "io.kubernetes.cri-o.SeccompProfilePath"
METADATA = "io.kubernetes.cri-o.Metadata"
LABELS = "io.kubernetes.cri-o.Labels"
ANNOTATIONS = "io.kubernetes.cri-o.Annotations"
VOLUMES = "io.kubernetes.cri-o.Volumes"
CONTAINER_MANAGER = "io.container.manager"
# The kubelet's label keys (k8s.io/kubelet/pkg/types).
KUBE_CONTAINER_NAME = "io.kubernetes.container.name"
KUBE_POD_NAME = "io.kubernetes.pod.name"
KUBE_POD_NAMESPACE = "io.kubernetes.pod.namespace"
KUBE_POD_UID = "io.kubernetes.pod.uid"
# OCI image-spec: the image's STOPSIGNAL, kept for StopContainer.
STOP_SIGNAL = "org.opencontainers.image.stopSignal"

# containerd's CRI plugin names for the same facts: shim v2 runtimes read these
# (containerd-shim-runc-v2 groups a pod's containers into one shim by the
# sandbox id; Kata reads either set to tell the pod's sandbox from its containers)
CRI_CONTAINER_TYPE = "io.kubernetes.cri.container-type"
CRI_SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
CRI_SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
CRI_SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"

CONTAINER_TYPE_CONTAINER = "container"
#: the type of a pod's infra (pause) container, as CRI-O and containerd name it
CONTAINER_TYPE_SANDBOX = "sandbox"
MANAGER = "pycrio"

#: Every key pycrio sets; kubelet annotations and labels cannot override these.
INTERNAL_KEYS: frozenset[str] = frozenset(
    {
        CONTAINER_ID, CONTAINER_NAME, CONTAINER_TYPE, CREATED, SANDBOX_ID, SANDBOX_NAME,
        USER_REQUESTED_IMAGE, IMAGE_NAME, IMAGE_REF, KUBE_NAME, LOG_PATH, TTY, STDIN,
        STDIN_ONCE, RESOLV_PATH, HOSTNAME_PATH, MOUNT_POINT, SECCOMP_PROFILE_PATH, METADATA,
        LABELS, ANNOTATIONS, VOLUMES, CONTAINER_MANAGER, KUBE_CONTAINER_NAME, KUBE_POD_NAME,
        KUBE_POD_NAMESPACE, KUBE_POD_UID, STOP_SIGNAL, CRI_CONTAINER_TYPE, CRI_SANDBOX_ID,
        CRI_SANDBOX_NAME, CRI_SANDBOX_NAMESPACE,
    }
)  # fmt: skip


def _bool(value: bool) -> str:
    return "true" if value else "false"


def build(
    *,
    container_id: str,
    container_name: str,
    config: Any,
    sandbox_config: Any,
    sandbox_id: str,
    sandbox_name: str,
    image_name: str,
    image_id: str,
    rootfs: str,
    log_path: str,
    resolv_path: str,
    hostname_path: str,
    seccomp_ref: str,
    volumes: list[dict[str, Any]],
    stop_signal: str,
    created: str,
    container_type: str = CONTAINER_TYPE_CONTAINER,
) -> dict[str, str]:
    """All annotations: pod's, then the kubelet's and its labels, then pycrio's own."""
    out: dict[str, str] = {}
    out.update(sandbox_config.annotations)
    out.update(config.annotations)
    out.update(config.labels)
    for key in INTERNAL_KEYS & out.keys():
        del out[key]
    metadata: Mapping[str, Any] = MessageToDict(config.metadata, preserving_proto_field_name=True)
    own = {
        CONTAINER_ID: container_id,
        CONTAINER_NAME: container_name,
        CONTAINER_TYPE: container_type,
        CRI_CONTAINER_TYPE: container_type,
        CRI_SANDBOX_ID: sandbox_id,
        CRI_SANDBOX_NAME: sandbox_config.metadata.name,
        CRI_SANDBOX_NAMESPACE: sandbox_config.metadata.namespace,
        CREATED: created,
        SANDBOX_ID: sandbox_id,
        SANDBOX_NAME: sandbox_name,
        USER_REQUESTED_IMAGE: config.image.image,
        IMAGE_NAME: image_name,
        IMAGE_REF: image_id,
        KUBE_NAME: container_name,
        LOG_PATH: log_path,
        TTY: _bool(config.tty),
        STDIN: _bool(config.stdin),
        STDIN_ONCE: _bool(config.stdin_once),
        RESOLV_PATH: resolv_path,
        HOSTNAME_PATH: hostname_path,
        MOUNT_POINT: rootfs,
        SECCOMP_PROFILE_PATH: seccomp_ref,
        METADATA: json.dumps(metadata, sort_keys=True),
        LABELS: json.dumps(dict(config.labels), sort_keys=True),
        ANNOTATIONS: json.dumps(dict(config.annotations), sort_keys=True),
        VOLUMES: json.dumps(volumes),
        CONTAINER_MANAGER: MANAGER,
        KUBE_CONTAINER_NAME: config.labels.get(KUBE_CONTAINER_NAME, config.metadata.name),
        KUBE_POD_NAME: sandbox_config.metadata.name,
        KUBE_POD_NAMESPACE: sandbox_config.metadata.namespace,
        KUBE_POD_UID: sandbox_config.metadata.uid,
    }
    if stop_signal:
        own[STOP_SIGNAL] = stop_signal
    out.update(own)
    return out
