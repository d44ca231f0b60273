"""Sans-IO pieces of the WebSocket port-forward protocol (the kubelet's).

The ports come in the ``port`` query parameter (repeated and/or comma
separated).  Each requested port ``i`` (0-based, in request order) gets two
channels: data ``2*i`` (read and written) and error ``2*i + 1`` (written only).
Messages are framed like exec's channels (see :mod:`.channels`): binary with a
leading channel byte, or base64 text with ``'0' + channel`` first.

Right after the upgrade the server writes, on each of the two channels of each
port, one message holding the port as an unsigned 16-bit little-endian number;
clients strip those two bytes from the first data they get on each channel.
Client-to-server data carries no prefix.  If forwarding fails the server writes
the error text on the port's error channel.

Subprotocols: ``v4.channel.k8s.io``, ``v4.base64.channel.k8s.io`` and none.
(SPDY port-forward uses ``portforward.k8s.io``; newer clients tunnel that SPDY
over WebSocket as ``SPDY/3.1+portforward.k8s.io``; neither is this framing.)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import channels as _ch

PORTFORWARD_SPDY_PROTOCOL = "portforward.k8s.io"
PORTFORWARD_TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
PORT_PARAM = "port"

#: WebSocket subprotocols for port forwarding, preferred first.
WEBSOCKET_PROTOCOLS: tuple[str, ...] = (
    _ch.V4_CHANNEL_PROTOCOL,
    _ch.V4_BASE64_CHANNEL_PROTOCOL,
)

#: The most ports one request may carry: 2 channels each within the binary
#: codec's 0..254 (255 is reserved) or base64's single-character range.
MAX_PORTS_BINARY = 127
MAX_PORTS_BASE64 = (0x7F - ord("0") + 1) // 2


class PortForwardError(ValueError):
    """A malformed port-forward request or message."""


def parse_ports(values: list[str] | tuple[str, ...]) -> list[int]:
    """Parse ``port`` query values (each may be comma separated) into ports 1..65535."""
    if not values:
        raise PortForwardError(f"query parameter {PORT_PARAM!r} is required")
    ports: list[int] = []
    for value in values:
        if not value:
            raise PortForwardError(f"query parameter {PORT_PARAM!r} cannot be empty")
        for part in value.split(","):
            if not part.isascii() or not part.isdigit():
                raise PortForwardError(f"unable to parse {value!r} as a port")
            port = int(part)
            if port > 0xFFFF:
                raise PortForwardError(f"unable to parse {value!r} as a port: out of range")
            if port < 1:
                raise PortForwardError(f"port {value!r} must be > 0")
            ports.append(port)
    return ports


def data_channel(index: int) -> int:
    return 2 * index


def error_channel(index: int) -> int:
    return 2 * index + 1


def channel_port_index(channel: int) -> tuple[int, bool]:
    """``(port index, is_error_channel)`` for a channel number."""
    if channel < 0:
        raise PortForwardError(f"invalid channel {channel}")
    return channel // 2, bool(channel % 2)


def port_prefix(port: int) -> bytes:
    """The 2-byte little-endian port that opens each channel."""
    if not 0 <= port <= 0xFFFF:
        raise PortForwardError(f"port {port} out of range")
    return struct.pack("<H", port)


def encode(channel: int, data: bytes, base64: bool = False) -> bytes | str:
    """Frame ``data`` on ``channel`` (same framing as exec's channels)."""
    return _ch.encode(channel, data, base64)


def decode(message: bytes | bytearray | memoryview | str, base64: bool | None = None):
    """``(channel, data)`` of a received message; no close signal here."""
    if base64 is None:
        base64 = isinstance(message, str)
    raw = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    if not raw:
        raise PortForwardError("empty port-forward message")
    if not base64:
        return raw[0], raw[1:]
    try:
        return _ch.decode(raw, base64=True)
    except _ch.ProtocolError as exc:
        raise PortForwardError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class PortForwardSession:
    """Channel layout for one WebSocket port-forward request."""

    ports: tuple[int, ...]
    base64: bool = False

    def __post_init__(self) -> None:
        if not self.ports:
            raise PortForwardError("at least one port is required")
        limit = MAX_PORTS_BASE64 if self.base64 else MAX_PORTS_BINARY
        if len(self.ports) > limit:
            raise PortForwardError(f"too many ports: {len(self.ports)} > {limit}")
        for port in self.ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 0xFFFF:
                raise PortForwardError(f"invalid port {port!r}: must be in 1..65535")

    @property
    def channel_count(self) -> int:
        return 2 * len(self.ports)

    def channels_for(self, index: int) -> tuple[int, int]:
        """``(data, error)`` channel numbers of the ``index``-th port."""
        return data_channel(index), error_channel(index)

    def port_of(self, channel: int) -> int:
        index, _ = channel_port_index(channel)
        if index >= len(self.ports):
            raise PortForwardError(f"channel {channel} is not open")
        return self.ports[index]

    def initial_messages(self) -> list[bytes | str]:
        """The messages the server sends first: the port prefix on every channel."""
        out: list[bytes | str] = []
        for i, port in enumerate(self.ports):
            prefix = port_prefix(port)
            out.append(encode(data_channel(i), prefix, self.base64))
            out.append(encode(error_channel(i), prefix, self.base64))
        return out

    def encode_data(self, index: int, data: bytes) -> bytes | str:
        return encode(data_channel(index), data, self.base64)

    def encode_error(self, index: int, message: str | bytes) -> bytes | str:
        if isinstance(message, str):
            message = message.encode("utf-8")
        return encode(error_channel(index), message, self.base64)

    def decode_client(self, message: bytes | str) -> tuple[int, bytes] | None:
        """Client data for the server: ``(port index, data)``.

        Returns ``None`` for empty messages and for messages aimed at channels
        the server does not read (error channels, unknown channels), which the
        kubelet drops.
        """
        if not message:
            return None
        channel, data = decode(message, self.base64)
        index, is_error = channel_port_index(channel)
        if is_error or index >= len(self.ports):
            return None
        return index, data


@dataclass
class ClientPortForwardDecoder:
    """Client side: strips the 2-byte port prefix from each channel's first data.

    ``feed`` returns ``(port index, is_error, data)`` or ``None`` while the
    prefix is incomplete.  It checks the prefix against the requested port.
    """

    ports: tuple[int, ...]
    base64: bool = False
    _pending: dict[int, bytearray] = field(default_factory=dict)
    _seen: set[int] = field(default_factory=set)

    def feed(self, message: bytes | str) -> tuple[int, bool, bytes] | None:
        channel, data = decode(message, self.base64)
        index, is_error = channel_port_index(channel)
        if index >= len(self.ports):
            raise PortForwardError(f"message on unknown channel {channel}")
        if channel not in self._seen:
            buf = self._pending.setdefault(channel, bytearray())
            buf += data
            if len(buf) < 2:
                return None
            (port,) = struct.unpack("<H", bytes(buf[:2]))
            if port != self.ports[index]:
                raise PortForwardError(
                    f"channel {channel} announced port {port}, expected {self.ports[index]}"
                )
            data = bytes(buf[2:])
            del self._pending[channel]
            self._seen.add(channel)
        return index, is_error, data
