"""The pycrio plugin: NRI wired into the daemon's hooks.

| NRI event | pycrio hook |
| --- | --- |
| RunPodSandbox | ``pycrio_sandbox_starting`` (the pod is built, not yet listed) |
| StopPodSandbox | ``pycrio_sandbox_event("stopping"/"removing")`` of a ready pod |
| RemovePodSandbox | ``pycrio_sandbox_event("deleted")`` |
| CreateContainer | ``pycrio_adjust_container_spec`` (adjustments go into the OCI spec) |
| PostCreateContainer, PostStartContainer | ``pycrio_container_event("created"/"started")`` |
| StartContainer | a wrapper of ``cri_start_container``, before the runtime starts it |
| UpdateContainer, PostUpdateContainer | a wrapper of ``cri_update_container_resources`` |
| UpdatePodSandbox, PostUpdatePodSandbox | a wrapper of ``cri_update_pod_sandbox_resources`` |
| StopContainer | ``pycrio_container_event("stopped")``: also when it exited by itself |
| RemoveContainer | ``pycrio_container_event("deleted")`` |
| (undo) | a wrapper of ``cri_create_container``: StopContainer and RemoveContainer when it fails |

Synchronization and updates asked for by plugins go through the CRI hooks
(List, Status, UpdateContainerResources, StopContainer), so the plugin needs
nothing of the core but the kernel's hooks.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from typing import Any

from cri_api.v1 import api_pb2 as cri

from pycrio.errors import CRIError, InvalidArgument
from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import hookimpl
from pycrio_nri import api, convert
from pycrio_nri.adaptation import Adaptation, Settings
from pycrio_nri.adjust import SpecAdjuster

log = logging.getLogger("pycrio.nri")

#: The CallContext method of CRI calls NRI makes itself (no NRI events for them).
NRI_CALL = "/pycrio.nri/Internal"
#: The core's container events and the NRI events they become.
_CONTAINER_EVENTS = {
    "created": "POST_CREATE_CONTAINER",
    "started": "POST_START_CONTAINER",
    "stopped": "STOP_CONTAINER",
    "deleted": "REMOVE_CONTAINER",
}


def _seconds(config: Any, key: str, default: float) -> float:
    """A duration of [nri]; the declared default when the loader did not fill it in."""
    try:
        return config.seconds(f"nri.{key}")
    except KeyError:
        return default


def _ctx() -> CallContext:
    return CallContext(method=NRI_CALL)


class NRIPlugin:
    def __init__(self) -> None:
        self.kernel: Any = None
        self.adaptation: Adaptation | None = None
        self._guard = threading.Lock()
        self._pods: dict[str, Any] = {}  # pod id -> the core's record
        self._containers: dict[str, tuple[Any, Any]] = {}  # id -> (record, message at create)
        self._creating = threading.local()  # (pod, container) told CreateContainer, this call

    # --- startup and shutdown ----------------------------------------------------

    @hookimpl
    def pycrio_startup(self, kernel: Any) -> None:
        self.kernel = kernel
        config = kernel.config
        table = config.data.get("nri", {})
        if not table.get("enable_nri", True):
            log.info("NRI is disabled ([nri] enable_nri = false)")
            return
        try:
            version = importlib.metadata.version("pycrio")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        settings = Settings(
            socket_path=table.get("nri_listen", Settings.socket_path),
            plugin_dir=table.get("nri_plugin_dir", Settings.plugin_dir),
            plugin_config_dir=table.get("nri_plugin_config_dir", Settings.plugin_config_dir),
            disable_connections=table.get("nri_disable_connections", False),
            registration_timeout=_seconds(config, "nri_plugin_registration_timeout", 5.0),
            request_timeout=_seconds(config, "nri_plugin_request_timeout", 2.0),
            runtime_version=version,
        )
        self.adaptation = Adaptation(settings, self._snapshot, self._update, self._evict)
        self.adaptation.start()

    @hookimpl
    def pycrio_shutdown(self, kernel: Any) -> None:
        if self.adaptation is not None:
            self.adaptation.stop()
            self.adaptation = None

    @hookimpl
    def pycrio_config_reload(self, old: Any, new: Any, changed: list[str]) -> None:
        nri = [key for key in changed if key.startswith("nri.")]
        if nri:
            log.warning("NRI settings changed (%s): they take effect at restart", ", ".join(nri))

    @hookimpl
    def pycrio_status_conditions(self, kernel: Any) -> list[cri.RuntimeCondition]:
        if self.adaptation is None:
            return []
        plugins = self.adaptation.connected()
        message = "; ".join(p.describe() for p in plugins) or "no NRI plugin is connected"
        return [cri.RuntimeCondition(type="NRIPlugins", status=True, message=message)]

    # --- pods --------------------------------------------------------------------

    @hookimpl
    def pycrio_sandbox_starting(self, sandbox: Any, ctx: CallContext) -> None:
        if self.adaptation is None:
            return
        with self._guard:
            self._pods[sandbox.id] = sandbox
        pod = convert.pod_from_record(sandbox)
        try:
            self.adaptation.notify(
                "RUN_POD_SANDBOX",
                "RunPodSandbox",
                api.RunPodSandboxRequest(pod=pod),
                refusable=True,
            )
        except CRIError:
            # the pod is undone: plugins that accepted it hear that it is gone
            self.adaptation.notify(
                "REMOVE_POD_SANDBOX", "RemovePodSandbox", api.RemovePodSandboxRequest(pod=pod)
            )
            with self._guard:
                self._pods.pop(sandbox.id, None)
            raise

    @hookimpl
    def pycrio_sandbox_event(self, event: str, sandbox: Any) -> None:
        if self.adaptation is None:
            return
        with self._guard:
            self._pods[sandbox.id] = sandbox
        if event in ("stopping", "removing") and sandbox.state == "ready":
            # a pod removed without a Stop first is still stopped for the plugins
            self.adaptation.notify(
                "STOP_POD_SANDBOX",
                "StopPodSandbox",
                api.StopPodSandboxRequest(pod=convert.pod_from_record(sandbox)),
            )
        elif event == "deleted":
            self.adaptation.notify(
                "REMOVE_POD_SANDBOX",
                "RemovePodSandbox",
                api.RemovePodSandboxRequest(pod=convert.pod_from_record(sandbox)),
            )
            with self._guard:
                self._pods.pop(sandbox.id, None)

    @hookimpl(wrapper=True)
    def cri_update_pod_sandbox_resources(self, request: Any, ctx: CallContext) -> Any:
        if self.adaptation is None or ctx.method == NRI_CALL:
            return (yield)
        pod = self._pod(request.pod_sandbox_id)
        self.adaptation.notify(
            "UPDATE_POD_SANDBOX",
            "UpdatePodSandbox",
            api.UpdatePodSandboxRequest(
                pod=pod,
                overhead_linux_resources=_nri_resources(request.overhead),
                linux_resources=_nri_resources(request.resources),
            ),
            refusable=True,
        )
        response = yield
        self.adaptation.notify(
            "POST_UPDATE_POD_SANDBOX",
            "PostUpdatePodSandbox",
            api.PostUpdatePodSandboxRequest(pod=pod),
        )
        return response

    # --- containers --------------------------------------------------------------

    @hookimpl
    def pycrio_adjust_container_spec(
        self, spec: dict[str, Any], container: Any, sandbox: Any, ctx: CallContext
    ) -> None:
        if self.adaptation is None:
            return
        with self._guard:
            self._pods[sandbox.id] = sandbox
        request = api.CreateContainerRequest(
            pod=convert.pod_from_record(sandbox),
            container=convert.container_from_spec(container, spec),
        )
        self._creating.told = (request.pod, request.container)
        self.adaptation.create_container(request, SpecAdjuster(spec))
        with self._guard:
            self._containers[container.id] = (
                container,
                convert.container_from_spec(container, spec),
            )

    @hookimpl(wrapper=True)
    def cri_create_container(self, request: Any, ctx: CallContext) -> Any:
        """A creation that fails after plugins heard of it is undone for them (as containerd).

        Plugins that set something aside for the container (CPUs, devices)
        get StopContainer and RemoveContainer to release it.
        """
        self._creating.told = None
        try:
            return (yield)
        except BaseException:
            told = self._creating.told
            if told is not None and self.adaptation is not None:
                pod, ctr = told
                self.adaptation.notify(
                    "STOP_CONTAINER",
                    "StopContainer",
                    api.StopContainerRequest(pod=pod, container=ctr),
                )
                self.adaptation.notify(
                    "REMOVE_CONTAINER",
                    "RemoveContainer",
                    api.RemoveContainerRequest(pod=pod, container=ctr),
                )
                with self._guard:
                    self._containers.pop(ctr.id, None)
            raise
        finally:
            self._creating.told = None

    @hookimpl
    def pycrio_container_event(self, event: str, container: Any, sandbox: Any) -> None:
        if self.adaptation is None or getattr(container, "infra", False):
            return
        nri_event = _CONTAINER_EVENTS.get(event)
        if nri_event is None or not self.adaptation.wants(nri_event):
            # nobody listens: no messages to build on every lifecycle step
            if event == "deleted":
                with self._guard:
                    self._containers.pop(container.id, None)
            return
        msg = self._message(container)
        pod = (
            convert.pod_from_record(sandbox)
            if sandbox is not None
            else self._pod(container.sandbox_id)
        )
        if event == "created":
            self.adaptation.notify(
                "POST_CREATE_CONTAINER",
                "PostCreateContainer",
                api.PostCreateContainerRequest(pod=pod, container=msg),
            )
        elif event == "started":
            self.adaptation.notify(
                "POST_START_CONTAINER",
                "PostStartContainer",
                api.PostStartContainerRequest(pod=pod, container=msg),
            )
        elif event == "stopped":
            self.adaptation.notify(
                "STOP_CONTAINER", "StopContainer", api.StopContainerRequest(pod=pod, container=msg)
            )
        elif event == "deleted":
            self.adaptation.notify(
                "REMOVE_CONTAINER",
                "RemoveContainer",
                api.RemoveContainerRequest(pod=pod, container=msg),
            )
            with self._guard:
                self._containers.pop(container.id, None)

    @hookimpl(wrapper=True)
    def cri_start_container(self, request: Any, ctx: CallContext) -> Any:
        if (
            self.adaptation is not None
            and ctx.method != NRI_CALL
            and self.adaptation.wants("START_CONTAINER")
        ):
            found = self._lookup(request.container_id)
            created = api.ContainerState.Value("CONTAINER_CREATED")
            if found is not None and found[1].state == created:  # else the core refuses it
                pod, msg = found
                self.adaptation.notify(
                    "START_CONTAINER",
                    "StartContainer",
                    api.StartContainerRequest(pod=pod, container=msg),
                    refusable=True,
                )
        return (yield)

    @hookimpl(wrapper=True)
    def cri_update_container_resources(self, request: Any, ctx: CallContext) -> Any:
        if self.adaptation is None or ctx.method == NRI_CALL:
            return (yield)
        found = self._lookup(request.container_id)
        if found is None:
            return (yield)
        pod, msg = found
        answers = self.adaptation.notify(
            "UPDATE_CONTAINER",
            "UpdateContainer",
            api.UpdateContainerRequest(
                pod=pod, container=msg, linux_resources=_nri_resources(request.linux)
            ),
            refusable=True,
            updates=False,
        )
        for plugin, resp in answers:
            others = []
            for u in resp.update:
                if u.container_id == msg.id:  # a change to this very update
                    request.linux.CopyFrom(convert.cri_resources(request.linux, u.linux.resources))
                else:
                    others.append(u)
            if others:
                self.adaptation.apply_updates(plugin, others)
        response = yield
        updated = self._lookup(msg.id)
        self.adaptation.notify(
            "POST_UPDATE_CONTAINER",
            "PostUpdateContainer",
            api.PostUpdateContainerRequest(pod=pod, container=updated[1] if updated else msg),
        )
        return response

    # --- what NRI needs from the core, through the CRI hooks ---------------------

    def _message(self, container: Any) -> Any:
        with self._guard:
            cached = self._containers.get(container.id)
            if cached is not None:
                self._containers[container.id] = (container, cached[1])
        if cached is not None:
            return convert.refresh_container(cached[1], container)
        return convert.container_from_record(container)

    def _lookup(self, container_id: str) -> tuple[Any, Any] | None:
        with self._guard:
            cached = self._containers.get(container_id)
        if cached is not None:
            record = cached[0]
            return self._pod(record.sandbox_id), convert.refresh_container(cached[1], record)
        try:
            status = self.kernel.hook.cri_container_status(
                request=cri.ContainerStatusRequest(container_id=container_id), ctx=_ctx()
            ).status
            found = self.kernel.hook.cri_list_containers(
                request=cri.ListContainersRequest(filter=cri.ContainerFilter(id=status.id)),
                ctx=_ctx(),
            ).containers
        except CRIError:
            return None
        if not found:
            return None
        return self._pod(found[0].pod_sandbox_id), convert.container_from_cri(found[0], status)

    def _pod(self, pod_id: str) -> Any:
        with self._guard:
            record = self._pods.get(pod_id)
        if record is not None:
            return convert.pod_from_record(record)
        try:
            pods = self.kernel.hook.cri_list_pod_sandbox(
                request=cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(id=pod_id)),
                ctx=_ctx(),
            ).items
            status = self.kernel.hook.cri_pod_sandbox_status(
                request=cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id), ctx=_ctx()
            ).status
        except CRIError:
            return api.PodSandbox(id=pod_id)
        return convert.pod_from_cri(pods[0], status) if pods else api.PodSandbox(id=pod_id)

    def _snapshot(self) -> tuple[list[Any], list[Any]]:
        """Every pod and container, for a plugin's Synchronize."""
        hook = self.kernel.hook
        pods = []
        for p in hook.cri_list_pod_sandbox(request=cri.ListPodSandboxRequest(), ctx=_ctx()).items:
            with self._guard:
                record = self._pods.get(p.id)
            if record is not None:
                pods.append(convert.pod_from_record(record))
            else:
                pods.append(self._pod(p.id))
        containers = []
        listed = hook.cri_list_containers(request=cri.ListContainersRequest(), ctx=_ctx())
        for c in listed.containers:
            found = self._lookup(c.id)
            if found is not None:
                containers.append(found[1])
        return pods, containers

    def _update(self, container_id: str, resources: Any) -> None:
        """A plugin's update of a container's resources, through UpdateContainerResources."""
        hook = self.kernel.hook
        status = hook.cri_container_status(
            request=cri.ContainerStatusRequest(container_id=container_id), ctx=_ctx()
        ).status
        linux = convert.cri_resources(status.resources.linux, resources)
        hook.cri_update_container_resources(
            request=cri.UpdateContainerResourcesRequest(container_id=container_id, linux=linux),
            ctx=_ctx(),
        )
        with self._guard:
            cached = self._containers.get(container_id)
            if cached is not None:
                convert.merge_resources_into_nri(cached[1].linux.resources, resources)

    def _evict(self, container_id: str, reason: str) -> None:
        log.warning("NRI: evicting container %s: %s", container_id, reason)
        self.kernel.hook.cri_stop_container(
            request=cri.StopContainerRequest(container_id=container_id, timeout=0), ctx=_ctx()
        )


