"""A process that holds a container's output FIFOs open while the daemon is down.

Why: a FIFO's buffer lives only while someone has the FIFO open. The shim
holds its own read end while the container runs, but closes every end when
the container exits; if the daemon is down at that moment, what the
container wrote last (still unread in the pipe) is freed by the kernel and
never reaches the CRI log. conmon avoids this by writing the log itself;
here a tiny helper (``sleep infinity``, started with read ends of the
container's stdout and stderr FIFOs and nothing else) keeps the buffers
alive until the next daemon has read them. It never reads, so it takes no
output away; it is killed when the container is deleted, identified by its
pid *and* start time (a recycled pid is never killed). A daemon killed
between starting a holder and recording its pid finds it by its argv[0],
which names the container's IO directory (sleep ignores its argv[0]).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess

from pycrio.linux import processes


def _argv0(io_dir: str) -> str:
    return f"pycrio-fifo-holder:{io_dir}"


def start(paths: list[str], io_dir: str) -> tuple[int, int]:
    """(pid, start ticks) of a new holder of ``paths`` (FIFOs that must exist) of
    the container whose IO directory is ``io_dir``."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
            [_argv0(io_dir), "infinity"],
            executable=sleep,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in the daemon's process group
        )
    finally:
        for fd in fds:
            os.close(fd)
    # the daemon's reaper collects it when it is killed; nobody waits for it here
    proc.returncode = 0  # keeps subprocess from reaping it behind the reaper's back
    return proc.pid, processes.start_ticks(proc.pid) or 0


def is_holder(pid: int, start_ticks: int) -> bool:
    """The process ``pid`` is the holder that started at ``start_ticks``."""
    return pid > 0 and start_ticks > 0 and processes.start_ticks(pid) == start_ticks


def stop(pid: int, start_ticks: int) -> None:
    """Kill the holder, if it is still that very process."""
    if is_holder(pid, start_ticks):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def find(io_dir: str) -> int:
    """The pid of the holder started for ``io_dir`` (0 if none), whether or not its
    pid was recorded."""
    return processes.find_with_arg(_argv0(io_dir))


def stop_any(pid: int, start_ticks: int, io_dir: str) -> None:
    """Kill the recorded holder, or one the record missed (killed before saving it).

    The process scan runs only in that crash window: no pid recorded, yet the
    IO directory (made before any holder) exists; not on every delete.
    """
    if pid:
        stop(pid, start_ticks)
        return
    found = find(io_dir) if io_dir and os.path.isdir(io_dir) else 0
    if found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(found, signal.SIGKILL)
