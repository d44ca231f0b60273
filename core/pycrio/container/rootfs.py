"""Path resolution and file access confined to a container's rootfs.

The rootfs belongs to an image, i.e. to whoever published it: its
``/etc/passwd`` may be a symlink to ``/etc/shadow`` of the host, and a volume
path may climb out with ``..`` or an absolute symlink. Every lookup here
resolves symlinks as the container would see them (relative to the rootfs,
``..`` stopping at its root), like filepath-securejoin does for runc and
CRI-O, so the daemon never reads or creates anything outside the rootfs.
"""

from __future__ import annotations

import errno
import os
import stat

from pycrio.errors import InvalidArgument

#: Linux gives up after 40 nested symlinks (ELOOP); so do we.
MAX_SYMLINKS = 40

#: /etc/passwd and /etc/group are small; a huge file is hostile or broken and
#: would otherwise be read into the daemon's memory.
MAX_READ_SIZE = 4 * 1024 * 1024


def secure_join(root: str, unsafe_path: str) -> str:
    """Return ``root`` + ``unsafe_path`` with every symlink resolved inside ``root``.

    Components that do not exist are kept as they are (so the result can be
    created). The result always lies within ``root``.
    """
    root = os.path.abspath(root)
    pending = [c for c in unsafe_path.split("/") if c not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        except NotADirectoryError:
            resolved.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise InvalidArgument(f"too many levels of symbolic links resolving {unsafe_path!r}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending = [c for c in target.split("/") if c not in ("", ".")] + pending
    return os.path.join(root, *resolved)


def read_file_in_root(root: str, path: str, max_size: int = MAX_READ_SIZE) -> str | None:
    """Read ``path`` as seen from inside ``root``; None when it does not exist.

    Opened with O_NOFOLLOW after resolution so a symlink swapped in at the
    last moment is refused rather than followed out of the rootfs.
    """
    full = secure_join(root, path)
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidArgument(f"{path} in the rootfs is a symlink loop") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{path} in the rootfs is not a regular file")
        if st.st_size > max_size:
            raise InvalidArgument(f"{path} in the rootfs is larger than {max_size} bytes")
        data = os.read(fd, max_size + 1)
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def mkdir_in_root(root: str, path: str, mode: int = 0o755) -> str:
    """Create directory ``path`` (and parents) inside ``root``; return the host path.

    Each component is resolved and created in turn, so a symlink in the image
    pointing at ``/`` lands the directory in the rootfs, not on the host.
    An existing non-directory in the way is an InvalidArgument naming it.
    """
    parts = [c for c in path.split("/") if c not in ("", ".")]
    current = "/"
    full = os.path.abspath(root)
    for part in parts:
        current = os.path.join(current, part)
        full = secure_join(root, current)
        # every existing component of ``full`` is a resolved non-symlink, so
        # makedirs only creates what a symlink target named but lacks
        try:
            os.makedirs(full, mode, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidArgument(f"{current} exists in the rootfs and is not a directory") from exc
        st = os.lstat(full)
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"{current} exists in the rootfs and is not a directory")
    return full
