"""Identify processes exactly: by pid *and* something only that process has.

A pid alone can be recycled, and a command line that merely *contains* a
path also matches an operator's ``tail -f`` of a file there. So each check
here pairs a pid with its start time (in clock ticks since boot, what runc
records as ``init_process_start``) or with an exact argument of its argv.
psutil reads the process table; it knows the /proc formats and their races.
"""

from __future__ import annotations

import os

import psutil


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (/proc/<pid>/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def argv(pid: int) -> list[str]:
    """The process's command line, or [] when it is gone (or a kernel thread)."""
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def has_args(pid: int, *args: str) -> bool:
    """Whether ``args`` appear in the process's argv as consecutive, whole arguments."""
    have, n = argv(pid), len(args)
    return n > 0 and any(have[i : i + n] == list(args) for i in range(len(have) - n + 1))


def find_with_arg(arg: str) -> int:
    """The pid of a process with ``arg`` as a whole argument of its argv, 0 if none."""
    for proc in psutil.process_iter(["cmdline"]):
        if arg in (proc.info["cmdline"] or ()):
            return proc.pid
    return 0


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def created_by(pid: int, when: float) -> bool:
    """The process was running at ``when`` (epoch seconds): a pid file written at
    ``when`` can only name it, not a later process that reused the pid."""
    try:
        return psutil.Process(pid).create_time() <= when + 1.0  # create_time has jiffy rounding
    except psutil.NoSuchProcess:
        return False


def cgroup_members(directory: str) -> list[int]:
    """Pids of the processes directly in the cgroup at ``directory`` (absolute path)."""
    try:
        with open(os.path.join(directory, "cgroup.procs"), "rb") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []
