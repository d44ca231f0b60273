"""Make the daemon a child subreaper and reap orphans promptly.

Runtime monitors (conmon, shims) double-fork so containers outlive the
daemon; while the daemon runs, such orphans are re-parented to it (not to
PID 1, which on some nodes reaps only every few seconds) and their zombies
are collected here at once.
Processes the daemon spawns itself through ``subprocess`` are left alone:
reaping one would steal its exit status from the code waiting for it.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pycrio.linux import libc
from pycrio.linux.libc import PR_SET_CHILD_SUBREAPER  # noqa: F401 - used by the runc tests

log = logging.getLogger("pycrio.reaper")

_spawn_lock = threading.Lock()
_own: set[int] = set()
#: How many callers are between starting a child that will leave an orphan of
#: theirs to us and registering that orphan (see :func:`holding_orphans`).
_holds = 0


def set_subreaper() -> bool:
    try:
        libc.set_child_subreaper()
    except OSError as e:
        log.warning("cannot become a child subreaper: %s", e.strerror)
        return False
    return True


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """Start a child that the caller will wait for; the reaper keeps off it."""
    with _spawn_lock:
        proc = subprocess.Popen(argv, **kwargs)  # noqa: S603 - argv list, never a shell
        _own.add(proc.pid)
    return proc


def is_subreaper() -> bool:
    """Whether orphans of our descendants are re-parented to us (not to PID 1)."""
    try:
        return libc.is_child_subreaper()
    except OSError:
        return False


@contextmanager
def holding_orphans() -> Iterator[None]:
    """No orphan is reaped inside this block.

    For a child that hands its own child over to us and exits (``runc exec
    --detach``): the grandchild's pid is known only once the child has
    written it down, and if it exited by then its zombie must stay for its
    owner. The caller registers it with :func:`keep_off` before leaving the
    block; orphans that died meanwhile are reaped on the next round.
    """
    global _holds
    with _spawn_lock:
        _holds += 1
    try:
        yield
    finally:
        with _spawn_lock:
            _holds -= 1


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


def _children() -> list[int] | None:
    """This process's children, from /proc/self/task/*/children; None where the
    kernel lacks that file (CONFIG_PROC_CHILDREN)."""
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children", "rb") as f:
                pids += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            if task == str(os.getpid()):
                return None  # no such file at all (the main task never ends first)
        except (OSError, ValueError):
            continue
    return pids


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, ..."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return []
    return stat[stat.rfind(")") + 2 :].split()


def _zombie_children() -> list[int]:
    me = str(os.getpid())
    children = _children()
    if children is not None:
        return [pid for pid in children if _stat(pid)[:1] == ["Z"]]
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and _stat(entry)[:2] == ["Z", me]
    ]


#: How long a zombie that its caller will reap (a runc that just ended) is
#: given before the reaper scans anyway.
OWN_GRACE = 0.01


def _peek_zombie() -> int | None:
    """The pid of one exited, unreaped child of this process (None: there is none).

    One waitid(WNOWAIT) call, which reaps nothing. Most SIGCHLDs are of a
    runc that its caller reaps at once: then the scan of every thread's
    children (tens of /proc reads, holding the GIL next to the call that
    waits for that runc) can be skipped or put off.
    """
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None  # no children at all
    return info.si_pid if info is not None else None


def _any_zombie() -> bool:
    """Whether any child of this process has exited and is not reaped yet."""
    return _peek_zombie() is not None


def reap_orphans() -> list[int]:
    """Reap zombie children that nobody in this process is waiting for.

    The scan runs outside the spawn lock, so no runc or conmon spawn waits
    behind it. That is safe: a zombie the scan saw was forked before it, so
    if :func:`popen` forked it, that popen has registered it in ``_own`` by
    the time the lock is ours. Nothing is reaped while a
    :func:`holding_orphans` block is open; the next round catches up.
    """
    if not _any_zombie():
        return []
    zombies = _zombie_children()
    if not zombies:
        return []
    reaped = []
    with _spawn_lock:
        if _holds:
            return []
        for pid in zombies:
            if pid in _own:
                continue
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
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
        deferred = False
        while not self._stop.is_set():
            ready, _, _ = select.select([self._wake_r], [], [], OWN_GRACE if deferred else 1.0)
            if ready:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass  # drained by a spurious wakeup: nothing to do
                pid = _peek_zombie()
                if pid is None:
                    deferred = False
                    continue
                if pid in _own and not deferred:
                    # its caller is reaping it: look again in a moment, and scan
                    # then for any orphan behind it (once: a stream of runc exits
                    # must not put orphans off for ever)
                    deferred = True
                    continue
            deferred = False
            reap_orphans()
