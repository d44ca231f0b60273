"""Pod sandbox calls: Run, Stop, Remove, Status, List, Stats, UpdateResources.

RunPodSandbox records its progress before each step (namespaces, files,
cgroup, network, host ports) and undoes the steps done when one fails; a
daemon killed half-way finds the record in the ``creating`` state at the
next start and undoes it then. Stop tears the network down exactly once and
releases what only a running pod needs; Remove releases the rest.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.cri.list_cache import EncodedEntries
from pycrio.cri.selection import selected
from pycrio.errors import CRIError, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.interfaces import PodNetwork, PortMapping
from pycrio.kernel.kernel import Kernel, call_each
from pycrio.reservations import Reservations
from pycrio.sandbox import files, namespaces, pause, validate
from pycrio.sandbox.record import CREATING, NOTREADY, READY, SandboxRecord, SandboxStore

log = logging.getLogger("pycrio.sandbox")

MODES = {api_pb2.POD: "pod", api_pb2.CONTAINER: "container", api_pb2.NODE: "node"}
STATES = {READY: api_pb2.SANDBOX_READY, NOTREADY: api_pb2.SANDBOX_NOTREADY}


def reservation_name(md: api_pb2.PodSandboxMetadata) -> str:
    return f"k8s_POD_{md.name}_{md.namespace}_{md.uid}_{md.attempt}"


def pod_resources(linux: api_pb2.LinuxPodSandboxConfig) -> dict[str, Any]:
    """The pod's limits plus its overhead as an OCI linux.resources object."""
    res, over = linux.resources, linux.overhead
    cpu: dict[str, Any] = {}
    if res.cpu_shares or over.cpu_shares:
        cpu["shares"] = res.cpu_shares + over.cpu_shares
    if res.cpu_quota > 0:
        cpu["quota"] = res.cpu_quota + max(over.cpu_quota, 0)
    if res.cpu_period:
        cpu["period"] = res.cpu_period
    if res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    out: dict[str, Any] = {}
    if cpu:
        out["cpu"] = cpu
    if res.memory_limit_in_bytes > 0:
        out["memory"] = {"limit": res.memory_limit_in_bytes + max(over.memory_limit_in_bytes, 0)}
    if res.hugepage_limits:
        out["hugepageLimits"] = [
            {"pageSize": h.page_size, "limit": h.limit} for h in res.hugepage_limits
        ]
    if res.unified:
        out["unified"] = dict(res.unified)
    return out


