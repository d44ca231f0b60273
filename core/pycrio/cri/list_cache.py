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

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


class _Listed(Protocol):
    id: str
    state: str


R = TypeVar("R", bound=_Listed)


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
        self._unfiltered: tuple[int, Any] | None = None

    def list_response(
        self,
        cls: type[M],
        generation: int,
        objects: Sequence[R],
        build: Callable[[R], Message],
        keep: Callable[[R], bool] | None = None,
    ) -> M:
        """The response listing ``objects`` (those ``keep`` selects, all when None).

        ``generation`` is the record store's, read before ``objects``: while it
        stays, the unfiltered response is the one built before.
        """
        cached = self._unfiltered
        if keep is None and cached is not None and cached[0] == generation:
            return cached[1]  # type: ignore[no-any-return]
        entries = [
            self.entry(r.id, r.state, lambda r=r: build(r))
            for r in objects
            if keep is None or keep(r)
        ]
        self.prune(lambda: (r.id for r in objects), len(objects))
        response = self.response(cls, entries)
        if keep is None:
            self._unfiltered = (generation, response)
        return response

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
