"""The container's Linux namespaces, joined from its pod or new.

The pod pins its network, IPC, UTS (and, when shared, PID) namespaces as
files; a container joins those by path. NODE mode means the host's
namespace, which in the OCI spec means not listing it. A mount namespace
is always the container's own; so is a cgroup namespace on cgroup v2, as
with CRI-O, so that /sys/fs/cgroup shows the container's own subtree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.errors import InvalidArgument

POD = api_pb2.NamespaceMode.Value("POD")
CONTAINER = api_pb2.NamespaceMode.Value("CONTAINER")
NODE = api_pb2.NamespaceMode.Value("NODE")
TARGET = api_pb2.NamespaceMode.Value("TARGET")

#: pod pin kind -> OCI namespace type.
OCI_TYPE = {"net": "network", "ipc": "ipc", "uts": "uts", "pid": "pid"}


def _join_or_new(kind: str, pod_paths: Mapping[str, str]) -> dict[str, Any]:
    path = pod_paths.get(kind, "")
    entry: dict[str, Any] = {"type": OCI_TYPE[kind]}
    if path:
        entry["path"] = path
    return entry


def build(
    options: api_pb2.NamespaceOption,
    pod_paths: Mapping[str, str],
    target_pid: int | None,
    cgroup_v2: bool,
) -> tuple[list[dict[str, Any]], bool]:
    """(linux.namespaces, whether the container has the host's UTS namespace).

    POD joins the pod's pinned file, or makes a new namespace when the pod
    pinned none of that kind. UTS is the host's exactly when the network is
    (the kubelet's hostNetwork). TARGET shares the PID namespace of another
    container, whose pid the caller supplies.
    """
    unknown = set(pod_paths) - set(OCI_TYPE)
    if unknown:
        raise InvalidArgument(f"pod namespace paths: unknown kinds {sorted(unknown)}")
    out: list[dict[str, Any]] = []
    for name, mode in (("network", options.network), ("ipc", options.ipc)):
        if mode not in (POD, NODE):
            raise InvalidArgument(
                f"namespace_options.{name}: mode {api_pb2.NamespaceMode.Name(mode)} "
                "is not supported (POD or NODE)"
            )
    if options.network != NODE:
        out.append(_join_or_new("net", pod_paths))
    if options.ipc != NODE:
        out.append(_join_or_new("ipc", pod_paths))
    host_uts = options.network == NODE
    if not host_uts:
        out.append(_join_or_new("uts", pod_paths))

    if options.pid == POD:
        out.append(_join_or_new("pid", pod_paths))
    elif options.pid == CONTAINER:
        out.append({"type": "pid"})
    elif options.pid == TARGET:
        if not options.target_id:
            raise InvalidArgument("namespace_options.target_id: required with pid mode TARGET")
        if target_pid is None or target_pid <= 0:
            raise InvalidArgument(
                f"namespace_options.target_id: container {options.target_id} is not running"
            )
        out.append({"type": "pid", "path": f"/proc/{target_pid}/ns/pid"})
    elif options.pid != NODE:
        raise InvalidArgument(f"namespace_options.pid: unknown mode {options.pid}")

    if options.HasField("userns_options") and options.userns_options.mode != NODE:
        raise InvalidArgument(
            "namespace_options.userns_options: user namespaces are not supported yet"
        )
    out.append({"type": "mount"})
    if cgroup_v2:
        out.append({"type": "cgroup"})
    return out, host_uts
