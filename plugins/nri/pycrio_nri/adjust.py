"""Applying NRI container adjustments to an OCI runtime spec (a dict), sans IO.

Every plugin sees the container as the core built it; their adjustments are
then applied in plugin index order. As in NRI, a plugin *owns* each field it
sets (an annotation key, an env name, a mount destination, a device path,
memory.limit, ...): a second plugin setting the same field is a conflict
that fails the creation, naming both. Removal markers (a key, name or path
prefixed with ``-``) delete the entry and release its ownership.

What the node cannot honour (CDI devices, block I/O and RDT classes, a moved
cgroup) is refused with an error naming the field rather than dropped.
"""

from __future__ import annotations

from typing import Any

from pycrio.errors import FailedPrecondition, InvalidArgument
from pycrio_nri import api
from pycrio_nri.convert import HOOK_KINDS, merge_resources_into_oci

#: NRI's Field (api.proto, enum Field) of each kind of field pycrio tracks.
FIELDS = {
    "annotation": api.Field.Value("Annotations"),
    "mount": api.Field.Value("Mounts"),
    "device": api.Field.Value("Devices"),
    "environment variable": api.Field.Value("Env"),
    "args": api.Field.Value("Args"),
    "memory.limit": api.Field.Value("MemLimit"),
    "memory.reservation": api.Field.Value("MemReservation"),
    "memory.swap": api.Field.Value("MemSwapLimit"),
    "memory.kernel": api.Field.Value("MemKernelLimit"),
    "memory.kernelTCP": api.Field.Value("MemTCPLimit"),
    "memory.swappiness": api.Field.Value("MemSwappiness"),
    "memory.disableOOMKiller": api.Field.Value("MemDisableOomKiller"),
    "memory.useHierarchy": api.Field.Value("MemUseHierarchy"),
    "cpu.shares": api.Field.Value("CPUShares"),
    "cpu.quota": api.Field.Value("CPUQuota"),
    "cpu.period": api.Field.Value("CPUPeriod"),
    "cpu.realtimeRuntime": api.Field.Value("CPURealtimeRuntime"),
    "cpu.realtimePeriod": api.Field.Value("CPURealtimePeriod"),
    "cpu.cpus": api.Field.Value("CPUSetCPUs"),
    "cpu.mems": api.Field.Value("CPUSetMems"),
    "pids.limit": api.Field.Value("PidsLimit"),
    "hugepageLimits": api.Field.Value("HugepageLimits"),
    "unified": api.Field.Value("CgroupsUnified"),
    "oom_score_adj": api.Field.Value("OomScoreAdj"),
    "rlimit": api.Field.Value("Rlimits"),
    "io_priority": api.Field.Value("IoPriority"),
    "seccomp policy": api.Field.Value("SeccompPolicy"),
    "namespace": api.Field.Value("Namespace"),
    "sysctl": api.Field.Value("Sysctl"),
}

IOPRIO_CLASSES = {
    0: "IOPRIO_CLASS_NONE",
    1: "IOPRIO_CLASS_RT",
    2: "IOPRIO_CLASS_BE",
    3: "IOPRIO_CLASS_IDLE",
}


def _removal(key: str) -> tuple[bool, str]:
    return (True, key[1:]) if key.startswith("-") else (False, key)


