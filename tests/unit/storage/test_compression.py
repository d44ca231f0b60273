"""Layer decompression: detection by magic bytes and media type, streaming decode."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile

import pytest
import zstandard

from pycrio.errors import InvalidArgument
from pycrio.storage.compression import (
    Compression,
    compression_from_media_type,
    detect_compression,
    open_decompressed,
)
from pycrio.storage.digest_reader import DigestReader


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TAR = make_tar({"etc/hostname": b"pycrio\n", "bin/sh": b"\x7fELF" + b"\0" * 500})


class TrickleSource(io.RawIOBase):
    """Returns at most `step` bytes per read and records how much was consumed."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        limit = self._step if size is None or size < 0 else min(size, self._step)
        chunk = self._data.read(limit)
        self.consumed += len(chunk)
        return chunk


def names_in(stream: io.RawIOBase) -> list[str]:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        return [member.name for member in tar]


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (gzip.compress(b"x")[:4], Compression.GZIP),
        (zstandard.ZstdCompressor().compress(b"x")[:4], Compression.ZSTD),
        (b"\x50\x2a\x4d\x18", Compression.ZSTD),  # skippable frame
        (b"\x5f\x2a\x4d\x18", Compression.ZSTD),
        (b"\x60\x2a\x4d\x18", Compression.NONE),  # outside the skippable range
        (TAR[:4], Compression.NONE),
        (b"", Compression.NONE),
        (b"\x1f", Compression.NONE),
    ],
)
def test_detect_compression(prefix: bytes, expected: Compression) -> None:
    assert detect_compression(prefix) is expected


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        ("application/vnd.oci.image.layer.v1.tar", Compression.NONE),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Compression.GZIP),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Compression.ZSTD),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Compression.GZIP),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", Compression.ZSTD),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Compression.GZIP),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Compression.GZIP),
        ("application/vnd.oci.image.layer.v1.tar+gzip; foo=bar", Compression.GZIP),
    ],
)
def test_compression_from_media_type(media_type: str, expected: Compression) -> None:
    assert compression_from_media_type(media_type) is expected


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/octet-stream",
        "",
    ],
)
def test_unknown_media_type_is_refused(media_type: str) -> None:
    with pytest.raises(InvalidArgument, match="media type"):
        compression_from_media_type(media_type)
    with pytest.raises(InvalidArgument):
        open_decompressed(io.BytesIO(TAR), media_type)


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("blob", "media_type"),
    [
        (TAR, "application/vnd.oci.image.layer.v1.tar"),
        (gzip.compress(TAR), "application/vnd.oci.image.layer.v1.tar+gzip"),
        (zstandard.ZstdCompressor().compress(TAR), "application/vnd.oci.image.layer.v1.tar+zstd"),
        (gzip.compress(TAR), None),
        (zstandard.ZstdCompressor().compress(TAR), None),
    ],
)
def test_round_trip_to_tar(blob: bytes, media_type: str | None) -> None:
    stream = open_decompressed(io.BytesIO(blob), media_type)
    assert names_in(stream) == ["etc/hostname", "bin/sh"]


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_one_byte_reads_from_the_source_still_work(kind: str) -> None:
    blob = {
        "none": TAR,
        "gzip": gzip.compress(TAR),
        "zstd": zstandard.ZstdCompressor().compress(TAR),
    }[kind]
    source = TrickleSource(blob, step=1)
    assert open_decompressed(source).read() == TAR
    assert source.consumed == len(blob)


def test_content_wins_over_a_mislabelled_media_type() -> None:
    # Registries serve plain tars labelled tar+gzip; decoding by content is what works.
    stream = open_decompressed(io.BytesIO(TAR), "application/vnd.oci.image.layer.v1.tar+gzip")
    assert stream.read() == TAR


def test_gzip_multi_member() -> None:
    blob = gzip.compress(TAR[:1000]) + gzip.compress(TAR[1000:])
    assert open_decompressed(io.BytesIO(blob)).read() == TAR


def test_zstd_multiple_frames_are_all_read() -> None:
    compressor = zstandard.ZstdCompressor()
    blob = compressor.compress(TAR[:1000]) + compressor.compress(TAR[1000:])
    assert open_decompressed(io.BytesIO(blob)).read() == TAR


def test_zstd_stream_without_content_size() -> None:
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as writer:
        writer.write(TAR)
    assert open_decompressed(io.BytesIO(out.getvalue())).read() == TAR


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_decoding_streams_instead_of_reading_the_whole_blob(kind: str) -> None:
    # 32 MiB of incompressible data: reading a few KiB out must not pull it all in.
    payload = os.urandom(32 << 20)
    if kind == "gzip":
        blob = gzip.compress(payload, compresslevel=1)
    else:
        blob = zstandard.ZstdCompressor(level=1).compress(payload)
    source = TrickleSource(blob, step=1 << 20)
    stream = open_decompressed(source)
    assert stream.read(4096) == payload[:4096]
    assert source.consumed <= 4 << 20
    rest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        rest.update(chunk)
    assert rest.hexdigest() == hashlib.sha256(payload[4096:]).hexdigest()


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(TAR)[:10] + b"\xff" * 200,  # corrupt deflate data
        gzip.compress(TAR)[:-20],  # truncated: no end-of-stream marker
        zstandard.ZstdCompressor().compress(TAR)[:4] + b"garbage" * 30,
    ],
    ids=["gzip-corrupt", "gzip-truncated", "zstd-corrupt"],
)
def test_corrupt_data_is_invalid_argument(blob: bytes) -> None:
    stream = open_decompressed(io.BytesIO(blob))
    with pytest.raises(InvalidArgument, match="corrupt"):
        while stream.read(1 << 16):
            pass


def test_digest_is_checked_over_the_compressed_bytes() -> None:
    blob = gzip.compress(TAR)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    verified = DigestReader(io.BytesIO(blob), digest, len(blob))
    assert names_in(open_decompressed(verified)) == ["etc/hostname", "bin/sh"]
    verified.verify()
    assert verified.bytes_read == len(blob)


def test_empty_source_is_an_empty_stream() -> None:
    assert open_decompressed(io.BytesIO(b"")).read() == b""


def test_gzip_members_padding_and_large_streams_decode_in_bounded_reads() -> None:
    import gzip as _gzip
    import io as _io
    import os as _os

    from pycrio.storage.compression import open_decompressed as _open

    part1, part2 = _os.urandom(3 << 20), b"tail" * 1000
    blob = _gzip.compress(part1) + _gzip.compress(part2) + b"\0" * 1024

    class Counting(_io.BytesIO):
        reads: list[int] = []

        def read(self, size=-1):
            self.reads.append(size)
            return super().read(size)

    source = Counting(blob)
    stream = _open(source)
    out = bytearray()
    while chunk := stream.read(256 << 10):
        assert len(chunk) <= 256 << 10
        out += chunk
    assert bytes(out) == part1 + part2
    assert max(source.reads) <= 1 << 20 and min(r for r in source.reads if r > 8) > 8192
