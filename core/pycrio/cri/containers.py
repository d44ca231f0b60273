"""Container calls: Create, Start, Stop, Remove, Status, List, Update, ExecSync, Stats, ReopenLog.

A container is supervised by its runtime driver, not by the daemon: the
driver pushes each exit (code, finish time, OOM) to :meth:`ContainerService.exit_reported`
the moment it sees it, and reports the exits that happened while pycrio was
down when the daemon recovers. So every record is current in memory, and
ContainerStatus and ListContainers read nothing but memory: no files, no
subprocesses, no lock a slow call holds. Creation records its progress and
undoes what it did on failure, like RunPodSandbox.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import threading
import time
from dataclasses import asdict
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.container import image_volumes, users
from pycrio.container import resources as oci_resources
from pycrio.container import spec as oci_spec
from pycrio.container.record import (
    CREATED,
    CREATING,
    EXITED,
    RUNNING,
    ContainerRecord,
    ContainerStore,
)
from pycrio.cri.list_cache import EncodedEntries
from pycrio.cri.selection import selected
from pycrio.errors import (
    CRIError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)
from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.interfaces import CreateRequest, ExitStatus, PodInfo, RuntimeDriver
from pycrio.kernel.kernel import Kernel, call_each, call_each_results
from pycrio.reservations import Reservations
from pycrio.sandbox.record import READY, SandboxRecord
from pycrio.storage.atomic import write_atomic
from pycrio.storage.container_layers import ContainerLayers

log = logging.getLogger("pycrio.container")

STATES = {
    CREATED: api_pb2.CONTAINER_CREATED,
    RUNNING: api_pb2.CONTAINER_RUNNING,
    EXITED: api_pb2.CONTAINER_EXITED,
}
PROPAGATION = {
    "rprivate": api_pb2.PROPAGATION_PRIVATE,
    "rslave": api_pb2.PROPAGATION_HOST_TO_CONTAINER,
    "rshared": api_pb2.PROPAGATION_BIDIRECTIONAL,
}
# Per stream: stdout and stderr together must fit the kubelet's 16 MiB gRPC messages.
MAX_EXEC_OUTPUT = (8 << 20) - (32 << 10)


def parse_signal(name: str) -> int:
    """An image's STOPSIGNAL ("SIGTERM", "TERM", "15") as a number; SIGTERM when unset."""
    if not name:
        return signal.SIGTERM
    if name.isdigit():
        return int(name)
    upper = name.upper()
    upper = upper if upper.startswith("SIG") else "SIG" + upper
    try:
        return signal.Signals[upper]
    except KeyError as e:
        raise InvalidArgument(f"unknown stop signal {name!r}") from e


def reservation_name(config: api_pb2.ContainerConfig, sandbox: SandboxRecord) -> str:
    md = config.metadata
    return f"k8s_{md.name}_{sandbox.name}_{sandbox.namespace}_{sandbox.uid}_{md.attempt}"


def pod_host_namespaces(sandbox: SandboxRecord) -> frozenset[str]:
    """The namespace kinds the pod shares with the host, which its containers share too."""
    kinds = {"net", "uts"} if sandbox.host_network else set()
    if sandbox.ipc_mode == "node":
        kinds.add("ipc")
    return frozenset(kinds)


