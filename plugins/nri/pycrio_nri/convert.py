"""Between pycrio's view of pods and containers and NRI's messages.

Live events carry the core's records (duck-typed: the hookspecs pass them as
``Any``) and, at creation, the OCI spec dict; synchronization uses the CRI
messages the List/Status hooks return. Resources go three ways: OCI
``linux.resources`` <-> NRI ``LinuxResources`` -> CRI
``LinuxContainerResources`` (for updates that plugins ask for).
"""

from __future__ import annotations

from typing import Any

from cri_api.v1 import api_pb2 as cri

from pycrio_nri import api

STATE = {
    "created": api.ContainerState.Value("CONTAINER_CREATED"),
    "running": api.ContainerState.Value("CONTAINER_RUNNING"),
    "exited": api.ContainerState.Value("CONTAINER_STOPPED"),
}
CRI_STATE = {
    cri.CONTAINER_CREATED: api.ContainerState.Value("CONTAINER_CREATED"),
    cri.CONTAINER_RUNNING: api.ContainerState.Value("CONTAINER_RUNNING"),
    cri.CONTAINER_EXITED: api.ContainerState.Value("CONTAINER_STOPPED"),
}
HOOK_KINDS = {
    "prestart": "prestart",
    "createRuntime": "create_runtime",
    "createContainer": "create_container",
    "startContainer": "start_container",
    "poststart": "poststart",
    "poststop": "poststop",
}


# --- pods ----------------------------------------------------------------------


def pod_from_record(sandbox: Any) -> Any:
    if sandbox is None:
        return api.PodSandbox()
    linux = api.LinuxPodSandbox(
        cgroup_parent=getattr(sandbox, "cgroup_parent", ""),
        cgroups_path=getattr(sandbox, "cgroup_path", ""),
        namespaces=[
            api.LinuxNamespace(type=_ns_type(kind), path=path)
            for kind, path in sorted(getattr(sandbox, "namespaces", {}).items())
        ],
    )
    return api.PodSandbox(
        id=sandbox.id,
        name=sandbox.name,
        uid=sandbox.uid,
        namespace=sandbox.namespace,
        labels=dict(sandbox.labels),
        annotations=dict(sandbox.annotations),
        runtime_handler=getattr(sandbox, "runtime_handler", ""),
        linux=linux,
        pid=getattr(sandbox, "pid_holder", 0) or 0,
        ips=list(getattr(sandbox, "ips", [])),
    )


def _ns_type(kind: str) -> str:
    return {"net": "network", "mnt": "mount"}.get(kind, kind)


def pod_from_cri(pod: cri.PodSandbox, status: cri.PodSandboxStatus | None) -> Any:
    ips: list[str] = []
    if status is not None and status.network.ip:
        ips = [status.network.ip, *[a.ip for a in status.network.additional_ips]]
    return api.PodSandbox(
        id=pod.id,
        name=pod.metadata.name,
        uid=pod.metadata.uid,
        namespace=pod.metadata.namespace,
        labels=dict(pod.labels),
        annotations=dict(pod.annotations),
        runtime_handler=pod.runtime_handler,
        ips=ips,
    )


# --- containers ------------------------------------------------------------------


def container_from_record(container: Any) -> Any:
    return api.Container(
        id=container.id,
        pod_sandbox_id=container.sandbox_id,
        name=container.name,
        state=STATE.get(container.state, api.ContainerState.Value("CONTAINER_UNKNOWN")),
        labels=dict(container.labels),
        annotations=dict(container.annotations),
        pid=getattr(container, "pid", 0) or 0,
        created_at=getattr(container, "created_at", 0),
        started_at=getattr(container, "started_at", 0),
        finished_at=getattr(container, "finished_at", 0),
        exit_code=getattr(container, "exit_code", 0),
        status_reason=getattr(container, "reason", ""),
        status_message=getattr(container, "message", ""),
    )


def refresh_container(msg: Any, container: Any) -> Any:
    """``msg`` (built at creation from the spec) with the record's current state."""
    fresh = container_from_record(container)
    out = type(msg)()
    out.CopyFrom(msg)
    for name in ("state", "pid", "started_at", "finished_at", "exit_code"):
        setattr(out, name, getattr(fresh, name))
    out.status_reason = fresh.status_reason
    out.status_message = fresh.status_message
    return out


