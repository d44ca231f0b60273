"""The CRI log format as conmon writes it, checked on bytes (and read back as the kubelet does)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrio_runtime_kata import cri_log

TS = b"2026-12-07T12:00:00.000000001+00:00"
#: The kubelet's reading: timestamp, stream, tag, content (parseCRILog).
LINE = re.compile(rb"^(\S+) (stdout|stderr) ([PF]) (.*)\n\Z", re.DOTALL)


def kubelet_read(records: list[bytes]) -> list[tuple[bytes, bytes]]:
    """What ``kubectl logs`` shows: (stream, content) per full line, P pieces joined."""
    out: list[tuple[bytes, bytes]] = []
    pending = b""
    for record in records:
        m = LINE.match(record)
        assert m, record
        _, stream, tag, content = m.groups()
        if tag == b"P":
            pending += content  # the newline after a P record is the runtime's, dropped
        else:
            out.append((stream, pending + content + b"\n"))
            pending = b""
    if pending:
        out.append((b"stdout", pending))
    return out


@pytest.fixture
def tz() -> Iterator[None]:
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", b"2023-11-14T22:13:20.000000042+00:00"),
        ("America/New_York", b"2023-11-14T17:13:20.000000042-05:00"),
        ("Asia/Kolkata", b"2023-11-15T03:43:20.000000042+05:30"),
    ],
)
def test_timestamp_is_local_time_with_offset_and_nanoseconds(
    tz: None, zone: str, expected: bytes
) -> None:
    if not os.path.exists(f"/usr/share/zoneinfo/{zone}"):
        pytest.skip(f"no tzdata for {zone}")
    os.environ["TZ"] = zone
    time.tzset()
    assert cri_log.timestamp(1_700_000_000 * 10**9 + 42) == expected


def test_timestamp_now_parses_as_rfc3339_nano() -> None:
    before = time.time()
    ts = cri_log.timestamp().decode()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d", ts), ts
    # Python parses the offset form the kubelet's RFC3339NanoLenient accepts
    from datetime import datetime

    parsed = datetime.fromisoformat(ts[:26] + ts[29:]).timestamp()
    assert before - 1 <= parsed <= time.time() + 1


def test_lines_are_full_and_a_remainder_is_partial() -> None:
    assert cri_log.encode(cri_log.STDOUT, b"one\ntwo\nthr", TS) == [
        TS + b" stdout F one\n",
        TS + b" stdout F two\n",
        TS + b" stdout P thr\n",
    ]
    assert cri_log.encode(cri_log.STDERR, b"\n", TS) == [TS + b" stderr F \n"]
    assert cri_log.encode(cri_log.STDOUT, b"", TS) == []


def test_a_line_longer_than_the_buffer_is_cut_in_partial_records() -> None:
    data = b"x" * (cri_log.BUF_SIZE * 2 + 10) + b"\n"
    records = cri_log.encode(cri_log.STDOUT, data, TS)
    tags = [r.split(b" ")[2] for r in records]
    assert tags == [b"P", b"P", b"F"]
    assert [len(r) - len(TS) - len(b" stdout P ") - 1 for r in records[:2]] == [
        cri_log.BUF_SIZE,
        cri_log.BUF_SIZE,
    ]
    assert kubelet_read(records) == [(b"stdout", data)]


def test_a_chunk_boundary_inside_a_line_cuts_it_like_a_conmon_read() -> None:
    # conmon's reads are 8 KiB: a line straddling two of them is P then F
    data = b"a" * (cri_log.BUF_SIZE - 2) + b"\nbbbb\n"
    records = cri_log.encode(cri_log.STDOUT, data, TS)
    assert [r.split(b" ")[2] for r in records] == [b"F", b"P", b"F"]
    assert kubelet_read(records) == [(b"stdout", b"a" * (cri_log.BUF_SIZE - 2) + b"\n"),
                                     (b"stdout", b"bbbb\n")]  # fmt: skip


def test_unknown_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="stream"):
        cri_log.encode(b"stdin", b"x", TS)


@given(st.lists(st.binary(max_size=20000), max_size=6))
def test_the_kubelet_reads_back_exactly_what_was_written(chunks: list[bytes]) -> None:
    records = [r for chunk in chunks for r in cri_log.encode(cri_log.STDOUT, chunk, TS)]
    assert all(r.endswith(b"\n") and r.count(b"\n") == 1 for r in records)
    assert b"".join(content for _, content in kubelet_read(records)) == b"".join(chunks)


def test_size_limit_truncates_before_the_record_that_would_overflow() -> None:
    rec = [b"a" * 40 + b"\n", b"b" * 40 + b"\n", b"c" * 40 + b"\n"]  # 41 bytes each
    limit = cri_log.SizeLimit(max_bytes=100)
    assert limit.plan(rec[:2]) == [(False, rec[0] + rec[1])]
    assert limit.written == 82
    # the third would make 123 > 100: a fresh file starts with it
    assert limit.plan(rec[2:]) == [(True, rec[2])]
    assert limit.written == 41


def test_size_limit_drops_records_a_later_truncation_in_the_same_chunk_discards() -> None:
    rec = [bytes([65 + i]) * 59 + b"\n" for i in range(5)]  # 60 bytes each
    limit = cri_log.SizeLimit(max_bytes=100)
    # files: [A] -> trunc [B] -> trunc [C] ... each pair overflows; only the last survives
    assert limit.plan(rec) == [(True, rec[4])]
    assert limit.written == 60


def test_size_limit_writes_an_oversized_record_whole() -> None:
    big = b"z" * 500 + b"\n"
    limit = cri_log.SizeLimit(max_bytes=100, written=10)
    assert limit.plan([big]) == [(True, big)]
    assert limit.written == len(big)


def test_size_limit_counts_what_an_existing_file_holds() -> None:
    limit = cri_log.SizeLimit(max_bytes=100, written=90)
    assert limit.plan([b"x" * 20 + b"\n"]) == [(True, b"x" * 20 + b"\n")]


def test_no_limit_never_truncates() -> None:
    limit = cri_log.SizeLimit()
    records = [b"x" * 1000 + b"\n"] * 50
    assert limit.plan(records) == [(False, b"".join(records))]
    limit.reset()
    assert limit.written == 0
