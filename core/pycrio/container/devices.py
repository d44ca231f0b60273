"""Device nodes given to a container: the kubelet's, or all of the host's when privileged.

The type and numbers come from stat(2) of the host node, never from the
request, so a container gets exactly the device the node has at that path.
Each device also gets a device-cgroup allow rule; everything else stays
denied (runc adds its own rules for /dev/null, /dev/zero and friends).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.container.mounts import clean_container_path
from pycrio.errors import InvalidArgument

Device = dict[str, Any]

#: /dev entries a privileged container must not get from the host: its own
#: pts, shm and mqueue are mounted, and console/tty name the host's terminal.
HOST_DEV_SKIP = frozenset(
    {
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/dev/console",
        "/dev/tty",
        "/dev/ptmx",
        "/dev/fd",
        "/dev/stdin",
        "/dev/stdout",
        "/dev/stderr",
    }
)

DENY_ALL: dict[str, Any] = {"allow": False, "access": "rwm"}
ALLOW_ALL: dict[str, Any] = {"allow": True, "access": "rwm"}


def _device_of(host_path: str, container_path: str, st: os.stat_result) -> Device | None:
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return {
        "path": container_path,
        "type": kind,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def _permissions(value: str, field: str) -> str:
    value = value or "rwm"
    if not set(value) <= set("rwm"):
        raise InvalidArgument(f"{field}: {value!r} is not a combination of r, w and m")
    return "".join(c for c in "rwm" if c in value)


def cri_devices(devices: Iterable[api_pb2.Device]) -> tuple[list[Device], list[dict[str, Any]]]:
    """linux.devices and linux.resources.devices allow rules for the kubelet's devices.

    A host path that is a directory gives every device below it (CRI-O does
    the same for device plugins that hand over e.g. /dev/dri); a missing path
    or one that is not a device is InvalidArgument naming it.
    """
    out: list[Device] = []
    rules: list[dict[str, Any]] = []
    for index, d in enumerate(devices):
        field = f"devices[{index}]"
        container_path = clean_container_path(d.container_path, f"{field}.container_path")
        access = _permissions(d.permissions, f"{field}.permissions")
        if not d.host_path.startswith("/"):
            raise InvalidArgument(f"{field}.host_path: {d.host_path!r} is not an absolute path")
        try:
            st = os.stat(d.host_path)
        except FileNotFoundError as exc:
            raise InvalidArgument(f"{field}.host_path: {d.host_path} does not exist") from exc
        except OSError as exc:
            raise InvalidArgument(f"{field}.host_path: {d.host_path}: {exc.strerror}") from exc
        if stat.S_ISDIR(st.st_mode):
            found = [
                (path, os.path.join(container_path, os.path.relpath(path, d.host_path)), sub)
                for path, sub in _walk_devices(d.host_path)
            ]
        else:
            found = [(d.host_path, container_path, st)]
        added = False
        for _host, target, sub in found:
            device = _device_of(_host, target, sub)
            if device is None:
                continue
            added = True
            out.append(device)
            rules.append(
                {
                    "allow": True,
                    "type": device["type"],
                    "major": device["major"],
                    "minor": device["minor"],
                    "access": access,
                }
            )
        if not added:
            raise InvalidArgument(f"{field}.host_path: {d.host_path} is not a device")
    return out, rules


def _walk_devices(root: str) -> list[tuple[str, os.stat_result]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                found.append((path, st))
    return found


def host_devices(dev_dir: str = "/dev") -> list[Device]:
    """Every device node of the host, for a privileged container (as CRI-O does).

    Symlinks are followed (so /dev/disk/by-id entries resolve), duplicates
    of the same path are dropped, and the entries in HOST_DEV_SKIP with what
    is under them are left out.
    """
    out = []
    for dirpath, dirnames, filenames in os.walk(dev_dir):
        rel_dir = "/dev/" + os.path.relpath(dirpath, dev_dir)
        rel_dir = os.path.normpath(rel_dir)
        dirnames[:] = sorted(n for n in dirnames if os.path.join(rel_dir, n) not in HOST_DEV_SKIP)
        for name in sorted(filenames):
            container_path = os.path.join(rel_dir, name)
            if container_path in HOST_DEV_SKIP:
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            device = _device_of(os.path.join(dirpath, name), container_path, st)
            if device is not None:
                out.append(device)
    return out
