"""The libc calls Python's os module lacks (on 3.11), loaded through ctypes once.

Each wrapper raises :class:`OSError` with the errno and the path, as the os
module does, so callers handle them like any other OS error instead of
checking return codes and reading ``ctypes.get_errno()`` themselves.
"""

from __future__ import annotations

import ctypes
import errno
import os

MNT_DETACH = 2
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
CLONE_NEWNET = 0x40000000
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]


def _error(path: str | None = None) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err), path)


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    """mount(2)."""
    if (
        _libc.mount(
            os.fsencode(source), os.fsencode(target), fstype.encode(), flags, os.fsencode(data)
        )
        != 0
    ):
        raise _error(target)


def umount2(target: str, flags: int = MNT_DETACH) -> None:
    """umount2(2); lazily (``MNT_DETACH``) unless told otherwise."""
    if _libc.umount2(os.fsencode(target), flags) != 0:
        raise _error(target)


def unmount(target: str) -> bool:
    """Detach ``target``; False when it was not mounted or is gone, OSError otherwise."""
    try:
        umount2(target, MNT_DETACH)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOENT):
            return False
        raise
    return True


def setns(fd: int, nstype: int) -> None:
    """setns(2): move the calling thread into the namespace ``fd`` refers to."""
    if _libc.setns(fd, nstype) != 0:
        raise _error()


def set_child_subreaper(on: bool = True) -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphans of our descendants become our children."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise _error()


def is_child_subreaper() -> bool:
    """prctl(PR_GET_CHILD_SUBREAPER): whether orphans of our descendants come to us."""
    flag = ctypes.c_int(0)
    if _libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(flag), 0, 0, 0) != 0:
        raise _error()
    return bool(flag.value)
