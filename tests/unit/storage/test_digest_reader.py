"""DigestReader and parse_digest: a blob is accepted only if every byte matches its digest."""

from __future__ import annotations

import hashlib
import io

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycrio.errors import CRIError, InvalidArgument
from pycrio.storage.digest_reader import Digest, DigestMismatch, DigestReader, parse_digest

BLOB = b"layer bytes " * 1000


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


class CountingSource(io.RawIOBase):
    """A source that records how much was pulled from it, to prove early failure."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        self.consumed += len(chunk)
        return chunk


# ---------------------------------------------------------------- parse_digest


def test_parse_digest_sha256_round_trips() -> None:
    text = sha256(b"x")
    digest = parse_digest(text)
    assert digest == Digest("sha256", text.split(":")[1])
    assert str(digest) == text


def test_parse_digest_sha512() -> None:
    digest = parse_digest(sha512(b"x"))
    assert digest.algorithm == "sha512"
    assert len(digest.hex) == 128


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        ":" + "a" * 64,
        "a" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,  # the spec requires lowercase hex
        "sha256:" + "g" * 64,
        "sha256:" + "a" * 64 + "\n",
        " sha256:" + "a" * 64,
        "SHA256:" + "a" * 64,
        "sha512:" + "a" * 64,  # sha256 length under sha512
        "sha256:../../../etc/passwd",
        "md5:" + "a" * 32,  # well-formed, but not an algorithm we accept
        "blake3:" + "a" * 64,
    ],
)
def test_parse_digest_rejects(value: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_digest(value)


def test_parse_digest_rejects_non_string() -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        parse_digest(b"sha256:" + b"a" * 64)  # type: ignore[arg-type]


# ---------------------------------------------------------------- DigestReader


def test_reads_through_and_verifies() -> None:
    reader = DigestReader(io.BytesIO(BLOB), sha256(BLOB), len(BLOB))
    out = bytearray()
    while chunk := reader.read(777):
        out += chunk
    assert bytes(out) == BLOB
    assert reader.bytes_read == len(BLOB)
    assert reader.actual_digest == sha256(BLOB)
    assert str(reader.verify()) == sha256(BLOB)


def test_sha512_digest_is_hashed_with_sha512() -> None:
    reader = DigestReader(io.BytesIO(BLOB), sha512(BLOB))
    assert reader.read() == BLOB
    assert reader.actual_digest == sha512(BLOB)
    reader.verify()


def test_wrong_digest_raises_data_loss_naming_both() -> None:
    wrong = sha256(b"something else")
    reader = DigestReader(io.BytesIO(BLOB), wrong, len(BLOB))
    with pytest.raises(DigestMismatch) as info:
        reader.verify()
    err = info.value
    assert isinstance(err, CRIError)
    assert err.code == grpc.StatusCode.DATA_LOSS
    assert err.expected == wrong
    assert err.actual == sha256(BLOB)
    assert wrong in err.message and sha256(BLOB) in err.message
    assert str(len(BLOB)) in err.message


def test_mismatch_surfaces_at_eof_without_verify() -> None:
    """A consumer that simply reads to the end still cannot miss a bad blob."""
    reader = DigestReader(io.BytesIO(BLOB), sha256(b"other"))
    with pytest.raises(DigestMismatch):
        while reader.read(4096):
            pass


def test_oversized_blob_fails_as_soon_as_the_size_is_exceeded() -> None:
    huge = b"\0" * (10 << 20)
    source = CountingSource(huge)
    reader = DigestReader(source, sha256(huge[:100]), 100)
    assert len(reader.read(64)) == 64
    with pytest.raises(DigestMismatch, match="more than 100 bytes"):
        reader.read(4096)
    assert source.consumed < 64 + 4096 + 1  # never pulled the rest of the stream


def test_oversize_is_caught_by_verify_drain() -> None:
    reader = DigestReader(io.BytesIO(BLOB), sha256(BLOB), len(BLOB) - 1)
    with pytest.raises(DigestMismatch) as info:
        reader.verify()
    assert info.value.actual is None
    assert info.value.actual_size == len(BLOB)


def test_truncated_blob_is_a_mismatch_even_with_matching_prefix_digest() -> None:
    short = BLOB[:100]
    reader = DigestReader(io.BytesIO(short), sha256(short), len(BLOB))
    with pytest.raises(DigestMismatch) as info:
        reader.verify()
    assert info.value.actual_size == 100
    assert info.value.expected_size == len(BLOB)


def test_verify_drains_what_the_consumer_left() -> None:
    source = CountingSource(BLOB)
    reader = DigestReader(source, sha256(BLOB), len(BLOB))
    reader.read(10)
    reader.verify()
    assert source.consumed == len(BLOB)
    assert reader.bytes_read == len(BLOB)


def test_verify_is_repeatable_and_keeps_failing() -> None:
    reader = DigestReader(io.BytesIO(BLOB), sha256(b"nope"))
    for _ in range(2):
        with pytest.raises(DigestMismatch):
            reader.verify()


def test_unknown_size_checks_only_the_digest() -> None:
    reader = DigestReader(io.BytesIO(BLOB), sha256(BLOB))
    assert reader.verify() == parse_digest(sha256(BLOB))


def test_empty_blob() -> None:
    reader = DigestReader(io.BytesIO(b""), sha256(b""), 0)
    assert reader.read(10) == b""
    reader.verify()


def test_accepts_parsed_digest_and_rejects_bad_arguments() -> None:
    assert DigestReader(io.BytesIO(b""), parse_digest(sha256(b""))).verify()
    with pytest.raises(InvalidArgument):
        DigestReader(io.BytesIO(b""), "sha256:nothex")
    with pytest.raises(InvalidArgument, match="negative size"):
        DigestReader(io.BytesIO(b""), sha256(b""), -1)


def test_readinto_through_buffered_reader() -> None:
    reader = DigestReader(io.BytesIO(BLOB), sha256(BLOB), len(BLOB))
    buffered = io.BufferedReader(reader, buffer_size=1000)
    assert buffered.read() == BLOB
    reader.verify()


def test_close_leaves_source_open() -> None:
    source = io.BytesIO(BLOB)
    reader = DigestReader(source, sha256(BLOB))
    reader.close()
    assert not source.closed


@given(data=st.binary(max_size=5000), sizes=st.lists(st.integers(1, 700), max_size=30))
def test_any_chunking_yields_the_same_digest(data: bytes, sizes: list[int]) -> None:
    reader = DigestReader(io.BytesIO(data), sha256(data), len(data))
    out = b"".join(reader.read(n) for n in sizes)
    assert out == data[: len(out)]
    reader.verify()
    assert reader.bytes_read == len(data)
