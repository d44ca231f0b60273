"""SPDY/3.1 frame layouts checked against hand-built bytes."""

import struct
import zlib

import pytest

from pycrio.streaming import spdy_frames as f


def ctrl(ftype: int, flags: int, body: bytes) -> bytes:
    return bytes([0x80, 0x03, 0x00, ftype, flags]) + len(body).to_bytes(3, "big") + body


def roundtrip(frame, expected: bytes) -> None:
    assert f.encode_frame(frame) == expected
    assert f.FrameDecoder().feed(expected) == [frame]


def test_dictionary_is_the_spdy3_one():
    d = f.HEADER_DICTIONARY
    assert len(d) == 1423
    assert d[:11] == b"\x00\x00\x00\x07options"
    assert d[80:88] == bytes.fromhex("740000000f616363")
    assert d[640:648] == bytes.fromhex("6572000000117472")
    assert d[1200:1208] == b"ed, Thu,"
    assert d.endswith(b"1,utf-,*,enq=0.")
    assert zlib.adler32(d) == 0xE3C6A7C2


def test_data_frame():
    raw = b"\x00\x00\x00\x05" + b"\x01\x00\x00\x03" + b"abc"
    roundtrip(f.DataFrame(5, b"abc", f.FLAG_FIN), raw)
    assert f.DataFrame(5, b"abc", f.FLAG_FIN).fin


def test_rst_stream():
    roundtrip(f.RstStreamFrame(3, f.RST_CANCEL), ctrl(3, 0, struct.pack(">II", 3, 5)))


def test_settings():
    body = struct.pack(">I", 2) + struct.pack(">II", 0x01000007, 1 << 20)
    body += struct.pack(">II", 0x00000004, 100)
    roundtrip(f.SettingsFrame([(1, 7, 1 << 20), (0, 4, 100)]), ctrl(4, 0, body))


def test_ping():
    roundtrip(f.PingFrame(0xDEADBEEF), ctrl(6, 0, b"\xde\xad\xbe\xef"))


def test_goaway():
    roundtrip(f.GoAwayFrame(7, f.GOAWAY_INTERNAL_ERROR), ctrl(7, 0, struct.pack(">II", 7, 2)))


def test_goaway_spdy2_short_body_tolerated():
    assert f.FrameDecoder().feed(ctrl(7, 0, struct.pack(">I", 9))) == [f.GoAwayFrame(9, 0)]


def test_window_update():
    roundtrip(f.WindowUpdateFrame(0, 65536), ctrl(9, 0, struct.pack(">II", 0, 65536)))
    roundtrip(f.WindowUpdateFrame(1, 10), ctrl(9, 0, struct.pack(">II", 1, 10)))


def _uncompressed_block(pairs):
    out = struct.pack(">I", len(pairs))
    for n, v in pairs:
        out += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
    return out


def test_header_block_layout():
    block = f.encode_header_block({"StreamType": "stdin", "multi": ["a", "b"]})
    assert block == _uncompressed_block([(b"streamtype", b"stdin"), (b"multi", b"a\x00b")])
    assert f.decode_header_block(block) == {"streamtype": ["stdin"], "multi": ["a", "b"]}


def test_syn_stream_layout():
    comp = f.HeaderCompressor()
    frame = f.SynStreamFrame(1, {"streamtype": ["error"]}, 0, 3, 0, f.FLAG_FIN)
    raw = f.encode_frame(frame, comp)
    assert raw[:5] == b"\x80\x03\x00\x01\x01"
    length = int.from_bytes(raw[5:8], "big")
    assert length == len(raw) - 8
    assert raw[8:18] == struct.pack(">IIBB", 1, 0, 3 << 5, 0)
    # the compressed block inflates (with the dictionary) to the plain layout
    d = zlib.decompressobj(zdict=f.HEADER_DICTIONARY)
    assert d.decompress(raw[18:]) == _uncompressed_block([(b"streamtype", b"error")])
    assert f.FrameDecoder().feed(raw) == [frame]


