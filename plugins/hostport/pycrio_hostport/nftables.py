"""The ``nftables`` host port driver: a table of its own, applied with ``nft -f -``.

Layout (``ip pycrio-hostport``, and ``ip6 pycrio-hostport`` for IPv6 pods)::

    chain prerouting   nat hook prerouting  priority -100: fib daddr type local jump hostports
    chain output       nat hook output      priority -100: fib daddr type local jump hostports
    chain postrouting  nat hook postrouting priority 100:  jump masquerading
    chain hostports     jump pod-<hash>   comment "pycrio pod <id>"   (one per pod)
    chain masquerading  jump masq-<hash>  comment "pycrio pod <id>"
    chain pod-<hash>    one dnat rule per mapping
    chain masq-<hash>   masquerade for 127.0.0.0/8 sources (and hairpin)

A table of our own keeps our rules apart from everyone else's (iptables-nft,
firewalld, kube-proxy's nftables mode): nothing we do can reorder or flush
theirs. Each change is one ``nft -f -`` script, applied by the kernel as one
transaction. Removal reads the table back (``nft -j -a``) and deletes the
pod's jumps by handle and its chains by name, so it needs no state and is
idempotent; the table itself is deleted with the last pod.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from typing import Any

from pycrio.errors import Internal
from pycrio_hostport.common import (
    HostportBase,
    Mapping,
    comment_for,
    pod_hash,
    run_command,
)

log = logging.getLogger("pycrio.hostport.nftables")

TABLE = "pycrio-hostport"
FAMILY = {4: "ip", 6: "ip6"}
HOOK_COMMENT = "pycrio hostports"
LOOPBACK_V4 = "127.0.0.0/8"
#: Base chains: (name, hook, priority). -100 is "dstnat" and 100 "srcnat",
#: written as numbers so older nft versions accept them.
BASE_CHAINS = (
    ("prerouting", "prerouting", -100),
    ("output", "output", -100),
    ("postrouting", "postrouting", 100),
)


def pod_chains(pod_id: str) -> tuple[str, str]:
    """(dnat chain, masquerade chain) of a pod, named after a hash of its id."""
    h = pod_hash(pod_id)
    return f"pod-{h}", f"masq-{h}"


@dataclass(frozen=True)
class NftRule:
    chain: str
    handle: int
    target: str  # the chain it jumps to, "" if none
    comment: str = ""


@dataclass
class NftTable:
    """The parts of ``nft -j -a list table`` these rules care about."""

    chains: set[str] = field(default_factory=set)
    rules: list[NftRule] = field(default_factory=list)

    def jumps(self, to: str, *, chain: str | None = None) -> list[NftRule]:
        return [r for r in self.rules if r.target == to and (chain is None or r.chain == chain)]


def parse_table_json(doc: dict[str, Any]) -> NftTable:
    """Parse nft's JSON listing of our table."""
    table = NftTable()
    for item in doc.get("nftables", []):
        if "chain" in item:
            table.chains.add(item["chain"]["name"])
        elif "rule" in item:
            rule = item["rule"]
            target = ""
            for expr in rule.get("expr", []):
                for verdict in ("jump", "goto"):
                    if isinstance(expr, dict) and verdict in expr:
                        target = expr[verdict]["target"]
            table.rules.append(
                NftRule(rule["chain"], int(rule["handle"]), target, rule.get("comment", ""))
            )
    return table


def table_names(doc: dict[str, Any]) -> set[str]:
    """Names of the tables in ``nft -j list tables <family>``."""
    return {i["table"]["name"] for i in doc.get("nftables", []) if "table" in i}


def _endpoint(ip: str, port: int, family: int) -> str:
    return f"{ip}:{port}" if family == 4 else f"[{ip}]:{port}"


def dnat_rules(family: int, pod_id: str, pod_ip: str, mappings: list[Mapping]) -> list[str]:
    """One dnat rule per mapping, in the pod's chain."""
    fam = FAMILY[family]
    chain, _ = pod_chains(pod_id)
    comment = comment_for(pod_id)
    out = []
    for m in mappings:
        dest = f"{fam} daddr {m.host_ip} " if m.host_ip else ""
        out.append(
            f"add rule {fam} {TABLE} {chain} {dest}{m.protocol} dport {m.host_port}"
            f" dnat to {_endpoint(pod_ip, m.container_port, family)}"
            f' comment "{comment}"'
        )
    return out


def masq_rules(family: int, pod_id: str, pod_ip: str, mappings: list[Mapping]) -> list[str]:
    """Masquerade what DNAT alone would break: 127.0.0.0/8 sources and hairpin.

    The same reasoning as the iptables driver's: a loopback source cannot be
    answered by the pod, and a pod reaching its own host port would get the
    reply from an address it never talked to. IPv6 has no route_localnet.
    """
    fam = FAMILY[family]
    _, chain = pod_chains(pod_id)
    comment = comment_for(pod_id)
    sources = [LOOPBACK_V4, pod_ip] if family == 4 else [pod_ip]
    out = []
    for protocol, port in sorted({(m.protocol, m.container_port) for m in mappings}):
        for src in sources:
            out.append(
                f"add rule {fam} {TABLE} {chain} {fam} saddr {src} {fam} daddr {pod_ip}"
                f' {protocol} dport {port} masquerade comment "{comment}"'
            )
    return out