class SpecAdjuster:
    """Accumulates the adjustments of several plugins into one spec."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.owners: dict[tuple[str, str | None], str] = {}

    def _claim(self, plugin: str, kind: str, key: str | None = None) -> None:
        """Record ``plugin`` as the owner of a field; a different owner is a conflict."""
        field = (kind, key)
        other = self.owners.get(field)
        if other is not None and other != plugin:
            what = f"{kind} {key!r}" if key is not None else kind
            raise InvalidArgument(f'NRI plugins "{other}" and "{plugin}" both tried to set {what}')
        self.owners[field] = plugin

    def _release(self, kind: str, key: str | None = None) -> None:
        self.owners.pop((kind, key), None)

    def field_owners(self) -> Any:
        """Who set what, as NRI's FieldOwners (for ValidateContainerAdjustment)."""
        out = api.FieldOwners()
        for (kind, key), plugin in self.owners.items():
            number = FIELDS[kind]
            if key is None:
                out.simple[number] = plugin
            else:
                out.compound[number].owners[key] = plugin
        return out

    def apply(self, plugin: str, adj: Any) -> None:
        """Apply one plugin's ContainerAdjustment; raises a pycrio error on conflict."""
        self._annotations(plugin, adj)
        self._mounts(plugin, adj)
        self._env(plugin, adj)
        self._hooks(adj)
        self._rlimits(plugin, adj)
        if adj.args:
            self._claim(plugin, "args")
            self.spec.setdefault("process", {})["args"] = list(adj.args)
        if adj.CDI_devices:
            raise FailedPrecondition(
                f"NRI plugin {plugin!r} asked for CDI devices"
                f" ({', '.join(d.name for d in adj.CDI_devices)}); pycrio does not resolve CDI"
            )
        if adj.HasField("linux"):
            self._linux(plugin, adj.linux)

    def _annotations(self, plugin: str, adj: Any) -> None:
        annotations = self.spec.setdefault("annotations", {})
        for key, value in adj.annotations.items():
            remove, name = _removal(key)
            if remove:
                annotations.pop(name, None)
                self._release("annotation", name)
                continue
            self._claim(plugin, "annotation", name)
            annotations[name] = value

    def _mounts(self, plugin: str, adj: Any) -> None:
        mounts = self.spec.setdefault("mounts", [])
        for m in adj.mounts:
            remove, dest = _removal(m.destination)
            mounts[:] = [x for x in mounts if x.get("destination") != dest]
            if remove:
                self._release("mount", dest)
                continue
            self._claim(plugin, "mount", dest)
            mount = {"destination": dest, "type": m.type, "source": m.source}
            if m.options:
                mount["options"] = list(m.options)
            mounts.append(mount)
        # parents before children, as runtimes mount in order
        mounts.sort(key=lambda x: x.get("destination", "").rstrip("/").count("/"))

    def _env(self, plugin: str, adj: Any) -> None:
        env = self.spec.setdefault("process", {}).setdefault("env", [])
        for kv in adj.env:
            remove, name = _removal(kv.key)
            env[:] = [e for e in env if e.split("=", 1)[0] != name]
            if remove:
                self._release("environment variable", name)
                continue
            self._claim(plugin, "environment variable", name)
            env.append(f"{name}={kv.value}")

    def _hooks(self, adj: Any) -> None:
        if not adj.HasField("hooks"):
            return
        hooks = self.spec.setdefault("hooks", {})
        for kind, field in HOOK_KINDS.items():
            for h in getattr(adj.hooks, field):
                hook: dict[str, Any] = {"path": h.path}
                if h.args:
                    hook["args"] = list(h.args)
                if h.env:
                    hook["env"] = list(h.env)
                if h.HasField("timeout"):
                    hook["timeout"] = h.timeout.value
                hooks.setdefault(kind, []).append(hook)

    def _rlimits(self, plugin: str, adj: Any) -> None:
        rlimits = self.spec.setdefault("process", {}).setdefault("rlimits", [])
        for r in adj.rlimits:
            self._claim(plugin, "rlimit", r.type)
            rlimits[:] = [x for x in rlimits if x["type"] != r.type]
            rlimits.append({"type": r.type, "hard": r.hard, "soft": r.soft})

    def _linux(self, plugin: str, lin: Any) -> None:
        linux = self.spec.setdefault("linux", {})
        process = self.spec.setdefault("process", {})
        for d in lin.devices:
            self._device(plugin, linux, d)
        if lin.HasField("resources"):
            res = lin.resources
            if res.HasField("blockio_class") or res.HasField("rdt_class"):
                raise FailedPrecondition(
                    f"NRI plugin {plugin!r} asked for a block I/O or RDT class;"
                    " this node has no class configuration"
                )
            resources = linux.setdefault("resources", {})
            for what in merge_resources_into_oci(resources, res):
                kind, _, key = what.partition(".")
                if kind in ("hugepageLimits", "unified"):
                    self._claim(plugin, kind, key)  # one owner per page size, per key
                else:
                    self._claim(plugin, what)
        if lin.cgroups_path:
            raise FailedPrecondition(
                f"NRI plugin {plugin!r} asked to move the container to cgroup"
                f" {lin.cgroups_path!r}; pycrio keeps containers in their pod's cgroup"
            )
        if lin.HasField("oom_score_adj"):
            self._claim(plugin, "oom_score_adj")
            process["oomScoreAdj"] = lin.oom_score_adj.value
        if lin.HasField("io_priority"):
            self._claim(plugin, "io_priority")
            process["ioPriority"] = {
                "class": IOPRIO_CLASSES.get(getattr(lin.io_priority, "class"), "IOPRIO_CLASS_NONE"),
                "priority": lin.io_priority.priority,
            }
        if lin.HasField("seccomp_policy"):
            self._claim(plugin, "seccomp policy")
            linux["seccomp"] = _seccomp(lin.seccomp_policy)
        for ns in lin.namespaces:
            remove, kind = _removal(ns.type)
            namespaces = linux.setdefault("namespaces", [])
            namespaces[:] = [x for x in namespaces if x["type"] != kind]
            if remove:
                self._release("namespace", kind)
                continue
            self._claim(plugin, "namespace", kind)
            namespaces.append({"type": kind, **({"path": ns.path} if ns.path else {})})
        for key, value in lin.sysctl.items():
            remove, name = _removal(key)
            sysctl = linux.setdefault("sysctl", {})
            if remove:
                sysctl.pop(name, None)
                self._release("sysctl", name)
                continue
            self._claim(plugin, "sysctl", name)
            sysctl[name] = value
        for what in ("net_devices", "scheduler", "rdt", "memory_policy"):
            present = bool(getattr(lin, what)) if what == "net_devices" else lin.HasField(what)
            if present:
                raise FailedPrecondition(
                    f"NRI plugin {plugin!r} adjusted linux.{what}, which pycrio does not support"
                )

    def _device(self, plugin: str, linux: dict[str, Any], d: Any) -> None:
        remove, path = _removal(d.path)
        devices = linux.setdefault("devices", [])
        old = [x for x in devices if x["path"] == path]
        devices[:] = [x for x in devices if x["path"] != path]
        rules = linux.setdefault("resources", {}).setdefault("devices", [])
        for x in old:
            rules[:] = [
                r
                for r in rules
                if not (
                    r.get("allow")
                    and r.get("major") == x.get("major")
                    and r.get("minor") == x.get("minor")
                )
            ]
        if remove:
            self._release("device", path)
            return
        self._claim(plugin, "device", path)
        if d.type not in ("c", "b", "u", "p"):
            raise InvalidArgument(f"NRI plugin {plugin!r}: device {path!r} has type {d.type!r}")
        dev: dict[str, Any] = {"path": path, "type": d.type, "major": d.major, "minor": d.minor}
        if d.HasField("file_mode"):
            dev["fileMode"] = d.file_mode.value
        if d.HasField("uid"):
            dev["uid"] = d.uid.value
        if d.HasField("gid"):
            dev["gid"] = d.gid.value
        devices.append(dev)
        rules.append(
            {"allow": True, "type": d.type, "major": d.major, "minor": d.minor, "access": "rwm"}
        )


def _seccomp(policy: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"defaultAction": policy.default_action}
    if policy.HasField("default_errno"):
        out["defaultErrnoRet"] = policy.default_errno.value
    if policy.architectures:
        out["architectures"] = list(policy.architectures)
    if policy.flags:
        out["flags"] = list(policy.flags)
    if policy.listener_path:
        out["listenerPath"] = policy.listener_path
    if policy.listener_metadata:
        out["listenerMetadata"] = policy.listener_metadata
    syscalls = []
    for s in policy.syscalls:
        call: dict[str, Any] = {"names": list(s.names), "action": s.action}
        if s.HasField("errno_ret"):
            call["errnoRet"] = s.errno_ret.value
        if s.args:
            call["args"] = [
                {"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op}
                for a in s.args
            ]
        syscalls.append(call)
    if syscalls:
        out["syscalls"] = syscalls
    return out
