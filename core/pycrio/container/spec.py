"""The OCI runtime spec (config.json) of a container, from the CRI and the image.

:func:`build_spec` is the one entry point: it takes everything it needs in
:class:`SpecInputs` (the kubelet's request, the image config, what the pod
set up, facts about the host) and returns the spec as a dict ready for
``json.dump``. It decides nothing about storage or the runtime, so it can be
tested on its own and the runc, crun and kata drivers share it.

I/O is kept to the edges and listed here: reading the image's /etc/passwd
and /etc/group inside the rootfs, stat(2) of mount sources and devices,
reading a Localhost seccomp profile, and creating image VOLUME directories
in the rootfs (CRI-O's ``image_volumes = "mkdir"``). Facts about the host
(architecture, cgroup version, AppArmor, capabilities of the daemon) come in
:class:`HostFacts`, which the daemon detects once.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.container import (
    annotations,
    apparmor,
    capabilities,
    devices,
    mounts,
    namespaces,
    process,
    resources,
    seccomp,
    users,
)
from pycrio.errors import InvalidArgument
from pycrio.image.manifest import ImageConfig

log = logging.getLogger("pycrio.container")

OCI_VERSION = "1.0.2"

#: CRI-O's masked and read-only paths (runc's defaults plus powercap, whose
#: energy counters leak what other tenants run).
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

#: (type, soft, hard). RLIMIT_NOFILE as CRI-O's packaging sets it: servers
#: in containers expect many descriptors, and 1048576 is the kernel's
#: default fs.nr_open, so runc can always set it.
DEFAULT_RLIMITS: tuple[tuple[str, int, int], ...] = (("RLIMIT_NOFILE", 1048576, 1048576),)


@dataclass(frozen=True)
class HostFacts:
    """What the spec depends on about the node; detected once by the daemon.

    ``oom_score_adj_floor`` is None when the daemon holds CAP_SYS_RESOURCE
    (any value allowed), else its own oom_score_adj. ``rlimit_ceilings`` is
    likewise empty with CAP_SYS_RESOURCE, else the daemon's own hard limits:
    without that capability runc cannot raise a hard limit and would fail
    the container. ``mountinfo`` None means "read /proc/self/mountinfo if a
    propagation check needs it".
    """

    machine: str
    last_cap: int
    cgroup_v2: bool
    swap_accounting: bool
    apparmor_enabled: bool
    apparmor_profiles: frozenset[str] = frozenset()
    oom_score_adj_floor: int | None = None
    rlimit_ceilings: Mapping[str, int] = field(default_factory=dict)
    mountinfo: str | None = None
    dev_dir: str = "/dev"
    #: the daemon's bounding set: what "all capabilities" can mean (None: no limit)
    bounding_caps: frozenset[str] | None = None

    @classmethod
    def detect(cls) -> HostFacts:
        """Read the facts from this machine (/proc, /sys)."""
        v2 = resources.cgroup_v2_host()
        enabled = apparmor.host_enabled()
        floor = None
        ceilings: dict[str, int] = {}
        if not capabilities.daemon_has_sys_resource():
            floor = resources.own_oom_score_adj()
            ceilings = own_hard_rlimits()
        return cls(
            machine=seccomp.machine_arch(),
            last_cap=capabilities.host_last_cap(),
            cgroup_v2=v2,
            swap_accounting=resources.swap_accounting_host(v2),
            apparmor_enabled=enabled,
            apparmor_profiles=apparmor.loaded_profiles() if enabled else frozenset(),
            oom_score_adj_floor=floor,
            rlimit_ceilings=ceilings,
            bounding_caps=capabilities.daemon_bounding_set(),
        )


def own_hard_rlimits() -> dict[str, int]:
    """The daemon's hard limits by OCI name (RLIM_INFINITY as 2**64-1, like the kernel)."""
    out = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            hard = resource.getrlimit(getattr(resource, name))[1]
            out[name] = 2**64 - 1 if hard == resource.RLIM_INFINITY else hard
    return out


