"""The ``systemd`` cgroup driver: pods as slices, containers and monitors as scopes.

On a systemd node every cgroup belongs to a unit, and systemd moves, trims
or kills what it does not know about on its next reload. So this driver
never makes a cgroup directory itself: it asks systemd over D-Bus for
transient units and sets their limits as unit properties (see
:mod:`.properties`), the way the kubelet's and runc's systemd drivers do.

- a pod is the slice the kubelet names in ``cgroup_parent``
  (``kubepods-burstable-pod<uid>.slice``), created when the kubelet has not
  made it yet; a pod without one gets ``<default_parent stem>-pod<id>.slice``;
- a container's ``cgroupsPath`` is ``<pod slice>:<scope_prefix>:<id>``: the
  OCI runtime, run with ``--systemd-cgroup``, creates the scope
  ``<scope_prefix>-<id>.scope`` in the pod slice with Delegate=yes;
- conmon goes into its own scope ``<scope_prefix>-conmon-<id>.scope`` in the
  pod slice (``conmon_cgroup = "pod"``) or in a slice the operator names,
  as CRI-O does; systemd collects the scope when conmon exits;
- removal is StopUnit, and only of a unit with no process left (removal
  never kills); stats are read from the unit's cgroup files.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from pycrio.errors import (
    CRIError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)
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

from .manager import NO_SUCH_UNIT, UNIT_EXISTS, Manager, SystemdError
from .properties import FileWrite, Property, Translation, accounting_properties, translate
from .units import (
    SLICE,
    cgroup_of,
    check_id,
    check_prefix,
    check_slice,
    child_slice,
    scope_path,
    split_path,
)

log = logging.getLogger("pycrio.cgroup.systemd")

DEFAULT_PARENT = "pycrio.slice"
DEFAULT_PREFIX = "pycrio"
DEFAULT_TIMEOUT = 10.0
DEFAULT_REMOVE_TIMEOUT = 5.0
CGROUP_ROOT = "/sys/fs/cgroup"
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"
OPTIONS = ("default_parent", "conmon_cgroup", "scope_prefix", "bus", "timeout", "remove_timeout")


def _seconds(options: dict[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidArgument(f"[plugins.systemd] {key} must be a positive number, not {value!r}")
    return float(value)


class SystemdCgroupDriver(CgroupDriver):
    """Creates, updates, reads and removes pod and container units through systemd.

    Options (``[plugins.systemd]``): ``default_parent`` (a slice, default
    ``pycrio.slice``), ``conmon_cgroup`` (``pod`` or a slice such as
    ``system.slice``; CRI-O's key), ``scope_prefix`` (``pycrio``), ``bus``
    (``system`` or a D-Bus address), ``timeout`` and ``remove_timeout``
    (seconds). ``manager`` and ``cgroup_root`` are for tests.
    """

    cri_cgroup_driver = "systemd"

    def __init__(
        self,
        ctx: DriverContext,
        manager: Manager | None = None,
        cgroup_root: str = CGROUP_ROOT,
    ) -> None:
        super().__init__(ctx)
        options = dict(ctx.options or {})
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise InvalidArgument(
                f"[plugins.systemd]: unknown option(s) {', '.join(unknown)};"
                f" known: {', '.join(OPTIONS)}"
            )
        self.default_parent = check_slice(
            options.get("default_parent", DEFAULT_PARENT), "[plugins.systemd] default_parent"
        )
        conmon = options.get("conmon_cgroup", "pod")
        self.conmon_cgroup = (
            "pod" if conmon == "pod" else check_slice(conmon, "[plugins.systemd] conmon_cgroup")
        )
        self.prefix = check_prefix(
            options.get("scope_prefix", DEFAULT_PREFIX), "[plugins.systemd] scope_prefix"
        )
        bus = options.get("bus", "system")
        if not isinstance(bus, str) or not bus:
            raise InvalidArgument(f"[plugins.systemd] bus must be a string, not {bus!r}")
        timeout = _seconds(options, "timeout", DEFAULT_TIMEOUT)
        self.remove_timeout = _seconds(options, "remove_timeout", DEFAULT_REMOVE_TIMEOUT)
        self.manager = manager or Manager("SYSTEM" if bus == "system" else bus, timeout)
        self.root = cgroup_root
        self.v2 = os.path.exists(os.path.join(cgroup_root, "cgroup.controllers"))
        self.hugepage_sizes = hugepage_sizes()
        self._measurable = self._probe_measurable()
        # creation and its rollback are serialised: two pods of one slice
        # must not both decide to create it
        self._create_lock = threading.Lock()

    def ready(self) -> tuple[bool, str, str]:
        if not os.path.isdir(SYSTEMD_RUNTIME_DIR):
            return (
                False,
                "SystemdNotRunning",
                f"{SYSTEMD_RUNTIME_DIR} does not exist: this node does not run systemd;"
                " use cgroup_manager = cgroupfs",
            )
        try:
            self.manager.unit_path("-.slice")
        except CRIError as e:
            return False, "SystemdUnreachable", e.message
        except SystemdError as e:
            return False, "SystemdUnreachable", str(e)
        return True, "", ""

    def close(self) -> None:
        self.manager.close()

    # --- the CgroupDriver interface ---------------------------------------

    def pod_cgroup(self, cgroup_parent: str, pod_id: str, resources: Resources) -> str:
        """Start the pod's slice (or adopt the kubelet's) and set its resources.

        Everything is validated before systemd is asked for anything; a slice
        started here is stopped again when applying the resources fails.
        """
        check_id(pod_id, "pod id")
        if cgroup_parent:
            name = check_slice(cgroup_parent)
        else:
            name = child_slice(self.default_parent, f"pod{pod_id}")
        tr = translate(resources, self.v2)
        with self._create_lock:
            if self.manager.active_state(name) == "active":
                # the kubelet makes the pod slice before RunPodSandbox
                self._apply(name, name, tr)
                return name
            properties: list[Property] = [
                ("Description", ("s", f"pycrio pod {pod_id}")),
                ("DefaultDependencies", ("b", False)),
                *accounting_properties(self.v2),
                *tr.properties,
            ]
            self._start(name, properties)
            try:
                self._write_files(name, tr.files)
            except BaseException:
                self._stop_quietly(name)
                raise
        return name

    def update(self, path: str, resources: Resources) -> None:
        """SetUnitProperties on the unit (and the files systemd has no property for)."""
        _slice, unit = split_path(path)
        tr = translate(resources, self.v2)
        if self.manager.active_state(unit) is None:
            raise NotFound(f"systemd unit {unit} does not exist")
        self._apply(path, unit, tr)

    def container_cgroups_path(self, pod_cgroup: str, container_id: str) -> str:
        """``<pod slice>:<prefix>:<id>``: runc's and crun's systemd cgroupsPath."""
        pod = check_slice(pod_cgroup, "pod cgroup")
        return scope_path(pod, self.prefix, check_id(container_id, "container id"))

    def remove(self, path: str) -> None:
        """StopUnit once nothing runs in the unit; never kills a process.

        A unit that is gone already is fine. Processes still inside after
        ``remove_timeout`` (exiting ones get that long) are FAILED_PRECONDITION
        naming them, and the unit is left alone.
        """
        _slice, unit = split_path(path)
        cgroup = cgroup_of(path)
        deadline = time.monotonic() + self.remove_timeout
        pids = processes(self._tracking_dir(cgroup), _read)
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = processes(self._tracking_dir(cgroup), _read)
        if pids:
            raise FailedPrecondition(
                f"systemd unit {unit} still has processes {', '.join(map(str, pids[:10]))};"
                " stop them first"
            )
        try:
            if self.manager.active_state(unit) is not None:
                self.manager.stop_unit(unit)
                self.manager.wait_gone(unit)
            self.manager.reset_failed_unit(unit)
        except SystemdError as e:
            if e.name != NO_SUCH_UNIT:
                raise Internal(f"systemd: stopping {unit} failed: {e}") from e

    def stats(self, path: str) -> CgroupStats:
        """Usage from the unit's cgroup files (v2, or the v1 controllers on v1/hybrid)."""
        cgroup = cgroup_of(path)
        if self.v2:
            base = self.root + cgroup
            if not os.path.isdir(base):
                raise NotFound(f"cgroup of {path} ({base}) does not exist")
            stats = stats_v2(lambda _controller, file: _read(f"{base}/{file}"), self.hugepage_sizes)
            stats.processes = processes(base, _read)
            return stats
        if not any(os.path.isdir(self._v1_dir(c, cgroup)) for c in ("memory", "pids", "cpu")):
            raise NotFound(f"cgroup of {path} ({cgroup}) does not exist")
        unified = f"{self.root}/unified"

        def read(controller: str, file: str) -> str | None:
            # "unified": the cgroup2 side of a hybrid node, where PSI lives
            if controller == "unified":
                return _read(f"{unified}{cgroup}/{file}") if os.path.isdir(unified) else None
            return _read(f"{self._v1_dir(controller, cgroup)}/{file}")

        stats = stats_v1(read, self.hugepage_sizes)
        stats.processes = processes(self._tracking_dir(cgroup), _read)
        return stats

    def measurable(self) -> frozenset[str]:
        return self._measurable

    def place_monitor(self, pid: int, pod_cgroup: str, container_id: str) -> None:
        """Put conmon in ``<prefix>-conmon-<id>.scope`` in the pod's or the configured slice."""
        pod = check_slice(pod_cgroup, "pod cgroup")
        slice_name = pod if self.conmon_cgroup == "pod" else self.conmon_cgroup
        unit = f"{self.prefix}-conmon-{check_id(container_id, 'container id')}.scope"
        properties: list[Property] = [
            ("Description", ("s", f"pycrio monitor of container {container_id}")),
            ("Slice", ("s", slice_name)),
            ("PIDs", ("au", [pid])),
            ("DefaultDependencies", ("b", False)),
            ("CollectMode", ("s", "inactive-or-failed")),
            *accounting_properties(self.v2),
        ]
        self._start(unit, properties)

    # --- internals ----------------------------------------------------------

    def _start(self, unit: str, properties: list[Property]) -> None:
        try:
            self.manager.start_transient_unit(unit, properties)
        except SystemdError as e:
            if e.name == UNIT_EXISTS:
                raise FailedPrecondition(
                    f"systemd unit {unit} exists but is not active; stop it"
                    f" (systemctl stop {unit}) and retry"
                ) from e
            raise _error(f"starting {unit}", e) from e
        try:
            self.manager.wait_active(unit)
        except BaseException:
            self._stop_quietly(unit)
            raise

    def _apply(self, path: str, unit: str, tr: Translation) -> None:
        try:
            self.manager.set_unit_properties(unit, tr.properties)
        except SystemdError as e:
            if e.name == NO_SUCH_UNIT:
                raise NotFound(f"systemd unit {unit} does not exist") from e
            raise _error(f"setting the resources of {unit}", e) from e
        self._write_files(path, tr.files)

    def _stop_quietly(self, unit: str) -> None:
        try:
            self.manager.stop_unit(unit)
            self.manager.wait_gone(unit)
        except (CRIError, SystemdError) as e:
            log.warning("systemd: undoing %s failed: %s", unit, e)

    def _v1_dir(self, controller: str, cgroup: str) -> str:
        return f"{self.root}/{controller}{cgroup}"

    def _write_files(self, path: str, files: list[FileWrite]) -> None:
        cgroup = cgroup_of(path)
        for write in files:
            base = self.root + cgroup if self.v2 else self._v1_dir(write.controller, cgroup)
            target = f"{base}/{write.file}"
            if not os.path.exists(target):
                if write.optional:
                    log.debug("systemd: %s does not exist; %r not applied", target, write.value)
                    continue
                raise InvalidArgument(
                    f"cannot set {write.file}={write.value!r} on {path}: {target} does not exist"
                    " (the kernel lacks it, or the controller is not enabled for the unit)"
                )
            try:
                with open(target, "w", encoding="ascii") as f:
                    f.write(write.value)
            except OSError as e:
                raise InvalidArgument(
                    f"cannot set {write.file}={write.value!r} on {path}: {e.strerror}"
                ) from e

    def _probe_measurable(self) -> frozenset[str]:
        """What this node's cgroups tell beyond the basic counters (see CgroupDriver)."""
        if self.v2:
            controllers = set((_read(f"{self.root}/cgroup.controllers") or "").split())
        else:
            controllers = {
                c for c in ("cpu", "memory", "hugetlb") if os.path.isdir(self._v1_dir(c, ""))
            }
        found = set()
        if "cpu" in controllers:
            found.add(MEASURE_CPU_QUOTA)
        if "memory" in controllers:
            found.add(MEASURE_MEMORY_RESERVATION)
        if "hugetlb" in controllers and self.hugepage_sizes:
            found.add(MEASURE_HUGETLB)
        has_v2 = self.v2 or os.path.isdir(f"{self.root}/unified")
        if has_v2 and pressure_accounted():
            found.add(MEASURE_PRESSURE)
        return frozenset(found)

    def _tracking_dir(self, cgroup: str) -> str:
        """Where the unit's processes are listed: v2, hybrid's unified or v1's name=systemd."""
        if self.v2:
            return self.root + cgroup
        unified = f"{self.root}/unified"
        if os.path.isdir(unified):
            return unified + cgroup
        return f"{self.root}/systemd{cgroup}"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise Internal(f"reading {path} failed: {e.strerror}") from e


def _error(what: str, e: SystemdError) -> CRIError:
    if e.name in (
        "org.freedesktop.DBus.Error.InvalidArgs",
        "org.freedesktop.DBus.Error.PropertyReadOnly",
    ):
        return InvalidArgument(f"systemd refused {what}: {e.message}")
    if e.name == "org.freedesktop.DBus.Error.AccessDenied":
        return FailedPrecondition(f"systemd refused {what}: {e.message} (pycrio must run as root)")
    return Internal(f"systemd: {what} failed: {e}")


__all__ = ["SLICE", "SystemdCgroupDriver"]
