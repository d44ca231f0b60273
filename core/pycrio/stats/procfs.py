"""What a cgroup's processes hold, read from /proc: file descriptors, sockets, threads, ulimits.

cadvisor counts these per container from the processes of its cgroup, and so
does pycrio: the cgroup driver lists the pids, this module looks at each.
A process that exits while it is being looked at is skipped. Parsing the
limits file is pure so it can be tested on sample text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

#: A soft limit of "unlimited" (CRI metric values are unsigned 64-bit integers).
UNLIMITED = (1 << 64) - 1


@dataclass
class ProcessUsage:
    processes: int = 0
    threads: int = 0
    file_descriptors: int = 0
    sockets: int = 0
    #: Soft limits of the first (oldest-pid) process, by cadvisor-style name
    #: ("max_open_files"); empty when there is no process to ask.
    ulimits: dict[str, int] = field(default_factory=dict)


def limit_name(text: str) -> str:
    """/proc/<pid>/limits' "Max open files" -> "max_open_files"."""
    return "_".join(text.lower().split())


def parse_limits(text: str) -> dict[str, int]:
    """Soft limits from the text of /proc/<pid>/limits (header line first).

    Columns are aligned at the header's "Soft Limit" offset; names contain
    spaces, so the line is split at that column rather than on whitespace.
    """
    lines = text.splitlines()
    if not lines:
        return {}
    column = lines[0].find("Soft Limit")
    out: dict[str, int] = {}
    for line in lines[1:]:
        if column <= 0 or len(line) <= column:
            continue
        name, soft = line[:column].strip(), line[column:].split()
        if not name or not soft:
            continue
        if soft[0] == "unlimited":
            out[limit_name(name)] = UNLIMITED
        elif soft[0].isdigit():
            out[limit_name(name)] = int(soft[0])
    return out


def _count_fds(pid: int) -> tuple[int, int]:
    """(descriptors, sockets) open in ``pid``."""
    directory = f"/proc/{pid}/fd"
    fds = sockets = 0
    for entry in os.listdir(directory):
        fds += 1
        try:
            if os.readlink(f"{directory}/{entry}").startswith("socket:"):
                sockets += 1
        except OSError:
            continue  # closed meanwhile
    return fds, sockets


def usage(pids: list[int]) -> ProcessUsage:
    """Totals over ``pids``; the ulimits are the first live one's."""
    out = ProcessUsage()
    for pid in pids:
        try:
            threads = len(os.listdir(f"/proc/{pid}/task"))
            fds, sockets = _count_fds(pid)
            limits = None
            if not out.ulimits:
                with open(f"/proc/{pid}/limits", encoding="ascii", errors="replace") as f:
                    limits = parse_limits(f.read())
        except OSError:
            continue  # exited while we looked
        out.processes += 1
        out.threads += threads
        out.file_descriptors += fds
        out.sockets += sockets
        if limits:
            out.ulimits = limits
    return out
