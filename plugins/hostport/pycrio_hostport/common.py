"""What both host port drivers share: validation, conflicts, state and commands.

The drivers differ only in how rules reach the kernel. Everything a kubelet
can observe besides the packets themselves (which mappings are accepted, which
pod holds a port, what survives a daemon restart) lives here so that switching
``[network] hostport_manager`` between ``iptables`` and ``nftables`` changes
nothing else.
"""

from __future__ import annotations

import abc
import hashlib
import ipaddress
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass
from typing import Any

from pycrio import reaper
from pycrio.errors import FailedPrecondition, Internal, InvalidArgument, Unavailable
from pycrio.kernel.interfaces import DriverContext, HostportDriver, PortMapping
from pycrio.storage.atomic import write_atomic

log = logging.getLogger("pycrio.hostport")

PROTOCOLS = ("tcp", "udp", "sctp")
STATE_FILE = "hostports.json"
STATE_VERSION = 1
#: Seconds any one iptables/nft invocation may take before the call fails:
#: a wedged xtables lock must not hang a RunPodSandbox forever.
DEFAULT_TIMEOUT = 30.0
ROUTE_LOCALNET = "/proc/sys/net/ipv4/conf/all/route_localnet"

# Pod ids end up in rule comments, quoted for iptables-restore and nft; keep
# them to characters that need no escaping in either (pycrio's are hex).
_POD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


@dataclass(frozen=True, order=True)
class Mapping:
    """A validated, normalised port mapping; ``host_ip`` "" means every address."""

    protocol: str
    host_port: int
    container_port: int
    host_ip: str = ""

    def describe(self) -> str:
        where = self.host_ip or "any address"
        return f"{self.protocol}/{self.host_port} on {where}"


def family_of(ip: str) -> int:
    return ipaddress.ip_address(ip).version


def pod_hash(pod_id: str) -> str:
    """A short stable name for the pod's chains.

    iptables chain names are limited to 28 characters, so the pod id itself
    cannot be used; the hash is stable across restarts so removal can find the
    chains from the pod id alone.
    """
    return hashlib.sha256(pod_id.encode()).hexdigest()[:16].upper()


def comment_for(pod_id: str) -> str:
    """The comment tagging every rule of a pod, so an operator can tell whose it is."""
    return f"pycrio pod {pod_id}"


def validate_pod_id(pod_id: str) -> None:
    if not isinstance(pod_id, str) or not _POD_ID.match(pod_id):
        raise InvalidArgument(
            f"pod_id {pod_id!r} is not valid for a host port mapping: expected 1 to 100"
            " letters, digits, '.', '_', ':' or '-'"
        )


