"""The one parser of /proc/<pid>/mountinfo (proc(5)).

The kernel escapes space, tab, newline and backslash in path fields as
``\\ooo`` octal; every other byte, non-ASCII included, is written raw. So the
file is read as bytes, the escapes are undone on bytes and the result is
decoded as the os module decodes paths (:func:`os.fsdecode`): a mount point
compares equal to the path the rest of the code built, whatever it contains.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SELF = "/proc/self/mountinfo"

_ESCAPE = re.compile(rb"\\([0-7]{3})")


def unescape(field: bytes) -> str:
    r"""A path field with its octal escapes undone (``\040`` is a space), as an os path."""
    return os.fsdecode(_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field))


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo."""

    mount_id: int
    parent_id: int
    root: str  # the path within the filesystem that is mounted ("/" unless a sub-tree)
    mount_point: str
    options: tuple[str, ...]  # per-mount options (rw, nosuid, ...)
    optional: tuple[str, ...]  # shared:N, master:N, propagate_from:N, unbindable
    fstype: str
    source: str
    super_options: tuple[str, ...]  # per-superblock options (for cgroup v1: controllers)

    @property
    def shared(self) -> bool:
        return any(o.startswith("shared:") for o in self.optional)

    @property
    def slave(self) -> bool:
        return any(o.startswith("master:") for o in self.optional)


def parse_line(line: bytes) -> Mount | None:
    """One mountinfo line, or None when it is not one (never raises)."""
    fields = line.split(b" ")
    try:
        sep = fields.index(b"-", 6)
    except ValueError:
        return None
    tail = fields[sep + 1 :]
    if len(tail) < 2:
        return None
    try:
        mount_id, parent_id = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return Mount(
        mount_id=mount_id,
        parent_id=parent_id,
        root=unescape(fields[3]),
        mount_point=unescape(fields[4]),
        options=tuple(os.fsdecode(fields[5]).split(",")),
        optional=tuple(os.fsdecode(f) for f in fields[6:sep]),
        fstype=os.fsdecode(tail[0]),
        source=unescape(tail[1]),
        super_options=tuple(os.fsdecode(tail[2]).split(",")) if len(tail) > 2 else (),
    )


def parse(data: bytes | str) -> list[Mount]:
    """Every well-formed line of a mountinfo text, in order (the latest mount last)."""
    if isinstance(data, str):
        data = os.fsencode(data)
    return [m for m in map(parse_line, data.split(b"\n")) if m is not None]


def read(path: str = SELF) -> list[Mount]:
    """The mount table as ``path`` (default: this process's) shows it."""
    with open(path, "rb") as f:
        return parse(f.read())


def is_under(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or below it (by path components, not characters)."""
    prefix = prefix.rstrip("/") or "/"
    return path == prefix or prefix == "/" or path.startswith(prefix + "/")


def mount_points_under(prefixes: Iterable[str], mounts: Sequence[Mount] | None = None) -> list[str]:
    """Mount points at or below any of ``prefixes`` (resolved), deepest and latest first.

    The order is the one to unmount in: children before parents, and the
    last of several mounts stacked on one point first.
    """
    roots = [os.path.realpath(p) for p in prefixes if p]
    table = read() if mounts is None else mounts
    found = [m.mount_point for m in table if any(is_under(m.mount_point, r) for r in roots)]
    found.reverse()
    found.sort(key=lambda p: p.count("/"), reverse=True)
    return found


def is_mount_point(path: str, mounts: Sequence[Mount] | None = None) -> bool:
    """Whether ``path`` is a mount point per the kernel's table (bind mounts of a dir
    onto itself included, which :func:`os.path.ismount` misses)."""
    target = os.path.realpath(path)
    return any(m.mount_point == target for m in (read() if mounts is None else mounts))


def mount_of(mounts: Sequence[Mount], path: str) -> Mount | None:
    """The mount ``path`` lives on: the longest mount point prefix, the last one stacked."""
    best: Mount | None = None
    for m in mounts:
        if is_under(path, m.mount_point) and (
            best is None or len(m.mount_point) >= len(best.mount_point)
        ):
            best = m
    return best
