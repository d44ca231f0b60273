"""The ``cgroupfs`` cgroup driver: pod cgroups as directories under each hierarchy.

A path is relative to every hierarchy's root, as the kubelet's cgroupfs
manager and runc's ``cgroupsPath`` use it: ``/kubepods/burstable/pod<uid>``
is ``/sys/fs/cgroup/memory/kubepods/burstable/pod<uid>`` on v1 and
``/sys/fs/cgroup/kubepods/burstable/pod<uid>`` on v2.

Which hierarchy takes resources is decided once at start from
/proc/self/mountinfo (see :mod:`.layout`): v1 whenever v1 controllers are
mounted (v1 and hybrid machines), the unified hierarchy only on pure v2.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time

from pycrio.errors import FailedPrecondition, Internal, InvalidArgument, NotFound, PermissionDenied
from pycrio.kernel.cgroup_stats import (
    hugepage_sizes,
    pressure_accounted,
    processes,
    stats_v1,
    stats_v2,
)
from pycrio.kernel.interfaces import (
    MEASURE_CPU_QUOTA,
    MEASURE_HUGETLB,
    MEASURE_MEMORY_RESERVATION,
    MEASURE_PRESSURE,
    CgroupDriver,
    CgroupStats,
    DriverContext,
    Resources,
)

from . import fs
from .layout import MODE_NONE, Layout, detect
from .paths import ancestors, check_id, clean_path
from .resources import Write, v1_writes, v2_writes

log = logging.getLogger("pycrio.cgroupfs")

#: Where a pod goes when the kubelet gives no cgroup_parent (crictl users,
#: tests): one cgroup per pod below this, so its resources and stats still
#: work and removing the pod removes exactly its cgroup. CRI-O puts such
#: containers directly under "/crio"; a per-pod level keeps pods apart.
DEFAULT_PARENT = "/pycrio"
DEFAULT_REMOVE_TIMEOUT = 5.0
#: The leaf under a pod cgroup that holds its containers' monitors.
MONITOR_LEAF = "pycrio-conmon"


class CgroupfsDriver(CgroupDriver):
    """Creates, updates, reads and removes cgroups directly through cgroupfs.

    Options (``[plugins.cgroupfs]``): ``default_parent`` (absolute path, see
    :data:`DEFAULT_PARENT`) and ``remove_timeout`` (seconds to retry a busy
    rmdir). ``layout`` is for tests that describe a machine themselves.
    """

    cri_cgroup_driver = "cgroupfs"

    def __init__(self, ctx: DriverContext, layout: Layout | None = None) -> None:
        super().__init__(ctx)
        options = ctx.options or {}
        self.default_parent = clean_path(
            options.get("default_parent", DEFAULT_PARENT), "[plugins.cgroupfs] default_parent"
        )
        timeout = options.get("remove_timeout", DEFAULT_REMOVE_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidArgument(
                f"[plugins.cgroupfs] remove_timeout must be a number of seconds, not {timeout!r}"
            )
        self.remove_timeout = float(timeout)
        self.layout = layout if layout is not None else detect()
        # Creation and its rollback are serialised so that one pod's rollback
        # cannot rmdir a shared parent another pod is just creating below.
        self._create_lock = threading.Lock()
        self.hugepage_sizes = hugepage_sizes()
        self._measurable = self._probe_measurable()
        log.info(
            "cgroupfs: cgroup %s layout, hierarchies %s",
            self.layout.mode,
            ", ".join(self.layout.all_mounts()) or "none",
        )

    def ready(self) -> tuple[bool, str, str]:
        if self.layout.mode == MODE_NONE:
            return False, "NoCgroupFilesystem", "no cgroup or cgroup2 filesystem is mounted"
        return True, "", ""

    # --- the CgroupDriver interface ---------------------------------------

    def pod_cgroup(self, cgroup_parent: str, pod_id: str, resources: Resources) -> str:
        """Create the pod cgroup (the kubelet's cgroup_parent) and apply ``resources``.

        An empty cgroup_parent means ``<default_parent>/pod-<pod_id>``. The
        resources are checked before anything is created, and directories
        created here are removed again if applying them fails.
        """
        check_id(pod_id, "pod id")
        if cgroup_parent:
            path = clean_path(cgroup_parent, "cgroup_parent")
        else:
            path = f"{self.default_parent}/pod-{pod_id}"
        writes = self._translate(resources)
        self._require_cgroups()
        with self._create_lock:
            created: list[str] = []
            try:
                self._create(path, created)
                self._apply(path, writes)
            except BaseException:
                self._rollback(created)
                raise
        return path

    def update(self, path: str, resources: Resources) -> None:
        """Apply new resources to an existing cgroup; NotFound when it is gone.

        Nothing is created here: an update must not resurrect a removed pod.
        """
        path = clean_path(path)
        writes = self._translate(resources)
        self._require_existing(path)
        self._apply(path, writes)

    def container_cgroups_path(self, pod_cgroup: str, container_id: str) -> str:
        """``<pod cgroup>/pycrio-<id>``: runc's cgroupfs ``cgroupsPath``, CRI-O's naming."""
        pod = clean_path(pod_cgroup, "pod cgroup")
        return f"{pod}/pycrio-{check_id(container_id, 'container id')}"

    def place_monitor(self, pid: int, pod_cgroup: str, container_id: str) -> None:
        """Move a container's monitor into ``<pod cgroup>/pycrio-conmon`` (conmon_cgroup = "pod").

        As CRI-O: the monitor's memory and CPU count against its pod. One
        leaf shared by the pod's monitors rather than one per container: a
        leaf because cgroup v2 allows no process in a cgroup that hands
        controllers to children; shared because a per-container cgroup has to
        be removed when its container is, while the monitor may still be
        exiting (EBUSY, then a retry). This one goes with the pod cgroup
        (:meth:`remove` takes children first), after every monitor is gone.
        """
        pod = clean_path(pod_cgroup, "pod cgroup")
        path = f"{pod}/{MONITOR_LEAF}"
        mounts = self.layout.managed_mounts()
        if not mounts:
            return
        if not all(os.path.isdir(m + path) for m in mounts):
            self._require_existing(pod)
            with self._create_lock:
                self._create(path, [])
        for mount in mounts:
            fs.write_value(f"{mount}{path}/cgroup.procs", str(pid))

    def remove(self, path: str) -> None:
        """rmdir the cgroup and its children in every hierarchy; never kills anything.

        Every hierarchy is tried even when one fails, so a retry has less left
        to do; the first failure is raised at the end.
        """
        path = clean_path(path)
        deadline = time.monotonic() + self.remove_timeout
        first: Exception | None = None
        for mount in self.layout.all_mounts():
            try:
                fs.rmdir_tree(mount + path, deadline)
            except (FailedPrecondition, Internal) as e:
                log.warning("%s", e)
                first = first or e
        if first is not None:
            raise first

    def stats(self, path: str) -> CgroupStats:
        """Usage from v1 or v2 files (see :mod:`pycrio.kernel.cgroup_stats`); NotFound if gone."""
        path = clean_path(path)
        self._require_existing(path)
        unified = self.layout.unified
        if self.layout.uses_v2:
            assert unified is not None
            base = unified.mountpoint + path
            stats = stats_v2(
                lambda _controller, file: fs.read_text(f"{base}/{file}"), self.hugepage_sizes
            )
            stats.processes = processes(base, _read_or_none)
            return stats

        def read(controller: str, file: str) -> str | None:
            if controller == "unified":
                mount = unified.mountpoint if unified is not None else None
            else:
                mount = self.layout.v1_mount(controller)
            return fs.read_text(f"{mount}{path}/{file}") if mount else None

        stats = stats_v1(read, self.hugepage_sizes)
        for controller in ("pids", "memory", "cpu"):
            mount = self.layout.v1_mount(controller)
            if mount is not None:
                stats.processes = processes(mount + path, _read_or_none)
                break
        return stats

    def measurable(self) -> frozenset[str]:
        return self._measurable

    # --- internals ----------------------------------------------------------

    def _probe_measurable(self) -> frozenset[str]:
        """What this node's cgroups can tell beyond the basic counters.

        PSI needs the kernel's pressure accounting (``/proc/pressure``) and a
        cgroup2 hierarchy holding the pods: the only one on v2, the unified
        mount of a hybrid machine (runc places containers there as well).
        """
        found = set()
        unified = self.layout.unified

        def has(controller: str) -> bool:
            if self.layout.uses_v2:
                return controller in self.layout.unified_controllers
            return self.layout.v1_mount(controller) is not None

        if has("cpu"):
            found.add(MEASURE_CPU_QUOTA)
        if has("memory"):
            found.add(MEASURE_MEMORY_RESERVATION)
        if has("hugetlb") and self.hugepage_sizes:
            found.add(MEASURE_HUGETLB)
        if unified is not None and pressure_accounted():
            found.add(MEASURE_PRESSURE)
        return frozenset(found)

    def _translate(self, resources: Resources | None) -> list[Write]:
        if resources is None:
            return []
        if not isinstance(resources, dict):
            raise InvalidArgument(f"linux.resources must be an object, not {resources!r}")
        return v2_writes(resources) if self.layout.uses_v2 else v1_writes(resources)

    def _require_cgroups(self) -> None:
        if self.layout.mode == MODE_NONE:
            raise FailedPrecondition("cgroupfs: no cgroup filesystem is mounted on this node")

    def _require_existing(self, path: str) -> None:
        if not any(os.path.isdir(m + path) for m in self.layout.managed_mounts()):
            raise NotFound(f"cgroup {path} does not exist")

    def _mkdir(self, directory: str, created: list[str]) -> None:
        try:
            os.mkdir(directory, 0o755)
            created.append(directory)
        except FileExistsError:
            pass
        except OSError as e:
            message = f"cgroupfs: creating {directory} failed: {e.strerror or e}"
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise PermissionDenied(message) from e
            raise Internal(message) from e

    def _create(self, path: str, created: list[str]) -> None:
        """mkdir the path, level by level, in every hierarchy we manage.

        v1 cpuset: a new cgroup starts with empty cpuset.cpus/mems and no task
        can join it until they are set, so each level gets its parent's.
        v2: a child only has a controller's files when its parent enables it
        in cgroup.subtree_control, so each ancestor enables what it has, as
        runc does for the levels it creates.
        """
        cpuset_mount = None if self.layout.uses_v2 else self.layout.v1_mount("cpuset")
        for mount in self.layout.managed_mounts():
            parent = mount
            for level in ancestors(path):
                if self.layout.uses_v2:
                    self._enable_controllers(parent)
                directory = mount + level
                self._mkdir(directory, created)
                if mount == cpuset_mount:
                    self._inherit_cpuset(parent, directory)
                parent = directory

    def _inherit_cpuset(self, parent: str, directory: str) -> None:
        for file in ("cpuset.cpus", "cpuset.mems"):
            current = (fs.read_text(f"{directory}/{file}") or "").strip()
            if current:
                continue
            value = (fs.read_text(f"{parent}/{file}") or "").strip()
            if value:
                fs.write_value(f"{directory}/{file}", value)

    def _enable_controllers(self, directory: str) -> None:
        available = set((fs.read_text(f"{directory}/cgroup.controllers") or "").split())
        enabled = set((fs.read_text(f"{directory}/cgroup.subtree_control") or "").split())
        missing = sorted(available - enabled)
        if missing:
            fs.write_value(
                f"{directory}/cgroup.subtree_control", " ".join(f"+{c}" for c in missing)
            )

    def _rollback(self, created: list[str]) -> None:
        for directory in reversed(created):
            try:
                os.rmdir(directory)
            except OSError as e:
                log.warning("cgroupfs: undoing creation of %s failed: %s", directory, e)

    def _target(self, path: str, write: Write) -> str | None:
        """The file ``write`` goes to, or None when it is to be skipped."""
        if self.layout.uses_v2:
            unified = self.layout.unified
            assert unified is not None
            base = unified.mountpoint + path
        else:
            mount = self.layout.v1_mount(write.controller)
            if mount is None:
                # runc skips controllers that are not mounted; so do we.
                log.debug(
                    "cgroupfs: %s is not mounted on cgroup v1; %s=%r not applied to %s",
                    write.controller,
                    write.file,
                    write.value,
                    path,
                )
                return None
            base = mount + path
        for file in (write.file, write.alt):
            if file and os.path.exists(f"{base}/{file}"):
                return f"{base}/{file}"
        if not os.path.isdir(base):
            raise NotFound(f"cgroup {path} does not exist ({base} is missing)")
        if write.optional:
            log.debug(
                "cgroupfs: %s/%s does not exist; %r not applied", base, write.file, write.value
            )
            return None
        raise InvalidArgument(
            f"cgroupfs: cannot set {write.file}={write.value!r} on {path}: {base}/{write.file}"
            " does not exist (the kernel lacks this setting or the controller is not enabled)"
        )

    def _apply(self, path: str, writes: list[Write]) -> None:
        """Write each value; a value the kernel refuses is retried once after the rest.

        Some pairs are only valid in one order, which depends on the current
        values: raising the memory limit above memory+swap, shortening the CFS
        period below the quota. Retrying the refused write after the others
        settles them without reading the current values first.
        """
        deferred: list[tuple[str, Write]] = []
        for write in writes:
            target = self._target(path, write)
            if target is None:
                continue
            try:
                fs.write_value(target, write.value)
            except InvalidArgument:
                deferred.append((target, write))
        for target, write in deferred:
            fs.write_value(target, write.value)


def _read_or_none(path: str) -> str | None:
    try:
        return fs.read_text(path)
    except Internal:
        return None  # a cgroup removed while its tree was walked
