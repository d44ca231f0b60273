"""Copy between a session's streams and an exec'd process's file descriptors.

One thread per direction: the client's stdin into the process, each output fd
to the client, resizes to the terminal, and a watcher that kills the process
when the client goes away (an exec nobody can see or stop must not linger).
"""

from __future__ import annotations

import errno
import logging
import os
import threading

from pycrio.kernel.interfaces import ExecProcess

from .stdio import OutStream, SessionIO, background

log = logging.getLogger("pycrio.streaming")

CHUNK = 32 * 1024
#: How long output may keep flowing after the process ended: a background
#: child that inherited stdout could otherwise hold the session open forever.
DRAIN_AFTER_EXIT = 5.0


def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EIO, errno.EBADF):
                return False
            raise
        view = view[n:]
    return True


def _feed_stdin(proc: ExecProcess, fd: int, io: SessionIO) -> None:
    """Client input into ``fd``, a duplicate this thread owns and closes.

    Owning a duplicate means a late chunk can never land in a descriptor
    number the process's own close has already handed to someone else.
    """
    assert io.stdin is not None
    try:
        while chunk := io.stdin.read():
            if not _write_all(fd, chunk):
                return
    finally:
        os.close(fd)
    if not io.disconnected.is_set():
        proc.close_stdin()


def _copy_output(fd: int, out: OutStream | None) -> None:
    """Read ``fd`` to its end (EIO is a terminal's end) and pass it on."""
    while True:
        try:
            chunk = os.read(fd, CHUNK)
        except OSError as e:
            if e.errno not in (errno.EIO, errno.EBADF):
                log.debug("exec output read failed: %s", e)
            break
        if not chunk:
            break
        if out is not None:
            try:
                out.write(chunk)
            except OSError as e:
                log.debug("exec output could not reach the client: %s", e)
                out = None  # keep draining so the process never blocks on a full pipe
    if out is not None:
        try:
            out.close()
        except OSError as e:
            log.debug("closing an exec output stream failed: %s", e)


def _apply_resizes(proc: ExecProcess, io: SessionIO) -> None:
    assert io.resize is not None
    while (size := io.resize.get()) is not None:
        try:
            proc.resize(size.width, size.height)
        except OSError as e:
            log.debug("terminal resize failed: %s", e)


def run_process(proc: ExecProcess, io: SessionIO) -> int:
    """Connect ``proc`` to ``io`` until it ends; its exit code."""
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if io.disconnected.wait(0.5):
                if not finished.is_set():
                    log.info("streaming client went away; killing its exec")
                    proc.kill()
                return

    outputs = [
        background(_copy_output, fd, out)
        for fd, out in ((proc.stdout, io.stdout), (proc.stderr, io.stderr))
        if fd is not None
    ]
    if io.stdin is not None and proc.stdin is not None:
        background(_feed_stdin, proc, os.dup(proc.stdin), io)
    if io.resize is not None:
        background(_apply_resizes, proc, io)
    background(watch)
    try:
        code = proc.wait()
    finally:
        finished.set()
    for thread in outputs:
        thread.join(DRAIN_AFTER_EXIT)
    return code