def render_add(
    family: int, pod_id: str, pod_ip: str, mappings: list[Mapping], current: NftTable | None
) -> str:
    """The nft script installing (or replacing) a pod's rules.

    ``add table``/``add chain`` are no-ops for what exists; the pod's chains
    are flushed and refilled so a second add replaces the first; jump rules,
    which nft would happily duplicate, are added only when missing.
    """
    fam = FAMILY[family]
    current = current or NftTable()
    dnat_chain, masq_chain = pod_chains(pod_id)
    comment = comment_for(pod_id)
    lines = [f"add table {fam} {TABLE}"]
    for name, hook, prio in BASE_CHAINS:
        lines.append(
            f"add chain {fam} {TABLE} {name}"
            f" {{ type nat hook {hook} priority {prio}; policy accept; }}"
        )
    lines += [f"add chain {fam} {TABLE} hostports", f"add chain {fam} {TABLE} masquerading"]
    # Only packets addressed to the node: OUTPUT also carries the host's own
    # traffic to remote hosts, which must not be rewritten.
    local = f'fib daddr type local jump hostports comment "{HOOK_COMMENT}"'
    if not current.jumps("hostports", chain="prerouting"):
        lines.append(f"add rule {fam} {TABLE} prerouting {local}")
    if not current.jumps("hostports", chain="output"):
        lines.append(f"add rule {fam} {TABLE} output {local}")
    if not current.jumps("masquerading", chain="postrouting"):
        lines.append(
            f'add rule {fam} {TABLE} postrouting jump masquerading comment "{HOOK_COMMENT}"'
        )
    for chain in (dnat_chain, masq_chain):
        lines += [f"add chain {fam} {TABLE} {chain}", f"flush chain {fam} {TABLE} {chain}"]
    if not current.jumps(dnat_chain, chain="hostports"):
        lines.append(f'add rule {fam} {TABLE} hostports jump {dnat_chain} comment "{comment}"')
    if not current.jumps(masq_chain, chain="masquerading"):
        lines.append(f'add rule {fam} {TABLE} masquerading jump {masq_chain} comment "{comment}"')
    lines += dnat_rules(family, pod_id, pod_ip, mappings)
    lines += masq_rules(family, pod_id, pod_ip, mappings)
    return "\n".join(lines) + "\n"


def render_remove(
    family: int, pod_id: str, current: NftTable | None, *, cleanup_shared: bool = True
) -> str | None:
    """The nft script removing a pod's rules; None when there is nothing of it.

    With ``cleanup_shared`` and no other pod left in the table, the whole
    table goes, so a node without host ports carries no pycrio table.
    """
    if current is None:
        return None
    fam = FAMILY[family]
    mine = pod_chains(pod_id)
    others = [
        r
        for r in current.rules
        if r.chain in ("hostports", "masquerading") and r.target not in mine
    ]
    if cleanup_shared and not others:
        return f"delete table {fam} {TABLE}\n"
    lines = [
        f"delete rule {fam} {TABLE} {r.chain} handle {r.handle}"
        for chain in mine
        for r in current.jumps(chain)
    ]
    for chain in mine:
        if chain in current.chains:
            lines += [f"flush chain {fam} {TABLE} {chain}", f"delete chain {fam} {TABLE} {chain}"]
    return "\n".join(lines) + "\n" if lines else None


class NftablesHostport(HostportBase):
    """Host ports through a dedicated nftables table per IP family."""

    def ready(self) -> tuple[bool, str, str]:
        if not shutil.which("nft"):
            return False, "NftNotFound", "nft is not installed (package nftables)"
        return True, "", ""

    def _current(self, family: int) -> NftTable | None:
        fam = FAMILY[family]
        listed = run_command(["nft", "-j", "list", "tables", fam], timeout=self.timeout)
        if TABLE not in table_names(_json(listed)):
            return None
        text = run_command(["nft", "-j", "-a", "list", "table", fam, TABLE], timeout=self.timeout)
        return parse_table_json(_json(text))

    def _run(self, script: str) -> None:
        log.debug("nft script:\n%s", script)
        run_command(["nft", "-f", "-"], timeout=self.timeout, stdin_text=script)

    def _apply(self, family: int, pod_id: str, pod_ip: str, mappings: list[Mapping]) -> None:
        self._run(render_add(family, pod_id, pod_ip, mappings, self._current(family)))

    def _withdraw(self, family: int, pod_id: str) -> None:
        script = render_remove(family, pod_id, self._current(family))
        if script is None:
            return
        try:
            self._run(script)
        except Internal as e:
            # The table changed between our read and our write (another
            # writer); the pod's own rules must still go.
            log.warning("removing pod %s from the nft table failed (%s); retrying", pod_id, e)
            script = render_remove(family, pod_id, self._current(family), cleanup_shared=False)
            if script is not None:
                self._run(script)


def _json(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text or "{}")
    except ValueError as e:
        raise Internal(f"nft printed JSON that cannot be parsed: {e}: {text[:200]!r}") from None
    return doc if isinstance(doc, dict) else {}
