"""A pod sandbox as pycrio remembers it, and the store that persists it.

A record is written before any host resource is created and updated as each
is, so a daemon killed half-way through RunPodSandbox knows at the next start
exactly what to undo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pycrio.storage.record_store import RecordStore

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
    infra_id: str = ""  # the infra (pause) container, with drop_infra_ctr = false
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


class SandboxStore(RecordStore[SandboxRecord]):
    def __init__(self, directory: str) -> None:
        super().__init__(directory, SandboxRecord)
