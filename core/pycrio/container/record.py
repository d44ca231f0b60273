"""A container as pycrio remembers it.

Written before the container exists (state ``creating``) and after each
change, so a daemon restarted at any point knows what to undo or to report.
The exit code and times are what the runtime driver reports (it records
exits even while the daemon is down and reports them at the next start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pycrio.storage.record_store import RecordStore

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
EXITED = "exited"


@dataclass
class ContainerRecord:
    id: str
    name: str
    attempt: int
    sandbox_id: str
    reservation: str  # k8s_<name>_<pod>_<namespace>_<uid>_<attempt>, like CRI-O
    image: str  # as the kubelet named it
    image_id: str
    image_ref: str
    runtime_handler: str
    created_at: int
    state: str = CREATING
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    log_path: str = ""
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    stop_signal: str = ""
    mounts: list[dict[str, Any]] = field(default_factory=list)
    # image volumes (pycrio.container.image_volumes): their images are in use
    image_volumes: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)
    # what exists on the host, for undo and removal
    state_dir: str = ""
    bundle: str = ""
    rootfs: str = ""
    rootfs_created: bool = False
    runtime_created: bool = False
    cgroups_path: str = ""
    pid: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    infra: bool = False  # the pod's pause container (drop_infra_ctr = false): not listed


class ContainerStore(RecordStore[ContainerRecord]):
    def __init__(self, directory: str) -> None:
        super().__init__(directory, ContainerRecord)
