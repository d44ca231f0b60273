"""Hook specifications: the contract between the kernel and every plugin.

There is one hook per runtime.v1 RPC, named ``cri_<rpc in snake case>`` and
called as ``hook(request=..., ctx=...)``. They are ``firstresult`` hooks: the
first implementation that returns something other than None answers the call,
so the core registers its implementations as the default plugin, a plugin can
replace one by registering ``tryfirst=True``, and a ``wrapper=True`` hook
implementation can observe or change any call (tracing, metrics, policy, NRI)
without the core knowing about it. When no implementation answers, the server
replies UNIMPLEMENTED naming the call.

The ``pycrio_*`` hooks are extension points with no CRI call behind them.
Arguments are passed by keyword; an implementation may accept any subset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from cri_api.v1 import api_pb2

    from pycrio.config import Config
    from pycrio.kernel.context import CallContext
    from pycrio.kernel.kernel import Kernel

PROJECT = "pycrio"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# The gRPC method each CRI hook answers: hook name -> (service, method).
CRI_HOOKS: dict[str, tuple[str, str]] = {}

#: The CRI calls the core does not answer (so the kubelet gets UNIMPLEMENTED unless
#: a plugin does), with the reason. docs/kubelet.md lists them; a test keeps this,
#: the core's hook implementations and the docs in agreement.
UNIMPLEMENTED: dict[str, str] = {
    "CheckpointContainer": (
        "checkpointing containers with CRIU (the kubelet's ContainerCheckpoint feature)"
        " is not implemented"
    ),
}


def unimplemented_message(method: str, version: str) -> str:
    """The UNIMPLEMENTED message of a call nothing answered, with the reason when known."""
    reason = UNIMPLEMENTED.get(method)
    return f"{method} is not implemented by pycrio {version}" + (f": {reason}" if reason else "")


def _cri(service: str, method: str):
    def register(fn):
        CRI_HOOKS[fn.__name__] = (service, method)
        return hookspec(firstresult=True)(fn)

    return register


class CRISpecs:
    """One hook per runtime.v1 RPC of RuntimeService and ImageService."""

    @_cri("RuntimeService", "Version")
    def cri_version(
        self, request: api_pb2.VersionRequest, ctx: CallContext
    ) -> api_pb2.VersionResponse | None:
        """Name and version of the runtime; the kubelet's first call."""

    @_cri("RuntimeService", "RunPodSandbox")
    def cri_run_pod_sandbox(
        self, request: api_pb2.RunPodSandboxRequest, ctx: CallContext
    ) -> api_pb2.RunPodSandboxResponse | None:
        """Create and start a pod sandbox (namespaces, network, cgroup)."""

    @_cri("RuntimeService", "StopPodSandbox")
    def cri_stop_pod_sandbox(
        self, request: api_pb2.StopPodSandboxRequest, ctx: CallContext
    ) -> api_pb2.StopPodSandboxResponse | None:
        """Stop a pod's containers and tear its network down; idempotent."""

    @_cri("RuntimeService", "RemovePodSandbox")
    def cri_remove_pod_sandbox(
        self, request: api_pb2.RemovePodSandboxRequest, ctx: CallContext
    ) -> api_pb2.RemovePodSandboxResponse | None:
        """Remove a pod and all of its containers; idempotent."""

    @_cri("RuntimeService", "PodSandboxStatus")
    def cri_pod_sandbox_status(
        self, request: api_pb2.PodSandboxStatusRequest, ctx: CallContext
    ) -> api_pb2.PodSandboxStatusResponse | None:
        """State, network and (verbose) details of one pod."""

    @_cri("RuntimeService", "ListPodSandbox")
    def cri_list_pod_sandbox(
        self, request: api_pb2.ListPodSandboxRequest, ctx: CallContext
    ) -> api_pb2.ListPodSandboxResponse | None:
        """Pods matching a filter; served from memory."""

    @_cri("RuntimeService", "CreateContainer")
    def cri_create_container(
        self, request: api_pb2.CreateContainerRequest, ctx: CallContext
    ) -> api_pb2.CreateContainerResponse | None:
        """Create a container in a pod from its CRI config and image."""

    @_cri("RuntimeService", "StartContainer")
    def cri_start_container(
        self, request: api_pb2.StartContainerRequest, ctx: CallContext
    ) -> api_pb2.StartContainerResponse | None:
        """Start a created container."""

    @_cri("RuntimeService", "StopContainer")
    def cri_stop_container(
        self, request: api_pb2.StopContainerRequest, ctx: CallContext
    ) -> api_pb2.StopContainerResponse | None:
        """Signal a container and kill it at the timeout; idempotent."""

    @_cri("RuntimeService", "RemoveContainer")
    def cri_remove_container(
        self, request: api_pb2.RemoveContainerRequest, ctx: CallContext
    ) -> api_pb2.RemoveContainerResponse | None:
        """Remove a container; idempotent."""

    @_cri("RuntimeService", "ListContainers")
    def cri_list_containers(
        self, request: api_pb2.ListContainersRequest, ctx: CallContext
    ) -> api_pb2.ListContainersResponse | None:
        """Containers matching a filter; served from memory."""

    @_cri("RuntimeService", "ContainerStatus")
    def cri_container_status(
        self, request: api_pb2.ContainerStatusRequest, ctx: CallContext
    ) -> api_pb2.ContainerStatusResponse | None:
        """State, exit code, times, mounts and (verbose) details of one container."""

    @_cri("RuntimeService", "UpdateContainerResources")
    def cri_update_container_resources(
        self, request: api_pb2.UpdateContainerResourcesRequest, ctx: CallContext
    ) -> api_pb2.UpdateContainerResourcesResponse | None:
        """Change a running container's resources."""

    @_cri("RuntimeService", "ReopenContainerLog")
    def cri_reopen_container_log(
        self, request: api_pb2.ReopenContainerLogRequest, ctx: CallContext
    ) -> api_pb2.ReopenContainerLogResponse | None:
        """Rotate a container's log file (after the kubelet renamed it)."""

    @_cri("RuntimeService", "ExecSync")
    def cri_exec_sync(
        self, request: api_pb2.ExecSyncRequest, ctx: CallContext
    ) -> api_pb2.ExecSyncResponse | None:
        """Run a command in a container and return its output and exit code."""

    @_cri("RuntimeService", "Exec")
    def cri_exec(
        self, request: api_pb2.ExecRequest, ctx: CallContext
    ) -> api_pb2.ExecResponse | None:
        """Prepare a streaming exec and return its URL."""

    @_cri("RuntimeService", "Attach")
    def cri_attach(
        self, request: api_pb2.AttachRequest, ctx: CallContext
    ) -> api_pb2.AttachResponse | None:
        """Prepare a streaming attach and return its URL."""

    @_cri("RuntimeService", "PortForward")
    def cri_port_forward(
        self, request: api_pb2.PortForwardRequest, ctx: CallContext
    ) -> api_pb2.PortForwardResponse | None:
        """Prepare a streaming port forward and return its URL."""

    @_cri("RuntimeService", "ContainerStats")
    def cri_container_stats(
        self, request: api_pb2.ContainerStatsRequest, ctx: CallContext
    ) -> api_pb2.ContainerStatsResponse | None:
        """Resource usage of one container."""

    @_cri("RuntimeService", "ListContainerStats")
    def cri_list_container_stats(
        self, request: api_pb2.ListContainerStatsRequest, ctx: CallContext
    ) -> api_pb2.ListContainerStatsResponse | None:
        """Resource usage of containers matching a filter."""

    @_cri("RuntimeService", "PodSandboxStats")
    def cri_pod_sandbox_stats(
        self, request: api_pb2.PodSandboxStatsRequest, ctx: CallContext
    ) -> api_pb2.PodSandboxStatsResponse | None:
        """Resource usage of one pod."""

    @_cri("RuntimeService", "ListPodSandboxStats")
    def cri_list_pod_sandbox_stats(
        self, request: api_pb2.ListPodSandboxStatsRequest, ctx: CallContext
    ) -> api_pb2.ListPodSandboxStatsResponse | None:
        """Resource usage of pods matching a filter."""

    @_cri("RuntimeService", "UpdateRuntimeConfig")
    def cri_update_runtime_config(
        self, request: api_pb2.UpdateRuntimeConfigRequest, ctx: CallContext
    ) -> api_pb2.UpdateRuntimeConfigResponse | None:
        """Runtime settings pushed by the kubelet (the pod CIDR)."""

    @_cri("RuntimeService", "Status")
    def cri_status(
        self, request: api_pb2.StatusRequest, ctx: CallContext
    ) -> api_pb2.StatusResponse | None:
        """Runtime and network readiness conditions."""

    @_cri("RuntimeService", "CheckpointContainer")
    def cri_checkpoint_container(
        self, request: api_pb2.CheckpointContainerRequest, ctx: CallContext
    ) -> api_pb2.CheckpointContainerResponse | None:
        """Checkpoint a container (CRIU)."""

    @_cri("RuntimeService", "GetContainerEvents")
    def cri_get_container_events(
        self, request: api_pb2.GetEventsRequest, ctx: CallContext
    ) -> Iterator[api_pb2.ContainerEventResponse]:
        """Server-streaming: container lifecycle events for the evented PLEG."""

    @_cri("RuntimeService", "ListMetricDescriptors")
    def cri_list_metric_descriptors(
        self, request: api_pb2.ListMetricDescriptorsRequest, ctx: CallContext
    ) -> api_pb2.ListMetricDescriptorsResponse | None:
        """Descriptors of the pod metrics the runtime exposes."""

    @_cri("RuntimeService", "ListPodSandboxMetrics")
    def cri_list_pod_sandbox_metrics(
        self, request: api_pb2.ListPodSandboxMetricsRequest, ctx: CallContext
    ) -> api_pb2.ListPodSandboxMetricsResponse | None:
        """Pod and container metrics for every pod."""

    @_cri("RuntimeService", "RuntimeConfig")
    def cri_runtime_config(
        self, request: api_pb2.RuntimeConfigRequest, ctx: CallContext
    ) -> api_pb2.RuntimeConfigResponse | None:
        """Configuration the kubelet must agree with (the cgroup driver)."""

    @_cri("RuntimeService", "UpdatePodSandboxResources")
    def cri_update_pod_sandbox_resources(
        self, request: api_pb2.UpdatePodSandboxResourcesRequest, ctx: CallContext
    ) -> api_pb2.UpdatePodSandboxResourcesResponse | None:
        """Pod-level resources changed by the kubelet."""

    @_cri("ImageService", "ListImages")
    def cri_list_images(
        self, request: api_pb2.ListImagesRequest, ctx: CallContext
    ) -> api_pb2.ListImagesResponse | None:
        """Images in the store, optionally filtered."""

    @_cri("ImageService", "ImageStatus")
    def cri_image_status(
        self, request: api_pb2.ImageStatusRequest, ctx: CallContext
    ) -> api_pb2.ImageStatusResponse | None:
        """One image's record, or an empty response when it is absent."""

    @_cri("ImageService", "PullImage")
    def cri_pull_image(
        self, request: api_pb2.PullImageRequest, ctx: CallContext
    ) -> api_pb2.PullImageResponse | None:
        """Pull an image from a registry and return its id."""

    @_cri("ImageService", "RemoveImage")
    def cri_remove_image(
        self, request: api_pb2.RemoveImageRequest, ctx: CallContext
    ) -> api_pb2.RemoveImageResponse | None:
        """Remove an image; idempotent."""

    @_cri("ImageService", "ImageFsInfo")
    def cri_image_fs_info(
        self, request: api_pb2.ImageFsInfoRequest, ctx: CallContext
    ) -> api_pb2.ImageFsInfoResponse | None:
        """Usage of the filesystems holding images and writable layers."""

    # Server-streaming list calls of cri-api v0.36 (CRIListStreaming). The stubs
    # lack their messages: pycrio.server.list_streaming builds them. Each returns
    # an iterator of responses; the core streams the matching List* hook's items.

    @_cri("RuntimeService", "StreamPodSandboxes")
    def cri_stream_pod_sandboxes(self, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        """Server-streaming ListPodSandbox: StreamPodSandboxesResponse messages."""

    @_cri("RuntimeService", "StreamContainers")
    def cri_stream_containers(self, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        """Server-streaming ListContainers: StreamContainersResponse messages."""

    @_cri("RuntimeService", "StreamContainerStats")
    def cri_stream_container_stats(self, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        """Server-streaming ListContainerStats: StreamContainerStatsResponse messages."""

    @_cri("RuntimeService", "StreamPodSandboxStats")
    def cri_stream_pod_sandbox_stats(self, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        """Server-streaming ListPodSandboxStats: StreamPodSandboxStatsResponse messages."""

    @_cri("RuntimeService", "StreamPodSandboxMetrics")
    def cri_stream_pod_sandbox_metrics(
        self, request: Any, ctx: CallContext
    ) -> Iterator[Any] | None:
        """Server-streaming ListPodSandboxMetrics: StreamPodSandboxMetricsResponse messages."""

    @_cri("ImageService", "StreamImages")
    def cri_stream_images(self, request: Any, ctx: CallContext) -> Iterator[Any] | None:
        """Server-streaming ListImages: StreamImagesResponse messages."""


class ExtensionSpecs:
    """Extension points with no CRI call behind them."""

    @hookspec
    def pycrio_startup(self, kernel: Kernel) -> None:
        """The daemon is about to serve: open connections, start watchers.

        An exception here is logged and reported as a failed plugin; it does not
        stop the daemon.
        """

    @hookspec
    def pycrio_shutdown(self, kernel: Kernel) -> None:
        """The daemon stopped serving and is about to exit: release resources."""

    @hookspec
    def pycrio_config_reload(self, old: Config, new: Config, changed: list[str]) -> None:
        """SIGHUP reloaded the configuration; ``changed`` lists dotted keys."""

    @hookspec
    def pycrio_status_conditions(self, kernel: Kernel) -> list[api_pb2.RuntimeCondition]:
        """Extra conditions for the Status call (each plugin returns a list)."""

    @hookspec
    def pycrio_adjust_container_spec(
        self, spec: dict[str, Any], container: Any, sandbox: Any, ctx: CallContext
    ) -> None:
        """Change a container's OCI runtime spec (a dict) in place before create.

        Called for every plugin (OCI hook injection, NRI adjustments), after the
        core built the spec from the CRI config and before the runtime sees it.
        Raising a pycrio.errors error fails the CreateContainer call with it.
        """

    @hookspec
    def pycrio_adjust_sandbox_spec(
        self, spec: dict[str, Any], sandbox: Any, ctx: CallContext
    ) -> None:
        """Change a pod's infra container OCI spec in place (infra-container mode)."""

    @hookspec
    def pycrio_sandbox_starting(self, sandbox: Any, ctx: CallContext) -> None:
        """A pod is built (namespaces, network, cgroup) but not yet ready nor listed.

        Called for every plugin (NRI's RunPodSandbox); no container can be
        created in the pod yet. Raising a pycrio.errors error fails
        RunPodSandbox, which undoes everything the pod holds.
        """

    @hookspec
    def pycrio_container_event(self, event: str, container: Any, sandbox: Any) -> None:
        """A container changed state: ``event`` is created, started, stopped or deleted."""

    @hookspec
    def pycrio_image_in_use(self, image_id: str) -> list[str]:
        """Containers (ids or names) using an image; RemoveImage refuses while any does."""

    @hookspec
    def pycrio_sandbox_event(self, event: str, sandbox: Any) -> None:
        """A pod changed state: ``event`` is created, stopping, stopped, removing or deleted.

        ``stopping`` and ``removing`` come before the pod's resources are
        released, so that its containers can be stopped or removed first.
        """

    @hookspec
    def pycrio_image_pulled(
        self, image_id: str, size: int, fetched_layer_sizes: list[int], reused_layers: int
    ) -> None:
        """A pull committed an image (metrics, audit).

        ``fetched_layer_sizes`` are the compressed sizes of the layers this pull
        downloaded (their sum is the bytes it transferred); ``reused_layers``
        counts the layers already in the store. Called once per pull, not once
        per caller that joined it.
        """
