"""WebSocket port-forward protocol: ports, channels, port prefix, framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycrio.streaming import portforward_ws as pf
from pycrio.streaming.portforward_ws import (
    ClientPortForwardDecoder,
    PortForwardError,
    PortForwardSession,
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["80"], [80]),
        (["80,443"], [80, 443]),
        (["80", "8080,9090"], [80, 8080, 9090]),
        (["65535"], [65535]),
    ],
)
def test_parse_ports(values, expected):
    assert pf.parse_ports(values) == expected


@pytest.mark.parametrize("values", [[], [""], ["0"], ["65536"], ["80,"], ["-1"], ["x"], ["８0"]])
def test_parse_ports_errors(values):
    with pytest.raises(PortForwardError):
        pf.parse_ports(values)


@pytest.mark.parametrize(
    ("port", "prefix"),
    [(80, b"\x50\x00"), (8080, b"\x90\x1f"), (1, b"\x01\x00"), (65535, b"\xff\xff")],
)
def test_port_prefix_little_endian(port, prefix):
    assert pf.port_prefix(port) == prefix


def test_channel_numbers():
    session = PortForwardSession((80, 443, 8080))
    assert session.channel_count == 6
    assert [session.channels_for(i) for i in range(3)] == [(0, 1), (2, 3), (4, 5)]
    assert [session.port_of(c) for c in range(6)] == [80, 80, 443, 443, 8080, 8080]
    assert pf.channel_port_index(5) == (2, True)
    assert pf.channel_port_index(4) == (2, False)
    with pytest.raises(PortForwardError):
        session.port_of(6)


def test_initial_messages_binary():
    session = PortForwardSession((80, 8080))
    assert session.initial_messages() == [
        b"\x00\x50\x00",
        b"\x01\x50\x00",
        b"\x02\x90\x1f",
        b"\x03\x90\x1f",
    ]


def test_initial_messages_base64():
    session = PortForwardSession((80,), base64=True)
    assert session.initial_messages() == ["0UAA=", "1UAA="]


def test_server_frames():
    session = PortForwardSession((80, 443))
    assert session.encode_data(1, b"hi") == b"\x02hi"
    assert session.encode_error(1, "failed") == b"\x03failed"
    assert session.decode_client(b"\x02GET /") == (1, b"GET /")
    assert session.decode_client(b"\x00") == (0, b"")
    # error channels are write-only, unknown channels and empty messages are dropped
    assert session.decode_client(b"\x01oops") is None
    assert session.decode_client(b"\x09x") is None
    assert session.decode_client(b"") is None


def test_server_frames_base64():
    session = PortForwardSession((80,), base64=True)
    assert session.encode_data(0, b"hi") == "0aGk="
    assert session.decode_client("0aGk=") == (0, b"hi")
    with pytest.raises(PortForwardError):
        session.decode_client("0***")


@pytest.mark.parametrize(
    ("ports", "b64"),
    [((), False), ((0,), False), ((70000,), False), ((1,) * 128, False), ((1,) * 41, True)],
)
def test_session_rejects(ports, b64):
    with pytest.raises(PortForwardError):
        PortForwardSession(ports, base64=b64)


def test_client_decoder_strips_prefix():
    dec = ClientPortForwardDecoder((80, 443))
    assert dec.feed(b"\x00\x50\x00") == (0, False, b"")
    assert dec.feed(b"\x01\x50\x00") == (0, True, b"")
    # split prefix
    assert dec.feed(b"\x02\xbb") is None
    assert dec.feed(b"\x02\x01hello") == (1, False, b"hello")
    assert dec.feed(b"\x00data") == (0, False, b"data")
    assert dec.feed(b"\x01\x50\x00") == (0, True, b"\x50\x00")
    with pytest.raises(PortForwardError, match="announced port"):
        dec.feed(b"\x03\x50\x00")
    with pytest.raises(PortForwardError):
        dec.feed(b"\x07xx")


def test_protocol_names():
    assert pf.WEBSOCKET_PROTOCOLS == ("v4.channel.k8s.io", "v4.base64.channel.k8s.io")
    assert pf.PORTFORWARD_SPDY_PROTOCOL == "portforward.k8s.io"


ports_st = st.lists(st.integers(1, 0xFFFF), min_size=1, max_size=8).map(tuple)


@given(ports_st, st.booleans(), st.data())
def test_server_to_client_round_trip(ports, b64, data):
    session = PortForwardSession(ports, base64=b64)
    client = ClientPortForwardDecoder(ports, base64=b64)
    for msg in session.initial_messages():
        assert client.feed(msg)[2] == b""
    for _ in range(data.draw(st.integers(0, 6))):
        index = data.draw(st.integers(0, len(ports) - 1))
        payload = data.draw(st.binary(max_size=512))
        if data.draw(st.booleans()):
            assert client.feed(session.encode_data(index, payload)) == (index, False, payload)
        else:
            assert client.feed(session.encode_error(index, payload)) == (index, True, payload)


@given(st.integers(0, 254), st.binary(max_size=1024))
def test_binary_round_trip(channel, payload):
    assert pf.decode(pf.encode(channel, payload)) == (channel, payload)


@given(st.integers(0, 79), st.binary(max_size=1024))
def test_base64_round_trip(channel, payload):
    assert pf.decode(pf.encode(channel, payload, base64=True)) == (channel, payload)