@dataclass(frozen=True)
class SpecInputs:
    """Everything a container's spec is made from.

    ``namespace_paths`` maps the pod's pinned namespace kinds (net, ipc,
    uts, pid) to their files; ``pod_host_namespaces`` are the kinds (net,
    ipc, uts) the pod shares with the host, which its containers share too.
    ``image_volume_sources`` maps the index of each image mount in
    ``config.mounts`` to the host path of the image's mounted filesystem.
    The pod's file paths may be empty (do not mount). ``target_pid`` is the
    pid of the container named by ``namespace_options.target_id`` for pid
    mode TARGET. ``allowed_annotations`` are the runtime handler's: no
    annotation-driven behaviour exists yet, so they are accepted and unused
    (see :mod:`pycrio.container.annotations`).
    """

    config: api_pb2.ContainerConfig
    sandbox_config: api_pb2.PodSandboxConfig
    container_id: str
    image_config: ImageConfig
    rootfs: str
    sandbox_id: str
    sandbox_name: str = ""
    image_name: str = ""
    image_id: str = ""
    namespace_paths: Mapping[str, str] = field(default_factory=dict)
    pod_host_namespaces: frozenset[str] = frozenset()
    image_volume_sources: Mapping[int, str] = field(default_factory=dict)
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""
    shm_path: str = ""
    cgroups_path: str = ""
    allowed_annotations: tuple[str, ...] = ()
    default_capabilities: tuple[str, ...] = capabilities.DEFAULT_CAPABILITIES
    rlimits: tuple[tuple[str, int, int], ...] = DEFAULT_RLIMITS
    target_pid: int | None = None
    log_path: str = ""
    created: str = ""
    host: HostFacts | None = None
    #: the pod's infra container: typed "sandbox" in the annotations runtimes read
    infra: bool = False
    #: the handler's privileged_without_host_devices (CRI-O): a privileged
    #: container gets none of the host's devices (a VM has its own)
    privileged_without_host_devices: bool = False


def container_name(config: api_pb2.ContainerConfig, sandbox: api_pb2.PodSandboxConfig) -> str:
    """CRI-O's ``k8s_<name>_<pod>_<namespace>_<uid>_<attempt>``."""
    meta, pod = config.metadata, sandbox.metadata
    return f"k8s_{meta.name}_{pod.name}_{pod.namespace}_{pod.uid}_{meta.attempt}"


def _paths(given: Sequence[str], default: Sequence[str], field_name: str) -> list[str]:
    chosen = list(given) if given else list(default)
    for path in chosen:
        if not path.startswith("/") or "\x00" in path:
            raise InvalidArgument(f"{field_name}: {path!r} is not an absolute path")
    return chosen


def _seccomp_ref(sc: api_pb2.LinuxContainerSecurityContext) -> str:
    kind, path = seccomp.select(sc)
    if kind == seccomp.RUNTIME_DEFAULT:
        return "runtime/default"
    if kind == seccomp.LOCALHOST:
        return "localhost/" + path
    return "unconfined"


@functools.lru_cache(maxsize=64)
def _warn_lowered(name: str, hard: int, ceiling: int) -> None:
    """Once per limit: the default RLIMIT_NOFILE would otherwise warn on every create."""
    log.warning(
        "%s %d is above what this daemon may set without CAP_SYS_RESOURCE; using %d"
        " (said once per limit)",
        name,
        hard,
        ceiling,
    )


def _rlimits(
    limits: Sequence[tuple[str, int, int]], ceilings: Mapping[str, int]
) -> list[dict[str, Any]]:
    """process.rlimits, lowered to what the daemon can grant (with a warning)."""
    out = []
    for name, soft, hard in limits:
        if not name.startswith("RLIMIT_") or soft < 0 or hard < 0 or soft > hard:
            raise InvalidArgument(f"rlimit {name}: invalid soft {soft} / hard {hard}")
        ceiling = ceilings.get(name)
        if ceiling is not None and hard > ceiling:
            _warn_lowered(name, hard, ceiling)
            hard, soft = ceiling, min(soft, ceiling)
        out.append({"type": name, "soft": soft, "hard": hard})
    return out