def container_from_cri(c: cri.Container, status: cri.ContainerStatus | None) -> Any:
    out = api.Container(
        id=c.id,
        pod_sandbox_id=c.pod_sandbox_id,
        name=c.metadata.name,
        state=CRI_STATE.get(c.state, api.ContainerState.Value("CONTAINER_UNKNOWN")),
        labels=dict(c.labels),
        annotations=dict(c.annotations),
        created_at=c.created_at,
    )
    if status is not None:
        out.started_at = status.started_at
        out.finished_at = status.finished_at
        out.exit_code = status.exit_code
        out.status_reason = status.reason
        out.status_message = status.message
        for m in status.mounts:
            out.mounts.add(
                destination=m.container_path,
                source=m.host_path,
                type="bind",
                options=["rbind", "ro" if m.readonly else "rw"],
            )
    return out


def container_from_spec(container: Any, spec: dict[str, Any]) -> Any:
    """The container about to be created, as its OCI spec describes it."""
    out = container_from_record(container)
    out.state = api.ContainerState.Value("CONTAINER_UNKNOWN")
    out.annotations.clear()
    out.annotations.update(spec.get("annotations", {}))
    process = spec.get("process", {})
    out.args.extend(process.get("args", []))
    out.env.extend(process.get("env", []))
    for m in spec.get("mounts", []):
        out.mounts.add(
            destination=m.get("destination", ""),
            type=m.get("type", ""),
            source=m.get("source", ""),
            options=m.get("options", []),
        )
    for kind, field in HOOK_KINDS.items():
        for h in spec.get("hooks", {}).get(kind, []):
            hook = getattr(out.hooks, field).add(
                path=h.get("path", ""), args=h.get("args", []), env=h.get("env", [])
            )
            if "timeout" in h:
                hook.timeout.value = h["timeout"]
    for r in process.get("rlimits", []):
        out.rlimits.add(type=r["type"], hard=r["hard"], soft=r["soft"])
    user = process.get("user", {})
    out.user.uid = user.get("uid", 0)
    out.user.gid = user.get("gid", 0)
    out.user.additional_gids.extend(user.get("additionalGids", []))
    linux = spec.get("linux", {})
    for ns in linux.get("namespaces", []):
        out.linux.namespaces.add(type=ns["type"], path=ns.get("path", ""))
    for d in linux.get("devices", []):
        dev = out.linux.devices.add(
            path=d["path"], type=d.get("type", ""), major=d.get("major", 0), minor=d.get("minor", 0)
        )
        if "fileMode" in d:
            dev.file_mode.value = d["fileMode"]
        if "uid" in d:
            dev.uid.value = d["uid"]
        if "gid" in d:
            dev.gid.value = d["gid"]
    out.linux.resources.CopyFrom(resources_from_oci(linux.get("resources", {})))
    if "oomScoreAdj" in process:
        out.linux.oom_score_adj.value = process["oomScoreAdj"]
    out.linux.cgroups_path = linux.get("cgroupsPath", "")
    out.linux.sysctl.update(linux.get("sysctl", {}))
    return out


# --- resources -------------------------------------------------------------------

_MEMORY = (
    ("limit", "limit"),
    ("reservation", "reservation"),
    ("swap", "swap"),
    ("kernel", "kernel"),
    ("kernelTCP", "kernel_tcp"),
    ("swappiness", "swappiness"),
    ("disableOOMKiller", "disable_oom_killer"),
    ("useHierarchy", "use_hierarchy"),
)
_CPU = (
    ("shares", "shares"),
    ("quota", "quota"),
    ("period", "period"),
    ("realtimeRuntime", "realtime_runtime"),
    ("realtimePeriod", "realtime_period"),
)