class ContainerService:
    def __init__(self, kernel: Kernel, images: Any, sandboxes: Any) -> None:
        self.kernel = kernel
        self.images = images
        self.sandboxes = sandboxes
        self.names: Reservations[str] = Reservations("container")
        self.store: ContainerStore | None = None
        self.rootfs: ContainerLayers | None = None
        self.stats: Any = None  # the stats server (pycrio.stats.server), set by core_plugins
        self.host_facts: oci_spec.HostFacts | None = None
        # per container: held by the slow calls (start, stop, remove), never by status calls
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # set once the container's exit is recorded; stop waits on it
        self._exited: dict[str, threading.Event] = {}
        # makes "record the exit" and "mark started" one step each; held for
        # in-memory changes only, never across a runtime call or a file write
        self._transition = threading.Lock()
        # one writer of a record's file at a time, so the last save is the newest
        self._save_locks: dict[str, threading.Lock] = {}
        self.run_root = os.path.join(kernel.config.runroot, "containers")
        self._list_entries = EncodedEntries(1)  # ListContainersResponse.containers

    # --- lifecycle -------------------------------------------------------------

    @hookimpl
    def pycrio_startup(self, kernel: Kernel) -> None:
        self.host_facts = oci_spec.HostFacts.detect()
        self.store = ContainerStore(os.path.join(kernel.config.root, "containers"))
        layers = self.images.layers
        self.rootfs = ContainerLayers(self.images.storage_root, layers)
        for record in self.store.all():
            if record.state == CREATING:
                log.warning(
                    "container %s was being created when pycrio stopped; undoing", record.id
                )
                # Its runtime create may have begun: the record is not written
                # again just before that call (see _build), so ask the runtime
                # to delete it either way (an unknown container is no error).
                if self.kernel.runtime_driver(record.runtime_handler) is not None:
                    record.runtime_created = True
                self._undo(record)
                continue
            self.names.restore(record.reservation, record.id, record.id)
            self._reconcile(record)
        self._recover()

    def _recover(self) -> None:
        """Listen to every runtime driver's exits, then learn those missed while down."""
        live: dict[str, list[str]] = {}
        for record in self._store().all():
            if record.state in (CREATED, RUNNING) and record.runtime_created:
                live.setdefault(record.runtime_handler, []).append(record.id)
        for handler in self.kernel.runtimes:
            driver = self.kernel.runtime_driver(handler)
            if driver is None:
                continue
            driver.set_exit_listener(self.exit_reported)
            ids = live.get(handler, [])
            if not ids:
                continue
            try:
                exits = driver.recover(ids)
            except CRIError as e:
                log.error("runtime handler %r cannot recover its containers: %s", handler, e)
                continue
            for cid, status in exits.items():
                self.exit_reported(cid, status)

    def _reconcile(self, record: ContainerRecord) -> None:
        """A daemon killed right after ``runtime start`` left the record CREATED: fix it."""
        if record.state != CREATED or not record.runtime_created:
            return
        driver = self.kernel.runtime_driver(record.runtime_handler)
        if driver is None:
            return
        try:
            state = driver.state(record.id)
        except CRIError:
            return  # gone or unknown: the driver's recover() tells the rest
        if state.status in ("running", "paused", "stopped"):
            log.warning(
                "container %s was started when pycrio stopped; marking it started", record.id
            )
            record.state = RUNNING
            record.started_at = record.started_at or time.time_ns()
            self._save(record)

    def _store(self) -> ContainerStore:
        if self.store is None:
            raise FailedPrecondition("the container store is not open yet")
        return self.store

    def _lock(self, container_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(container_id, threading.Lock())

    def runtime(self, handler: str) -> RuntimeDriver:
        """The driver of a runtime handler; FAILED_PRECONDITION when it is not installed."""
        return self._runtime(handler)

    def _runtime(self, handler: str) -> RuntimeDriver:
        driver = self.kernel.runtime_driver(handler)
        if driver is None:
            slot = self.kernel.runtimes.get(handler)
            name = slot.name if slot else "?"
            raise FailedPrecondition(
                f"runtime handler {handler!r}: its driver {name!r} is not installed"
            )
        return driver

    def lookup(self, id_or_prefix: str) -> ContainerRecord:
        if not id_or_prefix:
            raise InvalidArgument("container id is empty")
        found = [r for r in self._store().find(id_or_prefix) if r.state != CREATING]
        if not found:
            raise NotFound(f"container {id_or_prefix!r} not found")
        if len(found) > 1:
            raise InvalidArgument(
                f"container id prefix {id_or_prefix!r} is ambiguous: {len(found)} containers match"
            )
        return found[0]

    def _exit_event(self, container_id: str) -> threading.Event:
        with self._guard:
            return self._exited.setdefault(container_id, threading.Event())

    def _save_lock(self, container_id: str) -> threading.Lock:
        with self._guard:
            return self._save_locks.setdefault(container_id, threading.Lock())

    def _save(
        self, record: ContainerRecord, *, durable: bool = True, unless_removed: bool = False
    ) -> None:
        """Write the record, one writer at a time; ``durable=False`` for what the
        runtime driver reports again after a restart (started, exited).

        ``unless_removed``: skip a record RemoveContainer deleted meanwhile, for
        a writer that does not hold the container's lock (an exit report).
        """
        with self._save_lock(record.id):
            if unless_removed and self._store().get(record.id) is not record:
                return
            self._store().save(record, durable=durable)

    def exit_reported(self, container_id: str, status: ExitStatus) -> None:
        """The runtime driver's exit listener: record the exit, wake stop, publish it.

        Called from a driver's thread; takes no lock that a slow call holds,
        so one busy container never delays another's exit.
        """
        store = self.store
        record = store.get(container_id) if store is not None else None
        if record is None or not record.runtime_created:
            return  # unknown, or being created: a failed create cleans up after itself
        with self._transition:
            if record.state not in (CREATED, RUNNING):
                return  # already recorded (a second report of the same exit)
            record.exit_code = status.exit_code
            record.finished_at = status.finished_at or time.time_ns()
            if status.reason:
                record.reason = status.reason
            elif status.oom_killed:
                record.reason = "OOMKilled"
            else:
                record.reason = "Completed" if status.exit_code == 0 else "Error"
            if status.message:
                record.message = status.message
            record.state = EXITED  # last: a reader seeing EXITED sees the rest
            store.touch()  # the write comes after StopContainer returns: lists must not wait
        # Told first (events, NRI), so that whatever StopContainer's caller does
        # next (StopPodSandbox, RemoveContainer) comes after it for them too.
        call_each(
            self.kernel,
            "pycrio_container_event",
            event="stopped",
            container=record,
            sandbox=self.sandboxes.store.get(record.sandbox_id),
        )
        # StopContainer goes on before the write: the exit is recorded in memory,
        # and recover() reports it again if the daemon dies before the file has it.
        self._exit_event(container_id).set()
        self._save(record, durable=False, unless_removed=True)

    # --- CreateContainer -------------------------------------------------------

    @hookimpl
    def cri_create_container(
        self, request: api_pb2.CreateContainerRequest, ctx: CallContext
    ) -> api_pb2.CreateContainerResponse:
        sandbox = self.sandboxes.lookup(request.pod_sandbox_id)
        if sandbox.state != READY:
            raise FailedPrecondition(f"pod sandbox {sandbox.id} is not ready")
        container_id = self.create(sandbox, request, ctx)
        return api_pb2.CreateContainerResponse(container_id=container_id)

    def create(
        self,
        sandbox: SandboxRecord,
        request: api_pb2.CreateContainerRequest,
        ctx: CallContext,
        infra: bool = False,
    ) -> str:
        """Create a container in ``sandbox``; also used for the pod's infra container."""
        config = request.config
        if not config.metadata.name:
            raise InvalidArgument("ContainerConfig.metadata.name is empty")
        if not config.image.image:
            raise InvalidArgument("ContainerConfig.image.image is empty")
        users.check_group_has_user(config.linux.security_context)
        image = self.images.resolve(config.image.image)
        if image is None:
            raise NotFound(f"image {config.image.image!r} is not present; pull it first")
        volumes = image_volumes.resolve(config.mounts, self.images.resolve)
        self._runtime(sandbox.runtime_handler)
        record = ContainerRecord(
            id=secrets.token_hex(32),
            name=config.metadata.name,
            attempt=config.metadata.attempt,
            sandbox_id=sandbox.id,
            reservation=reservation_name(config, sandbox),
            image=config.image.image,
            image_id=image.id,
            image_ref=image.repo_digests[0] if image.repo_digests else image.id,
            runtime_handler=sandbox.runtime_handler,
            created_at=time.time_ns(),
            labels=dict(config.labels),
            annotations=dict(config.annotations),
            tty=config.tty,
            stdin=config.stdin,
            stdin_once=config.stdin_once,
            infra=infra,
            image_volumes=[asdict(v) for v in volumes],
        )
        record.log_path = self._log_path(sandbox, config, record.id)
        return self.names.create(
            record.reservation,
            record.id,
            lambda: self._create(record, request, sandbox, image, ctx),
            timeout=ctx.time_remaining(),
        )

    def _log_path(
        self, sandbox: SandboxRecord, config: api_pb2.ContainerConfig, container_id: str
    ) -> str:
        if config.log_path:
            if os.path.isabs(config.log_path) or ".." in config.log_path.split("/"):
                raise InvalidArgument(
                    f"log_path {config.log_path!r} must be relative to the pod's log directory"
                )
            if not sandbox.log_directory:
                raise InvalidArgument("log_path is set but the pod has no log_directory")
            return os.path.join(sandbox.log_directory, config.log_path)
        base = sandbox.log_directory or self.kernel.config.get("log_dir")
        return os.path.join(base, f"{container_id}.log")

    def _create(
        self,
        record: ContainerRecord,
        request: api_pb2.CreateContainerRequest,
        sandbox: SandboxRecord,
        image: Any,
        ctx: CallContext,
    ) -> str:
        store = self._store()
        record.state_dir = os.path.join(self.run_root, record.id)
        record.bundle = os.path.join(record.state_dir, "bundle")
        # rootfs_created before anything is made: undoing a missing rootfs is a no-op.
        # Only this first write is synced (a new file must never be found empty):
        # later ones replace it atomically, which a killed daemon cannot tear, and
        # a machine crash that loses one also took the container with it.
        record.rootfs_created = True
        # Known before anything is made, so an undo after a crash removes it too.
        cgroup = self.kernel.cgroup_driver
        if cgroup is not None and sandbox.cgroup_path:
            record.cgroups_path = cgroup.container_cgroups_path(sandbox.cgroup_path, record.id)
        store.save(record)
        try:
            self._build(record, request, sandbox, image, ctx)
        except BaseException as e:
            log.warning("CreateContainer %s failed, undoing: %s", record.reservation, e)
            self._undo(record)
            raise
        record.state = CREATED
        self._save(record, durable=False)
        call_each(
            self.kernel,
            "pycrio_container_event",
            event="created",
            container=record,
            sandbox=sandbox,
        )
        return record.id

    def _build(
        self,
        record: ContainerRecord,
        request: api_pb2.CreateContainerRequest,
        sandbox: SandboxRecord,
        image: Any,
        ctx: CallContext,
    ) -> None:
        assert self.rootfs is not None
        os.makedirs(record.bundle, mode=0o700, exist_ok=True)
        record.rootfs = self.rootfs.create(record.id, image.layers)
        image_config = self.images.image_config(image)
        handler_table = self.kernel.config.runtimes[sandbox.runtime_handler]
        volume_sources = self._mount_image_volumes(record)
        spec = oci_spec.build_spec(
            oci_spec.SpecInputs(
                config=request.config,
                sandbox_config=request.sandbox_config,
                container_id=record.id,
                image_config=image_config,
                rootfs=record.rootfs,
                sandbox_id=sandbox.id,
                sandbox_name=sandbox.reservation,
                image_name=record.image,
                image_id=image.id,
                namespace_paths=dict(sandbox.namespaces),
                pod_host_namespaces=pod_host_namespaces(sandbox),
                image_volume_sources=volume_sources,
                hostname_path=os.path.join(sandbox.run_dir, "hostname"),
                hosts_path=os.path.join(sandbox.run_dir, "hosts"),
                resolv_conf_path=os.path.join(sandbox.run_dir, "resolv.conf"),
                shm_path=sandbox.shm_path,
                cgroups_path=record.cgroups_path,
                allowed_annotations=tuple(handler_table["allowed_annotations"]),
                privileged_without_host_devices=bool(
                    handler_table.get("privileged_without_host_devices")
                ),
                infra=record.infra,
                log_path=record.log_path,
                host=self.host_facts,
            )
        )
        record.stop_signal = image_config.stop_signal or ""
        record.mounts = [
            {
                "container_path": m.container_path,
                "host_path": m.host_path,
                "readonly": m.readonly,
                "propagation": m.propagation,
            }
            for m in request.config.mounts
            if not image_volumes.is_image_mount(m)
        ]
        for impl_failure in self._adjust(spec, record, sandbox, ctx):
            raise impl_failure
        record.resources = spec.get("linux", {}).get("resources", {})
        proc_user = spec["process"]["user"]
        record.user = {
            "uid": proc_user.get("uid", 0),
            "gid": proc_user.get("gid", 0),
            "supplemental_groups": proc_user.get("additionalGids", []),
        }
        # not synced: the bundle is under the (volatile) runroot and is read at create
        write_atomic(
            os.path.join(record.bundle, "config.json"), json.dumps(spec).encode(), sync=False
        )
        os.makedirs(os.path.dirname(record.log_path), mode=0o755, exist_ok=True)
        # Not saved here: a record left CREATING by a crash makes the next
        # start ask the runtime to delete the container, created or not.
        record.runtime_created = True
        runtime = self._runtime(record.runtime_handler)
        record.pid = runtime.create(
            CreateRequest(
                container_id=record.id,
                bundle=record.bundle,
                log_path=record.log_path,
                pod=PodInfo(
                    id=sandbox.id,
                    name=sandbox.name,
                    namespace=sandbox.namespace,
                    uid=sandbox.uid,
                    cgroup_parent=self._pod_cgroup(sandbox),
                    annotations=dict(sandbox.annotations),
                ),
                tty=record.tty,
                stdin=record.stdin,
                stdin_once=record.stdin_once,
                log_size_max=self.kernel.config.get("runtime.log_size_max"),
                place_monitor=self._monitor_placer(sandbox, record.id),
            )
        )

    def _mount_image_volumes(self, record: ContainerRecord) -> dict[int, str]:
        """Mount each image volume's image read-only; mounts index -> host path to bind."""
        assert self.rootfs is not None
        sources = {}
        for entry in record.image_volumes:
            volume = image_volumes.ImageVolume.from_record(entry)
            root = self.rootfs.mount_image(record.id, volume.index, list(volume.layers))
            entry["source"] = sources[volume.index] = image_volumes.source(volume, root)
        # No write here: the record as CREATED has the sources, and an undo
        # after a crash finds the mounts under the container's layer anyway.
        return sources

    def _pod_cgroup(self, sandbox: SandboxRecord) -> str:
        """The pod's cgroup as its cgroup driver made it; "" without one."""
        return sandbox.cgroup_path if self.kernel.cgroup_driver is not None else ""

    def _monitor_placer(self, sandbox: SandboxRecord, container_id: str) -> Any:
        """The cgroup driver's placement of this container's monitor, if the pod has a cgroup.

        As CRI-O's conmon_cgroup = "pod": the monitor counts against its pod.
        """
        driver = self.kernel.cgroup_driver
        pod_cgroup = self._pod_cgroup(sandbox)
        if driver is None or not pod_cgroup:
            return None
        return lambda pid: driver.place_monitor(pid, pod_cgroup, container_id)

    def _adjust(
        self,
        spec: dict[str, Any],
        record: ContainerRecord,
        sandbox: SandboxRecord,
        ctx: CallContext,
    ) -> list[CRIError]:
        """Let plugins (OCI hooks, NRI) change the spec; their CRI errors fail the create.

        An infra container's spec goes to the sandbox-spec hook instead.
        """
        results = call_each_results(
            self.kernel,
            "pycrio_adjust_sandbox_spec" if record.infra else "pycrio_adjust_container_spec",
            expected=(CRIError,),
            spec=spec,
            container=record,
            sandbox=sandbox,
            ctx=ctx,
        )
        # A plugin that could not adjust the spec fails the create: a container
        # without its hooks or NRI adjustments is not the one that was asked for.
        return [
            f.error if isinstance(f.error, CRIError) else Internal(f.message)
            for f in results.failures
        ]

    # --- undo, stop, remove ----------------------------------------------------

    def _undo(self, record: ContainerRecord) -> None:
        errors = self._release(record)
        if errors:
            record.state = EXITED
            record.reason = "Error"
            record.message = "creation failed and could not be fully undone"
            self._save(record)
            log.error("container %s could not be fully undone: %s", record.id, "; ".join(errors))
            return
        self._store().delete(record.id)

    def _release(self, record: ContainerRecord) -> list[str]:
        errors = []
        if record.runtime_created:
            try:
                driver = self._runtime(record.runtime_handler)
                driver.delete(record.id, force=True)
                record.runtime_created = False
            except CRIError as e:
                errors.append(f"runtime: {e.message}")
        if record.rootfs_created and self.rootfs is not None:
            try:
                self.rootfs.remove(record.id)
                record.rootfs_created = False
            except CRIError as e:
                errors.append(f"rootfs: {e.message}")
        if record.cgroups_path and self.kernel.cgroup_driver is not None:
            try:
                self.kernel.cgroup_driver.remove(record.cgroups_path)
            except CRIError as e:
                errors.append(f"cgroup: {e.message}")
        if record.state_dir:
            shutil.rmtree(record.state_dir, ignore_errors=True)
        return errors

    @hookimpl
    def cri_start_container(
        self, request: api_pb2.StartContainerRequest, ctx: CallContext
    ) -> api_pb2.StartContainerResponse:
        self.start(self.lookup(request.container_id))
        return api_pb2.StartContainerResponse()

    def start(self, record: ContainerRecord) -> None:
        with self._lock(record.id):
            if record.state != CREATED:
                raise FailedPrecondition(
                    f"container {record.id} is {record.state}, only a created container can start"
                )
            # started_at first: an exit reported during start must find it set
            record.started_at = time.time_ns()
            try:
                self._runtime(record.runtime_handler).start(record.id)
            except BaseException:
                record.started_at = 0
                raise
            with self._transition:
                if record.state == CREATED:
                    record.state = RUNNING
            self._save(record, durable=False)  # _reconcile asks the runtime after a crash
        call_each(
            self.kernel,
            "pycrio_container_event",
            event="started",
            container=record,
            sandbox=self.sandboxes.store.get(record.sandbox_id),
        )

    def stop(self, record: ContainerRecord, timeout: float) -> None:
        """Stop signal, then SIGKILL once ``timeout`` seconds have passed."""
        if record.state not in (CREATED, RUNNING):
            return
        runtime = self._runtime(record.runtime_handler)
        if record.state == RUNNING and timeout > 0:
            runtime.kill(record.id, parse_signal(record.stop_signal))
            if self._wait_exit(record, timeout):
                return
        runtime.kill(record.id, signal.SIGKILL, all_processes=True)
        if not self._wait_exit(record, 10):
            raise DeadlineExceeded(f"container {record.id} did not exit after SIGKILL")

    def _wait_exit(self, record: ContainerRecord, timeout: float) -> bool:
        """Wait for the exit the driver pushes; ask the driver once if none came."""
        if self._exit_event(record.id).wait(timeout) or record.state == EXITED:
            return True
        status = self._runtime(record.runtime_handler).exit_status(record.id)
        if status is not None:
            log.warning("container %s: its exit was not reported; the driver had it", record.id)
            self.exit_reported(record.id, status)
        return record.state == EXITED

    @hookimpl
    def cri_stop_container(
        self, request: api_pb2.StopContainerRequest, ctx: CallContext
    ) -> api_pb2.StopContainerResponse:
        try:
            record = self.lookup(request.container_id)
        except NotFound:
            return api_pb2.StopContainerResponse()
        with self._lock(record.id):
            self.stop(record, max(request.timeout, 0))
        return api_pb2.StopContainerResponse()

    def remove(self, record: ContainerRecord) -> None:
        with self._lock(record.id):
            self.stop(record, 0)
            errors = self._release(record)
            if errors:
                self._save(record)
                raise Internal(f"removing container {record.id} failed: " + "; ".join(errors))
            with self._save_lock(record.id):  # an exit report's write cannot bring it back
                self._store().delete(record.id)
            self.names.release(record.reservation, record.id)
        with self._guard:
            self._locks.pop(record.id, None)
            self._exited.pop(record.id, None)
            self._save_locks.pop(record.id, None)
        call_each(
            self.kernel,
            "pycrio_container_event",
            event="deleted",
            container=record,
            sandbox=self.sandboxes.store.get(record.sandbox_id),
        )

    @hookimpl
    def cri_remove_container(
        self, request: api_pb2.RemoveContainerRequest, ctx: CallContext
    ) -> api_pb2.RemoveContainerResponse:
        try:
            record = self.lookup(request.container_id)
        except NotFound:
            return api_pb2.RemoveContainerResponse()
        self.remove(record)
        return api_pb2.RemoveContainerResponse()

    # --- pods and images -------------------------------------------------------

    def of_sandbox(self, sandbox_id: str) -> list[ContainerRecord]:
        return [
            r for r in self._store().all() if r.sandbox_id == sandbox_id and r.state != CREATING
        ]

    @hookimpl
    def pycrio_sandbox_event(self, event: str, sandbox: SandboxRecord) -> None:
        if event == "stopping":
            for record in self.of_sandbox(sandbox.id):
                with self._lock(record.id):
                    self.stop(record, 0)
        elif event == "removing":
            for record in self.of_sandbox(sandbox.id):
                self.remove(record)

    @hookimpl
    def pycrio_image_in_use(self, image_id: str) -> list[str]:
        if self.store is None:
            return []
        return [
            f"{r.name} ({r.id[:12]})"
            for r in self.store.all()
            if r.image_id == image_id or any(v["image_id"] == image_id for v in r.image_volumes)
        ]

    # --- Status and List -------------------------------------------------------

    def _metadata(self, r: ContainerRecord) -> api_pb2.ContainerMetadata:
        return api_pb2.ContainerMetadata(name=r.name, attempt=r.attempt)

    @hookimpl
    def cri_container_status(
        self, request: api_pb2.ContainerStatusRequest, ctx: CallContext
    ) -> api_pb2.ContainerStatusResponse:
        r = self.lookup(request.container_id)
        status = container_status(r)
        response = api_pb2.ContainerStatusResponse(status=status)
        if request.verbose:
            response.info["info"] = json.dumps(asdict(r), sort_keys=True)
        return response

    def _listed(self) -> list[ContainerRecord]:
        """What the kubelet may see: complete containers, not the pods' infra containers."""
        return [r for r in self._store().all() if r.state != CREATING and not r.infra]

    @hookimpl
    def cri_list_containers(
        self, request: api_pb2.ListContainersRequest, ctx: CallContext
    ) -> api_pb2.ListContainersResponse:
        f = request.filter if request.HasField("filter") else None

        def keep(r: ContainerRecord) -> bool:
            return selected(f, id=r.id, labels=r.labels, state=STATES[r.state], pod=r.sandbox_id)

        return self._list_entries.list_response(
            api_pb2.ListContainersResponse,
            self._store().generation,  # before the records: a change meanwhile moves it
            self._listed(),
            self._listed_as,
            keep if f is not None else None,
        )

    def _listed_as(self, r: ContainerRecord) -> api_pb2.Container:
        return api_pb2.Container(
            id=r.id,
            pod_sandbox_id=r.sandbox_id,
            metadata=self._metadata(r),
            image=api_pb2.ImageSpec(image=r.image),
            image_ref=r.image_ref,
            image_id=r.image_id,
            state=STATES[r.state],
            created_at=r.created_at,
            labels=r.labels,
            annotations=r.annotations,
        )

    # --- Update, Exec, Stats, Logs ---------------------------------------------

    @hookimpl
    def cri_update_container_resources(
        self, request: api_pb2.UpdateContainerResourcesRequest, ctx: CallContext
    ) -> api_pb2.UpdateContainerResourcesResponse:
        r = self.lookup(request.container_id)
        if r.state not in (CREATED, RUNNING):
            raise FailedPrecondition(f"container {r.id} is not running")
        host = self.host_facts
        resources = oci_resources.build(request.linux, host.cgroup_v2, host.swap_accounting)
        self._runtime(r.runtime_handler).update(r.id, resources)
        r.resources = resources
        self._save(r)
        return api_pb2.UpdateContainerResourcesResponse()

    @hookimpl
    def cri_exec_sync(
        self, request: api_pb2.ExecSyncRequest, ctx: CallContext
    ) -> api_pb2.ExecSyncResponse:
        r = self.lookup(request.container_id)
        if not request.cmd:
            raise InvalidArgument("ExecSync cmd is empty")
        if r.state != RUNNING:
            raise FailedPrecondition(f"container {r.id} is not running")
        timeout = float(request.timeout)
        remaining = ctx.time_remaining()
        if remaining is not None and (timeout == 0 or remaining < timeout):
            timeout = remaining
        result = self._runtime(r.runtime_handler).exec_sync(
            r.id, list(request.cmd), timeout, max_output=MAX_EXEC_OUTPUT
        )
        if result.timed_out:
            raise DeadlineExceeded(
                f"command {list(request.cmd)!r} in container {r.id} timed out after {timeout:g}s"
            )
        return api_pb2.ExecSyncResponse(
            stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code
        )

    @hookimpl
    def cri_container_stats(
        self, request: api_pb2.ContainerStatsRequest, ctx: CallContext
    ) -> api_pb2.ContainerStatsResponse:
        record = self.lookup(request.container_id)
        return api_pb2.ContainerStatsResponse(stats=self.stats.container_stats(record))

    @hookimpl
    def cri_list_container_stats(
        self, request: api_pb2.ListContainerStatsRequest, ctx: CallContext
    ) -> api_pb2.ListContainerStatsResponse:
        f = request.filter if request.HasField("filter") else None
        out = []
        for r in self._listed():
            if not selected(f, id=r.id, labels=r.labels, pod=r.sandbox_id):
                continue
            out.append(self.stats.container_stats(r))
        return api_pb2.ListContainerStatsResponse(stats=out)

    @hookimpl
    def cri_reopen_container_log(
        self, request: api_pb2.ReopenContainerLogRequest, ctx: CallContext
    ) -> api_pb2.ReopenContainerLogResponse:
        r = self.lookup(request.container_id)
        if r.state != RUNNING:
            raise FailedPrecondition(f"container {r.id} is not running; its log is closed")
        self._runtime(r.runtime_handler).reopen_log(r.id)
        return api_pb2.ReopenContainerLogResponse()


def container_status(r: ContainerRecord) -> api_pb2.ContainerStatus:
    """The CRI status of a container record: for ContainerStatus and for events."""
    status = api_pb2.ContainerStatus(
        id=r.id,
        metadata=api_pb2.ContainerMetadata(name=r.name, attempt=r.attempt),
        state=STATES[r.state],
        created_at=r.created_at,
        started_at=r.started_at,
        finished_at=r.finished_at,
        exit_code=r.exit_code,
        image=api_pb2.ImageSpec(image=r.image),
        image_ref=r.image_ref,
        image_id=r.image_id,
        reason=r.reason,
        message=r.message,
        labels=r.labels,
        annotations=r.annotations,
        log_path=r.log_path,
        mounts=[
            api_pb2.Mount(
                container_path=m["container_path"],
                host_path=m["host_path"],
                readonly=m["readonly"],
                propagation=m["propagation"],
            )
            for m in r.mounts
        ]
        + [image_volumes.to_cri(v) for v in r.image_volumes],
    )
    linux_user = status.user.linux
    linux_user.uid = r.user.get("uid", 0)
    linux_user.gid = r.user.get("gid", 0)
    linux_user.supplemental_groups.extend(r.user.get("supplemental_groups", []))
    _resources_to_cri(r.resources, status.resources.linux)
    return status


def _resources_to_cri(resources: dict[str, Any], out: api_pb2.LinuxContainerResources) -> None:
    cpu = resources.get("cpu", {})
    memory = resources.get("memory", {})
    out.cpu_shares = cpu.get("shares", 0)
    out.cpu_quota = cpu.get("quota", 0)
    out.cpu_period = cpu.get("period", 0)
    out.cpuset_cpus = cpu.get("cpus", "")
    out.cpuset_mems = cpu.get("mems", "")
    out.memory_limit_in_bytes = memory.get("limit", 0)
    for key, value in resources.get("unified", {}).items():
        out.unified[key] = value
