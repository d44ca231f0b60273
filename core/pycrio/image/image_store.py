"""Image records, their names, and the manifests and configs they were built from.

Records live in SQLite (WAL) so that adding an image and moving its tags away
from the image that held them is one transaction: a daemon killed at any
point has either the old names or the new ones. Everything is also kept in
memory, where List and Status calls read it. Manifests and configs are
content-addressed blob files.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import asdict, dataclass, field

from pycrio.errors import Internal
from pycrio.storage.atomic import clean_temp, write_atomic


@dataclass
class ImageRecord:
    id: str  # the config digest, "sha256:<hex>"
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)  # chain IDs, bottom first
    size: int = 0
    user: str = ""
    manifest_digest: str = ""
    created: float = 0.0

    def names(self) -> list[str]:
        return self.repo_tags + self.repo_digests


class ImageStore:
    def __init__(self, storage_root: str) -> None:
        self.blobs_dir = os.path.join(storage_root, "blobs")
        os.makedirs(self.blobs_dir, mode=0o700, exist_ok=True)
        self._db = sqlite3.connect(
            os.path.join(storage_root, "images.db"), check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, record TEXT)")
        self._lock = threading.RLock()
        self._images: dict[str, ImageRecord] = {}
        for image_id, text in self._db.execute("SELECT id, record FROM images"):
            self._images[image_id] = ImageRecord(**json.loads(text))

    def close(self) -> None:
        self._db.close()

    # --- blobs -----------------------------------------------------------------

    def _blob_path(self, digest: str) -> str:
        algorithm, hex_ = digest.split(":", 1)
        return os.path.join(self.blobs_dir, algorithm, hex_)

    def put_blob(self, digest: str, data: bytes) -> None:
        """Store already verified bytes under their digest."""
        path = self._blob_path(digest)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if not os.path.exists(path):
            write_atomic(path, data, 0o600)

    def get_blob(self, digest: str) -> bytes | None:
        try:
            with open(self._blob_path(digest), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def remove_blob(self, digest: str) -> None:
        try:
            os.unlink(self._blob_path(digest))
        except FileNotFoundError:
            pass

    def blobs(self) -> set[str]:
        found = set()
        for algorithm in os.listdir(self.blobs_dir):
            directory = os.path.join(self.blobs_dir, algorithm)
            clean_temp(directory)  # left by a daemon killed mid-write
            for hex_ in os.listdir(directory):
                found.add(f"{algorithm}:{hex_}")
        return found

    # --- records ---------------------------------------------------------------

    def all(self) -> list[ImageRecord]:
        with self._lock:
            return list(self._images.values())

    def get(self, image_id: str) -> ImageRecord | None:
        with self._lock:
            return self._images.get(image_id)

    def by_name(self, name: str) -> ImageRecord | None:
        with self._lock:
            for record in self._images.values():
                if name in record.repo_tags or name in record.repo_digests:
                    return record
        return None

    def by_id_prefix(self, prefix: str) -> list[ImageRecord]:
        with self._lock:
            return [r for i, r in self._images.items() if i.split(":", 1)[1].startswith(prefix)]

    def commit(self, new: ImageRecord) -> ImageRecord:
        """Add or update an image, taking its tags away from any other image.

        A tag names one image; an image that loses its last tag keeps its
        digests (it is "dangling", as after a tag moved in a registry).
        """
        with self._lock:
            current = self._images.get(new.id)
            merged = ImageRecord(**asdict(current)) if current else ImageRecord(**asdict(new))
            if current:
                merged.repo_tags += [t for t in new.repo_tags if t not in merged.repo_tags]
                merged.repo_digests += [d for d in new.repo_digests if d not in merged.repo_digests]
            changed = {merged.id: merged}
            for other in self._images.values():
                if other.id == new.id:
                    continue
                lost = [t for t in other.repo_tags if t in new.repo_tags]
                if lost:
                    moved = ImageRecord(**asdict(other))
                    moved.repo_tags = [t for t in other.repo_tags if t not in lost]
                    changed[moved.id] = moved
            self._write(changed, [])
            return merged

    def update(self, record: ImageRecord) -> None:
        with self._lock:
            self._write({record.id: record}, [])

    def delete(self, image_id: str) -> None:
        with self._lock:
            self._write({}, [image_id])

    def _write(self, upserts: dict[str, ImageRecord], deletes: list[str]) -> None:
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for record in upserts.values():
                    self._db.execute(
                        "INSERT OR REPLACE INTO images (id, record) VALUES (?, ?)",
                        (record.id, json.dumps(asdict(record))),
                    )
                for image_id in deletes:
                    self._db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        except sqlite3.Error as e:
            raise Internal(f"image store write failed: {e}") from e
        self._images.update(upserts)
        for image_id in deletes:
            self._images.pop(image_id, None)