class SandboxService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.names: Reservations[str] = Reservations("pod sandbox")
        self.store: SandboxStore | None = None
        self.containers: Any = None  # the container service, for infra containers
        self.stats: Any = None  # the stats server (pycrio.stats.server), set by core_plugins
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._list_entries = EncodedEntries(1)  # ListPodSandboxResponse.items
        config = kernel.config
        self.run_root = os.path.join(config.runroot, "pods")
        self.ns_dir = config.get("runtime.namespaces_dir") or os.path.join(config.runroot, "ns")

    # --- lifecycle -------------------------------------------------------------

    @hookimpl
    def pycrio_startup(self, kernel: Kernel) -> None:
        self.store = SandboxStore(os.path.join(kernel.config.root, "sandboxes"))
        for record in self.store.all():
            if record.state == CREATING:
                log.warning("pod %s was being created when pycrio stopped; undoing it", record.id)
                self._undo(record)
                continue
            self.names.restore(record.reservation, record.id, record.id)
            if record.state == READY and record.namespaces and not self._pinned(record):
                # the node rebooted (runroot is gone): the pod cannot be ready
                record.state = NOTREADY
                self.store.save(record, durable=False)

    @hookimpl
    def pycrio_shutdown(self, kernel: Kernel) -> None:
        """Unmount the namespaces dir when no pod pins anything in it any more."""
        if self.store is not None and not any(r.namespaces for r in self.store.all()):
            namespaces.release_private_dir(self.ns_dir)

    def _pinned(self, record: SandboxRecord) -> bool:
        return all(os.path.exists(p) for p in record.namespaces.values())

    def _lock(self, sandbox_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(sandbox_id, threading.Lock())

    def _store(self) -> SandboxStore:
        if self.store is None:
            raise FailedPrecondition("the sandbox store is not open yet")
        return self.store

    def lookup(self, id_or_prefix: str) -> SandboxRecord:
        if not id_or_prefix:
            raise InvalidArgument("pod sandbox id is empty")
        found = self._store().find(id_or_prefix)
        if not found:
            raise NotFound(f"pod sandbox {id_or_prefix!r} not found")
        if len(found) > 1:
            raise InvalidArgument(
                f"pod sandbox id prefix {id_or_prefix!r} is ambiguous: {len(found)} pods match"
            )
        return found[0]

    # --- RunPodSandbox ---------------------------------------------------------

    @hookimpl
    def cri_run_pod_sandbox(
        self, request: api_pb2.RunPodSandboxRequest, ctx: CallContext
    ) -> api_pb2.RunPodSandboxResponse:
        record = self._validate(request)
        sandbox_id = self.names.create(
            record.reservation,
            record.id,
            lambda: self._create(record, request.config, ctx),
            timeout=ctx.time_remaining(),
        )
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)

    def _validate(self, request: api_pb2.RunPodSandboxRequest) -> SandboxRecord:
        config = request.config
        validate.metadata(config)
        handler = request.runtime_handler or self.kernel.config.get("runtime.default_runtime")
        if handler not in self.kernel.config.runtimes:
            raise InvalidArgument(
                f"runtime handler {handler!r} is not configured; configured handlers: "
                + ", ".join(sorted(self.kernel.config.runtimes))
            )
        linux = config.linux
        opts = linux.security_context.namespace_options
        if opts.HasField("userns_options") and opts.userns_options.mode == api_pb2.POD:
            raise InvalidArgument("user namespaces for pods are not supported by pycrio yet")
        if opts.pid == api_pb2.TARGET:
            raise InvalidArgument("a pod cannot target another container's PID namespace")
        if opts.pid == api_pb2.POD:
            pause.find_init(self.kernel.config.get("runtime.pod_init_path"))  # before creating
        network_mode = "node" if opts.network == api_pb2.NODE else "pod"
        ipc_mode = "node" if opts.ipc == api_pb2.NODE else "pod"
        validate.hostname(config.hostname)
        validate.sysctls(dict(linux.sysctls), network_mode == "node", ipc_mode == "node")
        validate.dns(config.dns_config)
        mappings = validate.port_mappings(list(config.port_mappings))
        validate.log_directory(config.log_directory)
        validate.cgroup_parent(linux.cgroup_parent)
        if network_mode == "pod":
            self._check_network_ready()
        md = config.metadata
        return SandboxRecord(
            id=secrets.token_hex(32),
            name=md.name,
            namespace=md.namespace,
            uid=md.uid,
            attempt=md.attempt,
            reservation=reservation_name(md),
            runtime_handler=handler,
            created_at=time.time_ns(),
            labels=dict(config.labels),
            annotations=dict(config.annotations),
            hostname=config.hostname,
            log_directory=config.log_directory,
            cgroup_parent=linux.cgroup_parent,
            network_mode=network_mode,
            ipc_mode=ipc_mode,
            pid_mode=MODES.get(opts.pid, "container"),
            port_mappings=mappings,
            dns={
                "servers": list(config.dns_config.servers),
                "searches": list(config.dns_config.searches),
                "options": list(config.dns_config.options),
            },
        )

    def _create(
        self, record: SandboxRecord, config: api_pb2.PodSandboxConfig, ctx: CallContext
    ) -> str:
        store = self._store()
        record.run_dir = os.path.join(self.run_root, record.id)
        # Synced: a new record must never be found empty. Later writes replace
        # it atomically (a killed daemon cannot tear them) and are synced only
        # where they record what a machine crash leaves behind: the network
        # (CNI's IPAM keeps its leases on disk). Pins, shm, cgroups and the
        # run dir do not outlive a crash; a record a crash set back to
        # CREATING is undone at the next start, which the kubelet sees as a
        # pod gone and creates again.
        store.save(record)
        try:
            self._build(record, config)
            if self._needs_infra(record):
                self._infra_up(record, config, ctx)
            self.kernel.hook.pycrio_sandbox_starting(sandbox=record, ctx=ctx)
        except BaseException as e:
            log.warning("RunPodSandbox %s failed, undoing: %s", record.reservation, e)
            self._undo(record)
            raise
        record.state = READY
        store.save(record, durable=False)
        call_each(self.kernel, "pycrio_sandbox_event", event="created", sandbox=record)
        log.info("pod %s/%s is ready as %s", record.namespace, record.name, record.id)
        return record.id

    def _build(self, record: SandboxRecord, config: api_pb2.PodSandboxConfig) -> None:
        store = self._store()
        os.makedirs(record.run_dir, mode=0o755, exist_ok=True)
        sysctls = dict(config.linux.sysctls)
        kinds = ["uts"] if not record.host_network else []
        if not record.host_network:
            kinds.insert(0, "net")
        if record.ipc_mode == "pod":
            kinds.append("ipc")
        if kinds:
            # the pins recorded before they exist: killed half-way, the next start unpins them
            record.namespaces = namespaces.pin_paths(self.ns_dir, record.id, kinds)
            store.save(record, durable=False)
            namespaces.pin(self.ns_dir, record.id, kinds, record.hostname, sysctls)
        if record.pid_mode == "pod":
            init = pause.find_init(self.kernel.config.get("runtime.pod_init_path"))
            init_dir = pause.link(os.path.join(self.kernel.config.runroot, "pause"), init)
            # recorded first too: a holder whose pid was not saved is found by its pin
            record.namespaces.update(namespaces.pin_paths(self.ns_dir, record.id, ["pid"]))
            store.save(record, durable=False)
            _, record.pid_holder = namespaces.start_pid_holder(self.ns_dir, record.id, init_dir)
            store.save(record, durable=False)
        files.write_hostname(record.run_dir, record.hostname)
        files.write_resolv_conf(record.run_dir, config.dns_config)
        if record.ipc_mode == "pod":
            size = files.parse_size(self.kernel.config.get("runtime.shm_size"))
            # recorded before it is mounted: killed in between, the undo unmounts a
            # path that may not be mounted (harmless) rather than leak the mount
            record.shm_path = os.path.join(record.run_dir, "shm")
            store.save(record, durable=False)
            files.mount_shm(record.run_dir, size)
        if record.log_directory:
            os.makedirs(record.log_directory, mode=0o755, exist_ok=True)
        cgroup = self.kernel.cgroup_driver
        if cgroup is not None:
            record.cgroup_path = cgroup.pod_cgroup(
                record.cgroup_parent, record.id, pod_resources(config.linux)
            )
            store.save(record, durable=False)
        if not record.host_network:
            self._network_up(record)
        files.write_hosts(record.run_dir, record.hostname, record.ips)

    def _infra_up(
        self, record: SandboxRecord, config: api_pb2.PodSandboxConfig, ctx: CallContext
    ) -> None:
        """Start the pod's infra (pause) container in its pinned namespaces."""
        if self.containers is None:
            raise FailedPrecondition("infra containers need the container service")
        image_cfg = self.kernel.config.data["image"]
        pause = image_cfg["pause_image"]
        images = self.containers.images
        if images.resolve(pause) is None:
            images.puller.pull(pause, None, record.namespace)
        command = [image_cfg["pause_command"]] if image_cfg["pause_command"] else []
        container = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name="POD", attempt=record.attempt),
            image=api_pb2.ImageSpec(image=pause),
            command=command,
            labels=record.labels,
            linux=api_pb2.LinuxContainerConfig(
                security_context=api_pb2.LinuxContainerSecurityContext(
                    namespace_options=config.linux.security_context.namespace_options
                )
            ),
        )
        request = api_pb2.CreateContainerRequest(
            pod_sandbox_id=record.id, config=container, sandbox_config=config
        )
        record.infra_id = self.containers.create(record, request, ctx, infra=True)
        self._store().save(record, durable=False)
        self.containers.start(self.containers.store.get(record.infra_id))

    def _needs_infra(self, record: SandboxRecord) -> bool:
        """An infra container unless drop_infra_ctr, and always for a runtime that
        makes the pod's sandbox from it (a VM runtime)."""
        if not self.kernel.config.get("runtime.drop_infra_ctr"):
            return True
        driver = self.kernel.runtime_driver(record.runtime_handler)
        return bool(getattr(driver, "needs_pod_sandbox_container", False))

    def _infra(self, record: SandboxRecord) -> Any:
        if not record.infra_id or self.containers is None:
            return None
        return self.containers.store.get(record.infra_id)

    def _pod_network(self, record: SandboxRecord) -> PodNetwork:
        return PodNetwork(
            pod_id=record.id,
            name=record.name,
            namespace=record.namespace,
            uid=record.uid,
            netns_path=record.netns_path(),
            port_mappings=[PortMapping(**m) for m in record.port_mappings],
            annotations=record.annotations,
            dns=record.dns,
            cgroup_path=record.cgroup_path,
        )

    def _check_network_ready(self) -> None:
        driver = self.kernel.network_driver
        if driver is None:
            raise FailedPrecondition(
                f"network driver {self.kernel.config.get('network.driver')!r} is not installed;"
                " pods without hostNetwork cannot start"
            )
        ready, reason, message = driver.ready()
        if not ready:
            raise Unavailable(f"the pod network is not ready: {reason}: {message}")

    def _network_up(self, record: SandboxRecord) -> None:
        driver = self.kernel.network_driver
        assert driver is not None  # checked by _validate
        record.network_up = True  # from here on teardown is needed even if setup fails
        self._store().save(record)
        status = driver.setup(self._pod_network(record))
        record.ips = list(status.ips)
        self._store().save(record)
        mappings = [m for m in record.port_mappings if m["host_port"]]
        if mappings and not driver.handles_port_mappings():
            hostport = self.kernel.hostport_driver
            if hostport is None:
                raise FailedPrecondition(
                    "the pod maps host ports but the network does not, and no hostport"
                    " manager is installed ([network] hostport_manager)"
                )
            if not record.ips:
                raise FailedPrecondition("the pod maps host ports but got no IP address")
            record.hostports_up = True
            self._store().save(record)
            families = set()
            for ip in record.ips:  # the first address of each family (dual-stack pods)
                family = 6 if ":" in ip else 4
                if family not in families:
                    families.add(family)
                    hostport.add(record.id, ip, [PortMapping(**m) for m in mappings])

    # --- undo, stop, remove ----------------------------------------------------

    def _release_running(self, record: SandboxRecord) -> list[str]:
        """Undo what only a running pod holds; return the errors met (each step runs)."""
        errors = []
        steps: list[tuple[str, Callable[[], None]]] = []
        infra = self._infra(record)
        if infra is not None:
            steps.append(("infra container", lambda: self.containers.stop(infra, 0)))
        if record.hostports_up:
            steps.append(("host ports", lambda: self._hostports_down(record)))
        if record.network_up:
            steps.append(("network", lambda: self._network_down(record)))
        if record.shm_path:
            steps.append(("shm", lambda: self._shm_down(record)))
        if record.namespaces:
            steps.append(("namespaces", lambda: self._namespaces_down(record)))
        for what, step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 - every step must get its chance
                log.error("pod %s: releasing %s failed: %s", record.id, what, e)
                errors.append(f"{what}: {e}")
        return errors

    def _hostports_down(self, record: SandboxRecord) -> None:
        driver = self.kernel.hostport_driver
        if driver is None:
            raise FailedPrecondition("no hostport manager is installed to remove host ports")
        driver.remove(record.id)
        record.hostports_up = False
        self._store().save(record)

    def _network_down(self, record: SandboxRecord) -> None:
        driver = self.kernel.network_driver
        if driver is None:
            raise FailedPrecondition("no network driver is installed to tear the network down")
        driver.teardown(self._pod_network(record))
        record.network_up = False
        self._store().save(record)

    def _shm_down(self, record: SandboxRecord) -> None:
        files.unmount(record.shm_path)
        record.shm_path = ""
        self._store().save(record, durable=False)

    def _namespaces_down(self, record: SandboxRecord) -> None:
        pid_ns = record.namespaces.pop("pid", "")
        if pid_ns:
            namespaces.stop_pid_holder(pid_ns, record.pid_holder)
            record.pid_holder = 0
        namespaces.unpin(record.namespaces)
        record.namespaces = {}
        self._store().save(record, durable=False)

    def _remove_rest(self, record: SandboxRecord) -> list[str]:
        errors = []
        infra = self._infra(record)
        if infra is not None:
            try:
                self.containers.remove(infra)
                record.infra_id = ""
            except CRIError as e:
                errors.append(f"infra container: {e.message}")
        cgroup = self.kernel.cgroup_driver
        if record.cgroup_path and cgroup is not None:
            try:
                cgroup.remove(record.cgroup_path)
                record.cgroup_path = ""
            except CRIError as e:
                errors.append(f"cgroup: {e.message}")
        if record.run_dir:
            shutil.rmtree(record.run_dir, ignore_errors=True)
        return errors

    def _undo(self, record: SandboxRecord) -> None:
        errors = self._release_running(record) + self._remove_rest(record)
        if errors:
            record.state = NOTREADY  # keep it listed so Remove can finish the job
            self._store().save(record, durable=False)
            self.names.restore(record.reservation, record.id, record.id)
            log.error("pod %s could not be fully undone: %s", record.id, "; ".join(errors))
            return
        self._store().delete(record.id)

    @hookimpl
    def cri_stop_pod_sandbox(
        self, request: api_pb2.StopPodSandboxRequest, ctx: CallContext
    ) -> api_pb2.StopPodSandboxResponse:
        try:
            record = self.lookup(request.pod_sandbox_id)
        except NotFound:
            log.info("StopPodSandbox: pod %s is already gone", request.pod_sandbox_id)
            return api_pb2.StopPodSandboxResponse()
        with self._lock(record.id):
            call_each(self.kernel, "pycrio_sandbox_event", event="stopping", sandbox=record)
            errors = self._release_running(record)
            if errors:
                raise Unavailable(f"stopping pod {record.id} failed: " + "; ".join(errors))
            if record.state != NOTREADY:
                record.state = NOTREADY
                self._store().save(record, durable=False)
                call_each(self.kernel, "pycrio_sandbox_event", event="stopped", sandbox=record)
        return api_pb2.StopPodSandboxResponse()

    @hookimpl
    def cri_remove_pod_sandbox(
        self, request: api_pb2.RemovePodSandboxRequest, ctx: CallContext
    ) -> api_pb2.RemovePodSandboxResponse:
        try:
            record = self.lookup(request.pod_sandbox_id)
        except NotFound:
            return api_pb2.RemovePodSandboxResponse()
        with self._lock(record.id):
            call_each(self.kernel, "pycrio_sandbox_event", event="removing", sandbox=record)
            errors = self._release_running(record) + self._remove_rest(record)
            if errors:
                self._store().save(record, durable=False)
                raise Unavailable(f"removing pod {record.id} failed: " + "; ".join(errors))
            self._store().delete(record.id)
            self.names.release(record.reservation, record.id)
            call_each(self.kernel, "pycrio_sandbox_event", event="deleted", sandbox=record)
        with self._locks_guard:
            self._locks.pop(record.id, None)
        return api_pb2.RemovePodSandboxResponse()

    # --- Status and List -------------------------------------------------------

    def _metadata(self, r: SandboxRecord) -> api_pb2.PodSandboxMetadata:
        return api_pb2.PodSandboxMetadata(
            name=r.name, namespace=r.namespace, uid=r.uid, attempt=r.attempt
        )

    def _visible(self) -> list[SandboxRecord]:
        return [r for r in self._store().all() if r.state != CREATING]

    @hookimpl
    def cri_pod_sandbox_status(
        self, request: api_pb2.PodSandboxStatusRequest, ctx: CallContext
    ) -> api_pb2.PodSandboxStatusResponse:
        r = self.lookup(request.pod_sandbox_id)
        if r.state == CREATING:
            raise NotFound(f"pod sandbox {request.pod_sandbox_id!r} is still being created")
        modes = {"pod": api_pb2.POD, "node": api_pb2.NODE, "container": api_pb2.CONTAINER}
        status = api_pb2.PodSandboxStatus(
            id=r.id,
            metadata=self._metadata(r),
            state=STATES[r.state],
            created_at=r.created_at,
            labels=r.labels,
            annotations=r.annotations,
            runtime_handler=r.runtime_handler,
            linux=api_pb2.LinuxPodSandboxStatus(
                namespaces=api_pb2.Namespace(
                    options=api_pb2.NamespaceOption(
                        network=modes[r.network_mode],
                        ipc=modes[r.ipc_mode],
                        pid=modes[r.pid_mode],
                    )
                )
            ),
        )
        if r.ips and not r.host_network:
            status.network.ip = r.ips[0]
            status.network.additional_ips.extend(api_pb2.PodIP(ip=ip) for ip in r.ips[1:])
        response = api_pb2.PodSandboxStatusResponse(status=status)
        if request.verbose:
            response.info["info"] = json.dumps(asdict(r), sort_keys=True)
        return response

    @hookimpl
    def cri_list_pod_sandbox(
        self, request: api_pb2.ListPodSandboxRequest, ctx: CallContext
    ) -> api_pb2.ListPodSandboxResponse:
        f = request.filter if request.HasField("filter") else None

        def keep(r: SandboxRecord) -> bool:
            return selected(f, id=r.id, labels=r.labels, state=STATES[r.state])

        return self._list_entries.list_response(
            api_pb2.ListPodSandboxResponse,
            self._store().generation,  # before the records: a change meanwhile moves it
            self._visible(),
            self._listed_as,
            keep if f is not None else None,
        )

    def _listed_as(self, r: SandboxRecord) -> api_pb2.PodSandbox:
        return api_pb2.PodSandbox(
            id=r.id,
            metadata=self._metadata(r),
            state=STATES[r.state],
            created_at=r.created_at,
            labels=r.labels,
            annotations=r.annotations,
            runtime_handler=r.runtime_handler,
        )

    # --- stats and resources ---------------------------------------------------

    @hookimpl
    def cri_pod_sandbox_stats(
        self, request: api_pb2.PodSandboxStatsRequest, ctx: CallContext
    ) -> api_pb2.PodSandboxStatsResponse:
        r = self.lookup(request.pod_sandbox_id)
        return api_pb2.PodSandboxStatsResponse(stats=self.stats.pod_stats(r))

    @hookimpl
    def cri_list_pod_sandbox_stats(
        self, request: api_pb2.ListPodSandboxStatsRequest, ctx: CallContext
    ) -> api_pb2.ListPodSandboxStatsResponse:
        f = request.filter if request.HasField("filter") else None
        stats = []
        for r in self._visible():
            if not selected(f, id=r.id, labels=r.labels):
                continue
            stats.append(self.stats.pod_stats(r))
        if f is None:
            self.stats.forget_gone()
        return api_pb2.ListPodSandboxStatsResponse(stats=stats)

    @hookimpl
    def cri_update_pod_sandbox_resources(
        self, request: api_pb2.UpdatePodSandboxResourcesRequest, ctx: CallContext
    ) -> api_pb2.UpdatePodSandboxResourcesResponse:
        r = self.lookup(request.pod_sandbox_id)
        driver = self.kernel.cgroup_driver
        if driver is None or not r.cgroup_path:
            raise FailedPrecondition(f"pod {r.id} has no cgroup to update")
        linux = api_pb2.LinuxPodSandboxConfig(
            resources=request.resources, overhead=request.overhead
        )
        driver.update(r.cgroup_path, pod_resources(linux))
        return api_pb2.UpdatePodSandboxResourcesResponse()
