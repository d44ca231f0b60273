"""What a plugin is given: its stdin config, CNI_ARGS and environment.

Pure functions, so the exact bytes a plugin receives are unit-tested.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pycrio.kernel.interfaces import PodNetwork
from pycrio_cni.config import NetworkConfigList, version_at_least

#: Capabilities this runtime fills in (CONVENTIONS.md names), plus the pod
#: annotations key CRI-O passes for plugins that want them.
CAP_PORT_MAPPINGS = "portMappings"
CAP_BANDWIDTH = "bandwidth"
CAP_DNS = "dns"
CAP_CGROUP_PATH = "cgroupPath"
CAP_POD_ANNOTATIONS = "io.kubernetes.cri.pod-annotations"

#: Where plugins that shell out (portmap runs iptables) find their tools when
#: the daemon was started with a bare environment.
_FALLBACK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cni_args(pod: PodNetwork) -> str:
    """CNI_ARGS as the kubelet's CNI users set it.

    ``IgnoreUnknown=1`` comes first so plugins that do not know the K8S_ keys
    accept them instead of failing.
    """
    pairs = [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", pod.namespace),
        ("K8S_POD_NAME", pod.name),
        ("K8S_POD_INFRA_CONTAINER_ID", pod.pod_id),
        ("K8S_POD_UID", pod.uid),
    ]
    for key, value in pairs:
        if ";" in value or "=" in value:
            raise ValueError(f"{key} value {value!r} cannot be passed in CNI_ARGS")
    return ";".join(f"{k}={v}" for k, v in pairs)


def capability_args(pod: PodNetwork) -> dict[str, Any]:
    """The runtimeConfig values this pod offers, keyed by capability.

    Only non-empty values are offered: a plugin must not be told to map no
    ports or to shape traffic to zero. Port mappings without a host port are
    dropped, as CRI-O does (they only document the container port).
    """
    args: dict[str, Any] = {}
    ports = []
    for pm in pod.port_mappings:
        if pm.host_port <= 0:
            continue
        entry: dict[str, Any] = {
            "hostPort": pm.host_port,
            "containerPort": pm.container_port,
            "protocol": (pm.protocol or "tcp").lower(),
        }
        if pm.host_ip:
            entry["hostIP"] = pm.host_ip
        ports.append(entry)
    if ports:
        args[CAP_PORT_MAPPINGS] = ports
    if pod.bandwidth:
        args[CAP_BANDWIDTH] = dict(pod.bandwidth)
    if any(pod.dns.get(k) for k in ("servers", "searches", "options")):
        args[CAP_DNS] = {k: list(v) for k, v in pod.dns.items() if v}
    if pod.cgroup_path:
        args[CAP_CGROUP_PATH] = pod.cgroup_path
    if pod.annotations:
        args[CAP_POD_ANNOTATIONS] = dict(pod.annotations)
    return args


def runtime_config(plugin: Mapping[str, Any], cap_args: Mapping[str, Any]) -> dict[str, Any]:
    """The runtimeConfig for one plugin: only the capabilities it declares.

    The spec forbids sending a capability a plugin did not ask for: a plugin
    may reject unknown keys.
    """
    declared = plugin.get("capabilities") or {}
    return {
        cap: copy.deepcopy(cap_args[cap])
        for cap, wanted in declared.items()
        if wanted is True and cap in cap_args
    }


def plugin_config(
    netconf: NetworkConfigList,
    plugin: Mapping[str, Any],
    *,
    prev_result: Mapping[str, Any] | None = None,
    cap_args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON object a plugin of the list reads on stdin.

    The list's name and version replace the plugin's own (the spec: every
    plugin of a list runs at the list's version). prevResult is omitted for
    versions before 0.3.0, which predate chaining.
    """
    conf = copy.deepcopy(dict(plugin))
    conf["name"] = netconf.name
    conf["cniVersion"] = netconf.cni_version
    conf.pop("runtimeConfig", None)
    conf.pop("prevResult", None)
    rc = runtime_config(plugin, cap_args or {})
    if rc:
        conf["runtimeConfig"] = rc
    if prev_result is not None and version_at_least(netconf.cni_version, "0.3.0"):
        conf["prevResult"] = copy.deepcopy(dict(prev_result))
    return conf


def plugin_stdin(
    netconf: NetworkConfigList,
    plugin: Mapping[str, Any],
    *,
    prev_result: Mapping[str, Any] | None = None,
    cap_args: Mapping[str, Any] | None = None,
) -> bytes:
    """:func:`plugin_config` serialised: the exact bytes written to stdin."""
    conf = plugin_config(netconf, plugin, prev_result=prev_result, cap_args=cap_args)
    return json.dumps(conf, separators=(",", ":"), sort_keys=False).encode()


def plugin_env(
    command: str,
    *,
    container_id: str = "",
    netns: str = "",
    ifname: str = "",
    args: str = "",
    plugin_dirs: Sequence[str] = (),
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one plugin call.

    The daemon's environment is inherited (libcni does the same: plugins run
    helpers such as iptables by PATH), minus any stray CNI_ variables that
    could confuse a plugin, plus the call's own CNI_ variables. STATUS and
    VERSION calls carry only CNI_COMMAND and CNI_PATH, as the spec says.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    for key in [k for k in env if k.startswith("CNI_")]:
        del env[key]
    if not env.get("PATH"):
        env["PATH"] = _FALLBACK_PATH
    env["CNI_COMMAND"] = command
    env["CNI_PATH"] = os.pathsep.join(plugin_dirs)
    if command in ("ADD", "DEL", "CHECK"):
        env["CNI_CONTAINERID"] = container_id
        env["CNI_NETNS"] = netns
        env["CNI_IFNAME"] = ifname
        env["CNI_ARGS"] = args
    return env
