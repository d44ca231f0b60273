"""Sans-IO pieces of the Kubernetes remote-command channel protocols.

Exec and attach carry stdin, stdout, stderr, an error stream and a resize stream.
Over WebSocket each message is one frame on one channel:

* ``channel.k8s.io`` family (binary): the first byte of a binary message is the
  channel number, the rest is the payload as is.
* ``base64.channel.k8s.io`` family (text): the first character is ``'0' +
  channel`` and the rest is the payload in standard, padded base64.
* ``v5.channel.k8s.io`` adds a close signal: a binary message ``[255, n]``
  half-closes channel ``n`` (in practice the client's stdin).  Upstream has no
  base64 variant of v5, so the signal only exists in the binary protocol.

The version also decides the error stream's format (see :mod:`.status`): v4 and
later write a JSON ``metav1.Status``; older ones write plain error text.

The resize channel carries a stream of JSON ``TerminalSize`` objects
(``{"Width": 80, "Height": 24}``); :class:`ResizeDecoder` splits and parses them
however the stream happens to be chunked.

Nothing here does I/O: the server feeds in received messages and sends what
these functions return.
"""

from __future__ import annotations

import base64 as _b64
import binascii
import json
from dataclasses import dataclass

# --- subprotocol names -------------------------------------------------------

CHANNEL_PROTOCOL = "channel.k8s.io"
BASE64_CHANNEL_PROTOCOL = "base64.channel.k8s.io"
V2_CHANNEL_PROTOCOL = "v2.channel.k8s.io"
V3_CHANNEL_PROTOCOL = "v3.channel.k8s.io"
V4_CHANNEL_PROTOCOL = "v4.channel.k8s.io"
V4_BASE64_CHANNEL_PROTOCOL = "v4.base64.channel.k8s.io"
V5_CHANNEL_PROTOCOL = "v5.channel.k8s.io"

#: The name a client gets when it offers no subprotocol at all: binary v1.
NO_PROTOCOL = ""

#: Subprotocols for exec and attach over WebSocket, newest first (kubelet's set).
WEBSOCKET_PROTOCOLS: tuple[str, ...] = (
    V5_CHANNEL_PROTOCOL,
    V4_CHANNEL_PROTOCOL,
    V4_BASE64_CHANNEL_PROTOCOL,
    CHANNEL_PROTOCOL,
    BASE64_CHANNEL_PROTOCOL,
)

#: Subprotocols for exec and attach over SPDY, newest first.  v5 behaves as v4
#: over SPDY: the close signal is WebSocket-only (SPDY half-closes streams).
SPDY_PROTOCOLS: tuple[str, ...] = (
    V5_CHANNEL_PROTOCOL,
    V4_CHANNEL_PROTOCOL,
    V3_CHANNEL_PROTOCOL,
    V2_CHANNEL_PROTOCOL,
    CHANNEL_PROTOCOL,
)


class ProtocolError(ValueError):
    """A message or negotiation that does not follow the channel protocol."""


class NegotiationError(ProtocolError):
    """The client offered no subprotocol that the server supports."""


@dataclass(frozen=True, slots=True)
class ProtocolInfo:
    """What a negotiated subprotocol name implies."""

    name: str
    version: int
    base64: bool

    @property
    def json_status(self) -> bool:
        """The error stream carries a JSON ``metav1.Status`` (v4 and later)."""
        return self.version >= 4

    @property
    def supports_close(self) -> bool:
        """The client may half-close a channel with the v5 close signal."""
        return self.version >= 5 and not self.base64

    @property
    def supports_resize_spdy(self) -> bool:
        """Over SPDY a resize stream exists from v3 on (WebSocket always has one)."""
        return self.version >= 3


def protocol_info(name: str) -> ProtocolInfo:
    """Describe a subprotocol name (``""`` is the unversioned binary protocol)."""
    if name == NO_PROTOCOL:
        return ProtocolInfo(name, 1, False)
    rest = name
    version = 1
    if len(rest) > 3 and rest[0] == "v" and rest[1].isdigit() and rest[2] == ".":
        version = int(rest[1])
        rest = rest[3:]
    if rest == CHANNEL_PROTOCOL:
        is_b64 = False
    elif rest == BASE64_CHANNEL_PROTOCOL:
        is_b64 = True
    else:
        raise ProtocolError(f"unknown channel subprotocol {name!r}")
    if not 1 <= version <= 5:
        raise ProtocolError(f"unknown channel subprotocol version in {name!r}")
    return ProtocolInfo(name, version, is_b64)


