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

What a runtime driver started or keeps (monitors, shims, its own files) is
the driver's to find: the configured runtime and cgroup drivers are built
offline (:func:`pycrio.kernel.kernel.offline_drivers`) and asked through
their offline operations (RuntimeDriver.leftover_processes, leftover_files,
remove_leftovers; CgroupDriver.stats for the processes in a cgroup and
CgroupDriver.remove). The core never reads a driver's files.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields
from typing import Any

import psutil

from pycrio.config import Config
from pycrio.container.record import ContainerRecord
from pycrio.errors import CRIError, NotFound, Unimplemented
from pycrio.kernel.interfaces import (
    GROUP_CGROUP,
    GROUP_RUNTIME,
    CgroupDriver,
    LeftoverProcess,
    RuntimeDriver,
)
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


# --- drivers, built offline --------------------------------------------------------


@dataclass
class Drivers:
    """The configured runtime drivers (by handler) and cgroup driver, built offline.

    ``notes`` says what could not be asked (a driver not installed, an
    operation it does not implement); the commands print them once.
    """

    runtimes: dict[str, RuntimeDriver] = field(default_factory=dict)
    cgroup: CgroupDriver | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, config: Config) -> Drivers:
        from pycrio.config.load import resolve_cgroup_manager
        from pycrio.kernel.kernel import offline_drivers

        resolve_cgroup_manager(config)  # load() did, unless the config was built by hand
        slots, problems = offline_drivers(config, (GROUP_RUNTIME, GROUP_CGROUP))
        drivers = cls(notes=[f"cannot ask: {p}" for p in problems])
        for slot in slots:
            if isinstance(slot.driver, RuntimeDriver):
                drivers.runtimes[slot.handler] = slot.driver
            elif isinstance(slot.driver, CgroupDriver):
                drivers.cgroup = slot.driver
        return drivers

    def close(self) -> None:
        for driver in (*self.runtimes.values(), self.cgroup):
            if driver is not None:
                try:
                    driver.close()
                except Exception as e:  # noqa: BLE001 - closing one must not stop the rest
                    self.note(f"closing driver {driver.ctx.name!r}: {e}")

    def note(self, line: str) -> None:
        if line not in self.notes:
            self.notes.append(line)

    def _ask(self, handler: str, what: str, call: Callable[[], Any], empty: Any) -> Any:
        """One offline operation; what it cannot do becomes a note, not a failure."""
        try:
            return call()
        except Unimplemented as e:
            self.note(f"runtime handler {handler!r} cannot {what} offline: {e.message}")
        except (CRIError, OSError) as e:
            self.note(f"runtime handler {handler!r} could not {what}: {e}")
        return empty

    def leftover_processes(self, known_ids: Collection[str]) -> list[LeftoverProcess]:
        found: dict[int, LeftoverProcess] = {}
        for handler, driver in self.runtimes.items():
            for proc in self._ask(
                handler,
                "list its leftover processes",
                lambda d=driver: d.leftover_processes(known_ids),
                [],
            ):
                found.setdefault(proc.pid, proc)
        return list(found.values())

    def leftover_files(self, known_ids: Collection[str]) -> dict[str, str]:
        """path -> the handler whose driver reported it."""
        found: dict[str, str] = {}
        for handler, driver in self.runtimes.items():
            for path in self._ask(
                handler, "list its leftover files", lambda d=driver: d.leftover_files(known_ids), []
            ):
                found.setdefault(path, handler)
        return found

    def remove_leftovers(self, known_ids: Collection[str]) -> list[str]:
        """What the runtime drivers could not remove (one line each)."""
        left: list[str] = []
        for handler, driver in self.runtimes.items():
            left += self._ask(
                handler, "remove its leftovers", lambda d=driver: d.remove_leftovers(known_ids), []
            )
        return left

    def cgroup_processes(self, path: str) -> list[int]:
        """Pids in the cgroup ``path`` (as the cgroup driver recorded it) and below it."""
        if not path:
            return []
        if self.cgroup is None:
            self.note("no cgroup driver: processes left in cgroups are not looked for")
            return []
        try:
            return list(self.cgroup.stats(path).processes)
        except NotFound:
            return []
        except CRIError as e:
            self.note(f"cgroup {path}: cannot list its processes: {e.message}")
            return []

    def remove_cgroup(self, path: str) -> str:
        """Remove one cgroup through the cgroup driver; "" or why it stays."""
        if not path:
            return ""
        if self.cgroup is None:
            return "no cgroup driver to remove it"
        try:
            self.cgroup.remove(path)
        except (CRIError, OSError) as e:
            return str(e)
        return ""


