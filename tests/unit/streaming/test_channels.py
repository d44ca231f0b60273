"""Channel protocol negotiation, framing, close signal, session channels, resize."""

from __future__ import annotations

import base64 as b64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycrio.streaming import channels as ch
from pycrio.streaming.channels import (
    ProtocolError,
    ResizeDecoder,
    ResizeError,
    TerminalSize,
    choose_protocol,
    decode,
    encode,
)


@pytest.mark.parametrize(
    ("offered", "supported", "expected"),
    [
        (["v5.channel.k8s.io", "v4.channel.k8s.io"], ch.WEBSOCKET_PROTOCOLS, "v5.channel.k8s.io"),
        # newest wins even when the client lists it last
        (["channel.k8s.io", "v4.channel.k8s.io"], ch.WEBSOCKET_PROTOCOLS, "v4.channel.k8s.io"),
        (["base64.channel.k8s.io"], ch.WEBSOCKET_PROTOCOLS, "base64.channel.k8s.io"),
        (
            ["v4.base64.channel.k8s.io", "base64.channel.k8s.io"],
            ch.WEBSOCKET_PROTOCOLS,
            "v4.base64.channel.k8s.io",
        ),
        ([" v4.channel.k8s.io "], ch.WEBSOCKET_PROTOCOLS, "v4.channel.k8s.io"),
        ([], ch.WEBSOCKET_PROTOCOLS, ""),
        ([""], ch.WEBSOCKET_PROTOCOLS, ""),
        (["v3.channel.k8s.io", "v2.channel.k8s.io"], ch.SPDY_PROTOCOLS, "v3.channel.k8s.io"),
        (
            ["v2.channel.k8s.io", "channel.k8s.io", "v5.channel.k8s.io"],
            ch.SPDY_PROTOCOLS,
            "v5.channel.k8s.io",
        ),
    ],
)
def test_choose_protocol(offered, supported, expected):
    assert choose_protocol(offered, supported) == expected


def test_choose_protocol_no_overlap():
    with pytest.raises(ch.NegotiationError, match="not supported"):
        choose_protocol(["v9.channel.k8s.io", "foo"])
    with pytest.raises(ch.NegotiationError):
        choose_protocol(["v3.channel.k8s.io"], ch.WEBSOCKET_PROTOCOLS)


def test_split_protocol_header():
    assert ch.split_protocol_header("v4.channel.k8s.io, channel.k8s.io,,") == [
        "v4.channel.k8s.io",
        "channel.k8s.io",
    ]
    assert ch.split_protocol_header(None) == []


@pytest.mark.parametrize(
    ("name", "version", "is_b64", "json_status", "close"),
    [
        ("", 1, False, False, False),
        ("channel.k8s.io", 1, False, False, False),
        ("base64.channel.k8s.io", 1, True, False, False),
        ("v2.channel.k8s.io", 2, False, False, False),
        ("v3.channel.k8s.io", 3, False, False, False),
        ("v4.channel.k8s.io", 4, False, True, False),
        ("v4.base64.channel.k8s.io", 4, True, True, False),
        ("v5.channel.k8s.io", 5, False, True, True),
    ],
)
def test_protocol_info(name, version, is_b64, json_status, close):
    info = ch.protocol_info(name)
    assert (info.version, info.base64, info.json_status, info.supports_close) == (
        version,
        is_b64,
        json_status,
        close,
    )


@pytest.mark.parametrize("name", ["portforward.k8s.io", "v6.channel.k8s.io", "vx.channel.k8s.io"])
def test_protocol_info_unknown(name):
    with pytest.raises(ProtocolError):
        ch.protocol_info(name)


def test_channel_ids():
    assert (ch.STDIN, ch.STDOUT, ch.STDERR, ch.ERROR, ch.RESIZE, ch.CLOSE) == (0, 1, 2, 3, 4, 255)


@pytest.mark.parametrize(
    ("channel", "data", "binary", "text"),
    [
        (0, b"foo\n", b"\x00foo\n", "0Zm9vCg=="),
        (1, b"\n", b"\x01\n", "1Cg=="),
        (2, b"", b"\x02", "2"),
        (3, b'{"status":"Success"}', b'\x03{"status":"Success"}', "3eyJzdGF0dXMiOiJTdWNjZXNzIn0="),
    ],
)
def test_encode_decode_table(channel, data, binary, text):
    assert encode(channel, data) == binary
    assert encode(channel, data, base64=True) == text
    assert decode(binary) == (channel, data)
    assert decode(text) == (channel, data)
    # base64 bytes on the wire (Go reads both frame kinds as bytes)
    assert decode(text.encode(), base64=True) == (channel, data)


def test_upstream_doc_examples():
    # wsstream doc: WRITE []byte{48, 90, 109, 57, 118, 67, 103, 61, 61} is "foo\n" on stdin
    assert decode(bytes([48, 90, 109, 57, 118, 67, 103, 61, 61]), base64=True) == (0, b"foo\n")
    assert decode(bytes([0, 102, 111, 111, 10])) == (0, b"foo\n")
    assert encode(1, b"\n", base64=True).encode() == bytes([49, 67, 103, 61, 61])


@pytest.mark.parametrize(
    ("message", "is_b64"),
    [(b"", False), ("", True), ("0!!!", True), ("0Zm9", True), ("\x01AAAA", True)],
)
def test_decode_errors(message, is_b64):
    with pytest.raises(ProtocolError):
        decode(message, base64=is_b64)


