"""A pod sandbox as pycrio remembers it, and the store that persists it.

A record is written before any host resource is created and updated as each
is, so a daemon killed half-way through RunPodSandbox knows at the next start
exactly what to undo. Records are JSON files written atomically, one per pod;
List calls read the in-memory copy.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from pycrio.storage.atomic import write_atomic

CREATING = "creating"  # RunPodSandbox in progress (or interrupted)
READY = "ready"
NOTREADY = "notready"


@dataclass
class SandboxRecord:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    reservation: str  # the reserved name, CRI-O's k8s_POD_<name>_<ns>_<uid>_<attempt>
    runtime_handler: str
    created_at: int  # ns since the epoch
    state: str = CREATING
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    log_directory: str = ""
    cgroup_parent: str = ""
    # namespace modes: "pod" (pinned for this pod) or "node" (the host's)
    network_mode: str = "pod"
    ipc_mode: str = "pod"
    pid_mode: str = "container"
    # what has been created, so it can be undone exactly once
    run_dir: str = ""
    namespaces: dict[str, str] = field(default_factory=dict)  # kind -> pinned file
    pid_holder: int = 0  # the process keeping a shared PID namespace alive
    shm_path: str = ""
    cgroup_path: str = ""
    network_up: bool = False
    hostports_up: bool = False
    ips: list[str] = field(default_factory=list)
    port_mappings: list[dict[str, Any]] = field(default_factory=list)
    dns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def host_network(self) -> bool:
        return self.network_mode == "node"

    def netns_path(self) -> str:
        return self.namespaces.get("net", "")


class SandboxStore:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._lock = threading.Lock()
        self._records: dict[str, SandboxRecord] = {}
        for name in os.listdir(directory):
            if name.endswith(".json"):
                with open(os.path.join(directory, name)) as f:
                    record = SandboxRecord(**json.load(f))
                self._records[record.id] = record

    def save(self, record: SandboxRecord) -> None:
        data = json.dumps(asdict(record), sort_keys=True).encode()
        write_atomic(os.path.join(self.directory, f"{record.id}.json"), data, 0o600)
        with self._lock:
            self._records[record.id] = record

    def delete(self, sandbox_id: str) -> None:
        try:
            os.unlink(os.path.join(self.directory, f"{sandbox_id}.json"))
        except FileNotFoundError:
            pass
        with self._lock:
            self._records.pop(sandbox_id, None)

    def get(self, sandbox_id: str) -> SandboxRecord | None:
        with self._lock:
            return self._records.get(sandbox_id)

    def all(self) -> list[SandboxRecord]:
        with self._lock:
            return list(self._records.values())

    def find(self, id_or_prefix: str) -> list[SandboxRecord]:
        """Records whose id is ``id_or_prefix`` or starts with it."""
        with self._lock:
            exact = self._records.get(id_or_prefix)
            if exact is not None:
                return [exact]
            return [r for i, r in self._records.items() if i.startswith(id_or_prefix)]
