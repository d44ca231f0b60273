"""What the driver remembers of each container, on disk, so a restarted daemon
finds the container's shim again.

One JSON file per container under ``<state_dir>/containers/<id>.json``,
written atomically; the task id is what the shim knows the container by
(the pod's id for the pod's sandbox container, as Kata expects).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from pycrio.storage.atomic import write_atomic


@dataclass
class ContainerRecord:
    container_id: str
    task_id: str
    pod_id: str
    #: the bundle as the shim knows it: a link named by the task id (see shim_binary)
    bundle: str
    #: the core's bundle directory the link points to
    real_bundle: str = ""
    #: the shim's ttrpc socket ("" until ``start`` answered)
    address: str = ""
    #: the bundle the shim was started in (its cwd: its ``log`` FIFO lives there)
    shim_bundle: str = ""
    sandbox: bool = False
    terminal: bool = False
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    log_path: str = ""
    io_dir: str = ""
    #: the process keeping the output FIFOs open while the daemon is down (fifo_holder)
    holder_pid: int = 0
    holder_start: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ContainerRecord:
        doc = json.loads(data)
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class RecordStore:
    def __init__(self, state_dir: str) -> None:
        self.dir = os.path.join(state_dir, "containers")

    def path(self, container_id: str) -> str:
        return os.path.join(self.dir, f"{container_id}.json")

    def save(self, record: ContainerRecord) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        write_atomic(self.path(record.container_id), record.to_json(), 0o600)

    def load(self, container_id: str) -> ContainerRecord | None:
        try:
            with open(self.path(container_id), "rb") as f:
                return ContainerRecord.from_json(f.read())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            return None

    def remove(self, container_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(container_id))

    def all(self) -> list[ContainerRecord]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.endswith(".json"):
                rec = self.load(name[: -len(".json")])
                if rec is not None:
                    out.append(rec)
        return out
