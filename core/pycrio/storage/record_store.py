"""Records of pods and containers: one JSON file each, written atomically.

Records are small and change one at a time, so a file per record written by
rename is both crash-safe and simple; every read is served from memory.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, is_dataclass
from typing import Any, Generic, Protocol, TypeVar

from pycrio.storage.atomic import clean_temp, write_atomic


class _Record(Protocol):
    id: str


R = TypeVar("R", bound=_Record)


def _nested(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class RecordStore(Generic[R]):
    def __init__(self, directory: str, record_type: type[R]) -> None:
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        clean_temp(directory)  # a daemon killed mid-save leaves its temporary file
        self._lock = threading.Lock()
        self._records: dict[str, R] = {}
        #: Moves on every save and delete: a list built at one generation is
        #: still right while the generation stays.
        self.generation = 0
        for name in os.listdir(directory):
            if name.endswith(".json"):
                with open(os.path.join(directory, name)) as f:
                    data: dict[str, Any] = json.load(f)
                record = record_type(**data)
                self._records[record.id] = record

    def save(self, record: R, *, durable: bool = True) -> None:
        """Write the record; ``durable=False`` for changes a restart can learn again."""
        # The record's own dict: dataclasses.asdict would deep-copy it first
        # (~5x the time); a nested dataclass, if any, is converted on the way.
        data = json.dumps(vars(record), sort_keys=True, default=_nested).encode()
        path = os.path.join(self.directory, f"{record.id}.json")
        write_atomic(path, data, 0o600, sync=durable)
        with self._lock:
            self._records[record.id] = record
            self.generation += 1

    def touch(self) -> None:
        """A record changed in memory ahead of its write: lists built before are stale."""
        with self._lock:
            self.generation += 1

    def delete(self, record_id: str) -> None:
        try:
            os.unlink(os.path.join(self.directory, f"{record_id}.json"))
        except FileNotFoundError:
            pass
        with self._lock:
            self._records.pop(record_id, None)
            self.generation += 1

    def get(self, record_id: str) -> R | None:
        with self._lock:
            return self._records.get(record_id)

    def all(self) -> list[R]:
        with self._lock:
            return list(self._records.values())

    def find(self, id_or_prefix: str) -> list[R]:
        """Records whose id is ``id_or_prefix`` or starts with it."""
        with self._lock:
            exact = self._records.get(id_or_prefix)
            if exact is not None:
                return [exact]
            return [r for i, r in self._records.items() if i.startswith(id_or_prefix)]