def resources_from_oci(res: dict[str, Any]) -> Any:
    out = api.LinuxResources()
    for oci_key, field in _MEMORY:
        if oci_key in res.get("memory", {}):
            getattr(out.memory, field).value = res["memory"][oci_key]
    cpu = res.get("cpu", {})
    for oci_key, field in _CPU:
        if oci_key in cpu:
            getattr(out.cpu, field).value = cpu[oci_key]
    out.cpu.cpus = cpu.get("cpus", "")
    out.cpu.mems = cpu.get("mems", "")
    for h in res.get("hugepageLimits", []):
        out.hugepage_limits.add(page_size=h["pageSize"], limit=h["limit"])
    out.unified.update(res.get("unified", {}))
    if "pids" in res:
        out.pids.limit = res["pids"].get("limit", 0)
    for d in res.get("devices", []):
        rule = out.devices.add(allow=d.get("allow", False), type=d.get("type", ""))
        rule.access = d.get("access", "")
        if d.get("major") is not None:
            rule.major.value = d["major"]
        if d.get("minor") is not None:
            rule.minor.value = d["minor"]
    return out


def merge_resources_into_oci(res: dict[str, Any], nri: Any) -> list[str]:
    """Set in ``res`` (OCI linux.resources) every field ``nri`` sets; return their names."""
    changed = []
    if nri.HasField("memory"):
        for oci_key, field in _MEMORY:
            if nri.memory.HasField(field):
                res.setdefault("memory", {})[oci_key] = getattr(nri.memory, field).value
                changed.append(f"memory.{oci_key}")
    if nri.HasField("cpu"):
        for oci_key, field in _CPU:
            if nri.cpu.HasField(field):
                res.setdefault("cpu", {})[oci_key] = getattr(nri.cpu, field).value
                changed.append(f"cpu.{oci_key}")
        for key in ("cpus", "mems"):
            if getattr(nri.cpu, key):
                res.setdefault("cpu", {})[key] = getattr(nri.cpu, key)
                changed.append(f"cpu.{key}")
    for h in nri.hugepage_limits:
        limits = res.setdefault("hugepageLimits", [])
        limits[:] = [x for x in limits if x["pageSize"] != h.page_size]
        limits.append({"pageSize": h.page_size, "limit": h.limit})
        changed.append(f"hugepageLimits.{h.page_size}")
    for key, value in nri.unified.items():
        res.setdefault("unified", {})[key] = value
        changed.append(f"unified.{key}")
    if nri.HasField("pids"):
        res["pids"] = {"limit": nri.pids.limit}
        changed.append("pids.limit")
    return changed


def cri_resources(base: cri.LinuxContainerResources, nri: Any) -> cri.LinuxContainerResources:
    """``base`` with what an NRI update sets: the CRI UpdateContainerResources request."""
    out = cri.LinuxContainerResources()
    out.CopyFrom(base)
    if nri.HasField("cpu"):
        if nri.cpu.HasField("shares"):
            out.cpu_shares = nri.cpu.shares.value
        if nri.cpu.HasField("quota"):
            out.cpu_quota = nri.cpu.quota.value
        if nri.cpu.HasField("period"):
            out.cpu_period = nri.cpu.period.value
        if nri.cpu.cpus:
            out.cpuset_cpus = nri.cpu.cpus
        if nri.cpu.mems:
            out.cpuset_mems = nri.cpu.mems
    if nri.HasField("memory"):
        if nri.memory.HasField("limit"):
            out.memory_limit_in_bytes = nri.memory.limit.value
        if nri.memory.HasField("swap"):
            out.memory_swap_limit_in_bytes = nri.memory.swap.value
    for h in nri.hugepage_limits:
        kept = [x for x in out.hugepage_limits if x.page_size != h.page_size]
        del out.hugepage_limits[:]
        out.hugepage_limits.extend(kept)
        out.hugepage_limits.add(page_size=h.page_size, limit=h.limit)
    for key, value in nri.unified.items():
        out.unified[key] = value
    return out


def merge_resources_into_nri(into: Any, update: Any) -> None:
    """Fold an NRI resources update into a container message's resources."""
    if update.HasField("memory"):
        for _, field in _MEMORY:
            if update.memory.HasField(field):
                getattr(into.memory, field).CopyFrom(getattr(update.memory, field))
    if update.HasField("cpu"):
        for _, field in _CPU:
            if update.cpu.HasField(field):
                getattr(into.cpu, field).CopyFrom(getattr(update.cpu, field))
        for key in ("cpus", "mems"):
            if getattr(update.cpu, key):
                setattr(into.cpu, key, getattr(update.cpu, key))
    into.unified.update(dict(update.unified))
