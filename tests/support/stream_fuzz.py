"""Hostile bytes for the streaming server: request heads, SPDY frames, WebSocket frames.

Each strategy yields what a broken or malicious client sends on a fresh TCP
connection to the streaming port; ``exchange`` sends it, half-closes, and
reads the answer until the server hangs up (or a deadline: a hang).
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from hypothesis import strategies as st

from pycrio.streaming import spdy_frames as sf

EXEC_STREAM_TYPES = ("error", "stdin", "stdout", "stderr", "resize", "", "bogus", "\x00")


@dataclass
class Answer:
    data: bytes
    closed: bool  # the server hung up before the deadline
    seconds: float

    @property
    def status(self) -> int:
        """The HTTP status of the answer (0 when there was none)."""
        if not self.data.startswith(b"HTTP/1.1 "):
            return 0
        try:
            return int(self.data[9:12])
        except ValueError:
            return 0


def exchange(host: str, port: int, payload: bytes, timeout: float = 15.0) -> Answer:
    """Send ``payload``, half-close, read until EOF or ``timeout``."""
    started = time.monotonic()
    sock = socket.create_connection((host, port), timeout=timeout)
    data = bytearray()
    closed = False
    try:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may hang up before it read everything: fine
        deadline = started + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        sock.close()
    return Answer(bytes(data), closed, time.monotonic() - started)


def target_of(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 80, parts.path


def upgrade_head(path: str, host: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def spdy_upgrade(path: str, host: str) -> bytes:
    return upgrade_head(
        path,
        host,
        [
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    )


def ws_upgrade(path: str, host: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    headers = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
        ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
    ]
    if extra is not None:
        headers = extra
    return upgrade_head(path, host, headers)


# --- request heads ----------------------------------------------------------------------

_METHODS = st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "G\x00T", "", "get", "X" * 300])
_PATHS = st.sampled_from(
    [
        "/",
        "/exec/",
        "/exec/../attach/x",
        "/exec/%00",
        "/exec/" + "A" * 8000,
        "/attach/\u00e9",
        "/portforward/x?port=0",
        "/portforward/x?port=99999&port=-1",
        "//",
        "*",
        "/exec/x?%zz",
    ]
)
_HEADER_NAMES = st.sampled_from(
    ["Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
     "Sec-WebSocket-Protocol", "X-Stream-Protocol-Version", "Content-Length",
     "Transfer-Encoding", "Host", "X" * 100, "Bad Name", "N\x00"]
)  # fmt: skip
_HEADER_VALUES = st.one_of(
    st.sampled_from(
        ["websocket", "SPDY/3.1", "Upgrade", "13", "999", "-1", "chunked",
         "v4.channel.k8s.io", "v5.channel.k8s.io", "", "\x7f", "é"]
    ),
    st.just(70_000).map(lambda n: "A" * n),
    st.text(max_size=30).map(lambda s: s.encode("utf-8").decode("latin-1")),
)  # fmt: skip


@st.composite
def request_heads(draw: st.DrawFn, valid_path: str) -> bytes:
    """A request head that is broken somewhere: line, path, headers, framing."""
    kind = draw(st.sampled_from(["random", "line", "headers", "huge"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=300))
    method = draw(_METHODS)
    path = draw(st.one_of(_PATHS, st.just(valid_path)))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", ""]))
    headers = draw(st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=6))
    if kind == "huge":
        headers += [("X-Fill", "y" * 4000)] * draw(st.integers(5, 40))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    raw = head.encode("utf-8", "surrogateescape")
    ending = draw(st.sampled_from([b"\r\n", b"", b"\n", b"\r\n" + b"\x00" * 10]))
    return raw + ending


# --- SPDY frames ------------------------------------------------------------------------

_STREAM_IDS = st.one_of(st.sampled_from([0, 1, 2, 3, 5, sf.MAX_STREAM_ID]), st.integers(0, 99))


@st.composite
def spdy_frame(draw: st.DrawFn) -> sf.Frame:
    kind = draw(st.sampled_from(["syn", "data", "rst", "settings", "ping", "goaway", "window",
                                 "headers", "reply"]))  # fmt: skip
    sid = draw(_STREAM_IDS)
    if kind == "syn":
        stype = draw(st.sampled_from(EXEC_STREAM_TYPES))
        names, values = st.sampled_from(["port", "requestid", "x"]), st.sampled_from(["0", ""])
        extra = draw(st.dictionaries(names, values, max_size=2))
        return sf.SynStreamFrame(
            stream_id=sid,
            headers=sf.normalize_headers({"streamtype": stype, **extra}),
            associated_id=draw(st.sampled_from([0, 1, 7])),
            flags=draw(st.sampled_from([0, 1, 2, 3, 0xFF])),
        )
    if kind == "data":
        return sf.DataFrame(
            stream_id=sid,
            data=draw(st.one_of(st.binary(max_size=64), st.just(70_000).map(lambda n: b"x" * n))),
            flags=draw(st.sampled_from([0, 1, 0xFF])),
        )
    if kind == "rst":
        return sf.RstStreamFrame(stream_id=sid, status=draw(st.integers(0, 20)))
    if kind == "settings":
        entries = draw(
            st.lists(
                st.tuples(st.integers(0, 255), st.integers(0, 10), st.integers(0, 2**32 - 1)),
                max_size=4,
            )
        )
        return sf.SettingsFrame(entries=entries, flags=draw(st.sampled_from([0, 1])))
    if kind == "ping":
        return sf.PingFrame(ping_id=draw(st.integers(0, 2**32 - 1)))
    if kind == "goaway":
        return sf.GoAwayFrame(last_good_stream_id=sid, status=draw(st.integers(0, 5)))
    if kind == "window":
        return sf.WindowUpdateFrame(stream_id=sid, delta=draw(st.integers(1, sf.MAX_WINDOW)))
    if kind == "reply":
        return sf.SynReplyFrame(stream_id=sid, headers=sf.normalize_headers({"x": "y"}))
    return sf.HeadersFrame(stream_id=sid, headers=sf.normalize_headers({"streamtype": "stdout"}))


def encode_frames(frames: list[sf.Frame]) -> bytes:
    compressor = sf.HeaderCompressor()
    out = bytearray()
    for f in frames:
        try:
            out += sf.encode_frame(f, compressor)
        except ValueError:
            continue  # the encoder refuses what it can never send: skip it
    return bytes(out)


@st.composite
def spdy_garbage(draw: st.DrawFn) -> bytes:
    """Frames after the upgrade: valid ones, then truncated, corrupted or oversized."""
    body = encode_frames(draw(st.lists(spdy_frame(), max_size=8)))
    how = draw(st.sampled_from(["as-is", "truncate", "flip", "random", "oversized", "bad-version"]))
    if how == "truncate" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif how == "flip" and body:
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1 :]
    elif how == "random":
        body += draw(st.binary(min_size=1, max_size=200))
    elif how == "oversized":
        # a control frame (SYN_STREAM) or data frame claiming 16 MiB, then little
        length = sf.MAX_FRAME_LENGTH
        header = draw(
            st.sampled_from([struct.pack(">HHI", 0x8003, 1, length), struct.pack(">II", 1, length)])
        )
        body += header + b"\x00" * draw(st.integers(0, 64))
    elif how == "bad-version":
        body += struct.pack(">HHI", 0x8000 | draw(st.sampled_from([0, 2, 4, 0x7FFF])), 1, 8)
        body += b"\x00" * 8
    return body


# --- WebSocket frames -------------------------------------------------------------------


def ws_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True,
             rsv: int = 0, claimed: int | None = None) -> bytes:  # fmt: skip
    """One WebSocket frame, possibly lying about its length or left unmasked."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | (opcode & 0x0F)
    n = len(payload) if claimed is None else claimed
    if n < 126:
        head = struct.pack(">BB", b0, (0x80 if mask else 0) | n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack(">BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@st.composite
def ws_garbage(draw: st.DrawFn) -> bytes:
    """Frames after a WebSocket upgrade: bad channels, opcodes, lengths, masks."""
    frames = []
    for _ in range(draw(st.integers(1, 5))):
        opcode = draw(st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB, 0xF]))
        channel = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 255]))
        payload = bytes([channel]) + draw(st.binary(max_size=40))
        if opcode == 0x1:
            payload = draw(st.sampled_from([b"\x00hello", b"\xff\xfe", b"", b"0aGVsbG8="]))
        if opcode == 0x8:
            payload = draw(
                st.sampled_from([b"", b"\x03", b"\x03\xe8", b"\x00\x00bye", b"\x03\xe8\xff"])
            )
        frames.append(
            ws_frame(
                opcode,
                payload,
                fin=draw(st.booleans()),
                mask=draw(st.sampled_from([True, True, False])),
                rsv=draw(st.sampled_from([0, 0, 1, 7])),
                claimed=draw(st.sampled_from([None, None, 0, 2**31, 2**63 - 1, 70_000])),
            )
        )
    return b"".join(frames)


_WS_BAD_HEADERS = st.sampled_from(
    [
        [("Connection", "Upgrade"), ("Upgrade", "websocket")],  # no key, no version
        [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "8"),
         ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")],
        [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
         ("Sec-WebSocket-Key", "short")],
        [("Connection", "keep-alive"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
         ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")],
        [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
         ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Protocol", "nope")],
        [("Connection", "Upgrade"), ("Upgrade", "websocket, SPDY/3.1"),
         ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
         ("X-Stream-Protocol-Version", "v4.channel.k8s.io")],
    ]
)  # fmt: skip


def ws_bad_handshakes() -> st.SearchStrategy[list[tuple[str, str]]]:
    return _WS_BAD_HEADERS
