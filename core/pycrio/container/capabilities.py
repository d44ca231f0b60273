"""Linux capabilities of a container: CRI-O's default set, add/drop, ALL.

Kubernetes names capabilities without the ``CAP_`` prefix and in any case;
the OCI spec wants ``CAP_`` names. An unknown name is refused rather than
ignored, because a typo in a drop list would otherwise silently leave a
capability in place.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from cri_api.v1 import api_pb2

from pycrio.errors import InvalidArgument

#: Every capability by number (index = bit), as in linux/capability.h.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

CAP_SYS_RESOURCE_BIT = ALL_CAPABILITIES.index("CAP_SYS_RESOURCE")

#: CRI-O's ``default_capabilities`` (internal/config/capabilities). Smaller
#: than Docker's: no NET_RAW, MKNOD, AUDIT_WRITE, SYS_CHROOT or SETFCAP.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "KILL",
)


def host_last_cap(path: str = "/proc/sys/kernel/cap_last_cap") -> int:
    """Highest capability number the running kernel knows (older kernels know fewer)."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return len(ALL_CAPABILITIES) - 1


def supported(last_cap: int) -> tuple[str, ...]:
    """The capabilities this kernel supports, in bit order."""
    return ALL_CAPABILITIES[: last_cap + 1]


def normalize(name: str, field: str, last_cap: int) -> str:
    """``net_admin`` / ``CAP_NET_ADMIN`` -> ``CAP_NET_ADMIN``; unknown -> InvalidArgument."""
    upper = name.strip().upper()
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in ALL_CAPABILITIES:
        raise InvalidArgument(f"{field}: unknown capability {name!r}")
    if full not in supported(last_cap):
        raise InvalidArgument(f"{field}: capability {name!r} is not supported by this kernel")
    return full


def _is_all(name: str) -> bool:
    return name.strip().upper() == "ALL"


def _ordered(caps: Iterable[str]) -> list[str]:
    wanted = set(caps)
    return [c for c in ALL_CAPABILITIES if c in wanted]


def compute(
    caps: api_pb2.Capability,
    default: Sequence[str],
    privileged: bool,
    last_cap: int,
    available: Collection[str] | None = None,
) -> dict[str, list[str]]:
    """The OCI ``process.capabilities`` object.

    Like CRI-O: start from the default set unless add or drop says ALL, add
    everything for add ALL, remove everything for drop ALL, then add the
    named ones and finally drop the named ones (a capability both added and
    dropped is dropped). Inheritable stays empty (CVE-2022-27652); ambient
    capabilities are only what the kubelet explicitly asked for.

    ``available`` is the daemon's own bounding set (None: no limit). "All
    capabilities" (privileged, add ALL) means those, as containerd's
    ``WithAllCurrentCapabilities``: runc cannot grant a capability that is
    not in its bounding set, so on a node whose runtime runs with a reduced
    set, every privileged container would fail with "unable to apply caps".
    """
    all_supported = supported(last_cap)
    if available is not None:
        all_supported = tuple(c for c in all_supported if c in available)
    adds = list(caps.add_capabilities)
    drops = list(caps.drop_capabilities)
    add_all = any(_is_all(c) for c in adds)
    drop_all = any(_is_all(c) for c in drops)
    named_adds = [normalize(c, "add_capabilities", last_cap) for c in adds if not _is_all(c)]
    named_drops = [normalize(c, "drop_capabilities", last_cap) for c in drops if not _is_all(c)]
    ambient = [
        normalize(c, "add_ambient_capabilities", last_cap) for c in caps.add_ambient_capabilities
    ]
    defaults = [normalize(c, "default_capabilities", last_cap) for c in default]
    if privileged:
        full = list(all_supported)
        return {"bounding": full, "effective": full, "permitted": full}

    current: set[str] = set()
    if not add_all and not drop_all:
        current.update(defaults)
    if add_all:
        current.update(all_supported)
    if drop_all:
        current.clear()
    current.update(named_adds)
    current.difference_update(named_drops)
    current.update(ambient)
    result = _ordered(current)
    out: dict[str, list[str]] = {
        "bounding": result,
        "effective": list(result),
        "permitted": list(result),
    }
    if ambient:
        out["inheritable"] = _ordered(ambient)
        out["ambient"] = _ordered(ambient)
    return out


def effective_from_status(status_text: str) -> int:
    """The CapEff mask from the text of /proc/<pid>/status (0 when absent)."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split(":", 1)[1].strip(), 16)
    return 0


def bounding_from_status(status_text: str) -> frozenset[str] | None:
    """The capability names in the CapBnd mask of /proc/<pid>/status (None when absent)."""
    for line in status_text.splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split(":", 1)[1].strip(), 16)
            return frozenset(c for i, c in enumerate(ALL_CAPABILITIES) if mask >> i & 1)
    return None


def daemon_bounding_set(status_path: str = "/proc/self/status") -> frozenset[str] | None:
    """The capabilities this daemon (and so runc) can hand to a container."""
    try:
        with open(status_path, encoding="ascii") as f:
            return bounding_from_status(f.read())
    except OSError:
        return None


def has_capability(mask: int, bit: int) -> bool:
    """Whether ``bit`` is set in a capability mask."""
    return bool(mask >> bit & 1)


def daemon_has_sys_resource(status_path: str = "/proc/self/status") -> bool:
    """Whether this daemon may lower oom_score_adj (needs CAP_SYS_RESOURCE)."""
    try:
        with open(status_path, encoding="ascii") as f:
            mask = effective_from_status(f.read())
    except OSError:
        return False
    return has_capability(mask, CAP_SYS_RESOURCE_BIT)
