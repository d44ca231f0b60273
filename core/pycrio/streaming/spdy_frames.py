"""SPDY/3.1 frames: layouts, the zlib header dictionary, and a sans-IO codec.

Every frame starts with 8 bytes. A control frame (high bit set) carries a
15-bit version (3), a 16-bit type, 8 bits of flags and a 24-bit length; a DATA
frame carries a 31-bit stream id, 8 bits of flags and a 24-bit length.

Name/value header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are a 32-bit count
followed by 32-bit-length-prefixed names and values (several values of one name
are joined by NUL), compressed with one zlib stream per direction of the
connection, primed with the SPDY/3 dictionary and flushed with Z_SYNC_FLUSH
after every frame. The compression state therefore spans frames: frames must be
encoded and decoded in exactly the order they travel.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

VERSION = 3

# control frame types
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
NOOP = 5  # SPDY/2 only; ignored
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9
CREDENTIAL = 10  # ignored

# flags
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR_SETTINGS = 0x01

# RST_STREAM status codes
RST_PROTOCOL_ERROR = 1
RST_INVALID_STREAM = 2
RST_REFUSED_STREAM = 3
RST_UNSUPPORTED_VERSION = 4
RST_CANCEL = 5
RST_INTERNAL_ERROR = 6
RST_FLOW_CONTROL_ERROR = 7
RST_STREAM_IN_USE = 8
RST_STREAM_ALREADY_CLOSED = 9
RST_INVALID_CREDENTIALS = 10
RST_FRAME_TOO_LARGE = 11

# GOAWAY status codes
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1
GOAWAY_INTERNAL_ERROR = 2

# SETTINGS ids
SETTINGS_UPLOAD_BANDWIDTH = 1
SETTINGS_DOWNLOAD_BANDWIDTH = 2
SETTINGS_ROUND_TRIP_TIME = 3
SETTINGS_MAX_CONCURRENT_STREAMS = 4
SETTINGS_CURRENT_CWND = 5
SETTINGS_DOWNLOAD_RETRANS_RATE = 6
SETTINGS_INITIAL_WINDOW_SIZE = 7
SETTINGS_CLIENT_CERTIFICATE_VECTOR_SIZE = 8

MAX_FRAME_LENGTH = (1 << 24) - 1  # the 24-bit length field
MAX_STREAM_ID = (1 << 31) - 1
MAX_WINDOW = (1 << 31) - 1
DEFAULT_WINDOW = 64 * 1024
DEFAULT_MAX_HEADER_BLOCK = 1 << 20  # decompressed bytes per header block


def _build_dictionary() -> bytes:
    # The SPDY/3 draft's header compression dictionary: these words, each with
    # a 32-bit big-endian length prefix, followed by an unprefixed tail.
    words = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host "
        "if-match if-modified-since if-none-match if-range if-unmodified-since "
        "last-modified location max-forwards pragma proxy-authenticate proxy-authorization "
        "range referer retry-after server te trailer transfer-encoding upgrade user-agent "
        "vary via warning www-authenticate method get status"
    ).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie"]
    words += ["keep-alive", "origin"]
    prefixed = b"".join(struct.pack(">I", len(w)) + w.encode("ascii") for w in words)
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505"
        "203 Non-Authoritative Information"
        "204 No Content"
        "301 Moved Permanently"
        "400 Bad Request"
        "401 Unauthorized"
        "403 Forbidden"
        "404 Not Found"
        "500 Internal Server Error"
        "501 Not Implemented"
        "503 Service Unavailable"
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
        "application/xhtml+xml,text/plain,text/javascript,"
        "publicprivatemax-age=gzip,deflate,sdch"
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return prefixed + tail.encode("ascii")


#: The zlib dictionary of SPDY/3 header compression (1423 bytes).
HEADER_DICTIONARY = _build_dictionary()


class SpdyError(Exception):
    """Base of the errors of this package."""


class ProtocolError(SpdyError):
    """The peer broke the protocol; the connection cannot continue."""


class StreamStateError(SpdyError):
    """The local side asked for something the stream's state does not allow."""


Headers = dict[str, list[str]]
HeadersInput = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]


def normalize_headers(headers: HeadersInput | None) -> Headers:
    """Lowercase names and gather values into lists, preserving order."""
    out: Headers = {}
    if headers is None:
        return out
    items: Iterable[tuple[str, str | Sequence[str]]]
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        values = [value] if isinstance(value, str) else list(value)
        out.setdefault(name.lower(), []).extend(values)
    return out


def encode_header_block(headers: HeadersInput | None) -> bytes:
    """The uncompressed name/value block."""
    norm = normalize_headers(headers)
    parts = [struct.pack(">I", len(norm))]
    for name, values in norm.items():
        if not name:
            raise ValueError("empty header name")
        raw_name = name.encode("utf-8")
        raw_value = b"\x00".join(v.encode("utf-8") for v in values)
        parts.append(struct.pack(">I", len(raw_name)) + raw_name)
        parts.append(struct.pack(">I", len(raw_value)) + raw_value)
    return b"".join(parts)