def choose_protocol(
    offered: list[str] | tuple[str, ...],
    supported: list[str] | tuple[str, ...] = WEBSOCKET_PROTOCOLS,
) -> str:
    """Pick the subprotocol for a handshake, preferring the newest one we support.

    ``supported`` is in preference order (newest first); the first supported
    name the client also offered wins.  A client that offers nothing gets
    ``""`` (the unversioned binary protocol, as the kubelet does).  Names are
    compared exactly after trimming whitespace, so ``offered`` may come
    straight from a split ``Sec-WebSocket-Protocol`` / ``X-Stream-Protocol-Version``
    header.  Raises :class:`NegotiationError` when nothing matches.
    """
    cleaned = [p.strip() for p in offered if p.strip()]
    if not cleaned:
        return NO_PROTOCOL
    wanted = set(cleaned)
    for name in supported:
        if name and name in wanted:
            return name
    raise NegotiationError(
        f"requested protocol(s) are not supported: {cleaned}; supports {list(supported)}"
    )


def split_protocol_header(value: str | None) -> list[str]:
    """Split a comma-separated subprotocol header value into names."""
    if not value:
        return []
    return [p.strip() for p in value.split(",") if p.strip()]


# --- channel ids ---------------------------------------------------------------

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
CLOSE = 255

#: Highest channel number the base64 codec can carry in one ASCII character.
_MAX_BASE64_CHANNEL = 0x7F - ord("0")


@dataclass(frozen=True, slots=True)
class SessionChannels:
    """Which channels an exec/attach session uses.

    ``readable`` are channels the server reads (client to server), ``writable``
    the ones it writes.  The error channel is always open; the resize channel
    is read when a TTY is requested; stderr is dropped with a TTY (the terminal
    merges it into stdout), as the kubelet does.
    """

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @property
    def readable(self) -> frozenset[int]:
        chans = set()
        if self.stdin:
            chans.add(STDIN)
        if self.tty:
            chans.add(RESIZE)
        return frozenset(chans)

    @property
    def writable(self) -> frozenset[int]:
        chans = {ERROR}
        if self.stdout:
            chans.add(STDOUT)
        if self.stderr:
            chans.add(STDERR)
        return frozenset(chans)

    @property
    def opened(self) -> frozenset[int]:
        return self.readable | self.writable

    @property
    def first_writable(self) -> int:
        """The channel on which to send the empty "connection ready" message."""
        if self.stdout:
            return STDOUT
        if self.stderr:
            return STDERR
        return ERROR


