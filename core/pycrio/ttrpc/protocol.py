"""ttrpc unary calls as sans-IO state machines: bytes in, events and bytes out.

:class:`ClientConnection` numbers calls with odd stream ids and matches
responses to them; :class:`ServerConnection` turns request frames into
:class:`CallReceived` events and answers with response frames. Neither does
IO or threading: the thin :mod:`.client` and :mod:`.server` do, and tests
drive these with bytes. Streaming calls (ttrpc 1.2) are refused with
UNIMPLEMENTED: neither NRI nor shim v2's task API needs them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError

from pycrio.ttrpc import frames
from pycrio.ttrpc.errors import ProtocolError, TtrpcError, status_code
from pycrio.ttrpc.messages import KeyValue, Request, Response, Status


@dataclass(frozen=True)
class ResponseReceived:
    stream_id: int
    payload: bytes


@dataclass(frozen=True)
class CallFailed:
    stream_id: int
    error: TtrpcError


@dataclass(frozen=True)
class CallReceived:
    stream_id: int
    service: str
    method: str
    payload: bytes
    timeout_nano: int = 0
    metadata: dict[str, list[str]] = field(default_factory=dict)


def _metadata(pairs: dict[str, str | list[str]] | None) -> list:
    out = []
    for key, value in (pairs or {}).items():
        for v in [value] if isinstance(value, str) else value:
            out.append(KeyValue(key=key, value=v))
    return out


class ClientConnection:
    """The calling side of one connection; thread-safe numbering of streams."""

    def __init__(self) -> None:
        self._decoder = frames.Decoder()
        self._next = 1
        self._pending: set[int] = set()
        self._lock = threading.Lock()

    def request(
        self,
        service: str,
        method: str,
        payload: bytes,
        timeout: float | None = None,
        metadata: dict[str, str | list[str]] | None = None,
    ) -> tuple[int, bytes]:
        """A new call: its stream id and the frame to send. Raises TtrpcError if too big."""
        msg = Request(
            service=service,
            method=method,
            payload=payload,
            timeout_nano=int(timeout * 1e9) if timeout else 0,
            metadata=_metadata(metadata),
        )
        body = msg.SerializeToString()
        if len(body) > frames.MAX_MESSAGE:
            raise TtrpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"message length {len(body)} exceeds maximum message size of {frames.MAX_MESSAGE}",
            )
        with self._lock:
            stream_id = self._next
            self._next += 2
            self._pending.add(stream_id)
        return stream_id, frames.encode(stream_id, frames.TYPE_REQUEST, body)

    def forget(self, stream_id: int) -> None:
        """The caller gave up on a call (timeout): a late response is dropped."""
        with self._lock:
            self._pending.discard(stream_id)

    @property
    def pending(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._pending)

    def receive(self, data: bytes) -> list[ResponseReceived | CallFailed]:
        """Events for what ``data`` completes; raises ProtocolError on a broken stream."""
        events: list[ResponseReceived | CallFailed] = []
        for item in self._decoder.feed(data):
            if isinstance(item, frames.Oversized):
                if self._take(item.stream_id):
                    events.append(
                        CallFailed(
                            item.stream_id,
                            TtrpcError(
                                grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"message length {item.length} exceed maximum message size"
                                f" of {frames.MAX_MESSAGE}",
                            ),
                        )
                    )
                continue
            if item.type != frames.TYPE_RESPONSE:
                if item.type == frames.TYPE_DATA:
                    continue  # no client streams here: data for one is dropped
                raise ProtocolError(f"unexpected ttrpc message type {item.type} from the server")
            if not self._take(item.stream_id):
                continue  # a call we gave up on
            try:
                response = Response.FromString(item.payload)
            except DecodeError as e:
                events.append(
                    CallFailed(
                        item.stream_id,
                        TtrpcError(grpc.StatusCode.INTERNAL, f"malformed ttrpc response: {e}"),
                    )
                )
                continue
            if response.HasField("status") and response.status.code != 0:
                err = TtrpcError(status_code(response.status.code), response.status.message)
                events.append(CallFailed(item.stream_id, err))
            else:
                events.append(ResponseReceived(item.stream_id, response.payload))
        return events

    def _take(self, stream_id: int) -> bool:
        with self._lock:
            if stream_id in self._pending:
                self._pending.discard(stream_id)
                return True
            return False


def response_frame(stream_id: int, payload: bytes = b"", error: TtrpcError | None = None) -> bytes:
    """The frame answering ``stream_id``: a payload, or a status when ``error`` is set."""
    if error is not None:
        msg = Response(status=Status(code=error.code.value[0], message=error.message))
    else:
        msg = Response(payload=payload)
    body = msg.SerializeToString()
    if len(body) > frames.MAX_MESSAGE:
        err = TtrpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"response length {len(body)} exceeds maximum message size of {frames.MAX_MESSAGE}",
        )
        return response_frame(stream_id, error=err)
    return frames.encode(stream_id, frames.TYPE_RESPONSE, body)


class ServerConnection:
    """The serving side of one connection.

    ``receive`` returns the calls to run and the frames to send right away
    (errors for requests that cannot be served at all).
    """

    def __init__(self) -> None:
        self._decoder = frames.Decoder()

    def receive(self, data: bytes) -> tuple[list[CallReceived], bytes]:
        calls: list[CallReceived] = []
        replies = bytearray()
        for item in self._decoder.feed(data):
            if isinstance(item, frames.Oversized):
                err = TtrpcError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"message length {item.length} exceed maximum message size"
                    f" of {frames.MAX_MESSAGE}",
                )
                replies += response_frame(item.stream_id, error=err)
                continue
            if item.type == frames.TYPE_DATA:
                continue  # data for a stream we refused
            if item.type != frames.TYPE_REQUEST:
                raise ProtocolError(f"unexpected ttrpc message type {item.type} from the client")
            if item.stream_id % 2 != 1:
                err = TtrpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "StreamID must be odd for client initiated streams",
                )
                replies += response_frame(item.stream_id, error=err)
                continue
            if item.flags & frames.FLAG_REMOTE_OPEN:
                err = TtrpcError(grpc.StatusCode.UNIMPLEMENTED, "streaming calls are not served")
                replies += response_frame(item.stream_id, error=err)
                continue
            try:
                req = Request.FromString(item.payload)
            except DecodeError as e:
                err = TtrpcError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed ttrpc request: {e}")
                replies += response_frame(item.stream_id, error=err)
                continue
            metadata: dict[str, list[str]] = {}
            for kv in req.metadata:
                metadata.setdefault(kv.key, []).append(kv.value)
            calls.append(
                CallReceived(
                    item.stream_id, req.service, req.method, req.payload, req.timeout_nano, metadata
                )
            )
        return calls, bytes(replies)
