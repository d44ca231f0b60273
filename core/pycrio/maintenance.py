"""Offline maintenance of pycrio's state: ``pycrio wipe`` and ``pycrio check [--repair]``.

Both run only while no daemon uses the root and runroot: they take the same
pid-file locks the daemon takes (:class:`pycrio.daemon.StateLock`) and
refuse when a daemon holds them.

State lives in:

- ``<root>/storage``: ``images.db`` (image records), ``blobs/`` (manifests and
  configs), ``<driver>/layers/<chain hex>/{layer.json,diff}``,
  ``<driver>-containers/<id>/`` (writable layers, rootfs mounts), ``tmp/``;
- ``<root>/sandboxes/*.json``, ``<root>/containers/*.json`` (records);
- ``<runroot>/pods``, ``<runroot>/ns`` (pinned namespaces), ``<runroot>/containers``
  (bundles), ``<runroot>/drivers`` (each runtime driver's own state).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import psutil

from pycrio.config import Config
from pycrio.container.record import ContainerRecord
from pycrio.linux import libc, mountinfo, processes
from pycrio.sandbox.record import SandboxRecord

KEEP = {"pycrio.pid"}
Out = Callable[[str], None]


class DaemonRunning(Exception):
    """A daemon holds the root or runroot lock."""


# --- locks -----------------------------------------------------------------------


class Offline:
    """Hold the daemon's locks on runroot and root while maintenance runs."""

    def __init__(self, config: Config) -> None:
        from pycrio.daemon import StateLock

        self.locks = [StateLock(config.runroot), StateLock(config.root)]

    def __enter__(self) -> Offline:
        from pycrio.daemon import StartupError

        taken = []
        try:
            for lock in self.locks:
                lock.acquire()
                taken.append(lock)
        except StartupError as e:
            for lock in taken:
                lock.release()
            raise DaemonRunning(str(e)) from e
        return self

    def __exit__(self, *_exc: object) -> None:
        for lock in self.locks:
            lock.release()


# --- host resources --------------------------------------------------------------


def mounts_under(*prefixes: str) -> list[str]:
    """Mount points at or below any prefix, deepest (and latest) first."""
    return mountinfo.mount_points_under(prefixes)


def unmount_all(prefixes: list[str], out: Out) -> list[str]:
    """Unmount everything under ``prefixes``; return what could not be unmounted."""
    for _ in range(10):
        points = mounts_under(*prefixes)
        if not points:
            return []
        for point in points:
            try:
                if libc.unmount(point):
                    out(f"unmounted {point}")
            except OSError as e:
                out(f"cannot unmount {point}: {e.strerror}")
    return mounts_under(*prefixes)