def build_spec(inputs: SpecInputs) -> dict[str, Any]:
    """The OCI runtime spec for ``inputs``; InvalidArgument names any bad field."""
    config, sandbox = inputs.config, inputs.sandbox_config
    host = inputs.host or HostFacts.detect()
    if not config.metadata.name:
        raise InvalidArgument("metadata.name: required")
    if not inputs.container_id:
        raise InvalidArgument("container id: required")
    if not os.path.isdir(inputs.rootfs):
        raise InvalidArgument(f"rootfs {inputs.rootfs!r} is not a directory")
    linux = config.linux
    sc = linux.security_context
    image = inputs.image_config

    privileged = sc.privileged
    if privileged and not sandbox.linux.security_context.privileged:
        raise InvalidArgument(
            "privileged: a privileged container is not allowed in a sandbox that is not privileged"
        )

    # namespaces first: whether UTS is the host's decides hostname and HOSTNAME
    ns_list, host_uts = namespaces.build(
        sc.namespace_options,
        inputs.namespace_paths,
        inputs.target_pid,
        host.cgroup_v2,
        inputs.pod_host_namespaces,
    )
    hostname = "" if host_uts else sandbox.hostname

    user = users.resolve_user(
        sc, image.user, users.read_passwd(inputs.rootfs), users.read_group(inputs.rootfs)
    )
    argv = process.merge_args(config.command, config.args, image.entrypoint, image.cmd)
    defaults = [("HOSTNAME", hostname)] if hostname else []
    env = process.merge_env(image.env, [(e.key, e.value) for e in config.envs], defaults)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")

    caps = capabilities.compute(
        sc.capabilities, inputs.default_capabilities, privileged, host.last_cap, host.bounding_caps
    )
    oom = resources.clamp_oom_score_adj(linux.resources.oom_score_adj, host.oom_score_adj_floor)

    proc: dict[str, Any] = {
        "terminal": config.tty,
        "user": user.to_oci(),
        "args": argv,
        "env": env,
        "cwd": process.working_dir(config.working_dir, image.working_dir),
        "capabilities": caps,
        "rlimits": _rlimits(inputs.rlimits, host.rlimit_ceilings),
        "noNewPrivileges": sc.no_new_privs,
        "oomScoreAdj": oom,
    }
    profile = apparmor.profile_for(sc, privileged, host.apparmor_enabled, host.apparmor_profiles)
    if profile:
        proc["apparmorProfile"] = profile

    cri_mounts, rootfs_propagation = mounts.cri_mounts(
        config.mounts, host.mountinfo, inputs.image_volume_sources
    )
    base = mounts.default_mounts(privileged)
    base.append(mounts.shm_mount(inputs.shm_path))
    base += mounts.pod_file_mounts(
        inputs.hostname_path, inputs.hosts_path, inputs.resolv_conf_path, sc.readonly_rootfs
    )
    all_mounts = mounts.merge(base, cri_mounts)
    volume_dirs = mounts.image_volume_dirs(image.volumes, (m["destination"] for m in cri_mounts))
    mounts.create_image_volumes(inputs.rootfs, volume_dirs)

    cri_devs, device_rules = devices.cri_devices(config.devices)
    device_list = cri_devs
    if privileged:
        if not inputs.privileged_without_host_devices:
            taken = {d["path"] for d in cri_devs}
            device_list = cri_devs + [
                d for d in devices.host_devices(host.dev_dir) if d["path"] not in taken
            ]
        device_rules = [dict(devices.ALLOW_ALL)]
    else:
        device_rules = [dict(devices.DENY_ALL), *device_rules]

    res = resources.build(linux.resources, host.cgroup_v2, host.swap_accounting)
    res["devices"] = device_rules

    linux_spec: dict[str, Any] = {
        "namespaces": ns_list,
        "resources": res,
    }
    if inputs.cgroups_path:
        linux_spec["cgroupsPath"] = inputs.cgroups_path
    if device_list:
        linux_spec["devices"] = device_list
    if rootfs_propagation:
        linux_spec["rootfsPropagation"] = rootfs_propagation
    if not privileged:
        linux_spec["maskedPaths"] = _paths(sc.masked_paths, DEFAULT_MASKED_PATHS, "masked_paths")
        linux_spec["readonlyPaths"] = _paths(
            sc.readonly_paths, DEFAULT_READONLY_PATHS, "readonly_paths"
        )
    seccomp_spec = seccomp.build(sc, privileged, host.machine, caps["bounding"])
    if seccomp_spec is not None:
        linux_spec["seccomp"] = seccomp_spec

    volumes = [
        {
            "container_path": m.container_path,
            "host_path": m.host_path,
            "readonly": m.readonly,
            "propagation": int(m.propagation),
            "selinux_relabel": m.selinux_relabel,
        }
        for m in config.mounts
    ]
    created = inputs.created or datetime.datetime.now(datetime.UTC).isoformat()
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": proc,
        "root": {"path": inputs.rootfs, "readonly": sc.readonly_rootfs},
        "mounts": all_mounts,
        "annotations": annotations.build(
            container_id=inputs.container_id,
            container_name=container_name(config, sandbox),
            config=config,
            sandbox_config=sandbox,
            sandbox_id=inputs.sandbox_id,
            sandbox_name=inputs.sandbox_name,
            image_name=inputs.image_name,
            image_id=inputs.image_id,
            rootfs=inputs.rootfs,
            log_path=inputs.log_path,
            resolv_path=inputs.resolv_conf_path,
            hostname_path=inputs.hostname_path,
            seccomp_ref=_seccomp_ref(sc),
            volumes=volumes,
            stop_signal=image.stop_signal,
            created=created,
            container_type=(
                annotations.CONTAINER_TYPE_SANDBOX
                if inputs.infra
                else annotations.CONTAINER_TYPE_CONTAINER
            ),
        ),
        "linux": linux_spec,
    }
    if hostname:
        spec["hostname"] = hostname
    return spec