@pytest.mark.parametrize(("channel", "is_b64"), [(-1, False), (256, False), (80, True)])
def test_encode_bad_channel(channel, is_b64):
    with pytest.raises(ProtocolError):
        encode(channel, b"x", base64=is_b64)


def test_encode_rejects_non_int_channel():
    with pytest.raises(TypeError):
        encode(True, b"x")


def test_close_signal():
    assert ch.encode_close(ch.STDIN) == b"\xff\x00"
    assert ch.is_close(b"\xff\x00")
    assert not ch.is_close(b"\x00\xff")
    assert not ch.is_close("\xff")
    assert ch.decode_close(b"\xff\x00") == 0
    assert decode(b"\xff\x00") == (ch.CLOSE, b"\x00")
    for bad in (b"\xff", b"\xff\x00\x01", b"\x00\x00"):
        with pytest.raises(ProtocolError):
            ch.decode_close(bad)
    with pytest.raises(ProtocolError):
        ch.encode_close(ch.CLOSE)


@given(st.integers(0, 254))
def test_close_round_trip(channel):
    assert ch.decode_close(ch.encode_close(channel)) == channel


@pytest.mark.parametrize(
    ("stdin", "stdout", "stderr", "tty", "readable", "writable", "first"),
    [
        (True, True, True, False, {0}, {1, 2, 3}, 1),
        (True, True, True, True, {0, 4}, {1, 3}, 1),
        (False, True, False, False, set(), {1, 3}, 1),
        (False, False, True, False, set(), {2, 3}, 2),
        (True, False, False, False, {0}, {3}, 3),
        (True, False, True, True, {0, 4}, {3}, 3),
    ],
)
def test_session_channels(stdin, stdout, stderr, tty, readable, writable, first):
    s = ch.session_channels(stdin, stdout, stderr, tty)
    assert s.readable == readable
    assert s.writable == writable
    assert s.opened == readable | writable
    assert s.first_writable == first
    if tty:
        assert not s.stderr


@pytest.mark.parametrize("tty", [False, True])
def test_session_channels_needs_a_stream(tty):
    with pytest.raises(ProtocolError, match="at least 1"):
        ch.session_channels(False, False, tty, tty)


@given(st.integers(0, 254), st.binary(max_size=2048))
def test_binary_round_trip(channel, data):
    frame = encode(channel, data)
    assert isinstance(frame, bytes)
    assert frame[0] == channel
    assert decode(frame) == (channel, data)


@given(st.integers(0, 79), st.binary(max_size=2048))
def test_base64_round_trip(channel, data):
    frame = encode(channel, data, base64=True)
    assert isinstance(frame, str)
    assert frame.isascii()
    assert b64.b64decode(frame[1:]) == data
    assert decode(frame) == (channel, data)


# --- resize ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b'{"Width":80,"Height":24}'], [(80, 24)]),
        ([b'{"Width":80,"Height":24}{"Width":100,"Height":50}'], [(80, 24), (100, 50)]),
        ([b'{"Width":8', b'0,"Height":24}\n'], [(80, 24)]),
        ([b' \n{"width":1,"HEIGHT":2} {"Height":3}'], [(1, 2), (0, 3)]),
        ([b'{"Width":5,"Height":6,"extra":{"a":["}"]},"s":"\\"}"}'], [(5, 6)]),
        ([b'{"Width":null,"Height":7}'], [(0, 7)]),
        ([b'{"width":1,"Width":2}'], [(2, 0)]),
        ([b"", b"   "], []),
    ],
)
def test_resize_decoder_table(chunks, expected):
    dec = ResizeDecoder()
    got = []
    for chunk in chunks:
        got.extend(dec.feed(chunk))
    dec.close()
    assert [(s.width, s.height) for s in got] == expected


@pytest.mark.parametrize(
    "chunk",
    [
        b"[1,2]",
        b"42",
        b'{"Width":-1}',
        b'{"Width":65536}',
        b'{"Width":1.5}',
        b'{"Width":true}',
        b'{"Width":"80"}',
        b'{"Width":80,}',
        b"}",
    ],
)
def test_resize_decoder_errors(chunk):
    dec = ResizeDecoder()
    with pytest.raises(ResizeError):
        dec.feed(chunk)
    # stays failed
    with pytest.raises(ResizeError):
        dec.feed(b'{"Width":1,"Height":1}')


def test_resize_decoder_close_with_partial():
    dec = ResizeDecoder()
    assert dec.feed(b'{"Width":1') == []
    with pytest.raises(ResizeError):
        dec.close()


def test_resize_decoder_max_buffer():
    dec = ResizeDecoder(max_buffer=32)
    with pytest.raises(ResizeError, match="larger"):
        dec.feed(b'{"Width":1,"pad":"' + b"x" * 64)


def test_terminal_size_json():
    assert TerminalSize(80, 24).to_json() == b'{"Width": 80, "Height": 24}'


sizes = st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), max_size=12)


@given(sizes, st.data())
def test_resize_decoder_any_split(pairs, data):
    ws = st.sampled_from(["", " ", "\n", "\r\n\t"])
    stream = (
        b"".join(data.draw(ws).encode() + TerminalSize(w, h).to_json() for w, h in pairs)
        + data.draw(ws).encode()
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    dec = ResizeDecoder()
    got = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got.extend(dec.feed(stream[prev:cut]))
        prev = cut
    dec.close()
    assert [(s.width, s.height) for s in got] == pairs


@given(st.binary(max_size=64))
def test_resize_decoder_never_crashes(junk):
    dec = ResizeDecoder()
    try:
        for s in dec.feed(junk):
            assert isinstance(s, TerminalSize)
    except ResizeError:
        pass