def our_processes(
    drivers: Drivers,
    config: Config,
    containers: dict[str, ContainerRecord],
    sandboxes: dict[str, SandboxRecord],
) -> dict[int, str]:
    """pid -> what, for every process pycrio started under this runroot, exactly identified.

    What the runtime drivers started (containers, monitors, shims: each
    driver identifies its own), namespace holders by their pin argument, and
    whatever else runs in a container's or pod's cgroup. Never by a
    substring of a command line: a daemon on another runroot or an
    operator's ``tail -f`` of a log under this one must survive.
    """
    ns_dir = config.get("runtime.namespaces_dir") or os.path.join(config.runroot, "ns")
    victims = {p.pid: p.what for p in drivers.leftover_processes(())}
    for pid, what in _in_container_cgroups(drivers, containers, set(containers)).items():
        victims.setdefault(pid, what)  # the runtime driver's name for it comes first
    for pod_id, pid in _pid_holders(ns_dir):
        victims.setdefault(pid, f"PID namespace holder of pod {pod_id}")
    for pod_id, record in sandboxes.items():
        for pid in drivers.cgroup_processes(record.cgroup_path):
            victims.setdefault(pid, f"process of pod {pod_id}")
    victims.pop(os.getpid(), None)
    return victims


def _in_container_cgroups(
    drivers: Drivers, containers: dict[str, ContainerRecord], which: Collection[str]
) -> dict[int, str]:
    """pid -> what, for the processes in the cgroups of the containers ``which``."""
    found: dict[int, str] = {}
    claims = Counter(r.cgroups_path for r in containers.values())
    for cid in which:
        record = containers[cid]
        # a cgroup two records claim (a copied record) is neither's to empty
        if claims[record.cgroups_path] == 1:
            for pid in drivers.cgroup_processes(record.cgroups_path):
                found.setdefault(pid, f"process of container {cid}")
    return found


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
            drivers = Drivers.build(config)
            try:
                return _wipe(config, drivers, out)
            finally:
                drivers.close()
                for note in drivers.notes:
                    out(f"note: {note}")
    except DaemonRunning as e:
        out(f"pycrio wipe: refusing while the daemon runs: {e}")
        return 1


def _wipe(config: Config, drivers: Drivers, out: Out) -> int:
    root, runroot = config.root, config.runroot
    ns_dir = config.get("runtime.namespaces_dir") or os.path.join(runroot, "ns")
    sandboxes, _ = _records(os.path.join(root, "sandboxes"), SandboxRecord)
    containers, _ = _records(os.path.join(root, "containers"), ContainerRecord)
    left: list[str] = []
    left += kill_leftovers(our_processes(drivers, config, containers, sandboxes), out)
    # no id is known any more: every driver's state goes (also outside the runroot)
    left += drivers.remove_leftovers(())
    left += [f"still mounted: {p}" for p in unmount_all([root, runroot, ns_dir], out)]
    for record in containers.values():
        if record.cgroups_path:
            why = drivers.remove_cgroup(record.cgroups_path)
            if why:
                left.append(f"cgroup {record.cgroups_path} of container {record.id}: {why}")
    for record in sandboxes.values():
        why = drivers.remove_cgroup(record.cgroup_path)
        if why:
            left.append(f"cgroup {record.cgroup_path} of pod {record.id}: {why}")
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


