"""The container's mounts: the standard Linux set, the pod's files, CRI mounts,
and the directories of image volumes.

Order matters to runc (a mount under ``/dev`` needs ``/dev`` first), so the
defaults come first, the pod's files next, then the kubelet's mounts sorted
by depth, like CRI-O does. A kubelet mount on a destination the defaults
already use replaces the default: the kubelet's /etc/hosts or a memory-backed
/dev/shm must win.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.container.rootfs import mkdir_in_root
from pycrio.errors import InvalidArgument
from pycrio.linux import mountinfo

PROPAGATION_PRIVATE = api_pb2.MountPropagation.Value("PROPAGATION_PRIVATE")
PROPAGATION_HOST_TO_CONTAINER = api_pb2.MountPropagation.Value("PROPAGATION_HOST_TO_CONTAINER")
PROPAGATION_BIDIRECTIONAL = api_pb2.MountPropagation.Value("PROPAGATION_BIDIRECTIONAL")

#: CRI propagation -> the OCI option runc applies recursively to the mount.
PROPAGATION_OPTION = {
    PROPAGATION_PRIVATE: "rprivate",
    PROPAGATION_HOST_TO_CONTAINER: "rslave",
    PROPAGATION_BIDIRECTIONAL: "rshared",
}

#: Size of /dev and of a /dev/shm with no pod shm dir: runc's and Docker's 64 MiB.
DEFAULT_SHM_SIZE = "65536k"

Mount = dict[str, Any]


def default_mounts(privileged: bool) -> list[Mount]:
    """The mounts every Linux container gets (runc's ``spec`` defaults, CRI-O's options).

    A privileged container gets /sys and the cgroup tree read-write, as with
    CRI-O, so that it can manage the node.
    """
    ro = [] if privileged else ["ro"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *(ro or ["rw"])]},
    ]  # fmt: skip


def shm_mount(shm_path: str) -> Mount:
    """The pod's shared /dev/shm, or a private tmpfs when the pod has none."""
    if shm_path:
        return {
            "destination": "/dev/shm",
            "type": "bind",
            "source": shm_path,
            "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev", "rw"],
        }
    return {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={DEFAULT_SHM_SIZE}"],
    }


def pod_file_mounts(
    hostname_path: str, hosts_path: str, resolv_conf_path: str, readonly: bool
) -> list[Mount]:
    """Bind mounts of the pod's /etc/hostname, /etc/hosts, /etc/resolv.conf.

    An empty path means the pod has no such file (the kubelet may manage it
    as a CRI mount instead). Read-only when the rootfs is, like CRI-O.
    """
    mode = "ro" if readonly else "rw"
    out = []
    for destination, source in (
        ("/etc/hostname", hostname_path),
        ("/etc/hosts", hosts_path),
        ("/etc/resolv.conf", resolv_conf_path),
    ):
        if source:
            out.append(
                {
                    "destination": destination,
                    "type": "bind",
                    "source": source,
                    "options": ["bind", "rprivate", "nodev", "nosuid", "noexec", mode],
                }
            )
    return out


# --- CRI mounts ----------------------------------------------------------------


