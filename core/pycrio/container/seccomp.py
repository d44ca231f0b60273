"""The container's seccomp filter: RuntimeDefault, Unconfined or Localhost.

The CRI ``seccomp`` field wins; when the kubelet leaves it out, the
deprecated ``seccomp_profile_path`` string is honoured (``runtime/default``,
``docker/default``, ``unconfined``, ``localhost/<path>``), and nothing at all
means Unconfined, which is what Kubernetes means by a pod without a profile.
Profiles in moby's format (``archMap``, ``includes``/``excludes``) are
rendered into the OCI form runc reads, for this machine's architecture and
the container's capabilities.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.container import seccomp_default
from pycrio.errors import InvalidArgument

RUNTIME_DEFAULT = api_pb2.SecurityProfile.ProfileType.Value("RuntimeDefault")
UNCONFINED = api_pb2.SecurityProfile.ProfileType.Value("Unconfined")
LOCALHOST = api_pb2.SecurityProfile.ProfileType.Value("Localhost")

#: A Localhost profile larger than this is not a seccomp profile.
MAX_PROFILE_SIZE = 1024 * 1024

#: OCI seccomp actions (runtime-spec config-linux.md).
ACTIONS = frozenset(
    {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    }
)
OPERATORS = frozenset(
    {
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }
)


def machine_arch() -> str:
    """``uname -m`` of this node, the key of seccomp_default.ARCHITECTURES."""
    return platform.machine()


def _arch_info(machine: str) -> tuple[str, tuple[str, ...]]:
    info = seccomp_default.ARCHITECTURES.get(machine)
    if info is None:
        raise InvalidArgument(
            f"seccomp: no default profile for architecture {machine!r} "
            f"(supported: {', '.join(sorted(seccomp_default.ARCHITECTURES))})"
        )
    return info


def _applies(rule: Mapping[str, Any], goarch: str, caps: Iterable[str]) -> bool:
    have = set(caps)
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if includes.get("arches") and goarch not in includes["arches"]:
        return False
    if includes.get("caps") and not set(includes["caps"]) <= have:
        return False
    if excludes.get("arches") and goarch in excludes["arches"]:
        return False
    return not (excludes.get("caps") and set(excludes["caps"]) & have)


def render(
    profile: Mapping[str, Any],
    machine: str,
    capabilities: Iterable[str],
    what: str = "seccomp profile",
) -> dict[str, Any]:
    """A profile (moby or OCI format) as the OCI ``linux.seccomp`` object.

    Conditional rules are kept or dropped for ``machine`` and the
    container's (bounding) ``capabilities``; everything is validated so a
    broken profile fails CreateContainer with its name, not runc later.
    """
    if not isinstance(profile, Mapping):
        raise InvalidArgument(f"{what}: must be a JSON object")
    default_action = profile.get("defaultAction")
    if default_action not in ACTIONS:
        raise InvalidArgument(f"{what}: invalid defaultAction {default_action!r}")
    goarch, native = seccomp_default.ARCHITECTURES.get(machine, (machine, ()))
    caps = list(capabilities)
    out: dict[str, Any] = {"defaultAction": default_action}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = _uint(profile["defaultErrnoRet"], f"{what}: defaultErrnoRet")
    arches = _architectures(profile, what)
    if not arches and profile.get("archMap") is not None:
        arches = _from_arch_map(profile["archMap"], native, what)
    if arches:
        out["architectures"] = arches
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if key in profile:
            out[key] = profile[key]
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise InvalidArgument(f"{what}: syscalls must be a list")
    rendered = []
    for index, rule in enumerate(syscalls):
        field = f"{what}: syscalls[{index}]"
        if not isinstance(rule, Mapping):
            raise InvalidArgument(f"{field} must be an object")
        if not _applies(rule, goarch, caps):
            continue
        rendered.append(_render_rule(rule, field))
    out["syscalls"] = rendered
    return out


def _uint(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"{field}: {value!r} is not a non-negative integer")
    return value


def _architectures(profile: Mapping[str, Any], what: str) -> list[str]:
    arches = profile.get("architectures")
    if arches is not None:
        if not isinstance(arches, list) or not all(
            isinstance(a, str) and a.startswith("SCMP_ARCH_") for a in arches
        ):
            raise InvalidArgument(f"{what}: architectures must be a list of SCMP_ARCH_* names")
        return list(arches)
    return []


def _from_arch_map(arch_map: Any, native: Sequence[str], what: str) -> list[str]:
    """moby's ``archMap``: the entry for this machine's native arch and its sub-arches."""
    if not isinstance(arch_map, list):
        raise InvalidArgument(f"{what}: archMap must be a list")
    for entry in arch_map:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("architecture"), str):
            raise InvalidArgument(f"{what}: archMap entries need an architecture")
        if native and entry["architecture"] == native[0]:
            subs = entry.get("subArchitectures") or []
            if not isinstance(subs, list) or not all(isinstance(a, str) for a in subs):
                raise InvalidArgument(f"{what}: subArchitectures must be a list of names")
            return [entry["architecture"], *subs]
    return []


def _render_rule(rule: Mapping[str, Any], field: str) -> dict[str, Any]:
    names = rule.get("names")
    if names is None and isinstance(rule.get("name"), str):
        names = [rule["name"]]  # the old single-name form
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise InvalidArgument(f"{field}: names must be a non-empty list of syscall names")
    action = rule.get("action")
    if action not in ACTIONS:
        raise InvalidArgument(f"{field}: invalid action {action!r}")
    out: dict[str, Any] = {"names": list(names), "action": action}
    if "errnoRet" in rule:
        out["errnoRet"] = _uint(rule["errnoRet"], f"{field}.errnoRet")
    args = rule.get("args") or []
    if not isinstance(args, list):
        raise InvalidArgument(f"{field}: args must be a list")
    rendered_args = []
    for i, arg in enumerate(args):
        where = f"{field}.args[{i}]"
        if not isinstance(arg, Mapping):
            raise InvalidArgument(f"{where} must be an object")
        index = _uint(arg.get("index"), f"{where}.index")
        if index > 5:
            raise InvalidArgument(f"{where}.index: {index} is not a syscall argument (0..5)")
        op = arg.get("op")
        if op not in OPERATORS:
            raise InvalidArgument(f"{where}: invalid op {op!r}")
        rendered_arg: dict[str, Any] = {"index": index, "op": op}
        rendered_arg["value"] = _uint(arg.get("value", 0), f"{where}.value")
        if "valueTwo" in arg:
            rendered_arg["valueTwo"] = _uint(arg["valueTwo"], f"{where}.valueTwo")
        rendered_args.append(rendered_arg)
    if rendered_args:
        out["args"] = rendered_args
    return out


def default_profile(machine: str, capabilities: Iterable[str]) -> dict[str, Any]:
    """The RuntimeDefault profile for ``machine`` and the container's capabilities."""
    _, arches = _arch_info(machine)
    profile = {
        "defaultAction": seccomp_default.DEFAULT_ACTION,
        "defaultErrnoRet": seccomp_default.DEFAULT_ERRNO_RET,
        "architectures": list(arches),
        "syscalls": [dict(r) for r in seccomp_default.RULES],
    }
    return render(profile, machine, capabilities, what="default seccomp profile")


