"""Notice conmon's exit files the moment they appear: inotify, or polling where it is missing.

conmon writes ``<exit_dir>/<container id>`` (by rename) when a container's
process ends. The driver watches that one directory and pushes each exit to
the core, so an exit reaches GetContainerEvents at once rather than at the
next status call, and the core reads none of conmon's files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
import threading
from collections.abc import Callable

log = logging.getLogger("pycrio.runc.exits")

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")
POLL_INTERVAL = 1.0
RETRY_INTERVAL = 0.05


class ExitWatcher:
    """Calls ``on_exit(container_id)`` when conmon writes ``<exit_dir>/<id>``.

    inotify makes the exit visible at once; where inotify cannot be had the
    directory is polled every second instead (and that is logged). ``on_exit``
    returns False when the container is busy (being started or stopped); the
    id is then retried shortly, since the busy call may have looked already.
    """

    def __init__(self, exit_dir: str, on_exit: Callable[[str], bool]) -> None:
        self.exit_dir = exit_dir
        self.on_exit = on_exit
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self.mode = ""

    def start(self) -> None:
        os.makedirs(self.exit_dir, mode=0o700, exist_ok=True)
        try:
            self._fd = _inotify_watch(self.exit_dir, IN_CLOSE_WRITE | IN_MOVED_TO)
            self.mode = "inotify"
        except OSError as e:
            log.warning(
                "inotify is unavailable (%s); polling %s every %.0fs for container exits",
                e,
                self.exit_dir,
                POLL_INTERVAL,
            )
            self.mode = "poll"
        self._thread = threading.Thread(target=self._run, name="exit-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for fd in (self._fd, self._stop_r, self._stop_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = None

    def _run(self) -> None:
        seen: dict[str, float] = {}
        # Exits written before the watch existed (between the container
        # service's startup refresh and now) would otherwise wait for a poll.
        pending: set[str] = self._scan(seen)
        while True:
            timeout = RETRY_INTERVAL if pending else None
            if self._fd is None:
                timeout = POLL_INTERVAL if not pending else RETRY_INTERVAL
            fds = [self._stop_r] + ([self._fd] if self._fd is not None else [])
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                continue
            if self._stop_r in ready:
                return
            if self._fd is not None and self._fd in ready:
                pending |= self._read_inotify()
            elif self._fd is None:
                pending |= self._scan(seen)
            for cid in sorted(pending):
                try:
                    done = self.on_exit(cid)
                except Exception:  # noqa: BLE001 - one bad record must not stop the watcher
                    log.exception("handling the exit of container %s failed", cid)
                    done = True
                if done:
                    pending.discard(cid)

    def _read_inotify(self) -> set[str]:
        assert self._fd is not None
        names: set[str] = set()
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return names
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                log.warning("inotify queue overflowed; rescanning %s", self.exit_dir)
                names |= self._scan({})
                continue
            name = raw.split(b"\0", 1)[0].decode(errors="replace")
            if name and not name.startswith("."):
                names.add(name)
        return names

    def _scan(self, seen: dict[str, float]) -> set[str]:
        """Exit files new or changed since the last scan (the polling fallback)."""
        found: set[str] = set()
        current: dict[str, float] = {}
        try:
            entries = list(os.scandir(self.exit_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            current[entry.name] = mtime
            if seen.get(entry.name) != mtime:
                found.add(entry.name)
        seen.clear()
        seen.update(current)
        return found


def _inotify_watch(path: str, mask: int) -> int:
    """An inotify descriptor watching ``path``; OSError when inotify is unavailable."""
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "inotify_init1"):
        raise OSError(errno.ENOSYS, "libc has no inotify_init1")
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    wd = libc.inotify_add_watch(fd, os.fsencode(path), mask)
    if wd < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
    return fd
