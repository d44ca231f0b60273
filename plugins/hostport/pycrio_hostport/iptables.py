"""The ``iptables`` host port driver: nat-table rules applied with iptables-restore.

Layout in the ``nat`` table (``ip6tables`` for IPv6 pods)::

    PREROUTING  -m addrtype --dst-type LOCAL -j PYCRIO-HOSTPORTS   (inserted first)
    OUTPUT      -m addrtype --dst-type LOCAL -j PYCRIO-HOSTPORTS   (inserted first)
    POSTROUTING -j PYCRIO-HP-MASQ                                  (inserted first)
    PYCRIO-HOSTPORTS  -m comment --comment "pycrio pod <id>" -j PYCRIO-HP-<hash>
    PYCRIO-HP-MASQ    -m comment --comment "pycrio pod <id>" -j PYCRIO-HM-<hash>
    PYCRIO-HP-<hash>  one DNAT rule per mapping
    PYCRIO-HM-<hash>  MASQUERADE for 127.0.0.0/8 sources (and hairpin) per mapping

Every pod owns two chains named after a hash of its id, so adding is
"create or flush the pod's chains, fill them, jump to them" and removing is
"delete the jumps, flush and delete the chains", each one iptables-restore
transaction (all or nothing, and ``--noflush`` leaves everyone else's rules
alone). Removal reads the rules back from ``iptables-save`` rather than
trusting our state, so it is idempotent and works after a restart or a crash.
The shared chains and hooks go away with the last pod, leaving no trace.
"""

from __future__ import annotations

import logging
import shlex
import shutil
from dataclasses import dataclass, field

from pycrio.errors import Internal
from pycrio_hostport.common import (
    HostportBase,
    Mapping,
    comment_for,
    pod_hash,
    run_command,
)

log = logging.getLogger("pycrio.hostport.iptables")

HOSTPORTS_CHAIN = "PYCRIO-HOSTPORTS"
MASQ_CHAIN = "PYCRIO-HP-MASQ"
HOOK_COMMENT = "pycrio hostports"
MASQ_COMMENT = "pycrio hostport masquerade"
LOOPBACK_V4 = "127.0.0.0/8"

SAVE = {4: "iptables-save", 6: "ip6tables-save"}
RESTORE = {4: "iptables-restore", 6: "ip6tables-restore"}


def pod_chains(pod_id: str) -> tuple[str, str]:
    """(DNAT chain, masquerade chain) of a pod: 26 characters, under iptables' 28."""
    h = pod_hash(pod_id)
    return f"PYCRIO-HP-{h}", f"PYCRIO-HM-{h}"


@dataclass
class NatRules:
    """The parts of ``iptables-save -t nat`` these rules care about."""

    chains: set[str] = field(default_factory=set)
    #: "-A CHAIN ..." lines exactly as saved (so "-D" + line[2:] deletes one).
    rules: list[str] = field(default_factory=list)

    def target(self, rule: str) -> tuple[str, str]:
        """(chain, jump target) of a saved rule; target "" when it has none."""
        tokens = shlex.split(rule)
        target = tokens[tokens.index("-j") + 1] if "-j" in tokens[:-1] else ""
        return tokens[1], target

    def jumps(self, to: str, *, chain: str | None = None) -> list[str]:
        return [
            r
            for r in self.rules
            if self.target(r)[1] == to and (chain is None or self.target(r)[0] == chain)
        ]


def parse_save(text: str) -> NatRules:
    """Parse the nat table out of iptables-save output (other tables are ignored)."""
    nat = NatRules()
    in_nat = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            in_nat = line == "*nat"
        elif not in_nat:
            continue
        elif line.startswith(":"):
            nat.chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            nat.rules.append(line)
    return nat


def _host(ip: str, family: int) -> str:
    return f"{ip}/32" if family == 4 else f"{ip}/128"


def _endpoint(ip: str, port: int, family: int) -> str:
    return f"{ip}:{port}" if family == 4 else f"[{ip}]:{port}"


def hook_rules() -> list[str]:
    """The rules hooking the shared chains into the built-in ones, as -I lines.

    Inserted first so a host port the kubelet asked for wins over broader DNAT
    rules appended by others (the CNI portmap plugin does the same). Only
    packets addressed to the node itself are considered: OUTPUT also sees the
    host's traffic to remote hosts, which must not be rewritten.
    """
    local = f'-m comment --comment "{HOOK_COMMENT}" -m addrtype --dst-type LOCAL'
    return [
        f"-I PREROUTING 1 {local} -j {HOSTPORTS_CHAIN}",
        f"-I OUTPUT 1 {local} -j {HOSTPORTS_CHAIN}",
        f'-I POSTROUTING 1 -m comment --comment "{MASQ_COMMENT}" -j {MASQ_CHAIN}',
    ]


def dnat_rules(family: int, pod_id: str, pod_ip: str, mappings: list[Mapping]) -> list[str]:
    """One DNAT rule per mapping, in the pod's chain."""
    chain, _ = pod_chains(pod_id)
    comment = comment_for(pod_id)
    out = []
    for m in mappings:
        dest = f"-d {_host(m.host_ip, family)} " if m.host_ip else ""
        out.append(
            f"-A {chain} {dest}-p {m.protocol} -m {m.protocol} --dport {m.host_port}"
            f' -m comment --comment "{comment}"'
            f" -j DNAT --to-destination {_endpoint(pod_ip, m.container_port, family)}"
        )
    return out