def clean_container_path(path: str, field: str) -> str:
    """Absolute, normalized, not ``/``; anything else is InvalidArgument naming it."""
    if not path or "\x00" in path:
        raise InvalidArgument(f"{field}: invalid path {path!r}")
    if not path.startswith("/"):
        raise InvalidArgument(f"{field}: {path!r} is not an absolute path")
    clean = os.path.normpath(path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise InvalidArgument(f"{field}: cannot mount over the container's root")
    return clean


def cri_mounts(
    mounts: Iterable[api_pb2.Mount],
    mountinfo_text: str | None = None,
    image_sources: Mapping[int, str] | None = None,
) -> tuple[list[Mount], str]:
    """OCI mounts for the kubelet's mounts, and the rootfs propagation they need.

    An image volume (``Mount.image``) at index i is bound read-only from
    ``image_sources[i]``, the image's filesystem the caller mounted (see
    :mod:`pycrio.container.image_volumes`); without one it is refused.

    Bind mounts are always recursive (``rbind``), as in CRI-O and containerd:
    a volume may have submounts the pod expects to see. Bidirectional
    propagation needs the host path on a shared mount, host-to-container a
    shared or slave one: checked against ``mountinfo_text`` (read from
    /proc/self/mountinfo when None) so a wrong node setup is reported here.
    ``selinux_relabel`` is ignored: pycrio does not label.
    """
    out: list[Mount] = []
    seen: set[str] = set()
    rootfs_propagation = ""
    table: list[mountinfo.Mount] | None = None
    for index, m in enumerate(mounts):
        field = f"mounts[{index}]"
        destination = clean_container_path(m.container_path, f"{field}.container_path")
        if destination in seen:
            raise InvalidArgument(f"{field}.container_path: duplicate mount point {destination}")
        seen.add(destination)
        if m.HasField("image") and m.image.image:
            image_source = (image_sources or {}).get(index)
            if image_source is None:
                raise InvalidArgument(f"{field}.image: image volumes are not supported here")
            if not m.readonly:
                raise InvalidArgument(f"{field}: an image volume must be read-only")
            # nosuid and nodev, but not noexec: the image's programs must run
            options = ["rbind", "rprivate", "ro", "nosuid", "nodev"]
            out.append(
                {"destination": destination, "type": "bind", "source": image_source,
                 "options": options}
            )  # fmt: skip
            continue
        if len(m.uidMappings) or len(m.gidMappings):
            raise InvalidArgument(f"{field}: id-mapped mounts are not supported")
        if not m.host_path or not m.host_path.startswith("/") or "\x00" in m.host_path:
            raise InvalidArgument(f"{field}.host_path: {m.host_path!r} is not an absolute path")
        if not os.path.exists(m.host_path):
            raise InvalidArgument(f"{field}.host_path: {m.host_path} does not exist")
        source = os.path.realpath(m.host_path)
        propagation = PROPAGATION_OPTION.get(m.propagation)
        if propagation is None:
            raise InvalidArgument(f"{field}.propagation: unknown value {m.propagation}")
        if m.recursive_read_only:
            if not m.readonly:
                raise InvalidArgument(f"{field}: recursive_read_only requires readonly")
            if m.propagation != PROPAGATION_PRIVATE:
                raise InvalidArgument(f"{field}: recursive_read_only requires private propagation")
        if propagation != "rprivate":
            if table is None:
                table = (
                    mountinfo.parse(mountinfo_text)
                    if mountinfo_text is not None
                    else mountinfo.read()
                )
            host_mount = mountinfo.mount_of(table, source)
            if propagation == "rshared":
                if host_mount is None or not host_mount.shared:
                    raise InvalidArgument(
                        f"{field}: bidirectional propagation needs {source} on a shared "
                        f"mount, but {host_mount.mount_point if host_mount else '?'} is not"
                    )
                rootfs_propagation = "rshared"
            else:
                if host_mount is None or not (host_mount.shared or host_mount.slave):
                    raise InvalidArgument(
                        f"{field}: host-to-container propagation needs {source} on a "
                        f"shared or slave mount, but "
                        f"{host_mount.mount_point if host_mount else '?'} is neither"
                    )
                if rootfs_propagation != "rshared":
                    rootfs_propagation = "rslave"
        options = ["rbind", propagation, "ro" if m.readonly else "rw"]
        if m.recursive_read_only:
            options.append("rro")
        out.append(
            {"destination": destination, "type": "bind", "source": source, "options": options}
        )
    return out, rootfs_propagation


def depth(path: str) -> int:
    """Number of components, to mount parents before children."""
    return len([c for c in path.split("/") if c])


def merge(base: Sequence[Mount], extra: Sequence[Mount]) -> list[Mount]:
    """``base`` minus what ``extra`` replaces, then ``extra`` sorted by depth."""
    replaced = {m["destination"] for m in extra}
    kept = [m for m in base if m["destination"] not in replaced]
    return kept + sorted(extra, key=lambda m: depth(m["destination"]))


# --- image volumes -------------------------------------------------------------


def image_volume_dirs(volumes: Iterable[str], covered: Iterable[str]) -> list[str]:
    """Image VOLUMEs that no kubelet mount covers, normalized, in order, once each."""
    covered_set = set(covered)
    out: list[str] = []
    for volume in volumes:
        if "\x00" in volume or not volume.strip():
            raise InvalidArgument(f"image volume {volume!r} is not a valid path")
        clean = os.path.normpath("/" + volume.lstrip("/"))
        if clean == "/" or clean in covered_set or clean in out:
            continue
        out.append(clean)
    return out


def create_image_volumes(rootfs: str, volumes: Sequence[str]) -> list[str]:
    """CRI-O's ``image_volumes = "mkdir"``: make each volume a directory in the rootfs.

    Done through :func:`mkdir_in_root`, so a volume path that is a symlink
    in the image cannot make the daemon create directories on the host.
    """
    return [mkdir_in_root(rootfs, v) for v in volumes]
