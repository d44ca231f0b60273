"""Make the daemon a child subreaper and reap orphans promptly.

conmon double-forks so containers outlive the daemon; while the daemon runs,
such orphans are re-parented to it (not to PID 1, which on some nodes reaps
only every few seconds) and their zombies are collected here at once.
Processes the daemon spawns itself through ``subprocess`` are left alone:
reaping one would steal its exit status from the code waiting for it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import subprocess
import threading
from typing import Any

log = logging.getLogger("pycrio.reaper")

PR_SET_CHILD_SUBREAPER = 36

_spawn_lock = threading.Lock()
_own: set[int] = set()


def set_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """Start a child that the caller will wait for; the reaper keeps off it."""
    with _spawn_lock:
        proc = subprocess.Popen(argv, **kwargs)  # noqa: S603 - argv list, never a shell
        _own.add(proc.pid)
    return proc


def keep_off(pid: int) -> None:
    """A child someone else waits for (multiprocessing's forkserver): never reap it."""
    _own.add(pid)


def release(pid: int) -> None:
    """The caller has reaped ``pid``; forget it."""
    _own.discard(pid)


def run(argv: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run with a mandatory timeout, safe next to the reaper."""
    if kwargs.pop("capture_output", False):
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc = popen(argv, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    finally:
        release(proc.pid)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _zombie_children() -> list[int]:
    me = str(os.getpid())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z" and fields[1] == me:
            pids.append(int(entry))
    return pids


def reap_orphans() -> list[int]:
    """Reap zombie children that nobody in this process is waiting for."""
    reaped = []
    with _spawn_lock:
        for pid in _zombie_children():
            if pid in _own:
                continue
            try:
                os.waitpid(pid, os.WNOHANG)
                reaped.append(pid)
            except ChildProcessError:
                continue
    if reaped:
        log.debug("reaped orphans %s", reaped)
    return reaped


class Reaper:
    """A thread that reaps on SIGCHLD, and every second in case one was missed.

    The SIGCHLD handler only writes a byte to a pipe the thread waits on. It
    must take no lock: Python runs handlers on the main thread between
    bytecodes, so a second SIGCHLD can arrive while the first handler is
    inside, say, ``Event.set()`` -- whose non-reentrant lock the nested
    handler would then wait for forever, freezing the main thread (and with
    it every later signal, SIGTERM included). A burst of exits does that.
    """

    def __init__(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)

    def _poke(self, *_: object) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the thread is woken already

    def start(self) -> None:
        signal.signal(signal.SIGCHLD, self._poke)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._wake_r], [], [], 1.0)
            if ready:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass  # drained by a spurious wakeup: nothing to do
            reap_orphans()
