"""List responses from encoded entries kept per object: ListContainers of 500 in a few ms.

The kubelet lists every pod and container every second. Building one
protobuf message per object in Python is most of what such a call costs
(about 10 µs each), while what a list entry says barely changes: only its
state does (ids, names, labels, image and creation time are fixed at
creation). So each object's entry is kept encoded, keyed by its id and
rebuilt when its state moves; a response is the entries joined and parsed
once, in C. Served from memory, with no lock a slow call holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


class EncodedEntries:
    """Encoded repeated-field entries (field ``field_number``) of one list response."""

    def __init__(self, field_number: int) -> None:
        self._tag = _varint(field_number << 3 | 2)  # wire type 2: length-delimited
        self._entries: dict[str, tuple[Any, bytes]] = {}

    def entry(self, key: str, version: Any, build: Callable[[], Message]) -> bytes:
        """``key``'s encoded entry, built again only when ``version`` changed."""
        cached = self._entries.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        body = build().SerializeToString()
        encoded = self._tag + _varint(len(body)) + body
        self._entries[key] = (version, encoded)
        return encoded

    def response(self, cls: type[M], entries: Iterable[bytes]) -> M:
        """The list response holding ``entries`` (parsed once, in C)."""
        return cls.FromString(b"".join(entries))

    def prune(self, live: Callable[[], Iterable[str]], count: int) -> None:
        """Forget the entries of objects that are gone, once there are many more than ``count``."""
        if len(self._entries) <= count + 64:
            return
        keep = set(live())
        for key in [k for k in self._entries if k not in keep]:
            self._entries.pop(key, None)