def decode_header_block(block: bytes) -> Headers:
    """Parse an uncompressed name/value block; names are lowercased."""
    view = memoryview(block)
    if len(view) < 4:
        raise ProtocolError("header block shorter than its count")
    (count,) = struct.unpack_from(">I", view, 0)
    pos = 4
    out: Headers = {}

    def take() -> bytes:
        nonlocal pos
        if pos + 4 > len(view):
            raise ProtocolError("header block truncated")
        (n,) = struct.unpack_from(">I", view, pos)
        pos += 4
        if pos + n > len(view):
            raise ProtocolError("header block truncated")
        raw = bytes(view[pos : pos + n])
        pos += n
        return raw

    for _ in range(count):
        name = take().decode("utf-8", "surrogateescape").lower()
        if not name:
            raise ProtocolError("empty header name")
        value = take().decode("utf-8", "surrogateescape")
        out.setdefault(name, []).extend(value.split("\x00"))
    if pos != len(view):
        raise ProtocolError("trailing bytes after header block")
    return out


class HeaderCompressor:
    """One direction's zlib stream; state carries across frames."""

    def __init__(self, level: int = zlib.Z_DEFAULT_COMPRESSION) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                   zdict=HEADER_DICTIONARY)  # fmt: skip

    def compress(self, headers: HeadersInput | None) -> bytes:
        block = encode_header_block(headers)
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The peer's zlib stream; state carries across frames."""

    def __init__(self, max_block: int = DEFAULT_MAX_HEADER_BLOCK) -> None:
        self._z = zlib.decompressobj(zdict=HEADER_DICTIONARY)
        self._max = max_block

    def decompress(self, data: bytes) -> Headers:
        try:
            raw = self._z.decompress(data, self._max + 1)
        except zlib.error as e:
            raise ProtocolError(f"header decompression failed: {e}") from e
        if len(raw) > self._max or self._z.unconsumed_tail:
            raise ProtocolError(f"header block larger than {self._max} bytes")
        return decode_header_block(raw)


# --- frames -----------------------------------------------------------------


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class SynStreamFrame:
    stream_id: int
    headers: Headers
    associated_id: int = 0
    priority: int = 0
    slot: int = 0
    flags: int = 0


@dataclass(frozen=True)
class SynReplyFrame:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True)
class RstStreamFrame:
    stream_id: int
    status: int


@dataclass(frozen=True)
class SettingsFrame:
    #: (flags, id, value) triples
    entries: list[tuple[int, int, int]] = field(default_factory=list)
    flags: int = 0


@dataclass(frozen=True)
class PingFrame:
    ping_id: int


@dataclass(frozen=True)
class GoAwayFrame:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True)
class WindowUpdateFrame:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class UnknownControlFrame:
    frame_type: int
    flags: int
    body: bytes


Frame = (
    DataFrame
    | SynStreamFrame
    | SynReplyFrame
    | RstStreamFrame
    | SettingsFrame
    | PingFrame
    | GoAwayFrame
    | HeadersFrame
    | WindowUpdateFrame
    | UnknownControlFrame
)


def _check_id(value: int, what: str) -> None:
    if not 0 <= value <= MAX_STREAM_ID:
        raise ValueError(f"{what} {value} out of 31-bit range")


def _control(frame_type: int, flags: int, body: bytes) -> bytes:
    if len(body) > MAX_FRAME_LENGTH:
        raise ValueError("control frame body too large")
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(body)) + body


def encode_data(stream_id: int, data: bytes, flags: int = 0) -> bytes:
    _check_id(stream_id, "stream id")
    if len(data) > MAX_FRAME_LENGTH:
        raise ValueError("DATA payload too large for one frame")
    return struct.pack(">II", stream_id, (flags << 24) | len(data)) + bytes(data)