def session_channels(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> SessionChannels:
    """Validate a stream request and tell which channels it opens.

    A TTY excludes stderr.  At least one of stdin, stdout and stderr must remain,
    otherwise :class:`ProtocolError` is raised.
    """
    if tty:
        stderr = False
    if not (stdin or stdout or stderr):
        raise ProtocolError("you must specify at least 1 of stdin, stdout, stderr")
    return SessionChannels(bool(stdin), bool(stdout), bool(stderr), bool(tty))


# --- framing -----------------------------------------------------------------


def _check_channel(channel: int, base64: bool) -> None:
    if not isinstance(channel, int) or isinstance(channel, bool):
        raise TypeError(f"channel must be an int, not {type(channel).__name__}")
    limit = _MAX_BASE64_CHANNEL if base64 else 0xFF
    if not 0 <= channel <= limit:
        raise ProtocolError(f"channel {channel} out of range 0..{limit}")


def encode(channel: int, data: bytes, base64: bool = False) -> bytes | str:
    """Frame ``data`` for ``channel``.

    Binary protocols return bytes (send as a binary WebSocket message); base64
    protocols return str (send as a text message).
    """
    _check_channel(channel, base64)
    data = bytes(data)
    if base64:
        return chr(ord("0") + channel) + _b64.b64encode(data).decode("ascii")
    return bytes((channel,)) + data


def decode(message: bytes | bytearray | memoryview | str, base64: bool | None = None):
    """Split a received message into ``(channel, payload bytes)``.

    ``base64`` defaults to "is a text message" (a str).  Text messages on binary
    protocols are taken as UTF-8 bytes and binary messages on base64 protocols
    are taken as ASCII, as Go's ``websocket.Message`` receive does.  An empty
    message raises :class:`ProtocolError` (callers usually skip it first).
    A v5 close signal comes back as ``(CLOSE, bytes([n]))``; see
    :func:`decode_close`.
    """
    if base64 is None:
        base64 = isinstance(message, str)
    raw = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    if not raw:
        raise ProtocolError("empty channel message")
    first = raw[0]
    if first == CLOSE and not base64:
        return CLOSE, raw[1:]
    if not base64:
        return first, raw[1:]
    channel = first - ord("0")
    if not 0 <= channel <= _MAX_BASE64_CHANNEL:
        raise ProtocolError(f"invalid base64 channel character {chr(first)!r}")
    try:
        payload = _b64.b64decode(raw[1:], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"invalid base64 payload on channel {channel}: {exc}") from None
    return channel, payload


def encode_close(channel: int) -> bytes:
    """The v5 close signal that half-closes ``channel``: ``[255, channel]``."""
    _check_channel(channel, False)
    if channel == CLOSE:
        raise ProtocolError("cannot close the close channel")
    return bytes((CLOSE, channel))


def is_close(message: bytes | bytearray | memoryview | str) -> bool:
    """True if ``message`` is a (binary) v5 close signal."""
    if isinstance(message, str):
        return False
    raw = bytes(message)
    return len(raw) >= 1 and raw[0] == CLOSE


def decode_close(message: bytes | bytearray | memoryview) -> int:
    """The channel a v5 close signal closes; exactly one byte must follow 255."""
    raw = bytes(message)
    if not raw or raw[0] != CLOSE:
        raise ProtocolError("not a close signal")
    if len(raw) != 2:
        raise ProtocolError(
            f"single channel byte should follow stream close signal, got {len(raw) - 1} bytes"
        )
    return raw[1]


# --- resize ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TerminalSize:
    """A terminal size from the resize channel (both uint16, as in client-go)."""

    width: int
    height: int

    def to_json(self) -> bytes:
        return json.dumps({"Width": self.width, "Height": self.height}).encode()


class ResizeError(ProtocolError):
    """The resize stream carried something other than TerminalSize objects."""


def _uint16(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ResizeError(f"{field} must be an integer in 0..65535, got {value!r}")
    return value


def parse_terminal_size(obj: object) -> TerminalSize:
    """Turn a decoded JSON value into a TerminalSize like Go's json.Unmarshal would.

    Field names match case-insensitively, unknown fields are ignored, missing
    or null fields stay 0.
    """
    if not isinstance(obj, dict):
        raise ResizeError(f"resize message must be a JSON object, got {type(obj).__name__}")
    width = height = 0
    exact = {k: v for k, v in obj.items() if k in ("Width", "Height")}
    for key, value in obj.items():
        low = key.lower()
        if low not in ("width", "height"):
            continue
        canonical = low.capitalize()
        if canonical in exact and key != canonical:
            continue  # an exact-case key wins over a case-folded one
        if value is None:
            continue
        if low == "width":
            width = _uint16(value, "Width")
        else:
            height = _uint16(value, "Height")
    return TerminalSize(width, height)


class ResizeDecoder:
    """Incremental decoder for the resize channel's stream of JSON objects.

    Feed it chunks in whatever sizes they arrive; it returns the sizes that
    became complete.  Objects may be separated by whitespace (or nothing).
    Anything that is not a JSON object of the right shape raises
    :class:`ResizeError`, after which the decoder stays failed (the kubelet
    stops reading resize events at the first decode error).
    """

    def __init__(self, max_buffer: int = 64 * 1024) -> None:
        self._buf = bytearray()
        self._max = max_buffer
        self._failed: ResizeError | None = None
        # scanner state over self._buf[:self._pos]
        self._pos = 0
        self._depth = 0
        self._in_string = False
        self._escape = False

    def _fail(self, message: str) -> ResizeError:
        self._failed = ResizeError(message)
        self._buf.clear()
        return self._failed

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[TerminalSize]:
        if self._failed is not None:
            raise self._failed
        self._buf += chunk
        out: list[TerminalSize] = []
        buf = self._buf
        while True:
            if self._depth == 0:
                # skip whitespace between objects
                start = self._pos
                while start < len(buf) and buf[start] in b" \t\r\n":
                    start += 1
                del buf[:start]
                self._pos = 0
                if not buf:
                    break
                if buf[0] != ord("{"):
                    raise self._fail(
                        f"resize stream: expected a JSON object, got {bytes(buf[:16])!r}"
                    )
            end = self._scan()
            if end is None:
                if len(buf) > self._max:
                    raise self._fail(f"resize message larger than {self._max} bytes")
                break
            text = bytes(buf[:end])
            del buf[:end]
            self._pos = 0
            try:
                obj = json.loads(text)
            except (ValueError, UnicodeDecodeError) as exc:
                raise self._fail(f"resize stream: invalid JSON {text[:64]!r}: {exc}") from None
            try:
                out.append(parse_terminal_size(obj))
            except ResizeError as exc:
                raise self._fail(str(exc)) from None
        return out

    def _scan(self) -> int | None:
        """Advance over the buffer; return the end offset of a complete object."""
        buf = self._buf
        i = self._pos
        n = len(buf)
        while i < n:
            c = buf[i]
            i += 1
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif c == 0x5C:  # backslash
                    self._escape = True
                elif c == 0x22:  # quote
                    self._in_string = False
            elif c == 0x22:
                self._in_string = True
            elif c in (0x7B, 0x5B):  # { [
                self._depth += 1
            elif c in (0x7D, 0x5D):  # } ]
                self._depth -= 1
                if self._depth < 0:
                    raise self._fail("resize stream: unbalanced brackets")
                if self._depth == 0:
                    self._pos = 0
                    return i
        self._pos = i
        return None

    def close(self) -> None:
        """End of stream: raise if a partial object is left over."""
        if self._failed is None and self._buf.strip():
            raise self._fail(f"resize stream ended inside an object: {bytes(self._buf[:64])!r}")
