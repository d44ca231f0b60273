"""ttrpc framing and envelopes on bytes: header layout, limits, split and joined reads."""

from __future__ import annotations

import pytest

from pycrio.ttrpc import frames
from pycrio.ttrpc.messages import KeyValue, Request, Response, Status


def test_header_is_length_stream_type_flags_big_endian() -> None:
    data = frames.encode(3, frames.TYPE_REQUEST, b"abc", flags=frames.FLAG_REMOTE_CLOSED)
    assert data == b"\x00\x00\x00\x03" + b"\x00\x00\x00\x03" + b"\x01" + b"\x01" + b"abc"


def test_decoder_handles_byte_by_byte_and_joined_frames() -> None:
    stream = frames.encode(1, frames.TYPE_REQUEST, b"one") + frames.encode(
        3, frames.TYPE_REQUEST, b""
    )
    dec = frames.Decoder()
    out = []
    for b in stream:
        out += dec.feed(bytes([b]))
    assert out == [
        frames.Frame(1, frames.TYPE_REQUEST, 0, b"one"),
        frames.Frame(3, frames.TYPE_REQUEST, 0, b""),
    ]
    assert dec.pending == 0
    assert frames.Decoder().feed(stream) == out


def test_oversized_frame_is_skipped_and_the_stream_continues() -> None:
    dec = frames.Decoder(max_message=4)
    big = frames.HEADER.pack(6, 5, frames.TYPE_REQUEST, 0) + b"xxxxxx"
    nxt = frames.encode(7, frames.TYPE_REQUEST, b"ok")
    out = dec.feed(big[:12]) + dec.feed(big[12:] + nxt)
    assert out == [
        frames.Oversized(5, frames.TYPE_REQUEST, 6),
        frames.Frame(7, frames.TYPE_REQUEST, 0, b"ok"),
    ]


def test_encode_refuses_more_than_4_mib() -> None:
    frames.encode(1, frames.TYPE_REQUEST, b"x" * frames.MAX_MESSAGE)
    with pytest.raises(frames.OversizedMessage):
        frames.encode(1, frames.TYPE_REQUEST, b"x" * (frames.MAX_MESSAGE + 1))


def test_request_envelope_field_numbers_match_ttrpc() -> None:
    req = Request(
        service="s",
        method="m",
        payload=b"p",
        timeout_nano=5,
        metadata=[KeyValue(key="k", value="v")],
    )
    # field 1 service, 2 method, 3 payload, 4 timeout_nano (varint), 5 metadata
    assert req.SerializeToString() == (
        b"\x0a\x01s" + b"\x12\x01m" + b"\x1a\x01p" + b"\x20\x05" + b"\x2a\x06\x0a\x01k\x12\x01v"
    )
    resp = Response(status=Status(code=5, message="x"), payload=b"y")
    assert resp.SerializeToString() == b"\x0a\x05\x08\x05\x12\x01x" + b"\x12\x01y"