def _parse_ip(value: str, field: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgument(f"{field} {value!r} is not an IP address literal") from None
    if getattr(addr, "scope_id", None):
        raise InvalidArgument(f"{field} {value!r}: a zone index is not allowed")
    return addr


def _port(value: Any, field: str, *, allow_zero: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field} {value!r} is not an integer")
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise InvalidArgument(f"{field} {value} is not in 1..65535")
    return value


def normalize(pod_ip: str, mappings: list[PortMapping]) -> tuple[int, str, list[Mapping]]:
    """Validate a request; return (IP family, pod IP, the mappings to install).

    A mapping with host_port 0 is skipped rather than refused: the kubelet
    passes every declared container port, and only those with a host port
    are to be mapped (what CRI-O's hostport manager does). A mapping whose
    host_ip belongs to the other IP family is skipped too, as the CNI portmap
    plugin does, so a dual-stack pod can pass the same list once per address.
    Exact duplicates collapse; two different mappings of one host port are
    refused because only one of them could ever receive packets.
    """
    addr = _parse_ip(pod_ip, "pod_ip")
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback:
        raise InvalidArgument(f"pod_ip {pod_ip!r} cannot receive forwarded traffic")
    family = addr.version
    chosen: dict[tuple[str, int, str], Mapping] = {}
    for i, pm in enumerate(mappings):
        field = f"port_mappings[{i}]"
        protocol = pm.protocol.lower() if isinstance(pm.protocol, str) else pm.protocol
        if protocol == "":
            protocol = "tcp"
        if protocol not in PROTOCOLS:
            raise InvalidArgument(
                f"{field}.protocol {pm.protocol!r} is not one of {', '.join(PROTOCOLS)}"
            )
        host_port = _port(pm.host_port, f"{field}.host_port", allow_zero=True)
        container_port = _port(pm.container_port, f"{field}.container_port", allow_zero=False)
        host_ip = ""
        if pm.host_ip:
            if not isinstance(pm.host_ip, str):
                raise InvalidArgument(f"{field}.host_ip {pm.host_ip!r} is not a string")
            hip = _parse_ip(pm.host_ip, f"{field}.host_ip")
            if hip.version != family:
                log.debug("skipping %s: host_ip %s is not IPv%d", field, pm.host_ip, family)
                continue
            if hip.is_multicast:
                raise InvalidArgument(f"{field}.host_ip {pm.host_ip!r} is a multicast address")
            host_ip = "" if hip.is_unspecified else str(hip)
        if host_port == 0:
            continue
        m = Mapping(protocol, host_port, container_port, host_ip)
        key = (protocol, host_port, host_ip)
        if key in chosen and chosen[key] != m:
            raise InvalidArgument(
                f"{field}: host port {m.describe()} is mapped twice, to container ports"
                f" {chosen[key].container_port} and {container_port}"
            )
        chosen[key] = m
    for m in chosen.values():
        for other in chosen.values():
            if m is not other and m.host_ip == "" and overlaps(m, other):
                raise InvalidArgument(
                    f"host port {m.describe()} overlaps {other.describe()} in the same request"
                )
    return family, str(addr), sorted(chosen.values())


def overlaps(a: Mapping, b: Mapping) -> bool:
    """True when the two would catch the same packets: "any address" covers every address."""
    return (
        a.protocol == b.protocol
        and a.host_port == b.host_port
        and (a.host_ip == b.host_ip or not a.host_ip or not b.host_ip)
    )


@dataclass
class FamilyEntry:
    """One pod's mappings for one IP family, as installed."""

    pod_ip: str
    mappings: list[Mapping]

    def to_json(self) -> dict[str, Any]:
        return {"pod_ip": self.pod_ip, "mappings": [asdict(m) for m in self.mappings]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FamilyEntry:
        return cls(str(data["pod_ip"]), [Mapping(**m) for m in data.get("mappings", [])])


#: pod id -> IP family (4 or 6) -> entry
PodState = dict[str, dict[int, FamilyEntry]]


def find_conflict(
    pods: PodState, pod_id: str, family: int, mappings: list[Mapping]
) -> tuple[str, Mapping, Mapping] | None:
    """(holder pod, requested mapping, held mapping) of the first clash with another pod."""
    for other_id, families in sorted(pods.items()):
        if other_id == pod_id or family not in families:
            continue
        for held in families[family].mappings:
            for m in mappings:
                if overlaps(m, held):
                    return other_id, m, held
    return None


class StateStore:
    """The mappings every pod holds, in one JSON file under the driver's state dir.

    The kernel's rules alone cannot answer "who holds this port?" quickly or
    portably, and after a daemon restart remove() must still know which IP
    families a pod used. The file is rewritten atomically on every change.
    """

    def __init__(self, state_dir: str) -> None:
        self.dir = state_dir
        self.path = os.path.join(state_dir, STATE_FILE)

    def load(self) -> PodState:
        try:
            with open(self.path, "rb") as f:
                raw = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            return self._quarantine(e)
        try:
            if raw.get("version") != STATE_VERSION:
                raise ValueError(f"unknown version {raw.get('version')!r}")
            return {
                pod_id: {int(fam): FamilyEntry.from_json(e) for fam, e in families.items()}
                for pod_id, families in raw["pods"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            return self._quarantine(e)

    def _quarantine(self, error: Exception) -> PodState:
        # An unreadable file must not keep the daemon from starting: keep it
        # for an operator to read and start over (rules are still removable,
        # their chain names derive from the pod id).
        aside = self.path + ".corrupt"
        log.error("host port state %s is unreadable (%s); moved to %s", self.path, error, aside)
        try:
            os.replace(self.path, aside)
        except OSError:
            log.exception("cannot move %s aside", self.path)
        return {}

    def save(self, pods: PodState) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        data = {
            "version": STATE_VERSION,
            "pods": {
                pod_id: {str(fam): e.to_json() for fam, e in sorted(families.items())}
                for pod_id, families in sorted(pods.items())
                if families
            },
        }
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True).encode(), 0o600)


def run_command(argv: list[str], *, timeout: float, stdin_text: str | None = None) -> str:
    """Run one iptables/nft command without a shell; return its stdout.

    ``stdin_text`` (a restore file, an nft script) is passed through a
    temporary file so that :func:`pycrio.reaper.run` with its mandatory
    timeout can be used as is. Failures name the command and its stderr so
    the message reaching the kubelet (and the operator) says what the kernel
    refused.
    """
    cmd = " ".join(argv)
    with tempfile.TemporaryFile() as feed:
        if stdin_text is not None:
            feed.write(stdin_text.encode())
            feed.seek(0)
        try:
            proc = reaper.run(argv, timeout, stdin=feed, capture_output=True)
        except FileNotFoundError:
            raise Unavailable(f"{argv[0]} is not installed (needed to run {cmd!r})") from None
        except subprocess.TimeoutExpired:
            raise Unavailable(f"{cmd!r} did not finish within {timeout:g}s") from None
    return _finish(argv, proc, stdin_text)


def _finish(argv: list[str], proc: subprocess.CompletedProcess, text: str | None = None) -> str:
    if proc.returncode == 0:
        return proc.stdout.decode(errors="replace")
    stderr = proc.stderr.decode(errors="replace").strip()
    msg = f"{' '.join(argv)!r} failed with exit status {proc.returncode}: {stderr or '(no stderr)'}"
    if text is not None:
        # iptables-restore says "line N failed"; nft quotes the line itself.
        found = re.search(r"line:? (\d+)", stderr)
        lines = text.splitlines()
        if found and 0 < int(found.group(1)) <= len(lines):
            msg += f" (input line {found.group(1)}: {lines[int(found.group(1)) - 1]})"
    raise Internal(msg)


def enable_route_localnet() -> None:
    """Let DNAT send packets from 127.0.0.1 out of a non-loopback interface.

    Without net.ipv4.conf.all.route_localnet=1 the kernel drops a packet whose
    source or destination is in 127.0.0.0/8 once it would leave ``lo``, so a
    host port would be unreachable through 127.0.0.1. The masquerade rule
    then gives such packets the host's address on the pod's interface. The
    setting is left on at removal: other pods or components may rely on it
    (kube-proxy and the CNI portmap plugin never reset it either). A read-only
    /proc/sys only costs localhost access, so it is a warning, not a failure.
    """
    try:
        with open(ROUTE_LOCALNET) as f:
            if f.read().strip() == "1":
                return
        with open(ROUTE_LOCALNET, "w") as f:
            f.write("1\n")
    except OSError as e:
        log.warning(
            "cannot set net.ipv4.conf.all.route_localnet=1 (%s): host ports will not be"
            " reachable through 127.0.0.1",
            e,
        )


class HostportBase(HostportDriver):
    """add/remove with validation, conflict checks and state; subclasses write the rules.

    One lock serialises every change: host port changes are rare (pod start
    and stop), and each one reads the kernel's current rules before writing,
    which must not interleave with another change by this driver.
    """

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.timeout = float(ctx.options.get("timeout", DEFAULT_TIMEOUT))
        self._lock = threading.Lock()
        self._store = StateStore(ctx.state_dir)
        self._pods: PodState = self._store.load()

    # --- the kernel side, per driver ---------------------------------------

    @abc.abstractmethod
    def _apply(self, family: int, pod_id: str, pod_ip: str, mappings: list[Mapping]) -> None:
        """Make the pod's rules for this family exactly ``mappings``, atomically."""

    @abc.abstractmethod
    def _withdraw(self, family: int, pod_id: str) -> None:
        """Remove every rule of the pod for this family; nothing there is not an error."""

    # --- the interface ------------------------------------------------------

    def add(self, pod_id: str, pod_ip: str, mappings: list[PortMapping]) -> None:
        """Install the pod's mappings for the family of ``pod_ip``, replacing earlier ones."""
        validate_pod_id(pod_id)
        family, ip, wanted = normalize(pod_ip, mappings)
        with self._lock:
            current = self._pods.get(pod_id, {})
            if not wanted:
                if family in current:
                    self._remove_family(pod_id, family)
                return
            clash = find_conflict(self._pods, pod_id, family, wanted)
            if clash:
                holder, m, held = clash
                raise FailedPrecondition(
                    f"host port {m.describe()} for pod {pod_id} is already mapped by pod"
                    f" {holder} ({held.describe()} -> {held.container_port})"
                )
            after = {k: dict(v) for k, v in self._pods.items()}
            after.setdefault(pod_id, {})[family] = FamilyEntry(ip, wanted)
            # State first: if the daemon dies between the two, remove() still
            # knows to look for this pod's rules.
            self._store.save(after)
            try:
                if family == 4:
                    enable_route_localnet()
                self._apply(family, pod_id, ip, wanted)
            except BaseException:
                # Both backends apply atomically: a failure changed nothing.
                self._store.save(self._pods)
                raise
            self._pods = after
            log.info(
                "pod %s: mapped %s",
                pod_id,
                ", ".join(f"{m.describe()} -> {ip}:{m.container_port}" for m in wanted),
            )

    def remove(self, pod_id: str) -> None:
        """Remove every mapping of the pod; a pod without mappings costs no command."""
        with self._lock:
            for family in sorted(self._pods.get(pod_id, {})):
                self._remove_family(pod_id, family)

    def mappings(self, pod_id: str) -> dict[int, FamilyEntry]:
        """What the pod holds (for status and tests)."""
        with self._lock:
            return dict(self._pods.get(pod_id, {}))

    def _remove_family(self, pod_id: str, family: int) -> None:
        self._withdraw(family, pod_id)
        families = self._pods.get(pod_id, {})
        families.pop(family, None)
        if not families:
            self._pods.pop(pod_id, None)
        self._store.save(self._pods)
        log.info("pod %s: IPv%d host ports removed", pod_id, family)
