"""Crash-safe file writes: a reader sees the old content or the new, never half."""

from __future__ import annotations

import os
import tempfile


def write_atomic(path: str, data: bytes, mode: int = 0o644, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename.

    ``sync`` makes it durable (fsync of the file and of the directory: some
    milliseconds on a busy disk). Without it the write is still atomic for
    any reader and survives the daemon being killed; only a machine crash may
    lose it: for what can be learned again after a restart.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if sync:
        fsync_dir(directory)


TEMP_PREFIX = ".tmp-"


def clean_temp(directory: str) -> list[str]:
    """Remove temporary files a killed writer left in ``directory``."""
    removed = []
    for name in os.listdir(directory):
        if name.startswith(TEMP_PREFIX):
            os.unlink(os.path.join(directory, name))
            removed.append(name)
    return removed


def fsync_dir(path: str) -> None:
    """Make a rename or creation in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
