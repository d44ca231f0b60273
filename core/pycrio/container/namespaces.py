"""The container's Linux namespaces, joined from its pod or new.

The pod pins its network, IPC, UTS (and, when shared, PID) namespaces as
files; a container joins those by path. The network, IPC and UTS namespaces
are always the pod's, as in CRI-O: the host's when the pod shares the host's
(``network: NODE`` also means the host's UTS), whatever the container's own
``namespace_options`` say, so that a container left with default options in
a host-network pod is on the host's network like its pod. The host's
namespace, in the OCI spec, means not listing it. The PID namespace follows
the container's option (POD, CONTAINER, NODE or TARGET). A mount namespace
is always the container's own; so is a cgroup namespace on cgroup v2, as
with CRI-O, so that /sys/fs/cgroup shows the container's own subtree.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
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


def _mode_name(mode: int) -> str:
    """The mode's name, or its number when no version of the CRI defines it (the
    error about it must not fail itself: issue 17, found by the CRI fuzzer)."""
    try:
        return api_pb2.NamespaceMode.Name(mode)
    except ValueError:
        return str(mode)


def build(
    options: api_pb2.NamespaceOption,
    pod_paths: Mapping[str, str],
    target_pid: int | None,
    cgroup_v2: bool,
    pod_host_kinds: Collection[str] = (),
) -> tuple[list[dict[str, Any]], bool]:
    """(linux.namespaces, whether the container has the host's UTS namespace).

    Network, IPC and UTS come from the pod: the host's for the kinds in
    ``pod_host_kinds`` (net, ipc, uts), else the pod's pinned file, else a
    new namespace (a pod that pinned none of that kind). The container's own
    network and IPC modes are checked, not obeyed. TARGET shares the PID
    namespace of another container, whose pid the caller supplies.
    """
    unknown = (set(pod_paths) | set(pod_host_kinds)) - set(OCI_TYPE)
    if unknown:
        raise InvalidArgument(f"pod namespace paths: unknown kinds {sorted(unknown)}")
    out: list[dict[str, Any]] = []
    for name, mode in (("network", options.network), ("ipc", options.ipc)):
        if mode not in (POD, NODE):
            raise InvalidArgument(
                f"namespace_options.{name}: mode {_mode_name(mode)} is not supported (POD or NODE)"
            )
    for kind in ("net", "ipc", "uts"):
        if kind not in pod_host_kinds:
            out.append(_join_or_new(kind, pod_paths))
    host_uts = "uts" in pod_host_kinds

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
