"""ttrpc framing, sans-IO: a 10-byte header and a payload of at most 4 MiB.

Header: payload length (u32, big-endian), stream id (u32), message type (u8),
flags (u8). Client-initiated streams have odd ids. A frame announcing more
than the maximum is not an end of the connection: its payload is skipped and
the stream alone fails with RESOURCE_EXHAUSTED, as ttrpc's channel does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct(">IIBB")
HEADER_LEN = HEADER.size  # 10
MAX_MESSAGE = 4 << 20

TYPE_REQUEST = 0x1
TYPE_RESPONSE = 0x2
TYPE_DATA = 0x3

FLAG_REMOTE_CLOSED = 0x1
FLAG_REMOTE_OPEN = 0x2
FLAG_NO_DATA = 0x4


@dataclass(frozen=True)
class Frame:
    stream_id: int
    type: int
    flags: int
    payload: bytes


@dataclass(frozen=True)
class Oversized:
    """A frame whose announced payload exceeded :data:`MAX_MESSAGE`; it was skipped."""

    stream_id: int
    type: int
    length: int


class OversizedMessage(ValueError):
    """Refused to send a payload larger than :data:`MAX_MESSAGE`."""

    def __init__(self, length: int) -> None:
        super().__init__(f"message length {length} exceeds maximum message size of {MAX_MESSAGE}")
        self.length = length


def encode(stream_id: int, msg_type: int, payload: bytes, flags: int = 0) -> bytes:
    """One frame's bytes; raises OversizedMessage for a payload over the limit."""
    if len(payload) > MAX_MESSAGE:
        raise OversizedMessage(len(payload))
    return HEADER.pack(len(payload), stream_id, msg_type, flags) + payload


class Decoder:
    """Turns a byte stream into frames; feed it whatever the transport delivered."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._skip = 0
        self.max_message = max_message

    def feed(self, data: bytes) -> list[Frame | Oversized]:
        self._buf += data
        out: list[Frame | Oversized] = []
        while True:
            if self._skip:
                n = min(self._skip, len(self._buf))
                del self._buf[:n]
                self._skip -= n
                if self._skip:
                    return out
            if len(self._buf) < HEADER_LEN:
                return out
            length, stream_id, msg_type, flags = HEADER.unpack_from(self._buf)
            if length > self.max_message:
                del self._buf[:HEADER_LEN]
                self._skip = length
                out.append(Oversized(stream_id, msg_type, length))
                continue
            end = HEADER_LEN + length
            if len(self._buf) < end:
                return out
            payload = bytes(self._buf[HEADER_LEN:end])
            del self._buf[:end]
            out.append(Frame(stream_id, msg_type, flags, payload))

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame (nonzero at EOF: truncated)."""
        return len(self._buf) + self._skip