def find_problems(config: Config, drivers: Drivers) -> list[Problem]:
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
                    _drop_container(config, drivers, record, ctr_dir, containers, sandboxes),
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

    # what the runtime drivers started or keep for pods and containers we do not know;
    # a record that cannot be read still names its object (its file is named for the id)
    known = {*sandboxes, *containers}
    known |= {os.path.basename(p).partition(".")[0] for p in {**bad_sandboxes, **bad_containers}}
    for proc in drivers.leftover_processes(known):
        problems.append(
            Problem(
                f"{proc.what} (pid {proc.pid}) still runs: no record refers to it",
                _kill(drivers, proc, known),
                "killed",
            )
        )
    remove_files = _once(lambda: drivers.remove_leftovers(known))
    for path, handler in drivers.leftover_files(known).items():
        problems.append(
            Problem(
                f"runtime handler {handler!r}: {path}: no record refers to it",
                _removed_by(remove_files, path),
                "removed",
            )
        )
    return problems


def _kill(drivers: Drivers, proc: LeftoverProcess, known: set[str]) -> Callable[[], None]:
    def repair() -> None:
        # asked again right before the kill: the pid must still be that very process
        if proc not in drivers.leftover_processes(known):
            return
        survived = kill_leftovers({proc.pid: proc.what}, _quiet)
        if survived:
            raise OSError("; ".join(survived))

    return repair


def _once(call: Callable[[], list[str]]) -> Callable[[], list[str]]:
    """``call`` the first time; its result again after that (a repair shared by problems)."""
    result: list[list[str]] = []

    def run() -> list[str]:
        if not result:
            result.append(call())
        return result[0]

    return run


def _removed_by(remove: Callable[[], list[str]], path: str) -> Callable[[], None]:
    """A repair: the driver removes its leftovers (once for all); ``path`` must be gone."""

    def repair() -> None:
        failures = remove()
        if os.path.lexists(path):
            raise OSError(
                f"{path} is still there" + (f" ({'; '.join(failures)})" if failures else "")
            )

    return repair


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
    drivers: Drivers,
    record: ContainerRecord,
    ctr_dir: str,
    containers: dict[str, ContainerRecord],
    sandboxes: dict[str, SandboxRecord],
) -> Callable[[], None]:
    def repair() -> None:
        others = {*sandboxes, *containers} - {record.id}
        victims = {p.pid: p.what for p in drivers.leftover_processes(others)}
        for pid, what in _in_container_cgroups(drivers, containers, [record.id]).items():
            victims.setdefault(pid, what)
        victims.pop(os.getpid(), None)
        kill_leftovers(victims, _quiet)
        drivers.remove_leftovers(others)
        for path in (
            os.path.join(ctr_dir, record.id),
            os.path.join(config.runroot, "containers", record.id),
        ):
            _rm(path)()
        if not any(
            c.cgroups_path == record.cgroups_path for c in containers.values() if c is not record
        ):
            drivers.remove_cgroup(record.cgroups_path)
        _rm(os.path.join(config.root, "containers", f"{record.id}.json"))()

    return repair


def _quiet(_line: str) -> None:
    pass


def check(config: Config, repair: bool = False, out: Out = print) -> int:
    """Print every problem of the stored state; 1 if any remain (after repairing)."""
    try:
        with Offline(config):
            drivers = Drivers.build(config)
            try:
                return _check(config, drivers, repair, out)
            finally:
                drivers.close()
                for note in drivers.notes:
                    out(f"note: {note}")
    except DaemonRunning as e:
        out(f"pycrio check: the store cannot be checked while the daemon runs: {e}")
        return 1


def _check(config: Config, drivers: Drivers, repair: bool, out: Out) -> int:
    problems = find_problems(config, drivers)
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
        problems = find_problems(config, drivers)
    for p in problems:
        out(f"not repaired: {p.what}")
    out(f"{len(problems)} problem(s) remain" if problems else "no problems remain")
    return 1 if problems else 0