def _runtime_states(runroot: str) -> list[tuple[str, int, int]]:
    """(container id, pid, start time) from runc-style state.json files under runroot."""
    found = []
    for dirpath, _dirs, files in os.walk(runroot):
        if "state.json" not in files:
            continue
        try:
            with open(os.path.join(dirpath, "state.json")) as f:
                state = json.load(f)
            pid, start = int(state["init_process_pid"]), int(state["init_process_start"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append((os.path.basename(dirpath), pid, start))
    return found


def _monitors(runroot: str) -> list[tuple[str, int]]:
    """(container id, pid) of conmon monitors, from the pid files they wrote under runroot.

    A pid file alone could name a recycled pid: the process must also have
    been started before the file was written, and have the file as its
    ``-P`` argument (conmon's own pid file), exactly.
    """
    found = []
    for dirpath, _dirs, files in os.walk(runroot):
        if "conmon.pid" not in files:
            continue
        path = os.path.join(dirpath, "conmon.pid")
        try:
            with open(path, "rb") as f:
                pid = int(f.read().strip())
            written = os.stat(path).st_mtime
        except (OSError, ValueError):
            continue
        if processes.has_args(pid, "-P", path) and processes.created_by(pid, written):
            found.append((os.path.basename(dirpath), pid))
    return found


def _pid_holders(ns_dir: str) -> list[tuple[str, int]]:
    """(pod id, pid) of shared-PID-namespace holders: ``unshare ... --pid=<pin> ...``
    whose pin file is under ``ns_dir``, matched as a whole argument."""
    pins = os.path.join(ns_dir, "pid")
    wanted = {f"--pid={os.path.join(pins, n)}": n for n in _listdir(pins)}
    if not wanted:
        return []
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info["cmdline"] or []
        if args and os.path.basename(args[0]) == "unshare":
            found += [(wanted[a], proc.info["pid"]) for a in args if a in wanted]
    return found


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _cgroup_mounts() -> list[str]:
    return [m.mount_point for m in mountinfo.read() if m.fstype in ("cgroup", "cgroup2")]


def _in_cgroup(path: str) -> list[int]:
    """Processes in the cgroup ``path`` (relative to each hierarchy) and its children."""
    if not path or ":" in path:  # a systemd slice: not ours to walk offline
        return []
    pids: set[int] = set()
    for base in _cgroup_mounts():
        top = os.path.join(base, path.lstrip("/"))
        for dirpath, _dirs, _files in os.walk(top):
            pids.update(processes.cgroup_members(dirpath))
    return sorted(pids)


def our_processes(
    config: Config,
    containers: dict[str, ContainerRecord],
    sandboxes: dict[str, SandboxRecord],
    only: str | None = None,
) -> dict[int, str]:
    """pid -> what, for every process pycrio started under this runroot, exactly identified.

    Containers by the OCI runtime's state (pid and start time), monitors by
    their pid files, namespace holders by their pin argument, and whatever
    else runs in a container's cgroup. Never by a substring of a command
    line: a daemon on another runroot or an operator's ``tail -f`` of a log
    under this one must survive. ``only`` limits it to one container.
    """
    runroot = config.runroot
    ns_dir = config.get("runtime.namespaces_dir") or os.path.join(runroot, "ns")
    victims: dict[int, str] = {}
    for cid, pid, start in _runtime_states(runroot):
        if (only is None or cid == only) and processes.start_ticks(pid) == start:
            victims[pid] = f"container {cid}"
    for cid, pid in _monitors(runroot):
        if only is None or cid == only:
            victims.setdefault(pid, f"monitor of {cid}")
    claims = Counter(r.cgroups_path for r in containers.values())
    for cid, record in containers.items():
        # a cgroup two records claim (a copied record) is neither's to empty
        if (only is None or cid == only) and claims[record.cgroups_path] == 1:
            for pid in _in_cgroup(record.cgroups_path):
                victims.setdefault(pid, f"process of container {cid}")
    if only is None:
        for pod_id, pid in _pid_holders(ns_dir):
            victims.setdefault(pid, f"PID namespace holder of pod {pod_id}")
        for pod_id, record in sandboxes.items():
            for pid in _in_cgroup(record.cgroup_path):
                victims.setdefault(pid, f"process of pod {pod_id}")
    victims.pop(os.getpid(), None)
    return victims


def kill_leftovers(victims: dict[int, str], out: Out) -> list[str]:
    """SIGKILL ``victims`` (pid -> what) and wait for them; return what survived."""
    procs = []
    for pid, what in victims.items():
        try:
            proc = psutil.Process(pid)
            proc.kill()
            procs.append(proc)
            out(f"killed {what} (pid {pid})")
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied as e:
            out(f"cannot kill {what} (pid {pid}): {e}")
    deadline = time.monotonic() + 5
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if processes.alive(p.pid)]
        time.sleep(0.05)
    return [f"{victims[p.pid]} (pid {p.pid}) still running" for p in alive]


def remove_cgroup(path: str) -> bool:
    """rmdir a cgroup (path relative to the hierarchy) in every hierarchy; False if one stays."""
    if not path or ":" in path:
        return True
    ok = True
    for base in _cgroup_mounts():
        target = os.path.join(base, path.lstrip("/"))
        if os.path.isdir(target):
            try:
                os.rmdir(target)
            except OSError:
                ok = False
    return ok


def _remove(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# --- records -----------------------------------------------------------------------


def _load_record(path: str, cls: type) -> Any:
    with open(path) as f:
        data = json.load(f)
    known = {f.name for f in fields(cls)}
    if not isinstance(data, dict) or not known.issuperset(data):
        raise ValueError("unexpected fields")
    return cls(**data)


def _records(directory: str, cls: type) -> tuple[dict[str, Any], dict[str, str]]:
    """({id: record}, {file: error}) of the JSON records in ``directory``."""
    good: dict[str, Any] = {}
    bad: dict[str, str] = {}
    if not os.path.isdir(directory):
        return good, bad
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.endswith(".json"):
            bad[path] = "not a record (temporary file left by an interrupted write?)"
            continue
        try:
            record = _load_record(path, cls)
        except (OSError, ValueError, TypeError) as e:
            bad[path] = f"unreadable: {e}"
            continue
        good[record.id] = record
    return good, bad


# --- wipe ------------------------------------------------------------------------


def wipe(config: Config, out: Out = print) -> int:
    """Remove all pods, containers and images, as CRI-O's ``crio wipe``."""
    try:
        with Offline(config):
            return _wipe(config, out)
    except DaemonRunning as e:
        out(f"pycrio wipe: refusing while the daemon runs: {e}")
        return 1


def _wipe(config: Config, out: Out) -> int:
    root, runroot = config.root, config.runroot
    ns_dir = config.get("runtime.namespaces_dir") or os.path.join(runroot, "ns")
    sandboxes, _ = _records(os.path.join(root, "sandboxes"), SandboxRecord)
    containers, _ = _records(os.path.join(root, "containers"), ContainerRecord)
    left: list[str] = []
    left += kill_leftovers(our_processes(config, containers, sandboxes), out)
    left += [f"still mounted: {p}" for p in unmount_all([root, runroot, ns_dir], out)]
    for record in containers.values():
        if record.cgroups_path and not remove_cgroup(record.cgroups_path):
            left.append(f"cgroup {record.cgroups_path} of container {record.id}")
    for record in sandboxes.values():
        if record.cgroup_path and not remove_cgroup(record.cgroup_path):
            left.append(f"cgroup {record.cgroup_path} of pod {record.id}")
        if record.network_up:
            left.append(
                f"pod {record.id}: its network was set up; CNI state (IP allocations) is not"
                " released offline"
            )
        if record.hostports_up:
            left.append(f"pod {record.id}: its host port rules are not removed offline")
    for directory in (runroot, root, ns_dir):
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if name in KEEP or stat.S_ISSOCK(os.lstat(path).st_mode):
                continue
            try:
                _remove(path)
                out(f"removed {path}")
            except OSError as e:
                left.append(f"{path}: {e.strerror}")
    for what in left:
        out(f"not cleaned: {what}")
    return 0


# --- check -----------------------------------------------------------------------


@dataclass
class Problem:
    what: str
    repair: Callable[[], None] | None = None
    fix: str = ""


def _hex(digest: str) -> str:
    return digest.split(":", 1)[-1]


def find_problems(config: Config) -> list[Problem]:
    root, runroot = config.root, config.runroot
    storage = os.path.join(root, "storage")
    driver = config.get("storage_driver")
    layers_dir = os.path.join(storage, driver, "layers")
    ctr_dir = os.path.join(storage, f"{driver}-containers")
    blobs_dir = os.path.join(storage, "blobs")
    problems: list[Problem] = []

    def blob_path(digest: str) -> str:
        algorithm, _, hex_ = digest.partition(":")
        return os.path.join(blobs_dir, algorithm, hex_)

    # images
    images: dict[str, dict[str, Any]] = {}
    db_path = os.path.join(storage, "images.db")
    if os.path.exists(db_path):
        db = sqlite3.connect(db_path, isolation_level=None)
        try:
            rows = list(db.execute("SELECT id, record FROM images"))
        finally:
            db.close()
        for image_id, text in rows:
            try:
                record = json.loads(text)
                record["layers"] = list(record["layers"])
            except (ValueError, KeyError, TypeError) as e:
                problems.append(
                    Problem(
                        f"image {image_id}: unreadable record ({e})",
                        _drop_image(db_path, image_id),
                        "removed",
                    )
                )
                continue
            images[image_id] = record

    def layer_ok(chain: str) -> bool:
        return os.path.isfile(os.path.join(layers_dir, _hex(chain), "layer.json"))

    for image_id, record in images.items():
        reasons = [f"layer {c} is missing" for c in record["layers"] if not layer_ok(c)]
        for digest in (image_id, record.get("manifest_digest", "")):
            if digest and not os.path.isfile(blob_path(digest)):
                reasons.append(f"blob {digest} is missing")
        if reasons:
            names = ", ".join(record.get("repo_tags") or record.get("repo_digests") or [])
            problems.append(
                Problem(
                    f"image {image_id} ({names}): " + "; ".join(reasons),
                    _drop_image(db_path, image_id),
                    "removed the image record (pull it again)",
                )
            )

    # layers
    wanted = {_hex(c) for r in images.values() for c in r["layers"]}
    present = sorted(os.listdir(layers_dir)) if os.path.isdir(layers_dir) else []
    for name in present:
        path = os.path.join(layers_dir, name)
        try:
            with open(os.path.join(path, "layer.json")) as f:
                layer = json.load(f)
        except FileNotFoundError:
            problems.append(Problem(f"layer {name}: no layer.json", _rm(path), "removed"))
            continue
        except (OSError, ValueError) as e:
            problems.append(
                Problem(f"layer {name}: unreadable layer.json ({e})", _rm(path), "removed")
            )
            continue
        parent = layer.get("parent", "") if isinstance(layer, dict) else ""
        if parent and not os.path.isdir(os.path.join(layers_dir, _hex(parent))):
            problems.append(
                Problem(f"layer {name}: parent {parent} is missing", _rm(path), "removed")
            )
        elif name not in wanted:
            problems.append(Problem(f"layer {name}: no image uses it", _rm(path), "removed"))

    # blobs
    wanted_blobs = set(images)
    for r in images.values():
        wanted_blobs.add(r.get("manifest_digest", ""))
        wanted_blobs |= {d.split("@", 1)[1] for d in r.get("repo_digests", []) if "@" in d}
    if os.path.isdir(blobs_dir):
        for algorithm in sorted(os.listdir(blobs_dir)):
            for hex_ in sorted(os.listdir(os.path.join(blobs_dir, algorithm))):
                if f"{algorithm}:{hex_}" not in wanted_blobs:
                    path = os.path.join(blobs_dir, algorithm, hex_)
                    problems.append(
                        Problem(f"blob {algorithm}:{hex_}: no image uses it", _rm(path), "removed")
                    )

    # temporary files
    tmp = os.path.join(storage, "tmp")
    if os.path.isdir(tmp):
        for name in sorted(os.listdir(tmp)):
            path = os.path.join(tmp, name)
            problems.append(Problem(f"leftover temporary file {path}", _rm(path), "removed"))

    # records
    sandboxes, bad_sandboxes = _records(os.path.join(root, "sandboxes"), SandboxRecord)
    containers, bad_containers = _records(os.path.join(root, "containers"), ContainerRecord)
    for path, error in {**bad_sandboxes, **bad_containers}.items():
        problems.append(Problem(f"record {path}: {error}", _rm(path), "removed"))
    for cid, record in containers.items():
        reasons = []
        if record.sandbox_id not in sandboxes:
            reasons.append(f"its pod {record.sandbox_id} does not exist")
        if record.image_id and record.image_id not in images:
            reasons.append(f"its image {record.image_id} does not exist")
        if reasons:
            problems.append(
                Problem(
                    f"container {cid}: " + "; ".join(reasons),
                    _drop_container(config, record, ctr_dir, containers),
                    "removed the container and its files",
                )
            )
    for sid, sandbox in sandboxes.items():
        if sandbox.infra_id and sandbox.infra_id not in containers:
            problems.append(
                Problem(f"pod {sid}: its infra container {sandbox.infra_id} is missing")
            )

    # directories without a record
    for directory, known, kind in (
        (ctr_dir, containers, "container layer"),
        (os.path.join(runroot, "containers"), containers, "container state"),
        (os.path.join(runroot, "pods"), sandboxes, "pod state"),
    ):
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            base = name.split(".", 1)[0]
            if base not in known:
                path = os.path.join(directory, name)
                problems.append(
                    Problem(f"{kind} {path}: no record refers to it", _rm(path), "removed")
                )
    return problems


def _rm(path: str) -> Callable[[], None]:
    def repair() -> None:
        for point in mounts_under(path):
            libc.unmount(point)
        if os.path.lexists(path):
            _remove(path)

    return repair


def _drop_image(db_path: str, image_id: str) -> Callable[[], None]:
    def repair() -> None:
        db = sqlite3.connect(db_path, isolation_level=None)
        try:
            db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        finally:
            db.close()

    return repair


def _drop_container(
    config: Config,
    record: ContainerRecord,
    ctr_dir: str,
    containers: dict[str, ContainerRecord],
) -> Callable[[], None]:
    def repair() -> None:
        kill_leftovers(our_processes(config, containers, {}, only=record.id), _quiet)
        for path in (
            os.path.join(ctr_dir, record.id),
            os.path.join(config.runroot, "containers", record.id),
        ):
            _rm(path)()
        if not any(
            c.cgroups_path == record.cgroups_path for c in containers.values() if c is not record
        ):
            remove_cgroup(record.cgroups_path)
        _rm(os.path.join(config.root, "containers", f"{record.id}.json"))()

    return repair


def _quiet(_line: str) -> None:
    pass


def check(config: Config, repair: bool = False, out: Out = print) -> int:
    """Print every problem of the stored state; 1 if any remain (after repairing)."""
    try:
        with Offline(config):
            problems = find_problems(config)
            for p in problems:
                out(p.what)
            if not repair or not problems:
                out(f"{len(problems)} problem(s) found" if problems else "no problems found")
                return 1 if problems else 0
            for _ in range(5):  # repairing can orphan more (a removed image's layers)
                fixable = [p for p in problems if p.repair is not None]
                if not fixable:
                    break
                for p in fixable:
                    try:
                        p.repair()  # type: ignore[misc]
                        out(f"repaired: {p.what}: {p.fix}")
                    except OSError as e:
                        out(f"cannot repair: {p.what}: {e}")
                problems = find_problems(config)
            for p in problems:
                out(f"not repaired: {p.what}")
            out(f"{len(problems)} problem(s) remain" if problems else "no problems remain")
            return 1 if problems else 0
    except DaemonRunning as e:
        out(f"pycrio check: the store cannot be checked while the daemon runs: {e}")
        return 1