def _unsigned(field: str, value: int) -> int:
    """NRI carries these as unsigned: a negative CRI value cannot be told to plugins.

    The wrappers run before the core checks the request, so this is where such a
    value is first met; it is the caller's mistake, not the daemon's.
    """
    if value < 0:
        raise InvalidArgument(f"{field} must not be negative, got {value}")
    return value


def _nri_resources(res: Any) -> Any:
    """CRI LinuxContainerResources (or pod resources) as NRI LinuxResources."""
    out = api.LinuxResources()
    if res is None:
        return out
    if getattr(res, "cpu_shares", 0):
        out.cpu.shares.value = _unsigned("cpu_shares", res.cpu_shares)
    if getattr(res, "cpu_quota", 0):
        out.cpu.quota.value = res.cpu_quota
    if getattr(res, "cpu_period", 0):
        out.cpu.period.value = _unsigned("cpu_period", res.cpu_period)
    if getattr(res, "cpuset_cpus", ""):
        out.cpu.cpus = res.cpuset_cpus
    if getattr(res, "cpuset_mems", ""):
        out.cpu.mems = res.cpuset_mems
    if getattr(res, "memory_limit_in_bytes", 0):
        out.memory.limit.value = res.memory_limit_in_bytes
    if getattr(res, "memory_swap_limit_in_bytes", 0):
        out.memory.swap.value = res.memory_swap_limit_in_bytes
    for h in getattr(res, "hugepage_limits", []):
        out.hugepage_limits.add(page_size=h.page_size, limit=h.limit)
    out.unified.update(dict(getattr(res, "unified", {})))
    return out
