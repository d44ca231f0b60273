"""Version, Status and RuntimeConfig: what the kubelet asks before anything else.

UpdateRuntimeConfig is the kubelet pushing the node's pod CIDR on every
node status sync. pycrio, like CRI-O, leaves pod addressing to the network
plugin's own configuration: the CIDR is checked, kept in memory and shown
in ``Status(verbose)`` (``info["podCIDR"]``), and the call answers OK.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading

from cri_api.v1 import api_pb2

import pycrio
from pycrio.errors import FailedPrecondition, InvalidArgument
from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.interfaces import RuntimeFeatures
from pycrio.kernel.kernel import DriverSlot, Kernel, call_each_results

RUNTIME_NAME = "pycrio"
RUNTIME_API_VERSION = "v1"
# The kubelet's "version of the kubelet runtime API"; CRI-O and containerd send 0.1.0.
KUBELET_API_VERSION = "0.1.0"

log = logging.getLogger("pycrio.runtime")

CGROUP_DRIVERS = {"systemd": api_pb2.SYSTEMD, "cgroupfs": api_pb2.CGROUPFS}


def _condition(
    kind: str, ok: bool, reason: str = "", message: str = ""
) -> api_pb2.RuntimeCondition:
    return api_pb2.RuntimeCondition(type=kind, status=ok, reason=reason, message=message)


def _driver_condition(
    kind: str, slot: DriverSlot | None, missing_reason: str
) -> api_pb2.RuntimeCondition:
    if slot is None:
        return _condition(kind, False, missing_reason, "no driver is configured")
    if slot.driver is None:
        return _condition(
            kind,
            False,
            missing_reason,
            f"{slot.role}: driver {slot.name!r} is not installed (entry-point group {slot.group})",
        )
    ready, reason, message = slot.driver.ready()
    return _condition(kind, ready, reason, message)


class RuntimeInfo:
    """The core's answers to Version, Status and RuntimeConfig."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.pod_cidr = ""
        self._cidr_lock = threading.Lock()

    @hookimpl
    def cri_version(
        self, request: api_pb2.VersionRequest, ctx: CallContext
    ) -> api_pb2.VersionResponse:
        return api_pb2.VersionResponse(
            version=KUBELET_API_VERSION,
            runtime_name=RUNTIME_NAME,
            runtime_version=pycrio.version(),
            runtime_api_version=RUNTIME_API_VERSION,
        )

    @hookimpl
    def cri_status(
        self, request: api_pb2.StatusRequest, ctx: CallContext
    ) -> api_pb2.StatusResponse:
        kernel = self.kernel
        default = kernel.config.get("runtime.default_runtime")
        conditions = [
            _driver_condition("RuntimeReady", kernel.runtimes.get(default), "RuntimeDriverMissing"),
            _driver_condition("NetworkReady", kernel.network, "NetworkDriverMissing"),
        ]
        failures = kernel.plugin_failures
        conditions.append(
            _condition(
                "PluginsLoaded",
                not failures,
                "PluginLoadFailed" if failures else "",
                "; ".join(failures),
            )
        )
        # Isolated: a faulty plugin must not fail Status (the node would turn NotReady).
        extras = call_each_results(kernel, "pycrio_status_conditions", kernel=kernel)
        for extra in extras.values():
            conditions.extend(extra or [])
        if extras.failures:
            conditions.append(
                _condition(
                    "PluginConditions",
                    False,
                    "PluginFailed",
                    "; ".join(f.message for f in extras.failures),
                )
            )
        response = api_pb2.StatusResponse(
            status=api_pb2.RuntimeStatus(conditions=conditions),
            runtime_handlers=self._handlers(),
            features=api_pb2.RuntimeFeatures(supplemental_groups_policy=True),
        )
        if request.verbose:
            response.info["podCIDR"] = self.pod_cidr
            response.info["config"] = json.dumps(kernel.config.data, sort_keys=True)
            response.info["plugins"] = json.dumps(
                [
                    {
                        "group": f.group,
                        "name": f.name,
                        "distribution": f.distribution,
                        "version": f.version,
                        "status": f.status,
                    }
                    for f in kernel.found
                ]
            )
        return response

    def _handlers(self) -> list[api_pb2.RuntimeHandler]:
        """Each configured handler with what its runtime supports (from ``features``)."""
        handlers = []
        default = self.kernel.config.get("runtime.default_runtime")
        for name in sorted(self.kernel.config.runtimes, key=lambda h: (h != default, h)):
            driver = self.kernel.runtime_driver(name)
            features = driver.features() if driver is not None else RuntimeFeatures()
            handler = api_pb2.RuntimeHandler(
                name="" if name == default else name,
                features=api_pb2.RuntimeHandlerFeatures(
                    recursive_read_only_mounts=features.recursive_read_only_mounts,
                    # the driver's features.user_namespaces, once the core stops
                    # refusing user-namespaced pods (container/namespaces.py)
                    user_namespaces=False,
                ),
            )
            handlers.append(handler)
            if name == default:  # the default handler is listed under its name too
                handlers.append(api_pb2.RuntimeHandler(name=name, features=handler.features))
        return handlers

    @hookimpl
    def cri_runtime_config(
        self, request: api_pb2.RuntimeConfigRequest, ctx: CallContext
    ) -> api_pb2.RuntimeConfigResponse:
        driver = self.kernel.cgroup_driver
        name = (
            driver.cri_cgroup_driver if driver else self.kernel.config.get("runtime.cgroup_manager")
        )
        if name not in CGROUP_DRIVERS:
            raise FailedPrecondition(
                f"cgroup manager {name!r} is not installed, so the cgroup driver the kubelet"
                " must use is unknown; install it or set [runtime] cgroup_manager to"
                " cgroupfs or systemd"
            )
        linux = api_pb2.LinuxRuntimeConfiguration(cgroup_driver=CGROUP_DRIVERS[name])
        return api_pb2.RuntimeConfigResponse(linux=linux)

    @hookimpl
    def cri_update_runtime_config(
        self, request: api_pb2.UpdateRuntimeConfigRequest, ctx: CallContext
    ) -> api_pb2.UpdateRuntimeConfigResponse:
        cidr = parse_pod_cidr(request.runtime_config.network_config.pod_cidr)
        with self._cidr_lock:
            changed, self.pod_cidr = cidr != self.pod_cidr, cidr
        if changed:
            log.info("the kubelet set the pod CIDR to %r", cidr)
        return api_pb2.UpdateRuntimeConfigResponse()


def parse_pod_cidr(text: str) -> str:
    """The kubelet's pod CIDR(s), comma-separated for dual stack, normalized; "" stays "".

    INVALID_ARGUMENT names a part that is not an IP network.
    """
    if not text.strip():
        return ""
    networks = []
    for part in text.split(","):
        try:
            networks.append(str(ipaddress.ip_network(part.strip(), strict=False)))
        except ValueError as e:
            raise InvalidArgument(
                f"runtime_config.network_config.pod_cidr: {part.strip()!r} is not a CIDR ({e})"
            ) from e
    return ",".join(networks)
