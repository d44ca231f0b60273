"""Reading what plugins print: ADD results, errors and VERSION answers.

Results come in three shapes depending on the spec version the network runs
at: 0.1.0/0.2.0 (``ip4``/``ip6`` objects), 0.3.x/0.4.0 (``ips`` entries with a
``version`` field) and 1.x (``ips`` without ``version``). All are read into
one :class:`CNIResult`; the raw JSON is kept as well because it is what the
next plugin (prevResult) and the cache need, unchanged.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any


class ResultInvalid(ValueError):
    """A plugin printed something that is not a CNI result."""


@dataclass
class IPConfig:
    address: str  # CIDR, e.g. 10.89.0.5/24
    gateway: str = ""
    interface: int | None = None

    @property
    def ip(self) -> str:
        """The address without its prefix length."""
        return str(ipaddress.ip_interface(self.address).ip)

    @property
    def family(self) -> int:
        return ipaddress.ip_interface(self.address).version


@dataclass
class CNIResult:
    cni_version: str
    interfaces: list[dict[str, Any]] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    dns: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def pod_ips(self) -> list[str]:
        """The pod's addresses, IPv4 first, then IPv6, each once.

        Only addresses on interfaces inside the sandbox count (a plugin may
        report the host side of a veth too); when no entry says where it
        lives, all are taken, as CRI-O does for plugins that omit indexes.
        """
        inside = [ip for ip in self.ips if self._in_sandbox(ip)]
        chosen = inside or self.ips
        seen: list[str] = []
        for family in (4, 6):
            for ipc in chosen:
                if ipc.family == family and ipc.ip not in seen:
                    seen.append(ipc.ip)
        return seen

    def _in_sandbox(self, ipc: IPConfig) -> bool:
        if ipc.interface is None or not (0 <= ipc.interface < len(self.interfaces)):
            return True
        return bool(self.interfaces[ipc.interface].get("sandbox"))


def _load(data: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ResultInvalid(f"not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ResultInvalid("not a JSON object")
    return doc


def _ip_entry(entry: Any) -> IPConfig:
    if not isinstance(entry, dict) or not isinstance(entry.get("address"), str):
        raise ResultInvalid(f"ips entry {entry!r} has no address")
    try:
        ipaddress.ip_interface(entry["address"])
    except ValueError as e:
        raise ResultInvalid(f"ips entry address {entry['address']!r}: {e}") from e
    iface = entry.get("interface")
    if iface is not None and (not isinstance(iface, int) or isinstance(iface, bool)):
        raise ResultInvalid(f"ips entry interface {iface!r} is not an index")
    return IPConfig(address=entry["address"], gateway=entry.get("gateway") or "", interface=iface)


def parse_result(data: bytes | str | dict[str, Any]) -> CNIResult:
    """Read an ADD result of any spec version."""
    doc = _load(data)
    version = doc.get("cniVersion", "")
    if not isinstance(version, str):
        raise ResultInvalid("cniVersion is not a string")
    ips: list[IPConfig] = []
    routes: list[dict[str, Any]] = []
    if "ip4" in doc or "ip6" in doc:
        # 0.1.0 / 0.2.0: one object per family, routes inside it.
        for key in ("ip4", "ip6"):
            block = doc.get(key)
            if not block:
                continue
            if not isinstance(block, dict) or not isinstance(block.get("ip"), str):
                raise ResultInvalid(f"{key} has no ip")
            ips.append(_ip_entry({"address": block["ip"], "gateway": block.get("gateway")}))
            routes.extend(r for r in block.get("routes") or [] if isinstance(r, dict))
    else:
        raw_ips = doc.get("ips") or []
        if not isinstance(raw_ips, list):
            raise ResultInvalid("ips is not a list")
        ips = [_ip_entry(e) for e in raw_ips]
        routes = [r for r in doc.get("routes") or [] if isinstance(r, dict)]
    interfaces = doc.get("interfaces") or []
    if not isinstance(interfaces, list) or not all(isinstance(i, dict) for i in interfaces):
        raise ResultInvalid("interfaces is not a list of objects")
    dns = doc.get("dns") or {}
    if not isinstance(dns, dict):
        raise ResultInvalid("dns is not an object")
    return CNIResult(
        cni_version=version,
        interfaces=list(interfaces),
        ips=ips,
        routes=routes,
        dns=dns,
        raw=doc,
    )


#: Well-known error codes (spec "Well-known Error Codes", plus 50/51 of STATUS).
ERROR_CODES: dict[int, str] = {
    1: "incompatible CNI version",
    2: "unsupported field in network configuration",
    3: "container unknown or does not exist",
    4: "invalid necessary environment variables",
    5: "I/O failure",
    6: "failed to decode content",
    7: "invalid network config",
    11: "try again later",
    50: "plugin not available",
    51: "plugin not available, existing containers may have limited connectivity",
}
CODE_CONTAINER_UNKNOWN = 3
CODE_TRY_AGAIN = 11


@dataclass
class CNIErrorInfo:
    """An error as a plugin reported it (or as well as we could tell)."""

    code: int = 0
    msg: str = ""
    details: str = ""

    def text(self) -> str:
        """One line for an operator: the message, its details, the code's meaning."""
        parts = [self.msg or "(no message)"]
        if self.details and self.details != self.msg:
            parts.append(self.details)
        meaning = ERROR_CODES.get(self.code)
        code = f"code {self.code}" + (f": {meaning}" if meaning else "")
        return f"{'; '.join(parts)} ({code})" if self.code else "; ".join(parts)


def parse_error(stdout: bytes, stderr: bytes = b"", returncode: int = 1) -> CNIErrorInfo:
    """Make sense of a failed call.

    The spec puts ``{"code", "msg", "details"}`` on stdout; a crashed or
    non-conforming plugin leaves text on stdout or stderr instead, which is
    quoted (the tail, stripped) so the operator still sees it.
    """
    try:
        doc = json.loads(stdout) if stdout.strip() else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and ("msg" in doc or "code" in doc):
        code = doc.get("code")
        return CNIErrorInfo(
            code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
            msg=str(doc.get("msg") or ""),
            details=str(doc.get("details") or ""),
        )
    text = (stdout.strip() or stderr.strip()).decode(errors="replace")
    if len(text) > 2000:
        text = "..." + text[-2000:]
    return CNIErrorInfo(code=0, msg=text or f"exited with status {returncode} and no output")


def parse_versions(stdout: bytes) -> list[str]:
    """``supportedVersions`` from a VERSION answer (0.1.0 plugins answer nothing useful)."""
    doc = _load(stdout)
    versions = doc.get("supportedVersions")
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise ResultInvalid("supportedVersions is not a list of strings")
    return versions
