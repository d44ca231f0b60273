"""The on-disk cache of what each pod was attached with.

Like libcni's ``/var/lib/cni/results``, one JSON file per (container id,
interface) holds the network config list, CNI_ARGS, capability args and the
ADD result. DEL and CHECK are run from it, not from the directory, because
the spec requires a DEL with the same config as the ADD: an operator who
edits or removes the config file (or a daemon restart) must not strand IP
allocations, veths and iptables rules.

The entry is written *before* ADD runs (with no result yet) and completed
after, so a daemon killed in the middle of an ADD still knows which config
to DEL with. Writes are atomic (temp + fsync + rename).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from pycrio.storage.atomic import write_atomic
from pycrio_cni.config import valid_name

log = logging.getLogger("pycrio.cni")

CACHE_KIND = "pycrioCniCacheV1"


@dataclass
class CacheEntry:
    container_id: str
    ifname: str
    network_name: str
    config: dict[str, Any]
    cni_args: str = ""
    capability_args: dict[str, Any] = field(default_factory=dict)
    netns: str = ""
    #: The final ADD result of the list; None while ADD has not completed.
    result: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "kind": CACHE_KIND,
                "containerId": self.container_id,
                "ifName": self.ifname,
                "networkName": self.network_name,
                "config": self.config,
                "cniArgs": self.cni_args,
                "capabilityArgs": self.capability_args,
                "netns": self.netns,
                "result": self.result,
            },
            indent=1,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CacheEntry:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("kind") != CACHE_KIND:
            raise ValueError("not a pycrio CNI cache entry")
        return cls(
            container_id=doc["containerId"],
            ifname=doc["ifName"],
            network_name=doc["networkName"],
            config=doc["config"],
            cni_args=doc.get("cniArgs", ""),
            capability_args=doc.get("capabilityArgs") or {},
            netns=doc.get("netns", ""),
            result=doc.get("result"),
        )


class ResultCache:
    """Cache entries under one directory (the driver's state dir)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, container_id: str, ifname: str) -> str:
        # Ids are validated by the driver already; checked again because the
        # id becomes a file name and must never contain a path separator.
        if not valid_name(container_id) or not valid_name(ifname):
            raise ValueError(f"invalid container id or interface {container_id!r}/{ifname!r}")
        return os.path.join(self.root, f"{container_id}-{ifname}.json")

    def save(self, entry: CacheEntry) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        write_atomic(self.path(entry.container_id, entry.ifname), entry.to_json(), mode=0o600)

    def load(self, container_id: str, ifname: str) -> CacheEntry | None:
        """The entry, or None when there is none or it is unreadable (logged)."""
        path = self.path(container_id, ifname)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        try:
            return CacheEntry.from_json(data)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("ignoring corrupt CNI cache entry %s: %s", path, e)
            return None

    def delete(self, container_id: str, ifname: str) -> None:
        try:
            os.unlink(self.path(container_id, ifname))
        except FileNotFoundError:
            pass

    def container_ids(self) -> list[str]:
        """Ids with an entry (for diagnostics and garbage collection)."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted({n.rsplit("-", 1)[0] for n in names if n.endswith(".json")})
