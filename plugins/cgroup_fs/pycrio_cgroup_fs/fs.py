"""File operations on cgroupfs with errors that name the file and the value.

A cgroup write fails with an errno that only makes sense next to the file
and the value (EINVAL on cpu.cfs_quota_us, EBUSY on cpuset.cpus); these
helpers turn the OSError into the :mod:`pycrio.errors` type the kubelet
should see, with both in the message.
"""

from __future__ import annotations

import errno
import os
import time

from pycrio.errors import (
    CRIError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)

#: E2BIG: kernfs refuses a write longer than a page (a 70 kB cpuset, found by
#: the CRI fuzzer, issue 17) before the controller even parses it.
_REJECTED = {errno.EINVAL, errno.ERANGE, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EDOM, errno.E2BIG}


def write_error(e: OSError, path: str, value: str) -> CRIError:
    """The CRI error for a failed write of ``value`` to ``path``."""
    shown = repr(value) if len(value) <= 100 else f"{value[:100]!r}... ({len(value)} bytes)"
    what = f"cgroupfs: writing {shown} to {path} failed: {e.strerror or e}"
    if e.errno in _REJECTED:
        return InvalidArgument(what + " (the kernel rejected the value)")
    if e.errno == errno.ENOENT:
        return NotFound(what)
    if e.errno in (errno.EBUSY, errno.ENOSPC):
        return FailedPrecondition(what)
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(what)
    return Internal(what)


def write_value(path: str, value: str) -> None:
    """Write ``value`` to an existing cgroup file in one write(2).

    os.open without O_CREAT or O_TRUNC: a missing control file must fail with
    ENOENT instead of being created (which cgroupfs refuses anyway), and one
    write is one kernel parse of the value.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise write_error(e, path, value) from e
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise write_error(e, path, value) from e
    finally:
        os.close(fd)


def read_text(path: str) -> str | None:
    """The content of a cgroup file, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise Internal(f"cgroupfs: reading {path} failed: {e.strerror or e}") from e


def _procs(directory: str) -> str:
    text = read_text(os.path.join(directory, "cgroup.procs")) or ""
    pids = text.split()
    return ", ".join(pids[:10]) + (" ..." if len(pids) > 10 else "") if pids else "none listed"


def rmdir_tree(top: str, deadline: float) -> None:
    """Remove the cgroup directory ``top`` and every cgroup below it, deepest first.

    Only rmdir: cgroupfs removes a cgroup's control files with it, and a
    cgroup that still has processes stays (EBUSY) — this never kills
    anything. EBUSY is retried until ``deadline`` (time.monotonic()) because
    a cgroup whose last process just exited stays busy for a moment; a
    directory already gone is fine.
    """
    if not os.path.isdir(top):
        return
    for directory, _dirs, _files in os.walk(top, topdown=False):
        while True:
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                message = f"cgroupfs: removing {directory} failed: {e.strerror or e}"
                if e.errno == errno.EBUSY:
                    raise FailedPrecondition(
                        f"{message}; processes still in it: {_procs(directory)}"
                    ) from e
                raise Internal(message) from e
