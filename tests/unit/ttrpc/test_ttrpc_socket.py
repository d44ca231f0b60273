"""The thin client and server over a real unix socket: concurrency, errors, timeouts, close."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from pycrio.errors import NotFound
from pycrio.ttrpc import Client, Server, TtrpcError


@pytest.fixture
def served(tmp_path: Path):
    release = threading.Event()

    def echo(payload: bytes, call) -> bytes:
        return payload[::-1] + call.metadata.get("x", [""])[0].encode()

    def slow(payload: bytes, call) -> bytes:
        release.wait(5)
        return b"slow"

    def missing(payload: bytes, call) -> bytes:
        raise NotFound("no such thing")

    def broken(payload: bytes, call) -> bytes:
        raise RuntimeError("bug")

    server = Server(
        {
            ("t.Svc", "Echo"): echo,
            ("t.Svc", "Slow"): slow,
            ("t.Svc", "Missing"): missing,
            ("t.Svc", "Broken"): broken,
        }
    )
    path = str(tmp_path / "t.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    thread = threading.Thread(target=server.serve, args=(listener,), daemon=True)
    thread.start()
    yield path, release
    release.set()
    server.stop()


def test_calls_errors_and_unknown_methods(served) -> None:
    path, _ = served
    client = Client.connect(path)
    assert client.call("t.Svc", "Echo", b"abc", metadata={"x": "!"}) == b"cba!"
    with pytest.raises(TtrpcError) as e:
        client.call("t.Svc", "Missing", b"")
    assert e.value.code == grpc.StatusCode.NOT_FOUND and "no such thing" in e.value.message
    with pytest.raises(TtrpcError) as e:
        client.call("t.Svc", "Broken", b"")
    assert e.value.code == grpc.StatusCode.UNKNOWN and "bug" in e.value.message
    with pytest.raises(TtrpcError) as e:
        client.call("t.Svc", "Nope", b"")
    assert e.value.code == grpc.StatusCode.UNIMPLEMENTED
    client.close()


def test_a_slow_call_does_not_hold_up_others_on_the_same_connection(served) -> None:
    path, release = served
    client = Client.connect(path)
    with ThreadPoolExecutor(4) as pool:
        slow = pool.submit(client.call, "t.Svc", "Slow", b"")
        fast = [pool.submit(client.call, "t.Svc", "Echo", str(i).encode()) for i in range(20)]
        assert [f.result(5) for f in fast] == [str(i).encode()[::-1] for i in range(20)]
        assert not slow.done()
        release.set()
        assert slow.result(5) == b"slow"
    client.close()


def test_timeout_fails_the_call_and_the_connection_stays_usable(served) -> None:
    path, release = served
    client = Client.connect(path)
    started = time.monotonic()
    with pytest.raises(TtrpcError) as e:
        client.call("t.Svc", "Slow", b"", timeout=0.2)
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    release.set()
    assert client.call("t.Svc", "Echo", b"ok") == b"ko"
    client.close()


def test_pending_calls_fail_when_the_server_goes_away(served, tmp_path: Path) -> None:
    # a server that accepts and then hangs up mid-call
    path = str(tmp_path / "drop.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    closed = []
    client = Client.connect(path, on_close=closed.append)
    conn, _ = listener.accept()
    result = {}

    def call() -> None:
        try:
            client.call("t.Svc", "Echo", b"x", timeout=5)
        except TtrpcError as e:
            result["error"] = e

    t = threading.Thread(target=call)
    t.start()
    conn.recv(100)
    conn.close()
    t.join(5)
    assert result["error"].code == grpc.StatusCode.UNAVAILABLE
    assert closed and client.closed
    with pytest.raises(TtrpcError):
        client.call("t.Svc", "Echo", b"x")
    listener.close()
