"""Turn a layer blob into its uncompressed tar stream without ever holding it in memory.

Layers can be gigabytes; every decoder here is a pull-based stream that reads
the source a chunk at a time. The decoder is chosen from the blob's first
bytes, as containers/storage does: the digest has already pinned the bytes,
and registries are known to mislabel media types (gzip-typed layers that are
plain tar), so the content is the more reliable witness.

python-zstandard does not report a zstd stream cut short; such a stream just
ends early. The tar reader notices most truncations, and the digest check of
the compressed blob and of the DiffID catches the rest: always verify both.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from enum import StrEnum
from typing import BinaryIO

import zstandard

from pycrio.errors import InvalidArgument

log = logging.getLogger(__name__)


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Skippable frames (0x184D2A50..5F, little-endian) may open a zstd stream.
_ZSTD_SKIPPABLE_SUFFIX = b"\x2a\x4d\x18"
MAGIC_LENGTH = 4

_OCI = "application/vnd.oci.image.layer"
_MEDIA_TYPES = {
    f"{_OCI}.v1.tar": Compression.NONE,
    f"{_OCI}.v1.tar+gzip": Compression.GZIP,
    f"{_OCI}.v1.tar+zstd": Compression.ZSTD,
    f"{_OCI}.nondistributable.v1.tar": Compression.NONE,
    f"{_OCI}.nondistributable.v1.tar+gzip": Compression.GZIP,
    f"{_OCI}.nondistributable.v1.tar+zstd": Compression.ZSTD,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": Compression.GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": Compression.GZIP,
}

_DECODER_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, zstandard.ZstdError)
_CHUNK = 1 << 20
_FEED = 64 << 10


def detect_compression(prefix: bytes) -> Compression:
    """Classify a blob by its first bytes (at least MAGIC_LENGTH of them when available)."""
    if prefix.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if prefix.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if len(prefix) >= 4 and prefix[0] & 0xF0 == 0x50 and prefix[1:4] == _ZSTD_SKIPPABLE_SUFFIX:
        return Compression.ZSTD
    return Compression.NONE


def compression_from_media_type(media_type: str) -> Compression:
    """Map a manifest's layer media type to its compression; refuse blobs that are not layers.

    A manifest that lists a config or an unknown artifact as a layer must not
    be unpacked onto a root filesystem, so an unknown type is an error.
    """
    base = media_type.split(";", 1)[0].strip().lower()
    try:
        return _MEDIA_TYPES[base]
    except KeyError:
        raise InvalidArgument(f"unsupported layer media type {media_type!r}") from None


def open_decompressed(source: BinaryIO, media_type: str | None = None) -> BinaryIO:
    """Return a stream of the uncompressed tar inside `source`, decoding as it is read.

    `media_type`, when given, must be a layer type; the decoder itself follows
    the magic bytes (see the module docstring). Corrupt compressed data raises
    InvalidArgument from `read()`. The caller keeps ownership of `source`.
    """
    declared = compression_from_media_type(media_type) if media_type is not None else None
    prefix = _read_prefix(source, MAGIC_LENGTH)
    detected = detect_compression(prefix)
    if declared is not None and declared != detected:
        log.warning(
            "layer media type %s says %s but its content is %s; decoding as %s",
            media_type,
            declared,
            detected,
            detected,
        )
    stream = _PrefixedReader(prefix, source)
    if detected is Compression.GZIP:
        return _DecodeErrors(_GzipReader(stream), detected)
    if detected is Compression.ZSTD:
        reader = zstandard.ZstdDecompressor().stream_reader(
            stream, read_size=_CHUNK, read_across_frames=True, closefd=False
        )
        return _DecodeErrors(reader, detected)
    return stream  # type: ignore[return-value]


def _read_prefix(source: BinaryIO, length: int) -> bytes:
    """Read exactly `length` bytes unless EOF comes first: sockets may return short reads."""
    prefix = b""
    while len(prefix) < length:
        chunk = source.read(length - len(prefix))
        if not chunk:
            break
        prefix += chunk
    return prefix


class _ReadOnly(io.RawIOBase):
    """Shared plumbing so subclasses only implement `read(size)`."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)


class _PrefixedReader(_ReadOnly):
    """Replays the sniffed magic bytes before the rest of the source (sources cannot seek)."""

    def __init__(self, prefix: bytes, source: BinaryIO) -> None:
        super().__init__()
        self._prefix = prefix
        self._source = source

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self._prefix:
            head, self._prefix = self._prefix[:size], self._prefix[size:]
            return head
        return self._source.read(size)


class _GzipReader(_ReadOnly):
    """A gzip decoder that pulls 1 MiB at a time from its source.

    gzip.GzipFile on Python 3.11 reads its source 8 KiB at a time, and each
    read crosses several Python layers (the HTTP response, the digest check):
    on a layer download that per-call cost, not zlib, was the bottleneck.
    zlib is fed memoryview slices of the source chunk (no copy) about as
    large as the output asked for (the layer unpacker asks for 1 MiB): the
    input it hands back unconsumed, copied on every call since the output is
    bounded, then stays in proportion to the work done.
    Concatenated gzip members (allowed by RFC 1952) are decoded in turn and
    zero padding after the last one is ignored, as gzip.GzipFile does.
    """

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._source = source
        self._inflate = zlib.decompressobj(wbits=31)
        self._chunk = b""
        self._pos = 0
        self._tail = b""
        self._eof = False

    def _feed(self, want: int) -> bytes | memoryview:
        if self._pos >= len(self._chunk):
            self._chunk = self._source.read(_CHUNK)
            self._pos = 0
        # A memoryview slice copies nothing; it is as large as the output asked for.
        piece = memoryview(self._chunk)[self._pos : self._pos + _FEED]
        self._pos += len(piece)
        return piece

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        while not self._eof:
            if self._inflate.eof:
                rest = self._inflate.unused_data.lstrip(b"\0")
                while not rest:
                    piece = self._feed(size)
                    if not piece:
                        self._eof = True
                        return b""
                    rest = bytes(piece).lstrip(b"\0")
                self._inflate = zlib.decompressobj(wbits=31)
                self._tail = rest
            data = self._tail or self._feed(size)
            if not data:
                raise EOFError("compressed file ended before the end-of-stream marker")
            out = self._inflate.decompress(data, size)
            self._tail = self._inflate.unconsumed_tail
            if out:
                return out
        return b""


class _DecodeErrors(_ReadOnly):
    """Reports corrupt compressed data as a bad layer instead of a decoder-specific error."""

    def __init__(self, inner: BinaryIO, kind: Compression) -> None:
        super().__init__()
        self._inner = inner
        self._kind = kind

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        try:
            return self._inner.read(size)
        except _DECODER_ERRORS as exc:
            raise InvalidArgument(f"corrupt {self._kind} layer data: {exc}") from exc
