"""Unit names and cgroup paths of the systemd driver, as the kubelet and runc spell them.

A pod's cgroup is a *slice* named by the kubelet (``kubepods-burstable-pod<uid>.slice``);
the dashes are its ancestry: systemd places it at
``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice``.
A container's cgroup is runc's systemd ``cgroupsPath``, ``slice:prefix:name``:
the scope ``prefix-name.scope`` inside that slice. Everything here is pure so
it can be tested without systemd.
"""

from __future__ import annotations

import re

from pycrio.errors import InvalidArgument

SLICE = ".slice"
SCOPE = ".scope"
#: systemd's limit on a unit name (UNIT_NAME_MAX).
UNIT_NAME_MAX = 255
_STEM_RE = re.compile(r"^[A-Za-z0-9:_.\\]+(-[A-Za-z0-9:_.\\]+)*$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")

DISAGREE = (
    "the kubelet's --cgroup-driver and pycrio's [runtime] cgroup_manager disagree:"
    " set both to systemd or both to cgroupfs"
)


def check_slice(name: object, what: str = "cgroup_parent") -> str:
    """A valid slice unit name, or INVALID_ARGUMENT saying why.

    A cgroupfs path (``/kubepods/burstable/pod<uid>``) is the usual mistake:
    the kubelet runs with --cgroup-driver=cgroupfs while pycrio uses systemd.
    """
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{what} must be a non-empty systemd slice name, not {name!r}")
    if name.startswith("/") or not name.endswith(SLICE):
        kind = "a cgroupfs path" if name.startswith("/") else "not a systemd slice (*.slice)"
        raise InvalidArgument(f"{what} {name!r} is {kind}; {DISAGREE}")
    stem = name[: -len(SLICE)]
    if len(name) > UNIT_NAME_MAX or not _STEM_RE.match(stem):
        raise InvalidArgument(
            f"{what} {name!r} is not a valid slice name (letters, digits, ':', '_', '.', '\\'"
            " and single '-' between parts; at most 255 characters)"
        )
    return name


def check_id(value: object, what: str) -> str:
    """A pod or container id used inside a unit name (no '-': it would mean a parent)."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidArgument(f"{what} {value!r} is not a valid id for a systemd unit name")
    return value


def check_prefix(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidArgument(f"{what} must be letters, digits, '_' or '.', not {value!r}")
    return value


def child_slice(parent: str, name: str) -> str:
    """The slice ``name`` directly under ``parent`` (``a-b.slice`` + ``c`` -> ``a-b-c.slice``)."""
    if parent == "-.slice":
        return f"{name}{SLICE}"
    return f"{parent[: -len(SLICE)]}-{name}{SLICE}"


def expand_slice(name: str) -> str:
    """The cgroup path of a slice, relative to the hierarchy root (as runc's ExpandSlice).

    ``kubepods-burstable-pod1.slice`` ->
    ``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice``;
    the root slice ``-.slice`` is ``/``.
    """
    if name == "-.slice":
        return "/"
    check_slice(name, "slice")
    path = ""
    prefix = ""
    for part in name[: -len(SLICE)].split("-"):
        prefix = f"{prefix}-{part}" if prefix else part
        path += f"/{prefix}{SLICE}"
    return path


def scope_path(slice_name: str, prefix: str, name: str) -> str:
    """runc's systemd ``cgroupsPath`` for a scope ``prefix-name.scope`` in ``slice_name``."""
    return f"{slice_name}:{prefix}:{name}"


def split_path(path: object) -> tuple[str, str]:
    """(slice, unit) of a driver path: a slice name or ``slice:prefix:name``.

    For a slice the unit is the slice itself; for ``slice:prefix:name`` it is
    ``prefix-name.scope`` (``name`` ending in .slice names a slice, as in runc).
    """
    if not isinstance(path, str) or not path:
        raise InvalidArgument(f"cgroup path must be a non-empty string, not {path!r}")
    if ":" not in path:
        return check_slice(path, "cgroup path"), path
    parts = path.split(":")
    if len(parts) != 3:
        raise InvalidArgument(f"cgroup path {path!r} is not slice:prefix:name")
    slice_name, prefix, name = parts
    check_slice(slice_name, "cgroup path slice")
    if name.endswith(SLICE):
        return slice_name, check_slice(name, "cgroup path")
    check_id(name, "cgroup path name")
    unit = f"{check_prefix(prefix, 'cgroup path prefix')}-{name}{SCOPE}" if prefix else name
    if not prefix:
        unit += SCOPE
    return slice_name, unit


def cgroup_of(path: str) -> str:
    """The cgroup directory (relative to a hierarchy root) of a driver path."""
    slice_name, unit = split_path(path)
    if unit == slice_name:
        return expand_slice(slice_name)
    if unit.endswith(SLICE):
        return expand_slice(unit)
    base = expand_slice(slice_name)
    return f"{base.rstrip('/')}/{unit}"
