"""A client and a server Connection talking to each other in memory."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycrio.streaming import spdy
from pycrio.streaming import spdy_frames as f


def pair(**kw):
    return spdy.Connection(True, **kw), spdy.Connection(False, **kw)


def deliver(dst: spdy.Connection, data: bytes, one_byte: bool = False):
    if not one_byte:
        return dst.receive_data(data)
    events = []
    for i in range(len(data)):
        events += dst.receive_data(data[i : i + 1])
    return events


def pump(a: spdy.Connection, b: spdy.Connection):
    """Shuttle queued bytes both ways until quiet; returns (events at a, events at b)."""
    ea, eb = [], []
    while True:
        x, y = a.data_to_send(), b.data_to_send()
        if not x and not y:
            return ea, eb
        eb += b.receive_data(x)
        ea += a.receive_data(y)


def test_exec_style_session():
    c, s = pair()
    streams = {}
    for kind in ("error", "stdin", "stdout", "stderr"):
        sid, raw = c.syn_stream({"streamType": kind})
        (ev,) = s.receive_data(raw)
        assert isinstance(ev, spdy.StreamOpened) and ev.stream_id == sid
        assert ev.header("streamtype") == kind
        streams[kind] = sid
        (rep,) = c.receive_data(s.syn_reply(sid, {}))
        assert rep == spdy.ReplyReceived(sid, {}, False)
    assert list(streams.values()) == [1, 3, 5, 7]
    # stdin: client -> server, then half-close
    ev = s.receive_data(c.data(streams["stdin"], b"echo hi\n", fin=True))
    assert ev == [spdy.DataReceived(streams["stdin"], b"echo hi\n", True)]
    with pytest.raises(spdy.StreamStateError):
        c.data(streams["stdin"], b"more")
    # stdout: server -> client
    ev = c.receive_data(s.data(streams["stdout"], b"hi\n") + s.data(streams["stdout"], b"", True))
    assert ev == [
        spdy.DataReceived(streams["stdout"], b"hi\n"),
        spdy.DataReceived(streams["stdout"], b"", True),
    ]
    # the error stream carries the status then closes
    status = b'{"status":"Success"}'
    ev = c.receive_data(s.data(streams["error"], status, fin=True))
    assert ev == [spdy.DataReceived(streams["error"], status, True)]
    # client closes its side of the error stream: both halves closed -> gone
    s.receive_data(c.data(streams["error"], b"", fin=True))
    assert streams["error"] not in s.open_streams and streams["error"] not in c.open_streams
    assert streams["stdin"] in s.open_streams  # server has not closed stdin yet


def test_port_forward_headers_round_trip():
    c, s = pair()
    for rid in range(3):
        for kind in ("error", "data"):
            _, raw = c.syn_stream({"streamtype": kind, "port": "8080", "requestid": str(rid)})
            (ev,) = s.receive_data(raw)
            assert ev.headers == {
                "streamtype": [kind],
                "port": ["8080"],
                "requestid": [str(rid)],
            }


def test_server_opened_stream_and_unidirectional():
    c, s = pair()
    sid, raw = s.syn_stream({"x": "1"}, unidirectional=True, associated_id=0)
    assert sid == 2
    (ev,) = c.receive_data(raw)
    assert ev.unidirectional and ev.stream_id == 2
    with pytest.raises(spdy.StreamStateError):
        c.data(2, b"nope")
    (ev,) = c.receive_data(s.data(2, b"push", fin=True))
    assert ev.fin
    assert c.open_streams == [] and s.open_streams == []


def test_headers_frame_and_fin_on_syn():
    c, s = pair()
    sid, raw = c.syn_stream({"a": "b"}, fin=True)
    (ev,) = s.receive_data(raw)
    assert ev.fin
    events = c.receive_data(s.syn_reply(sid, {"r": "1"}) + s.send_headers(sid, {"t": "2"}, True))
    assert events == [
        spdy.ReplyReceived(sid, {"r": ["1"]}),
        spdy.HeadersReceived(sid, {"t": ["2"]}, True),
    ]
    assert c.open_streams == [] and s.open_streams == []


def test_reset():
    c, s = pair()
    sid, raw = c.syn_stream({})
    s.receive_data(raw)
    assert c.receive_data(s.rst_stream(sid, f.RST_REFUSED_STREAM)) == [
        spdy.StreamReset(sid, f.RST_REFUSED_STREAM)
    ]
    assert sid not in c.open_streams
    # late data on the reset stream is silently dropped by the server
    assert s.receive_data(c.rst_stream(sid)) == []  # already gone on s


def test_data_on_unknown_stream_is_reset():
    c, s = pair()
    ev = s.receive_data(f.encode_data(9, b"x"))
    assert ev == [spdy.StreamReset(9, f.RST_INVALID_STREAM, local=True)]
    assert c.receive_data(s.data_to_send()) == []  # c has no stream 9 either


def test_ping_pong():
    c, s = pair()
    pid, raw = c.ping()
    assert pid == 1
    assert s.receive_data(raw) == [spdy.PingReceived(1)]
    assert c.receive_data(s.data_to_send()) == [spdy.PingAcknowledged(1)]
    pid2, raw = s.ping()
    assert pid2 == 2
    assert c.receive_data(raw) == [spdy.PingReceived(2)]
    assert s.receive_data(c.data_to_send()) == [spdy.PingAcknowledged(2)]


def test_goaway():
    c, s = pair()
    comp = f.HeaderCompressor()  # stands in for c's compressor, to craft frames
    s.receive_data(f.encode_frame(f.SynStreamFrame(1, {}), comp))
    assert c.receive_data(s.goaway()) == [spdy.GoAway(1, f.GOAWAY_OK)]
    with pytest.raises(spdy.StreamStateError):
        c.syn_stream({})
    # a SYN_STREAM above last-good is ignored by the server that sent GOAWAY
    assert s.receive_data(f.encode_frame(f.SynStreamFrame(3, {}), comp)) == []
    assert s.open_streams == [1]


def test_settings_exchange_adjusts_windows():
    c, s = pair()
    (ev,) = s.receive_data(c.settings({f.SETTINGS_INITIAL_WINDOW_SIZE: 1 << 20}))
    assert ev == spdy.SettingsReceived({f.SETTINGS_INITIAL_WINDOW_SIZE: 1 << 20})
    sid, raw = c.syn_stream({})
    s.receive_data(raw)
    assert s.send_window(sid) == 1 << 20


def test_send_stops_at_window_and_resumes():
    c, s = pair(auto_ack=False)
    sid, raw = c.syn_stream({})
    s.receive_data(raw)
    payload = bytes(range(256)) * 1024  # 256 KiB
    out = c.data(sid, payload, fin=True)
    got = b"".join(e.data for e in s.receive_data(out))
    assert len(got) == 65536 and c.pending(sid) == len(payload) - 65536
    assert c.send_window(sid) == 0 and c.send_window(0) == 0
    # nothing more can go until the receiver acknowledges
    assert c.data_to_send() == b""
    fins = []
    while len(got) < len(payload):
        events = c.receive_data(s.acknowledge(sid, 65536))
        assert spdy.WindowUpdated(sid, 65536) in events
        evs = s.receive_data(c.data_to_send())
        got += b"".join(e.data for e in evs)
        fins += [e.fin for e in evs]
    assert got == payload and fins[-1] is True
    assert c.pending(sid) == 0


def test_auto_ack_keeps_large_transfers_flowing():
    c, s = pair()
    sid, raw = c.syn_stream({})
    s.receive_data(raw)
    payload = b"z" * 1_000_000
    first = c.data(sid, payload, fin=True)
    received = [e for e in s.receive_data(first)]
    ec, es = pump(c, s)
    received += es
    data = b"".join(e.data for e in received if isinstance(e, spdy.DataReceived))
    assert data == payload
    assert max(len(e.data) for e in received) <= spdy.DEFAULT_MAX_DATA_FRAME


def test_flow_control_disabled_for_spdystream_peers():
    c, s = pair(flow_control=False)
    sid, raw = c.syn_stream({})
    s.receive_data(raw)
    out = s.syn_reply(sid, {}) + s.data(sid, b"q" * 300_000)
    assert s.pending(sid) == 0
    events = c.receive_data(out)
    assert sum(len(e.data) for e in events if isinstance(e, spdy.DataReceived)) == 300_000
    assert c.data_to_send() == b""  # no WINDOW_UPDATEs either


def test_receiver_resets_stream_that_overruns_its_window():
    c, s = pair(auto_ack=False)
    sid, raw = c.syn_stream({})
    s.receive_data(raw)
    c.receive_data(s.window_update(0, 1 << 20))  # the session window is not the limit
    big = f.encode_data(sid, b"x" * 60000) + f.encode_data(sid, b"x" * 10000)
    events = s.receive_data(big)
    assert events[-1] == spdy.StreamReset(sid, f.RST_FLOW_CONTROL_ERROR, local=True)


def test_everything_fed_one_byte_at_a_time():
    c, s = pair()
    sid, raw = c.syn_stream({"streamtype": "stdin"})
    raw += c.data(sid, b"abc") + c.send_headers(sid, {"k": "v"})
    raw += c.data(sid, b"def", fin=True)
    pid, p = c.ping()
    events = deliver(s, raw + p, one_byte=True)
    assert [type(e).__name__ for e in events] == [
        "StreamOpened",
        "DataReceived",
        "HeadersReceived",
        "DataReceived",
        "PingReceived",
    ]
    assert events[3].fin and events[2].headers == {"k": ["v"]}


# --- protocol errors ---------------------------------------------------------------


def test_wrong_parity_stream_id():
    c, s = pair()
    comp = f.HeaderCompressor()
    with pytest.raises(spdy.ProtocolError, match="parity"):
        s.receive_data(f.encode_frame(f.SynStreamFrame(2, {}), comp))


def test_stream_id_must_increase():
    c, s = pair()
    comp = f.HeaderCompressor()
    s.receive_data(f.encode_frame(f.SynStreamFrame(5, {}), comp))
    with pytest.raises(spdy.ProtocolError, match="not above"):
        s.receive_data(f.encode_frame(f.SynStreamFrame(3, {}), comp))


def test_zero_stream_id():
    c, s = pair()
    with pytest.raises(spdy.ProtocolError):
        s.receive_data(f.encode_data(0, b"x"))
    with pytest.raises(spdy.ProtocolError):
        s.receive_data(f.encode_frame(f.SynStreamFrame(0, {}), f.HeaderCompressor()))


def test_connection_bad_version_and_size():
    s = spdy.Connection(False, max_frame_size=100)
    with pytest.raises(spdy.ProtocolError, match="version"):
        s.receive_data(bytes([0x80, 0x04, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]))
    s = spdy.Connection(False, max_frame_size=100)
    with pytest.raises(spdy.ProtocolError, match="exceeds"):
        s.receive_data(struct.pack(">II", 1, 101))


def test_decompression_failure():
    s = spdy.Connection(False)
    body = struct.pack(">IIBB", 1, 0, 0, 0) + b"\xff" * 20
    raw = bytes([0x80, 3, 0, 1, 0]) + len(body).to_bytes(3, "big") + body
    with pytest.raises(spdy.ProtocolError, match="decompression"):
        s.receive_data(raw)


# --- property ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=40_000), max_size=12),
    cut=st.integers(min_value=1, max_value=5000),
    flow=st.booleans(),
)
def test_random_chunks_reassemble(chunks, cut, flow):
    c, s = pair(flow_control=flow)
    sid, raw = c.syn_stream({"streamtype": "data"})
    wire = raw
    for i, chunk in enumerate(chunks):
        wire += c.data(sid, chunk, fin=i == len(chunks) - 1)
    if not chunks:
        wire += c.data(sid, b"", fin=True)
    received = bytearray()
    fin = False
    while True:
        for i in range(0, len(wire), cut):
            for e in s.receive_data(wire[i : i + cut]):
                if isinstance(e, spdy.DataReceived):
                    assert not fin
                    received += e.data
                    fin = e.fin
        c.receive_data(s.data_to_send())
        wire = c.data_to_send()
        if not wire:
            break
    assert fin and bytes(received) == b"".join(chunks)
