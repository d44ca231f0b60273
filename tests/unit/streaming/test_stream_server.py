"""The streaming server on a real socket, with a runner of the test's own (no daemon).

Covers what the e2e tests cannot reach cheaply: TLS, routing errors, the idle
timeout, and a runner's failure reported on the error channel.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from pycrio.streaming import channels, spdy, status
from pycrio.streaming import portforward_ws as pfws
from pycrio.streaming.router import PortForward, RemoteCommand, Router
from pycrio.streaming.server import StreamServer
from pycrio.streaming.stdio import SessionIO


def echo_runner(io: SessionIO) -> int:
    """stdin back on stdout, upper-cased on stderr; exit 7."""
    assert io.stdin is not None and io.stdout is not None and io.stderr is not None
    while chunk := io.stdin.read(timeout=10):
        io.stdout.write(chunk)
        io.stderr.write(chunk.upper())
    return 7


class Targets:
    def __init__(self) -> None:
        self.entries: dict[str, RemoteCommand] = {}
        self.seen: list[str] = []

    def __call__(self, kind: str, token: str) -> RemoteCommand | None:
        self.seen.append(f"{kind}/{token}")
        return self.entries.pop(f"{kind}/{token}", None)


def serve(targets: Targets, tls: ssl.SSLContext | None = None, idle: float = 60.0) -> StreamServer:
    server = StreamServer("127.0.0.1", 0, Router(targets, idle), tls)
    server.start()
    return server


@pytest.fixture
def plain() -> Iterator[tuple[StreamServer, Targets]]:
    targets = Targets()
    server = serve(targets)
    yield server, targets
    server.stop()


def collect(ws: websocket.WebSocket) -> list[bytes]:
    out = []
    try:
        while True:
            message = ws.recv()
            if message:
                out.append(message)
    except websocket.WebSocketConnectionClosedException:
        return out


def exchange(url: str, **kw: object) -> list[tuple[int, bytes]]:
    ws = websocket.create_connection(url, subprotocols=["v5.channel.k8s.io"], timeout=10, **kw)
    assert ws.getsubprotocol() == "v5.channel.k8s.io"
    ws.send_binary(bytes([channels.STDIN]) + b"abc")
    ws.send_binary(channels.encode_close(channels.STDIN))
    return [channels.decode(m) for m in collect(ws)]


def test_exec_over_websocket_reports_output_and_exit_code(plain) -> None:
    server, targets = plain
    targets.entries["exec/t1"] = RemoteCommand(
        channels.session_channels(True, True, True, False), echo_runner
    )
    got = exchange(f"ws://127.0.0.1:{server.port}/exec/t1")
    assert (channels.STDOUT, b"abc") in got
    assert (channels.STDERR, b"ABC") in got
    (error,) = [data for ch, data in got if ch == channels.ERROR]
    assert status.parse_status(error).exit_code == 7


def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    targets = Targets()
    server = serve(targets, tls=ctx)
    try:
        targets.entries["attach/t"] = RemoteCommand(
            channels.session_channels(True, True, True, False), echo_runner
        )
        got = exchange(f"wss://127.0.0.1:{server.port}/attach/t", sslopt={"ca_certs": str(cert)})
        assert (channels.STDOUT, b"abc") in got
        # a client that does not trust the certificate gets no stream
        with pytest.raises(ssl.SSLError):
            websocket.create_connection(f"wss://127.0.0.1:{server.port}/attach/x", timeout=10)
    finally:
        server.stop()


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def test_bad_paths_tokens_and_plain_requests_get_http_errors(plain) -> None:
    server, targets = plain
    assert http_get(server.port, "/nothing/here")[0] == 404
    code, body = http_get(server.port, "/exec/unknown")
    assert code == 404 and "token" in body
    targets.entries["exec/t"] = RemoteCommand(
        channels.session_channels(False, True, False, False), lambda io: 0
    )
    code, body = http_get(server.port, "/exec/t")  # no Upgrade
    assert code == 400 and "Upgrade" in body
    # the token was spent by that request, as the kubelet's would be
    assert http_get(server.port, "/exec/t")[0] == 404
    assert targets.seen == ["exec/unknown", "exec/t", "exec/t"]


def test_a_runner_failure_is_reported_as_a_status(plain) -> None:
    server, targets = plain

    def broken(io: SessionIO) -> int:
        raise RuntimeError("container 1234 is not running")

    targets.entries["exec/t"] = RemoteCommand(
        channels.session_channels(False, True, False, False), broken
    )
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/exec/t", subprotocols=["v4.channel.k8s.io"], timeout=10
    )
    got = [channels.decode(m) for m in collect(ws)]
    (error,) = [data for ch, data in got if ch == channels.ERROR]
    parsed = json.loads(error)
    assert parsed["status"] == "Failure"
    assert "container 1234 is not running" in parsed["message"]


def test_an_idle_connection_is_closed_and_the_runner_told() -> None:
    targets = Targets()
    server = serve(targets, idle=1.0)
    told = threading.Event()

    def waits(io: SessionIO) -> int:
        if io.disconnected.wait(20):
            told.set()
        return 0

    try:
        targets.entries["exec/t"] = RemoteCommand(
            channels.session_channels(True, True, False, False), waits
        )
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/exec/t", subprotocols=["v4.channel.k8s.io"], timeout=10
        )
        started = time.monotonic()
        collect(ws)
        assert told.wait(10)
        assert 0.9 < time.monotonic() - started < 8
    finally:
        server.stop()


def test_stop_ends_live_sessions() -> None:
    targets = Targets()
    server = serve(targets)
    told = threading.Event()

    def waits(io: SessionIO) -> int:
        if io.disconnected.wait(20):
            told.set()
        return 0

    targets.entries["exec/t"] = RemoteCommand(
        channels.session_channels(True, True, False, False), waits
    )
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/exec/t", subprotocols=["v4.channel.k8s.io"], timeout=10
    )
    assert ws.recv() == bytes([channels.STDOUT])  # the session is up
    server.stop()
    assert told.wait(10)


def test_port_forward_tunnelled_through_websocket_like_kubectl(plain) -> None:
    """kubectl 1.31+: SPDY port-forward inside WebSocket binary messages."""
    server, targets = plain
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(1)

    def echo() -> None:
        conn, _ = upstream.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    port = upstream.getsockname()[1]
    dialed: list[int] = []

    def dial(p: int) -> socket.socket:
        dialed.append(p)
        return socket.create_connection(("127.0.0.1", p), timeout=5)

    targets.entries["portforward/t"] = PortForward([], dial)
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/portforward/t",
        subprotocols=[pfws.PORTFORWARD_TUNNEL_PROTOCOL],
        timeout=10,
    )
    # websocket-client lowercases the header it read; the server answered the name as offered
    assert ws.getsubprotocol() == pfws.PORTFORWARD_TUNNEL_PROTOCOL.lower()
    client = spdy.Connection(True, flow_control=False)
    headers = {"port": str(port), "requestid": "0"}
    _, out = client.syn_stream({"streamtype": "error", **headers})
    data_id, more = client.syn_stream({"streamtype": "data", **headers})
    ws.send_binary(out + more + client.data(data_id, b"hello", fin=True))
    got, done = b"", False
    while not done:
        for event in client.receive_data(ws.recv()):
            if isinstance(event, spdy.DataReceived) and event.stream_id == data_id:
                got += event.data
                done = done or event.fin
    ws.close()
    upstream.close()
    assert got == b"HELLO"
    assert dialed == [port]
