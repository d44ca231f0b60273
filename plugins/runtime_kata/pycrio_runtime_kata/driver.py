"""The RuntimeDriver for containerd shim v2 runtimes (Kata Containers, runc's v2 shim ...).

Why a shim and not a CLI: a VM runtime keeps a pod's containers in one VM,
owned by one long-lived shim process that speaks containerd's Task API over
ttrpc. The driver starts the shim as containerd does (:mod:`.shim_binary`),
one per pod (the shim groups a pod's containers by the sandbox-id
annotation), drives its Task service (:mod:`.task_client`), and learns about
exits from the events the shim forwards to the driver's own ttrpc Events
server (:mod:`.events`), with a blocking Task.Wait per container as a
safety net. What it must find again after a daemon restart (each
container's shim address, task id and bundle) is in its state dir
(:mod:`.records`).

The pod's sandbox container (the infra container the core creates for a
driver with ``needs_pod_sandbox_container``) is the shim task named after
the pod: Kata makes the VM for the task whose id is the sandbox id the
other containers' annotations carry.

Handler options (``[runtime.runtimes.<handler>]``, CRI-O's names where it has them):

``runtime_path``         the shim binary (default ``containerd-shim-kata-v2`` in $PATH)
``runtime_config_path``  passed to the shim in CreateTaskRequest.options
                         (runtimeoptions.v1.Options.config_path), as CRI-O does for Kata
``shim_namespace``, ``shim_debug``, ``command_timeout``, ``create_timeout``
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pycrio.errors import (
    CRIError,
    FailedPrecondition,
    Internal,
    NotFound,
    Unavailable,
)
from pycrio.kernel.interfaces import (
    Attachment,
    CgroupStats,
    CreateRequest,
    DriverContext,
    ExecProcess,
    ExecResult,
    ExitListener,
    ExitStatus,
    LeftoverProcess,
    RuntimeDriver,
    RuntimeFeatures,
    RuntimeState,
)
from pycrio.ttrpc import Client
from pycrio_runtime_kata import api, exec_io, fifo_holder, shim_binary
from pycrio_runtime_kata import stats as stats_mod
from pycrio_runtime_kata.events import TOPIC_EXIT, SharedEvents, TaskEvent
from pycrio_runtime_kata.records import ContainerRecord, RecordStore
from pycrio_runtime_kata.stdio import ContainerIO
from pycrio_runtime_kata.task_client import ShimGone, TaskClient

log = logging.getLogger("pycrio.kata.runtime")

DEFAULT_SHIM = "containerd-shim-kata-v2"
DEFAULT_NAMESPACE = "k8s.io"
DEFAULT_COMMAND_TIMEOUT = 30.0
DEFAULT_CREATE_TIMEOUT = 120.0
#: how long an exit by SIGKILL waits for the shim's TaskOOM event, which may
#: be forwarded just after the TaskExit (they travel on separate goroutines)
OOM_GRACE = 0.3
SHIM_EXIT_CODE = 255

# the containerd and CRI-O annotations that say what a container is in its pod
CONTAINER_TYPE_KEYS = ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType")
SANDBOX_ID_KEYS = ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID")

_STATUS = {
    "UNKNOWN": "unknown",
    "CREATED": "created",
    "RUNNING": "running",
    "STOPPED": "stopped",
    "PAUSED": "paused",
    "PAUSING": "paused",
}


@dataclass
class Shim:
    """One running shim and the containers of ours it serves."""

    address: str
    tasks: TaskClient
    pod_id: str
    containers: set[str] = field(default_factory=set)
    pid: int = 0
    #: set before we ask it to exit, so the dropped connection is not a crash
    shutting_down: bool = False


class ShimV2Driver(RuntimeDriver):
    """Runs a handler's containers through a containerd shim v2 binary."""

    #: A VM runtime builds the pod's sandbox (the VM) from the pod's first task,
    #: so the core must create the pod's infra container even with drop_infra_ctr.
    needs_pod_sandbox_container = True

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        opts = ctx.options
        self._runtime_path: str = opts.get("runtime_path") or ""
        self.config_path: str = opts.get("runtime_config_path") or ""
        self.namespace: str = opts.get("shim_namespace") or DEFAULT_NAMESPACE
        self.debug = bool(opts.get("shim_debug", False))
        self.command_timeout = float(opts.get("command_timeout") or DEFAULT_COMMAND_TIMEOUT)
        self.create_timeout = float(opts.get("create_timeout") or DEFAULT_CREATE_TIMEOUT)
        self.records = RecordStore(ctx.state_dir)
        self.events_path = os.path.join(ctx.run_dir, "events.sock")
        # each task's bundle as the shim sees it: <links_dir>/<task id> -> the core's bundle
        self.links_dir = os.path.join(ctx.run_dir, "bundles")
        self.io_root = os.path.join(ctx.run_dir, "io")
        self.exec_dir = os.path.join(ctx.run_dir, "exec")
        self._lock = threading.RLock()
        self._shims: dict[str, Shim] = {}  # by address
        self._records: dict[str, ContainerRecord] = {}  # by container id
        self._by_task: dict[str, str] = {}  # task id -> container id
        self._exits: dict[str, ExitStatus] = {}
        self._ooms: set[str] = set()  # task ids the shim reported OOM-killed
        self._oom_seen = threading.Condition(self._lock)
        self._waiting: set[str] = set()  # container ids with a Wait thread
        self._io: dict[str, ContainerIO] = {}  # each container's stdio and CRI log
        #: how long an exit waits for the container's last output to reach the log
        self.output_drain_timeout = 3.0
        self._subscribed = False
        self._closing = False

    # --- the shim binary ----------------------------------------------------

    @property
    def runtime_path(self) -> str:
        if not self._runtime_path:
            found = shutil.which(DEFAULT_SHIM)
            if not found:
                raise Unavailable(f"shim v2 runtime {DEFAULT_SHIM!r} not found in $PATH")
            self._runtime_path = found
        return self._runtime_path

    def ready(self) -> tuple[bool, str, str]:
        try:
            path = self.runtime_path
        except Unavailable as e:
            return False, "RuntimeNotFound", e.message
        if not os.access(path, os.X_OK):
            return False, "RuntimeNotExecutable", f"{path} is not executable"
        return True, "", ""

    @property
    def shim_address(self) -> str:
        """What shims are told is containerd's address: it only names their sockets
        (a hash of it, the namespace and the pod), so it is unique to this run dir."""
        return os.path.join(self.ctx.run_dir, "containerd.sock")

    def command(self) -> shim_binary.ShimCommand:
        """How this handler runs its shim binary."""
        return shim_binary.ShimCommand(
            runtime_path=self.runtime_path,
            namespace=self.namespace,
            address=self.shim_address,
            ttrpc_address=self.events_path,
            publish_binary=shutil.which("containerd") or "",
            debug=self.debug,
        )

    # --- events and exits ---------------------------------------------------

    def set_exit_listener(self, listener: ExitListener) -> None:
        super().set_exit_listener(listener)
        self._ensure_events()

    def _ensure_events(self) -> None:
        with self._lock:
            if self._subscribed:
                return
            SharedEvents.subscribe(self.events_path, self._on_event)
            self._subscribed = True

    def _on_event(self, event: TaskEvent) -> None:
        if event.kind == "TaskOOM":
            with self._lock:
                self._ooms.add(event.container_id)
                self._oom_seen.notify_all()
            return
        if event.kind == "TaskExit" and event.topic == TOPIC_EXIT:
            if event.exec_id and event.exec_id != event.container_id:
                return  # an exec's exit: its waiter has it
            cid = self._by_task.get(event.container_id)
            if cid is not None:
                # off the ttrpc call: the exit waits for the last output (and a
                # trailing TaskOOM), the shim's Forward must not
                threading.Thread(
                    target=self._exited,
                    args=(cid, event.exit_status, event.exited_at),
                    name=f"shim-exit-{cid[:12]}",
                    daemon=True,
                ).start()

    def _exited(
        self,
        container_id: str,
        exit_status: int,
        exited_at: int,
        *,
        reason: str = "",
        message: str = "",
    ) -> None:
        """Record one container's exit (first report wins) and push it to the core."""
        with self._lock:
            if container_id in self._exits:
                return
            record = self._records.get(container_id)
            task_id = record.task_id if record else container_id
            if exit_status == 137 and task_id not in self._ooms:
                # the OOM event may trail the exit by a moment
                self._oom_seen.wait_for(lambda: task_id in self._ooms, OOM_GRACE)
            if container_id in self._exits:
                return
            status = ExitStatus(
                exit_code=int(exit_status),
                finished_at=exited_at or time.time_ns(),
                oom_killed=task_id in self._ooms,
                reason=reason,
                message=message,
            )
            self._exits[container_id] = status
            io = self._io.get(container_id)
        log.info("container %s exited with %d", container_id[:12], status.exit_code)
        if io is not None and not io.finish(self.output_drain_timeout):
            log.info("container %s: output still open after its exit", container_id[:12])
        self.notify_exit(container_id, status)

    def exit_status(self, container_id: str) -> ExitStatus | None:
        with self._lock:
            return self._exits.get(container_id)

    def _watch(self, container_id: str) -> None:
        """Task.Wait on a thread: the safety net should an exit event be lost."""
        with self._lock:
            if container_id in self._waiting or container_id in self._exits:
                return
            self._waiting.add(container_id)
        threading.Thread(
            target=self._wait_loop,
            args=(container_id,),
            name=f"shim-wait-{container_id[:12]}",
            daemon=True,
        ).start()

    def _wait_loop(self, container_id: str) -> None:
        try:
            record = self._records.get(container_id)
            shim = self._shim_of(container_id)
            if record is None or shim is None:
                return
            try:
                code, at = shim.tasks.wait(record.task_id)
            except ShimGone:
                return  # _shim_lost reports it
            except CRIError as e:
                log.debug("wait for %s ended: %s", container_id[:12], e.message)
                return
            self._exited(container_id, code, at)
        finally:
            with self._lock:
                self._waiting.discard(container_id)

    # --- shims ----------------------------------------------------------------

    def _shim_of(self, container_id: str) -> Shim | None:
        with self._lock:
            record = self._records.get(container_id)
            if record is None or not record.address:
                return None
            return self._shims.get(record.address)

    def _connect(self, address: str, pod_id: str) -> Shim:
        """The shim at ``address``, connected once and shared by its containers."""
        with self._lock:
            shim = self._shims.get(address)
            if shim is not None and not shim.tasks.closed:
                return shim
        holder: list[Shim] = []

        def on_close(reason: str) -> None:
            if holder:
                self._shim_lost(holder[0], reason)

        try:
            client = Client.connect(address, timeout=self.command_timeout, on_close=on_close)
        except OSError as e:
            raise ShimGone(f"cannot connect to the shim at {address}: {e.strerror or e}") from e
        shim = Shim(address, TaskClient(client, self.command_timeout), pod_id)
        holder.append(shim)
        with self._lock:
            old = self._shims.get(address)
            if old is not None and not old.tasks.closed:
                client.close()
                return old
            if old is not None:
                shim.containers = old.containers
            self._shims[address] = shim
        return shim

    def _shim_lost(self, shim: Shim, reason: str) -> None:
        """The shim's connection dropped: unless we asked, it died; its containers exited."""
        if shim.shutting_down or self._closing:
            return
        with self._lock:
            if self._shims.get(shim.address) is shim:
                del self._shims[shim.address]
            gone = [c for c in shim.containers if c not in self._exits]
        if not gone:
            return
        log.warning("shim %s (pod %s) is gone: %s", shim.address, shim.pod_id[:12], reason)
        threading.Thread(
            target=self._report_dead_shim,
            args=(gone, reason, shim.address),
            name="shim-lost",
            daemon=True,
        ).start()

    def _report_dead_shim(self, container_ids: list[str], reason: str, address: str) -> None:
        # as containerd does for a dead shim: its socket goes, then each task is cleaned up
        if address.startswith("/"):
            with contextlib.suppress(OSError):
                os.unlink(address)
        for cid in container_ids:
            record = self._records.get(cid)
            code, at = SHIM_EXIT_CODE, 0
            if record is not None:
                code, at = self._cleanup_with_binary(record)
            self._exited(
                cid,
                code,
                at,
                reason="Error",
                message=f"the container's shim v2 process died ({reason}); "
                f"runtime cleanup reported exit status {code}",
            )

    def _cleanup_with_binary(self, record: ContainerRecord) -> tuple[int, int]:
        """containerd's cleanup for a dead shim: ``<shim> delete``; (exit status, time)."""
        try:
            res = shim_binary.delete(
                self.command(), record.task_id, record.bundle, self.command_timeout
            )
        except CRIError as e:
            log.warning("shim delete for %s: %s", record.container_id[:12], e.message)
            return SHIM_EXIT_CODE, 0
        return (res.exit_status or SHIM_EXIT_CODE), res.exited_at

    def _shutdown_if_empty(self, shim: Shim) -> None:
        with self._lock:
            if shim.containers:
                return
            shim.shutting_down = True
            if self._shims.get(shim.address) is shim:
                del self._shims[shim.address]
        try:
            shim.tasks.shutdown(shim.pod_id)
        except ShimGone:
            pass  # it went on its own: fine
        except CRIError as e:
            log.warning("shim %s shutdown: %s", shim.address, e.message)
        shim.tasks.close()

    # --- lifecycle ------------------------------------------------------------

    def _task_id(self, request: CreateRequest, annotations: dict[str, str]) -> tuple[str, bool]:
        ctype = next((annotations[k] for k in CONTAINER_TYPE_KEYS if k in annotations), "")
        if ctype == "sandbox":
            sandbox_id = next(
                (annotations[k] for k in SANDBOX_ID_KEYS if k in annotations), request.pod.id
            )
            return sandbox_id or request.container_id, True
        return request.container_id, False

    def _options(self) -> Any:
        if not self.config_path:
            return None
        return api.message_any(api.runtimeoptions.Options(config_path=self.config_path))

    def create(self, request: CreateRequest) -> int:
        self._ensure_events()
        cid = request.container_id
        try:
            with open(os.path.join(request.bundle, "config.json"), encoding="utf-8") as f:
                spec = json.load(f)
        except (OSError, ValueError) as e:
            raise Internal(f"cannot read the OCI config of container {cid}: {e}") from e
        annotations = dict(spec.get("annotations") or {})
        task_id, sandbox = self._task_id(request, annotations)
        record = ContainerRecord(
            container_id=cid,
            task_id=task_id,
            pod_id=request.pod.id,
            bundle=os.path.join(self.links_dir, task_id),
            real_bundle=request.bundle,
            sandbox=sandbox,
            terminal=request.tty,
            log_path=request.log_path,
        )
        with self._lock:
            if cid in self._records:
                raise FailedPrecondition(f"container {cid} already exists in the runtime")
            self._records[cid] = record
            self._by_task[task_id] = cid
        try:
            return self._create(record, request)
        except BaseException:
            self._undo_create(record)
            raise

    def _create(self, record: ContainerRecord, request: CreateRequest) -> int:
        cmd = self.command()
        self.records.save(record)  # before anything exists: a crash from here is cleaned up
        shim_binary.link_bundle(self.links_dir, record.task_id, record.real_bundle)
        log_fifo = shim_binary.ensure_log_fifo(record.real_bundle)
        shim_binary.drain_log(log_fifo, record.container_id)
        address = shim_binary.start(cmd, record.task_id, record.bundle, self.create_timeout)
        record.address = address
        self.records.save(record)
        with self._lock:
            existing = self._shims.get(address)
            new_shim = existing is None or existing.tasks.closed
        shim = self._connect(address, record.pod_id)
        with self._lock:
            shim.containers.add(record.container_id)
            if new_shim:
                record.shim_bundle = record.real_bundle
        if new_shim:
            self._place_shim(shim, record, request)
        record.shim_bundle = record.shim_bundle or self._shim_bundle_of(address)
        self.records.save(record)
        if not record.sandbox:
            # our read ends must exist before Create: the shim opens the FIFOs blocking
            io = self._open_io(record, request)
            record.stdin, record.stdout, record.stderr = (
                io.stdin_path,
                io.stdout_path,
                io.stderr_path,
            )
            outputs = [p for p in (io.stdout_path, io.stderr_path) if p]
            record.holder_pid, record.holder_start = fifo_holder.start(outputs, record.io_dir)
            self.records.save(record)
        pid = shim.tasks.create(
            record.task_id,
            record.bundle,
            terminal=record.terminal,
            stdin=record.stdin,
            stdout=record.stdout,
            stderr=record.stderr,
            options=self._options(),
            timeout=self.create_timeout,
        )
        return int(pid)

    def _io_hooks(self, container_id: str) -> dict[str, Any]:
        """What ContainerIO calls back: CloseIO (stdin_once) and ResizePty (attach)."""

        def close_io() -> None:
            record, shim = self._known(container_id)
            with contextlib.suppress(NotFound):
                shim.tasks.close_io(record.task_id, "")

        def resize(width: int, height: int) -> None:
            record, shim = self._known(container_id)
            shim.tasks.resize_pty(record.task_id, "", width, height)

        return {"close_io": close_io, "resize": resize}

    def _open_io(self, record: ContainerRecord, request: CreateRequest) -> ContainerIO:
        record.io_dir = os.path.join(self.io_root, record.container_id)
        self.records.save(record)  # the directory is known before it exists: cleanup finds it
        io = ContainerIO(
            record.io_dir,
            request.log_path,
            tty=request.tty,
            stdin=request.stdin,
            stdin_once=request.stdin_once,
            log_size_max=request.log_size_max,
            **self._io_hooks(record.container_id),
        )
        with self._lock:
            self._io[record.container_id] = io
        return io

    def _resume_io(self, record: ContainerRecord) -> None:
        """After a restart: take the container's FIFOs and log back."""
        if not record.io_dir:
            return
        with self._lock:
            if record.container_id in self._io:
                return
        try:
            io = ContainerIO.resume(record.io_dir, **self._io_hooks(record.container_id))
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("container %s: its IO cannot be resumed: %s", record.container_id[:12], e)
            return
        with self._lock:
            self._io[record.container_id] = io

    def _shim_bundle_of(self, address: str) -> str:
        with self._lock:
            for rec in self._records.values():
                if rec.address == address and rec.shim_bundle:
                    return rec.shim_bundle
        return ""

    def _place_shim(self, shim: Shim, record: ContainerRecord, request: CreateRequest) -> None:
        """Put a new pod's shim where the cgroup driver keeps monitors (CRI-O's conmon_cgroup)."""
        try:
            shim.pid, _, _ = shim.tasks.connect(record.task_id)
        except CRIError as e:
            log.warning("shim Connect for %s: %s", record.container_id[:12], e.message)
            return
        if request.place_monitor is not None and shim.pid:
            try:
                request.place_monitor(shim.pid)
            except Exception as e:  # noqa: BLE001 - placement is best effort, as for conmon
                log.warning("shim %d of pod %s not placed: %s", shim.pid, record.pod_id[:12], e)

    def _undo_create(self, record: ContainerRecord) -> None:
        """Leave nothing behind in the shim after a failed create (as CRI-O does)."""
        shim = self._shim_of(record.container_id)
        if shim is not None and not shim.tasks.closed:
            try:
                shim.tasks.delete(record.task_id)
            except CRIError:
                # the shim does not know a task whose Create failed half-way (runc
                # create ran, the console copy did not): the binary's cleanup removes it
                self._cleanup_with_binary(record)
            with self._lock:
                shim.containers.discard(record.container_id)
            self._shutdown_if_empty(shim)
        elif record.address:
            self._cleanup_with_binary(record)
        self._forget(record.container_id)

    def _forget(self, container_id: str) -> None:
        with self._lock:
            record = self._records.pop(container_id, None)
            self._exits.pop(container_id, None)
            io = self._io.pop(container_id, None)
            if record is not None and self._by_task.get(record.task_id) == container_id:
                del self._by_task[record.task_id]
                self._ooms.discard(record.task_id)
        if io is not None:
            io.close()
        # the IO directory is named by the id: a daemon killed before recording it
        # (or the holder's pid) left both, and they are found all the same
        io_dir = (record.io_dir if record is not None else "") or os.path.join(
            self.io_root, container_id
        )
        if record is not None:
            fifo_holder.stop_any(record.holder_pid, record.holder_start, io_dir)
        self.records.remove(container_id)
        if record is not None:
            if record.real_bundle:
                shim_binary.unlink_bundle(record.bundle, record.real_bundle)
            shutil.rmtree(io_dir, ignore_errors=True)

    def _recorded_address(self, record: ContainerRecord) -> str:
        """The shim's address: recorded, or (the daemon died before recording it) the
        ``address`` file the shim writes in the bundle it was started in."""
        if record.address:
            return record.address
        try:
            with open(os.path.join(record.real_bundle, "address"), encoding="utf-8") as f:
                record.address = shim_binary.parse_address(f.read())
        except (OSError, ValueError):
            return ""
        return record.address

    def _adopt(self, container_id: str) -> ContainerRecord | None:
        """The container's record, from memory or (before ``recover``, right after a
        restart) from disk, with its shim connected if it still runs."""
        with self._lock:
            record = self._records.get(container_id)
        if record is not None:
            return record
        record = self.records.load(container_id)
        if record is None:
            return None
        with self._lock:
            record = self._records.setdefault(container_id, record)
            self._by_task[record.task_id] = container_id
        self._resume_io(record)
        if self._recorded_address(record):
            try:
                shim = self._connect(record.address, record.pod_id)
            except CRIError as e:
                log.info("container %s: its shim is not reachable: %s", container_id[:12], e)
            else:
                with self._lock:
                    shim.containers.add(container_id)
        return record

    def _known(self, container_id: str) -> tuple[ContainerRecord, Shim]:
        """The record and the live shim of a container; NotFound / FailedPrecondition."""
        record = self._adopt(container_id)
        if record is None:
            raise NotFound(f"container {container_id} does not exist in the runtime")
        shim = self._shim_of(container_id)
        if shim is None or shim.tasks.closed:
            raise FailedPrecondition(
                f"container {container_id}: its shim is gone"
                + (" (the container exited)" if container_id in self._exits else "")
            )
        return record, shim

    def start(self, container_id: str) -> None:
        record, shim = self._known(container_id)
        shim.tasks.start(record.task_id)
        self._watch(container_id)

    def state(self, container_id: str) -> RuntimeState:
        record = self._adopt(container_id)
        with self._lock:
            exit_known = container_id in self._exits
        if record is None:
            raise NotFound(f"container {container_id} does not exist in the runtime")
        shim = self._shim_of(container_id)
        if shim is None or shim.tasks.closed:
            if exit_known:
                return RuntimeState(container_id, "stopped", 0, record.real_bundle)
            raise NotFound(f"container {container_id}: its shim is gone")
        resp = shim.tasks.state(record.task_id)
        status = _STATUS.get(api.task_types.Status.Name(resp.status), "unknown")
        return RuntimeState(container_id, status, int(resp.pid), record.real_bundle)

    def kill(self, container_id: str, signal: int, *, all_processes: bool = False) -> None:
        with self._lock:
            if container_id in self._exits:
                return
        try:
            record, shim = self._known(container_id)
        except FailedPrecondition:
            return  # the shim is gone: its containers are being reported exited
        try:
            shim.tasks.kill(record.task_id, "", int(signal), all_processes)
        except (NotFound, ShimGone):
            return  # the process already finished (or its shim died): not an error
        except FailedPrecondition as e:
            if "not running" in e.message or "finished" in e.message:
                return
            raise

    def delete(self, container_id: str, *, force: bool = False) -> None:
        record = self._adopt(container_id)
        if record is None:
            return
        shim = self._shim_of(container_id)
        if shim is None or shim.tasks.closed:
            if record.address:
                self._cleanup_with_binary(record)
            self._forget(container_id)
            return
        try:
            status = shim.tasks.state(record.task_id).status
        except NotFound:
            status = None
            # a Create the daemon died in: the shim may have run `runc create` and not
            # registered the task yet; the binary's cleanup removes what exists
            self._cleanup_with_binary(record)
            with contextlib.suppress(CRIError):
                shim.tasks.delete(record.task_id)
        if status is not None:
            name = api.task_types.Status.Name(status)
            if name in ("RUNNING", "PAUSED", "PAUSING"):
                if not force:
                    raise FailedPrecondition(
                        f"container {container_id} is still running; stop it first"
                    )
                self._kill_and_wait(record, shim)
            try:
                code, at = shim.tasks.delete(record.task_id)
            except NotFound:
                pass
            else:
                if name != "CREATED":
                    self._exited(container_id, code, at)
        with self._lock:
            shim.containers.discard(container_id)
        self._forget(container_id)
        self._shutdown_if_empty(shim)

    def _kill_and_wait(self, record: ContainerRecord, shim: Shim) -> None:
        with contextlib.suppress(NotFound, FailedPrecondition):
            shim.tasks.kill(record.task_id, "", 9, True)
        done = threading.Event()

        def wait() -> None:
            with contextlib.suppress(CRIError):
                shim.tasks.wait(record.task_id)
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        if not done.wait(self.command_timeout):
            raise Internal(f"container {record.container_id} did not die within the timeout")

    # --- recovery --------------------------------------------------------------

    def recover(self, container_ids: list[str]) -> dict[str, ExitStatus]:
        """Reconnect to each container's shim; report those that exited meanwhile."""
        self._ensure_events()
        exits: dict[str, ExitStatus] = {}
        records = []
        for cid in container_ids:
            with self._lock:
                known = self._records.get(cid)
            record = known or self.records.load(cid)
            if record is None:
                continue
            with self._lock:
                self._records.setdefault(cid, record)
                self._by_task[record.task_id] = cid
            self._resume_io(record)
            records.append(record)
        drained: set[str] = set()
        for record in records:
            cid = record.container_id
            if not record.address:
                continue
            try:
                shim = self._connect(record.address, record.pod_id)
            except ShimGone as e:
                exits[cid] = self._gone_at_restart(record, e)
                continue
            with self._lock:
                shim.containers.add(cid)
            if record.shim_bundle and record.shim_bundle not in drained:
                drained.add(record.shim_bundle)
                fifo = os.path.join(record.shim_bundle, shim_binary.LOG_FIFO)
                if os.path.exists(fifo):
                    shim_binary.drain_log(fifo, cid)
            try:
                resp = shim.tasks.state(record.task_id)
            except ShimGone as e:  # it went right after we connected
                exits[cid] = self._gone_at_restart(record, e)
                continue
            except CRIError as e:
                log.warning("state of %s after restart: %s", cid[:12], e.message)
                continue
            if api.task_types.Status.Name(resp.status) == "STOPPED":
                self._exited(cid, resp.exit_status, api.timestamp_ns(resp.exited_at))
                exits[cid] = self._exits[cid]
            elif api.task_types.Status.Name(resp.status) != "CREATED":
                self._watch(cid)
        return exits

    def _gone_at_restart(self, record: ContainerRecord, e: ShimGone) -> ExitStatus:
        """A container whose shim died while the daemon was down: cleaned up, exited."""
        code, at = self._cleanup_with_binary(record)
        self._exited(
            record.container_id,
            code,
            at,
            reason="Error",
            message=f"the container's shim v2 process was gone at restart ({e.message})",
        )
        with self._lock:
            return self._exits[record.container_id]

    def close(self) -> None:
        self._closing = True
        with self._lock:
            shims = list(self._shims.values())
            self._shims.clear()
            ios = list(self._io.values())
            self._io.clear()
        for io in ios:
            io.release()  # the FIFOs stay for the next daemon
        for shim in shims:
            shim.tasks.close()
        if self._subscribed:
            SharedEvents.unsubscribe(self.events_path, self._on_event)
            self._subscribed = False

    # --- IO -------------------------------------------------------------------

    def _io_of(self, container_id: str) -> ContainerIO:
        record = self._adopt(container_id)
        if record is None:
            raise NotFound(f"container {container_id} does not exist in the runtime")
        with self._lock:
            io = self._io.get(container_id)
        if io is None:
            raise FailedPrecondition(f"container {container_id} has no stdio to attach to")
        return io

    def attach(self, container_id: str) -> Attachment:
        return self._io_of(container_id).attach()

    def reopen_log(self, container_id: str) -> None:
        self._io_of(container_id).reopen_log()

    def _exec_target(self, container_id: str) -> tuple[ContainerRecord, Shim]:
        record, shim = self._known(container_id)
        with self._lock:
            if container_id in self._exits:
                raise FailedPrecondition(f"container {container_id} is not running; cannot exec")
        os.makedirs(self.exec_dir, mode=0o700, exist_ok=True)
        return record, shim

    def exec_sync(
        self, container_id: str, argv: list[str], timeout: float, *, max_output: int = 16 << 20
    ) -> ExecResult:
        record, shim = self._exec_target(container_id)
        return exec_io.exec_sync(
            shim.tasks,
            record.task_id,
            record.real_bundle,
            argv,
            timeout,
            max_output,
            fifo_dir=self.exec_dir,
        )

    def exec_start(
        self, container_id: str, argv: list[str], *, tty: bool, stdin: bool
    ) -> ExecProcess:
        record, shim = self._exec_target(container_id)
        return exec_io.ShimExecProcess(
            shim.tasks,
            record.task_id,
            record.real_bundle,
            argv,
            tty=tty,
            stdin=stdin,
            fifo_dir=self.exec_dir,
        )

    # --- resources ----------------------------------------------------------------

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        record, shim = self._known(container_id)
        shim.tasks.update(record.task_id, resources)

    def pause(self, container_id: str) -> None:
        record, shim = self._known(container_id)
        shim.tasks.pause(record.task_id)

    def resume(self, container_id: str) -> None:
        record, shim = self._known(container_id)
        shim.tasks.resume(record.task_id)

    def stats(self, container_id: str) -> CgroupStats:
        record, shim = self._known(container_id)
        return stats_mod.from_any(shim.tasks.stats(record.task_id))

    # --- offline maintenance (pycrio check, pycrio wipe) -----------------------------

    def leftover_processes(self, known_ids: Collection[str]) -> list[LeftoverProcess]:
        from pycrio_runtime_kata import leftovers  # only the offline commands need it

        return leftovers.leftover_processes(self, known_ids)

    def leftover_files(self, known_ids: Collection[str]) -> list[str]:
        from pycrio_runtime_kata import leftovers

        return leftovers.leftover_files(self, known_ids)

    def remove_leftovers(self, known_ids: Collection[str]) -> list[str]:
        from pycrio_runtime_kata import leftovers

        return leftovers.remove_leftovers(self, known_ids)

    def features(self) -> RuntimeFeatures:
        # neither Kata nor runc's shim is asked for recursive read-only mounts or
        # idmapped user namespaces through the shim API: report neither
        return RuntimeFeatures()
