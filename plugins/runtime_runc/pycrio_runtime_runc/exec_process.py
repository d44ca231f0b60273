"""The process a ``<runtime> exec`` started: its pid file, killing it, its exit code.

Shared by :mod:`.exec_sync` (ExecSync: run to completion) and
:mod:`.exec_session` (streaming exec): both learn the exec'd process from
the runtime's ``--pid-file``, kill it with everything it started when the
deadline passes or the client goes away, and report its end the way conmon
reports a container's (128+signal).

Why a process group: runc's nsexec makes the exec'd process a session
leader, so its group is everything it started that did not leave the group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time


def read_pid(pid_file: str) -> int | None:
    """The pid the runtime wrote to ``pid_file``; None while it has not (or wrote 0)."""
    try:
        with open(pid_file, encoding="ascii") as f:
            return int(f.read().strip() or "0") or None
    except (FileNotFoundError, ValueError):
        return None


def kill_group(pid: int) -> None:
    """SIGKILL ``pid``'s process group (it leads one) and ``pid`` itself."""
    for fn, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            fn(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def reap_if_ours(pid: int, timeout: float = 1.0) -> None:
    """Reap the killed exec'd process if it was re-parented to us.

    When the runtime dies first, its child goes to the nearest subreaper:
    the daemon. Left a zombie, it would still count in the container's pid
    namespace, and the container's init could not finish exiting (the
    kernel waits for every task of the namespace to be reaped), so
    ``runtime delete`` would say "container init still running". The
    daemon's reaper would get it too; doing it here does not depend on that.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not (or no longer) our child: someone else reaps it
        if done or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def kill_exec(proc: subprocess.Popen, pid_file: str) -> int | None:
    """Kill the exec'd process (and its group), then the runtime's own group.

    Returns the exec'd process' pid when the pid file named it.
    """
    pid = read_pid(pid_file)
    if pid is not None:
        kill_group(pid)
    kill_group(proc.pid)
    if pid is None:
        # The runtime may have been between forking and writing the pid
        # file; give it a moment so a late process is not left running.
        deadline = time.monotonic() + 0.5
        while pid is None and time.monotonic() < deadline:
            time.sleep(0.02)
            pid = read_pid(pid_file)
        if pid is not None:
            kill_group(pid)
    return pid


def exit_code(returncode: int) -> int:
    """A signal death in the shell's convention, 128+signal, like conmon's exit files."""
    return 128 - returncode if returncode < 0 else returncode
