"""Verify a blob against its content digest while it streams, so nothing unverified is kept.

Blobs come from registries we do not trust: the digest in the manifest is the
only thing that ties the bytes to what the user asked for. Hashing on the fly
lets the unpacker consume the stream once, and counting bytes against the
declared size stops a hostile server from streaming forever.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import BinaryIO

from pycrio.errors import DataLoss, InvalidArgument

# The OCI image spec's digest grammar; only the algorithms it registers are usable.
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_HEX_RE = re.compile(r"[a-f0-9]+")
_DRAIN_CHUNK = 1 << 20


class DigestMismatch(DataLoss):
    """The bytes received are not the blob the manifest named (corrupted or hostile source)."""

    def __init__(
        self,
        expected: str,
        actual: str | None,
        expected_size: int | None,
        actual_size: int,
    ) -> None:
        want = f"{expected} ({expected_size} bytes)" if expected_size is not None else expected
        got = f"{actual} ({actual_size} bytes)" if actual else f"more than {expected_size} bytes"
        super().__init__(f"blob digest mismatch: expected {want}, got {got}")
        self.expected = expected
        self.actual = actual
        self.expected_size = expected_size
        self.actual_size = actual_size


@dataclass(frozen=True)
class Digest:
    """A validated content digest; `str()` gives the canonical `algorithm:hex` form."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_digest(value: str) -> Digest:
    """Validate a digest before it is used as a path component or compared with a hash.

    Digests name files in the blob store, so a malformed one must be refused
    rather than normalised; only lowercase hex of the algorithm's exact length
    is accepted, as the OCI spec requires for sha256 and sha512.
    """
    if not isinstance(value, str):
        raise InvalidArgument(f"digest must be a string, not {type(value).__name__}")
    match = _DIGEST_RE.fullmatch(value)
    if match is None:
        raise InvalidArgument(f"invalid digest {value!r}: expected algorithm:hex")
    algorithm, encoded = match.groups()
    length = _HEX_LENGTHS.get(algorithm)
    if length is None:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm!r} in {value!r}")
    if len(encoded) != length or not _HEX_RE.fullmatch(encoded):
        raise InvalidArgument(
            f"invalid digest {value!r}: {algorithm} needs {length} lowercase hex characters"
        )
    return Digest(algorithm, encoded)


class DigestReader(io.RawIOBase):
    """A read-only stream that hashes and counts what passes through it.

    Reading past `size` raises at once; reaching EOF checks the digest and size
    automatically, and `verify()` drains what the consumer left unread (a tar
    reader stops at the end-of-archive marker, but the digest covers every
    byte). The caller owns `source`: closing this reader does not close it.
    """

    def __init__(self, source: BinaryIO, digest: str | Digest, size: int | None = None) -> None:
        super().__init__()
        self.expected = digest if isinstance(digest, Digest) else parse_digest(digest)
        if size is not None and size < 0:
            raise InvalidArgument(f"blob {self.expected}: negative size {size}")
        self.size = size
        self.bytes_read = 0
        self._source = source
        self._hash = hashlib.new(self.expected.algorithm)
        self._finished = False

    def readable(self) -> bool:
        return True

    @property
    def actual_digest(self) -> str:
        """The digest of what has been read so far (the whole blob once at EOF)."""
        return f"{self.expected.algorithm}:{self._hash.hexdigest()}"

    def read(self, size: int | None = -1) -> bytes:
        if self._finished:
            return b""
        data = self._source.read(-1 if size is None else size)
        self._account(data)
        if not data and size != 0:
            self._finish()
        return data

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(_DRAIN_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def verify(self) -> Digest:
        """Drain the rest of the source and raise DigestMismatch unless it is the expected blob."""
        while self.read(_DRAIN_CHUNK):
            pass
        self._finish()
        return self.expected

    def _account(self, data: bytes) -> None:
        self.bytes_read += len(data)
        if self.size is not None and self.bytes_read > self.size:
            raise DigestMismatch(str(self.expected), None, self.size, self.bytes_read)
        self._hash.update(data)

    def _finish(self) -> None:
        self._finished = True
        actual = self.actual_digest
        size_ok = self.size is None or self.bytes_read == self.size
        if actual != str(self.expected) or not size_ok:
            raise DigestMismatch(str(self.expected), actual, self.size, self.bytes_read)
