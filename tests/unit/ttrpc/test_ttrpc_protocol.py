"""The sans-IO client and server connections, driven with bytes only."""

from __future__ import annotations

import grpc
import pytest

from pycrio.ttrpc import frames
from pycrio.ttrpc.errors import ProtocolError, TtrpcError
from pycrio.ttrpc.messages import Request, Response, Status
from pycrio.ttrpc.protocol import (
    CallFailed,
    CallReceived,
    ClientConnection,
    ResponseReceived,
    ServerConnection,
    response_frame,
)


def test_client_uses_odd_increasing_stream_ids_and_encodes_the_request() -> None:
    client = ClientConnection()
    ids = []
    for _ in range(3):
        sid, data = client.request("svc", "M", b"body", timeout=1.5, metadata={"k": ["a", "b"]})
        ids.append(sid)
    assert ids == [1, 3, 5]
    (frame,) = frames.Decoder().feed(data)
    assert (frame.stream_id, frame.type, frame.flags) == (5, frames.TYPE_REQUEST, 0)
    req = Request.FromString(frame.payload)
    assert (req.service, req.method, req.payload, req.timeout_nano) == (
        "svc",
        "M",
        b"body",
        1_500_000_000,
    )
    assert [(kv.key, kv.value) for kv in req.metadata] == [("k", "a"), ("k", "b")]


def test_responses_are_matched_to_calls_out_of_order() -> None:
    client = ClientConnection()
    a, _ = client.request("s", "A", b"")
    b, _ = client.request("s", "B", b"")
    data = response_frame(b, b"for-b") + response_frame(
        a, error=TtrpcError(grpc.StatusCode.NOT_FOUND, "gone")
    )
    events = client.receive(data)
    assert events[0] == ResponseReceived(b, b"for-b")
    assert isinstance(events[1], CallFailed) and events[1].stream_id == a
    assert events[1].error.code == grpc.StatusCode.NOT_FOUND
    assert events[1].error.message == "gone"
    assert client.pending == frozenset()


def test_a_forgotten_call_drops_its_late_response() -> None:
    client = ClientConnection()
    sid, _ = client.request("s", "A", b"")
    client.forget(sid)
    assert client.receive(response_frame(sid, b"late")) == []


def test_unknown_status_code_becomes_unknown() -> None:
    client = ClientConnection()
    sid, _ = client.request("s", "A", b"")
    body = Response(status=Status(code=99, message="?")).SerializeToString()
    (event,) = client.receive(frames.encode(sid, frames.TYPE_RESPONSE, body))
    assert event.error.code == grpc.StatusCode.UNKNOWN


def test_oversized_response_fails_only_its_call() -> None:
    client = ClientConnection()
    sid, _ = client.request("s", "A", b"")
    other, _ = client.request("s", "B", b"")
    header = frames.HEADER.pack(frames.MAX_MESSAGE + 1, sid, frames.TYPE_RESPONSE, 0)
    events = client.receive(header)
    assert events[0].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    events = client.receive(b"z" * (frames.MAX_MESSAGE + 1) + response_frame(other, b"ok"))
    assert events == [ResponseReceived(other, b"ok")]


def test_client_refuses_a_request_frame_from_the_server() -> None:
    with pytest.raises(ProtocolError):
        ClientConnection().receive(frames.encode(2, frames.TYPE_REQUEST, b""))


def test_client_refuses_to_send_an_oversized_request() -> None:
    with pytest.raises(TtrpcError) as e:
        ClientConnection().request("s", "m", b"x" * (frames.MAX_MESSAGE + 1))
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_server_turns_requests_into_calls() -> None:
    client, server = ClientConnection(), ServerConnection()
    _, data = client.request("svc", "Do", b"x", timeout=2, metadata={"a": "b"})
    calls, replies = server.receive(data)
    assert replies == b""
    assert calls == [CallReceived(1, "svc", "Do", b"x", 2_000_000_000, {"a": ["b"]})]


def _status(reply: bytes) -> tuple[int, grpc.StatusCode]:
    (frame,) = frames.Decoder().feed(reply)
    resp = Response.FromString(frame.payload)
    return frame.stream_id, grpc.StatusCode.OK if not resp.status.code else next(
        c for c in grpc.StatusCode if c.value[0] == resp.status.code
    )


def test_server_answers_bad_requests_without_calling_anything() -> None:
    server = ServerConnection()
    body = Request(service="s", method="m").SerializeToString()
    calls, replies = server.receive(frames.encode(2, frames.TYPE_REQUEST, body))
    assert calls == [] and _status(replies) == (2, grpc.StatusCode.INVALID_ARGUMENT)
    calls, replies = server.receive(frames.encode(3, frames.TYPE_REQUEST, b"\xff\xff"))
    assert calls == [] and _status(replies) == (3, grpc.StatusCode.INVALID_ARGUMENT)
    calls, replies = server.receive(
        frames.encode(5, frames.TYPE_REQUEST, body, flags=frames.FLAG_REMOTE_OPEN)
    )
    assert calls == [] and _status(replies) == (5, grpc.StatusCode.UNIMPLEMENTED)
    calls, replies = server.receive(
        frames.HEADER.pack(frames.MAX_MESSAGE + 1, 7, frames.TYPE_REQUEST, 0)
    )
    assert calls == [] and _status(replies) == (7, grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_an_oversized_response_is_replaced_by_an_error() -> None:
    reply = response_frame(9, b"x" * frames.MAX_MESSAGE)
    assert _status(reply) == (9, grpc.StatusCode.RESOURCE_EXHAUSTED)