def encode_frame(frame: Frame, compressor: HeaderCompressor | None = None) -> bytes:
    """Serialize one frame; header-carrying frames need the connection's compressor."""
    if isinstance(frame, DataFrame):
        return encode_data(frame.stream_id, frame.data, frame.flags)
    if isinstance(frame, SynStreamFrame | SynReplyFrame | HeadersFrame):
        if compressor is None:
            raise ValueError("a header compressor is needed for this frame")
        _check_id(frame.stream_id, "stream id")
        block = compressor.compress(frame.headers)
        if isinstance(frame, SynStreamFrame):
            _check_id(frame.associated_id, "associated stream id")
            if not 0 <= frame.priority <= 7:
                raise ValueError("priority must be 0..7")
            head = struct.pack(
                ">IIBB", frame.stream_id, frame.associated_id, frame.priority << 5, frame.slot
            )
            return _control(SYN_STREAM, frame.flags, head + block)
        ftype = SYN_REPLY if isinstance(frame, SynReplyFrame) else HEADERS
        return _control(ftype, frame.flags, struct.pack(">I", frame.stream_id) + block)
    if isinstance(frame, RstStreamFrame):
        _check_id(frame.stream_id, "stream id")
        return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
    if isinstance(frame, SettingsFrame):
        body = struct.pack(">I", len(frame.entries)) + b"".join(
            struct.pack(">II", (f << 24) | (i & 0xFFFFFF), v) for f, i, v in frame.entries
        )
        return _control(SETTINGS, frame.flags, body)
    if isinstance(frame, PingFrame):
        return _control(PING, 0, struct.pack(">I", frame.ping_id))
    if isinstance(frame, GoAwayFrame):
        _check_id(frame.last_good_stream_id, "last good stream id")
        return _control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
    if isinstance(frame, WindowUpdateFrame):
        _check_id(frame.stream_id, "stream id")
        if not 1 <= frame.delta <= MAX_WINDOW:
            raise ValueError("window delta must be 1..2^31-1")
        return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))
    if isinstance(frame, UnknownControlFrame):
        return _control(frame.frame_type, frame.flags, frame.body)
    raise TypeError(f"not a frame: {frame!r}")


class FrameDecoder:
    """Turn bytes, fed in any fragmentation, into frames.

    Owns the peer's header decompressor. Raises ProtocolError on a version
    other than 3, a frame longer than ``max_frame_size``, a malformed body or
    a header block that does not decompress.
    """

    def __init__(
        self,
        max_frame_size: int = MAX_FRAME_LENGTH,
        max_header_block: int = DEFAULT_MAX_HEADER_BLOCK,
    ) -> None:
        self._buf = bytearray()
        self._max = max_frame_size
        self._decompressor = HeaderDecompressor(max_header_block)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            word, flags_len = struct.unpack_from(">II", self._buf, 0)
            length = flags_len & 0xFFFFFF
            flags = flags_len >> 24
            if word & 0x80000000:
                version = (word >> 16) & 0x7FFF
                if version != VERSION:
                    raise ProtocolError(f"unsupported SPDY version {version}")
            if length > self._max:
                raise ProtocolError(f"frame of {length} bytes exceeds limit {self._max}")
            if len(self._buf) < 8 + length:
                break
            body = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            if word & 0x80000000:
                frames.append(self._control(word & 0xFFFF, flags, body))
            else:
                frames.append(DataFrame(word & 0x7FFFFFFF, body, flags))
        return frames

    def _headers(self, data: bytes) -> Headers:
        if not data:
            return {}
        return self._decompressor.decompress(data)

    def _control(self, ftype: int, flags: int, body: bytes) -> Frame:
        def need(n: int, exact: bool = False) -> None:
            if len(body) < n or (exact and len(body) != n):
                raise ProtocolError(f"control frame type {ftype} has bad length {len(body)}")

        if ftype == SYN_STREAM:
            need(10)
            sid, assoc, pri, slot = struct.unpack_from(">IIBB", body, 0)
            return SynStreamFrame(
                sid & MAX_STREAM_ID,
                self._headers(body[10:]),
                assoc & MAX_STREAM_ID,
                pri >> 5,
                slot,
                flags,
            )
        if ftype in (SYN_REPLY, HEADERS):
            need(4)
            (sid,) = struct.unpack_from(">I", body, 0)
            cls = SynReplyFrame if ftype == SYN_REPLY else HeadersFrame
            return cls(sid & MAX_STREAM_ID, self._headers(body[4:]), flags)
        if ftype == RST_STREAM:
            need(8, exact=True)
            sid, status = struct.unpack(">II", body)
            return RstStreamFrame(sid & MAX_STREAM_ID, status)
        if ftype == SETTINGS:
            need(4)
            (count,) = struct.unpack_from(">I", body, 0)
            if len(body) != 4 + 8 * count:
                raise ProtocolError("SETTINGS length does not match its entry count")
            entries = []
            for i in range(count):
                fid, value = struct.unpack_from(">II", body, 4 + 8 * i)
                entries.append((fid >> 24, fid & 0xFFFFFF, value))
            return SettingsFrame(entries, flags)
        if ftype == PING:
            need(4, exact=True)
            return PingFrame(struct.unpack(">I", body)[0])
        if ftype == GOAWAY:
            need(4)
            (last,) = struct.unpack_from(">I", body, 0)
            status = struct.unpack_from(">I", body, 4)[0] if len(body) >= 8 else GOAWAY_OK
            return GoAwayFrame(last & MAX_STREAM_ID, status)
        if ftype == WINDOW_UPDATE:
            need(8, exact=True)
            sid, delta = struct.unpack(">II", body)
            return WindowUpdateFrame(sid & MAX_STREAM_ID, delta & MAX_WINDOW)
        return UnknownControlFrame(ftype, flags, body)
