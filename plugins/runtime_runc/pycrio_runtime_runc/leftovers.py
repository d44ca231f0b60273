"""What the runc driver left behind, found offline for ``pycrio check`` and ``pycrio wipe``.

The driver keeps, per container (see :mod:`.driver` and :mod:`.conmon`):

- ``<runtime_root>/<id>/state.json``: the runtime's own state, with the
  container's init pid and its start time (``init_process_start``, clock
  ticks after boot) and the bundle (a ``bundle=<path>`` label);
- ``<run_dir>/containers/<id>/``: conmon's persist dir (``conmon.pid``,
  ``pidfile``, ``exit``, ``oom``, ``monitor.json``);
- ``<run_dir>/exits/<id>`` (and ``<id>.XXXXXX`` while conmon writes it);
- ``<run_dir>/monitor-cgroups/<id>``: the cgroups conmon was put in;
- ``<socket_dir>/<id>``: conmon's symlink to the bundle, through which the
  attach socket is reached;
- ``<run_dir>/exec/<id>-<random>.{pid,json}`` while an exec runs.

A container is left over when the core has no record of it. Processes are
identified exactly (pid *and* start time, or pid file *and* argv naming it),
so a recycled pid or a process that merely mentions our paths is never
listed. The runtime root and the socket dir may be configured to
directories shared with others (``/run/runc``, ``/run/pycrio/attach``):
there only entries provably ours count — a runtime state or a link whose
bundle lies in this daemon's runroot.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from pycrio.errors import CRIError
from pycrio.kernel.interfaces import LeftoverProcess
from pycrio.linux import processes

from . import conmon, monitor_cgroup


@dataclass(frozen=True)
class Layout:
    """Where one runc driver keeps its files (all absolute paths)."""

    run_dir: str
    runtime_root: str
    socket_dir: str
    #: the daemon's runroot: bundles live below it
    runroot: str

    @classmethod
    def of(cls, driver: Any) -> Layout:
        """The layout of an :class:`~pycrio_runtime_runc.driver.OCIRuntimeCLI`."""
        return cls(
            run_dir=driver.ctx.run_dir,
            runtime_root=driver.runtime_root,
            socket_dir=driver.socket_dir,
            runroot=driver.ctx.config.runroot,
        )

    @property
    def persist_root(self) -> str:
        return os.path.join(self.run_dir, "containers")

    @property
    def exit_dir(self) -> str:
        return os.path.join(self.run_dir, "exits")

    @property
    def monitor_cgroups_dir(self) -> str:
        return os.path.join(self.run_dir, "monitor-cgroups")

    @property
    def exec_dir(self) -> str:
        return os.path.join(self.run_dir, "exec")


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _within(path: str, top: str) -> bool:
    """``path`` is ``top`` or below it (no string-prefix confusion: /a/b2 is not in /a/b)."""
    path, top = os.path.abspath(path), os.path.abspath(top)
    try:
        return os.path.commonpath([path, top]) == top
    except ValueError:
        return False


def read_runtime_state(root: str, cid: str) -> dict | None:
    """runc's state.json of one container, or None if unreadable."""
    try:
        with open(os.path.join(root, cid, "state.json"), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def state_bundle(state: dict) -> str:
    """The bundle runc recorded (its ``bundle=<path>`` label), "" if none."""
    config = state.get("config")
    labels = config.get("labels") if isinstance(config, dict) else None
    for label in labels if isinstance(labels, list) else []:
        if isinstance(label, str) and label.startswith("bundle="):
            return label[len("bundle=") :]
    return ""


def runtime_containers(layout: Layout) -> Iterator[tuple[str, dict | None]]:
    """(id, state or None) of every container in the runtime root that is ours.

    A root below our run dir is ours entirely; a shared one only where the
    container's bundle lies in our runroot.
    """
    private = _within(layout.runtime_root, layout.run_dir)
    for cid in _listdir(layout.runtime_root):
        if not os.path.isdir(os.path.join(layout.runtime_root, cid)):
            continue
        state = read_runtime_state(layout.runtime_root, cid)
        if private or (state is not None and _within(state_bundle(state), layout.runroot)):
            yield cid, state


def attach_links(layout: Layout) -> Iterator[str]:
    """Ids of conmon's attach links that are ours (pointing into our runroot)."""
    private = _within(layout.socket_dir, layout.run_dir)
    for cid in _listdir(layout.socket_dir):
        path = os.path.join(layout.socket_dir, cid)
        if not os.path.islink(path):
            continue
        if private or _within(os.path.join(layout.socket_dir, os.readlink(path)), layout.runroot):
            yield cid


def _base_id(name: str) -> str:
    """The container id a file is named for: ``<id>``, ``<id>.XXXXXX``, ``<id>-<rand>.pid``."""
    return name.partition(".")[0]


def leftover_processes(layout: Layout, known_ids: Collection[str]) -> list[LeftoverProcess]:
    """Container init processes (runc's state) and conmon monitors (their pid files)."""
    found: dict[int, LeftoverProcess] = {}
    for cid, state in runtime_containers(layout):
        if cid in known_ids or state is None:
            continue
        try:
            pid, start = int(state["init_process_pid"]), int(state["init_process_start"])
        except (KeyError, TypeError, ValueError):
            continue
        if pid > 0 and processes.start_ticks(pid) == start:
            found[pid] = LeftoverProcess(pid, f"container {cid}")
    for cid in _listdir(layout.persist_root):
        if cid in known_ids:
            continue
        pid = _monitor(os.path.join(layout.persist_root, cid))
        if pid is not None:
            found.setdefault(pid, LeftoverProcess(pid, f"monitor of {cid}"))
    return list(found.values())


def _monitor(persist_dir: str) -> int | None:
    """conmon's pid, if the process its pid file names is that very conmon.

    A pid file alone could name a recycled pid: the process must also have
    been started before the file was written and have the file as its
    ``-P`` argument, exactly.
    """
    path = conmon.conmon_pid_file(persist_dir)
    pid = conmon.monitor_pid(persist_dir)
    try:
        written = os.stat(path).st_mtime
    except OSError:
        return None
    if pid and processes.has_args(pid, "-P", path) and processes.created_by(pid, written):
        return pid
    return None


def leftover_files(layout: Layout, known_ids: Collection[str]) -> list[str]:
    """Every path of ours that serves no known container (exec files serve none offline)."""
    paths = [
        os.path.join(layout.runtime_root, cid)
        for cid, _state in runtime_containers(layout)
        if cid not in known_ids
    ]
    for directory in (layout.persist_root, layout.exit_dir, layout.monitor_cgroups_dir):
        paths += [
            os.path.join(directory, name)
            for name in _listdir(directory)
            if _base_id(name) not in known_ids
        ]
    # an exec's files live while the daemon waits for it: none does offline
    paths += [os.path.join(layout.exec_dir, name) for name in _listdir(layout.exec_dir)]
    paths += [
        os.path.join(layout.socket_dir, cid) for cid in attach_links(layout) if cid not in known_ids
    ]
    return paths


def remove_leftovers(driver: Any, layout: Layout, known_ids: Collection[str]) -> list[str]:
    """Delete leftover containers through the runtime, then remove the remaining files.

    ``runtime delete --force`` also removes the container's cgroup (whichever
    cgroup manager made it); a state the runtime refuses to delete (damaged,
    or the runtime binary is gone) is removed by hand so the next check does
    not report it again.
    """
    failed: list[str] = []
    refused: dict[str, str] = {}
    for cid, _state in list(runtime_containers(layout)):
        if cid in known_ids:
            continue
        try:
            driver.delete(cid, force=True)
        except CRIError as e:
            refused[cid] = e.message  # a damaged state: removed by hand below
    for name in _listdir(layout.monitor_cgroups_dir):
        if _base_id(name) in known_ids:
            continue
        cgroups = _recorded_cgroups(os.path.join(layout.monitor_cgroups_dir, name))
        monitor_cgroup.remove(cgroups)
        left = [c for c in cgroups if os.path.isdir(c)]
        if left:
            failed.append(f"monitor cgroups of container {name}: {', '.join(left)} not empty")
    for path in leftover_files(layout, known_ids):
        try:
            _remove(path)
        except OSError as e:
            failed.append(f"{path}: {e.strerror}")
    for cid, message in refused.items():
        if os.path.exists(os.path.join(layout.runtime_root, cid)):
            failed.append(f"runtime state of container {cid}: {message}")
    return failed


def _recorded_cgroups(path: str) -> list[str]:
    """The monitor cgroups the driver recorded (absolute directories); [] if unreadable.

    Only rmdir is ever done to them, which removes nothing but an empty
    cgroup; still, a damaged record must not name anything else.
    """
    try:
        with open(path, encoding="utf-8") as f:
            cgroups = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(cgroups, list):
        return []
    # only what the driver can have made: a pycrio-conmon-<id> cgroup in a cgroup hierarchy
    mounts = [mount for mount, _cpuset in monitor_cgroup.hierarchies()]
    return [
        c
        for c in cgroups
        if isinstance(c, str)
        and os.path.basename(c).startswith(monitor_cgroup.PREFIX)
        and any(_within(c, m) and c != m for m in mounts)
    ]


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