def masq_rules(family: int, pod_id: str, pod_ip: str, mappings: list[Mapping]) -> list[str]:
    """Source NAT for what DNAT alone would break, per (protocol, container port).

    IPv4 connections from 127.0.0.0/8 would leave with a loopback source the
    pod cannot answer; connections from the pod to its own host port
    (hairpin) would get replies straight from the pod that the client never
    sent to. IPv6 has no route_localnet: ::1 never leaves ``lo``, so a host
    port is reached through the node's other addresses only.
    """
    _, chain = pod_chains(pod_id)
    comment = comment_for(pod_id)
    dst = _host(pod_ip, family)
    sources = [LOOPBACK_V4, dst] if family == 4 else [dst]
    out = []
    for protocol, port in sorted({(m.protocol, m.container_port) for m in mappings}):
        for src in sources:
            out.append(
                f"-A {chain} -s {src} -d {dst} -p {protocol} -m {protocol} --dport {port}"
                f' -m comment --comment "{comment}" -j MASQUERADE'
            )
    return out


def render_add(
    family: int, pod_id: str, pod_ip: str, mappings: list[Mapping], current: NatRules
) -> str:
    """The iptables-restore --noflush input installing (or replacing) a pod's rules.

    Declaring the pod's chains creates them or, when they exist, flushes them
    (iptables-restore's rule for declared user chains under --noflush), so a
    second add replaces the first. Shared chains are declared only when
    missing: declaring them would flush the other pods' jumps.
    """
    dnat_chain, masq_chain = pod_chains(pod_id)
    comment = comment_for(pod_id)
    lines = ["*nat"]
    for shared in (HOSTPORTS_CHAIN, MASQ_CHAIN):
        if shared not in current.chains:
            lines.append(f":{shared} - [0:0]")
    lines += [f":{dnat_chain} - [0:0]", f":{masq_chain} - [0:0]"]
    hooks = hook_rules()
    hooked = [
        bool(current.jumps(HOSTPORTS_CHAIN, chain="PREROUTING")),
        bool(current.jumps(HOSTPORTS_CHAIN, chain="OUTPUT")),
        bool(current.jumps(MASQ_CHAIN, chain="POSTROUTING")),
    ]
    lines += [rule for rule, present in zip(hooks, hooked, strict=True) if not present]
    if not current.jumps(dnat_chain, chain=HOSTPORTS_CHAIN):
        lines.append(f'-A {HOSTPORTS_CHAIN} -m comment --comment "{comment}" -j {dnat_chain}')
    if not current.jumps(masq_chain, chain=MASQ_CHAIN):
        lines.append(f'-A {MASQ_CHAIN} -m comment --comment "{comment}" -j {masq_chain}')
    lines += dnat_rules(family, pod_id, pod_ip, mappings)
    lines += masq_rules(family, pod_id, pod_ip, mappings)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_remove(pod_id: str, current: NatRules, *, cleanup_shared: bool = True) -> str | None:
    """The iptables-restore --noflush input removing a pod's rules; None if none exist.

    With ``cleanup_shared``, the shared chains and their hooks are removed
    too once no other pod jumps from them, so a node without host ports
    carries no pycrio rules at all.
    """
    lines = ["*nat"]
    mine = pod_chains(pod_id)
    for chain in mine:
        lines += ["-D" + r[2:] for r in current.jumps(chain)]
    for chain in mine:
        if chain in current.chains:
            lines += [f"-F {chain}", f"-X {chain}"]
    if cleanup_shared:
        for shared in (HOSTPORTS_CHAIN, MASQ_CHAIN):
            if shared not in current.chains:
                continue
            others = [
                r
                for r in current.rules
                if current.target(r)[0] == shared and current.target(r)[1] not in mine
            ]
            if others:
                continue
            # Only our own pod's jump is in it, deleted above: no -F here
            # (iptables-nft fails a batch that deletes one rule twice).
            lines += ["-D" + r[2:] for r in current.jumps(shared)]
            lines.append(f"-X {shared}")
    if len(lines) == 1:
        return None
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


class IptablesHostport(HostportBase):
    """Host ports through iptables/ip6tables nat rules (legacy or nf_tables backend)."""

    def ready(self) -> tuple[bool, str, str]:
        missing = [c for c in (*SAVE.values(), *RESTORE.values()) if not shutil.which(c)]
        if missing:
            return False, "IptablesNotFound", f"not found in PATH: {', '.join(missing)}"
        return True, "", ""

    def _current(self, family: int) -> NatRules:
        return parse_save(run_command([SAVE[family], "-t", "nat"], timeout=self.timeout))

    def _restore(self, family: int, text: str) -> None:
        log.debug("%s input:\n%s", RESTORE[family], text)
        run_command([RESTORE[family], "-w", "--noflush"], timeout=self.timeout, stdin_text=text)

    def _apply(self, family: int, pod_id: str, pod_ip: str, mappings: list[Mapping]) -> None:
        self._restore(family, render_add(family, pod_id, pod_ip, mappings, self._current(family)))

    def _withdraw(self, family: int, pod_id: str) -> None:
        text = render_remove(pod_id, self._current(family))
        if text is None:
            return
        try:
            self._restore(family, text)
        except Internal as e:
            # Someone else may have hooked a rule into a shared chain between
            # our read and our write; the pod's own rules must still go.
            log.warning("removing pod %s with shared chains failed (%s); retrying", pod_id, e)
            text = render_remove(pod_id, self._current(family), cleanup_shared=False)
            if text is not None:
                self._restore(family, text)
