"""Checking cgroup paths and ids before they become directory names.

A cgroupfs path is joined under every hierarchy's mount point, so a path
with ``..`` or a relative one could escape into, or delete, cgroups that are
not ours. Everything the kubelet or a caller passes goes through here first.
"""

from __future__ import annotations

import re

from pycrio.errors import InvalidArgument

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def clean_path(path: object, what: str = "cgroup path") -> str:
    """Normalise an absolute cgroupfs path ("/kubepods//pod1/" -> "/kubepods/pod1").

    Refused: non-strings, relative paths (a systemd slice such as
    ``kubepods.slice`` given to the cgroupfs driver is the usual case: the
    kubelet and pycrio disagree on the cgroup driver), ``.`` or ``..``
    components, control characters, and the root itself — a pod's limits
    must never land on the whole node, and removing "/" would walk every
    cgroup of the machine.
    """
    if not isinstance(path, str) or not path:
        raise InvalidArgument(f"{what} must be a non-empty string, not {path!r}")
    if not path.startswith("/"):
        hint = " (a systemd slice? set [runtime] cgroup_manager and the kubelet's"
        hint += " --cgroup-driver to the same driver)" if path.endswith(".slice") else ""
        raise InvalidArgument(f"{what} {path!r} must be an absolute cgroupfs path{hint}")
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        raise InvalidArgument(f"{what} {path!r} contains control characters")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidArgument(f"{what} {path!r} must not contain '.' or '..'")
    if not parts:
        raise InvalidArgument(f"{what} {path!r} is the root cgroup")
    return "/" + "/".join(parts)


def check_id(value: object, what: str) -> str:
    """A pod or container id used as one path component."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidArgument(f"{what} {value!r} is not a valid id for a cgroup name")
    return value


def ancestors(path: str) -> list[str]:
    """ "/a/b/c" -> ["/a", "/a/b", "/a/b/c"] (the path itself last)."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