def load_localhost(path: str, machine: str, capabilities: Iterable[str]) -> dict[str, Any]:
    """Read and render a Localhost profile; a missing or broken file is InvalidArgument."""
    field = f"seccomp localhost profile {path!r}"
    if not os.path.isabs(path):
        raise InvalidArgument(f"{field}: the path must be absolute")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PROFILE_SIZE + 1)
    except FileNotFoundError as exc:
        raise InvalidArgument(f"{field}: no such file") from exc
    except OSError as exc:
        raise InvalidArgument(f"{field}: {exc.strerror}") from exc
    if len(data) > MAX_PROFILE_SIZE:
        raise InvalidArgument(f"{field}: larger than {MAX_PROFILE_SIZE} bytes")
    try:
        profile = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"{field}: not valid JSON: {exc}") from exc
    return render(profile, machine, capabilities, what=field)


def _from_legacy_path(path: str) -> tuple[int, str]:
    if path in ("", "unconfined"):
        return UNCONFINED, ""
    if path in ("runtime/default", "docker/default"):
        return RUNTIME_DEFAULT, ""
    if path.startswith("localhost/"):
        return LOCALHOST, path[len("localhost/") :]
    raise InvalidArgument(f"seccomp_profile_path: unknown value {path!r}")


def select(
    security_context: api_pb2.LinuxContainerSecurityContext,
) -> tuple[int, str]:
    """(profile type, localhost path) the kubelet asked for, old field included."""
    if security_context.HasField("seccomp"):
        profile = security_context.seccomp
        kind = profile.profile_type
        if kind == LOCALHOST:
            if not profile.localhost_ref:
                raise InvalidArgument("seccomp: Localhost profile without localhost_ref")
            ref = profile.localhost_ref
            return LOCALHOST, ref[len("localhost/") :] if ref.startswith("localhost/") else ref
        if kind not in (RUNTIME_DEFAULT, UNCONFINED):
            raise InvalidArgument(f"seccomp: unknown profile_type {kind}")
        return kind, ""
    return _from_legacy_path(security_context.seccomp_profile_path)


def build(
    security_context: api_pb2.LinuxContainerSecurityContext,
    privileged: bool,
    machine: str,
    capabilities: Sequence[str],
) -> dict[str, Any] | None:
    """The ``linux.seccomp`` object, or None for no filter (privileged, Unconfined)."""
    kind, path = select(security_context)
    if privileged or kind == UNCONFINED:
        return None
    if kind == RUNTIME_DEFAULT:
        return default_profile(machine, capabilities)
    return load_localhost(path, machine, capabilities)