def test_syn_reply_and_headers_layout():
    comp = f.HeaderCompressor()
    reply = f.encode_frame(f.SynReplyFrame(2, {"a": ["1"]}), comp)
    hdrs = f.encode_frame(f.HeadersFrame(2, {"b": ["2"]}, f.FLAG_FIN), comp)
    assert reply[:5] == b"\x80\x03\x00\x02\x00" and reply[8:12] == b"\x00\x00\x00\x02"
    assert hdrs[:5] == b"\x80\x03\x00\x08\x01" and hdrs[8:12] == b"\x00\x00\x00\x02"
    dec = f.FrameDecoder()
    assert dec.feed(reply + hdrs) == [
        f.SynReplyFrame(2, {"a": ["1"]}),
        f.HeadersFrame(2, {"b": ["2"]}, f.FLAG_FIN),
    ]


def test_compression_is_stateful_across_frames():
    comp = f.HeaderCompressor()
    hdr = {"streamtype": "stdout", "port": "8080", "requestid": "0"}
    blocks = [comp.compress(hdr) for _ in range(4)]
    # later copies of the same headers compress to far less (back-references)
    assert len(blocks[3]) < len(blocks[0])
    dec = f.HeaderDecompressor()
    for b in blocks:
        assert dec.decompress(b) == f.normalize_headers(hdr)
    # a fresh decompressor cannot read a mid-stream block
    with pytest.raises(f.ProtocolError):
        f.HeaderDecompressor().decompress(blocks[2])


def test_kubernetes_stream_headers_round_trip():
    comp, dec = f.HeaderCompressor(), f.FrameDecoder()
    cases = [
        {"streamtype": "stdin"},
        {"streamtype": "stdout"},
        {"streamtype": "stderr"},
        {"streamtype": "error"},
        {"streamtype": "resize"},
        {"streamtype": "data", "port": "80", "requestid": "1"},
        {"streamtype": "error", "port": "80", "requestid": "1"},
    ]
    raw = b"".join(
        f.encode_frame(f.SynStreamFrame(2 * i + 1, f.normalize_headers(h)), comp)
        for i, h in enumerate(cases)
    )
    frames = dec.feed(raw)
    assert [fr.headers for fr in frames] == [f.normalize_headers(h) for h in cases]


def test_decoder_fragmented_one_byte_at_a_time():
    comp = f.HeaderCompressor()
    frames = [
        f.SynStreamFrame(1, {"x": ["y"]}),
        f.DataFrame(1, b"hello"),
        f.PingFrame(1),
        f.HeadersFrame(1, {"z": ["w"]}),
        f.DataFrame(1, b"", f.FLAG_FIN),
    ]
    raw = b"".join(f.encode_frame(fr, comp) for fr in frames)
    dec = f.FrameDecoder()
    got = []
    for i in range(len(raw)):
        got += dec.feed(raw[i : i + 1])
    assert got == frames


def test_unknown_control_frame_is_passed_through():
    assert f.FrameDecoder().feed(ctrl(10, 0, b"xy")) == [f.UnknownControlFrame(10, 0, b"xy")]


def test_bad_version():
    raw = bytes([0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4]) + b"\0\0\0\1"
    with pytest.raises(f.ProtocolError, match="version 2"):
        f.FrameDecoder().feed(raw)


def test_frame_too_large_detected_from_header_alone():
    with pytest.raises(f.ProtocolError, match="exceeds"):
        f.FrameDecoder(max_frame_size=1024).feed(b"\x00\x00\x00\x01\x00\x00\x04\x01")


def test_bad_control_lengths():
    with pytest.raises(f.ProtocolError):
        f.FrameDecoder().feed(ctrl(6, 0, b"\0\0\0\1\0"))
    with pytest.raises(f.ProtocolError):
        f.FrameDecoder().feed(ctrl(4, 0, struct.pack(">I", 3)))


def test_garbage_header_block():
    body = struct.pack(">I", 1) + b"not zlib at all"
    with pytest.raises(f.ProtocolError, match="decompression"):
        f.FrameDecoder().feed(ctrl(2, 0, body))


def test_header_bomb_limited():
    comp = f.HeaderCompressor()
    raw = f.encode_frame(f.SynStreamFrame(1, {"big": ["a" * 100_000]}), comp)
    with pytest.raises(f.ProtocolError, match="larger"):
        f.FrameDecoder(max_header_block=4096).feed(raw)


def test_truncated_plain_block():
    with pytest.raises(f.ProtocolError):
        f.decode_header_block(struct.pack(">II", 1, 10) + b"abc")
    with pytest.raises(f.ProtocolError):
        f.decode_header_block(_uncompressed_block([(b"a", b"b")]) + b"x")
