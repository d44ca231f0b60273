"""The test suite's streaming client against small in-process servers on 127.0.0.1.

The servers are built from the same sans-IO SPDY connection (server side) and
plain sockets, so these tests pin the client's own logic: the upgrade, bytes
that follow the 101 in the same packet, streams and replies, EOF, the status,
refusals; the e2e tests then drive the real server with it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import stream_client as sc  # tests/support, put on sys.path by tests/conftest.py

from pycrio.streaming import spdy
from pycrio.streaming.status import encode_exit_code

Handler = Callable[[socket.socket, bytes], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], str]]:
    """serve(handler) -> base URL; the handler gets the socket and the request head."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []

    def start(handler: Handler) -> str:
        lsock = socket.create_server(("127.0.0.1", 0))
        listeners.append(lsock)

        def run() -> None:
            conn, _ = lsock.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                try:
                    handler(conn, head)
                except BaseException as exc:  # noqa: BLE001 (re-raised in the test)
                    failures.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)
        return f"http://127.0.0.1:{lsock.getsockname()[1]}"

    yield start
    for t in threads:
        t.join(5)
    for lsock in listeners:
        lsock.close()
    if failures:
        raise failures[0]


def upgrade_head(protocol: str) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        f"X-Stream-Protocol-Version: {protocol}\r\n\r\n"
    ).encode()


def headers_of(head: bytes) -> list[tuple[str, str]]:
    lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines)]


def echo_server(exit_code: int, seen: dict) -> Handler:
    """A SPDY exec server: replies to every stream, echoes stdin to stdout until EOF,
    then writes ``exit_code``'s status and ends every stream. It pings the client
    in the same packet as the 101 (the client must parse what follows the head)."""

    def handle(sock: socket.socket, head: bytes) -> None:
        seen["request"] = head
        conn = spdy.Connection(False, flow_control=False)
        ping_id, ping = conn.ping()
        sock.sendall(upgrade_head("v4.channel.k8s.io") + ping)
        streams: dict[str, int] = {}
        seen["order"] = []
        while True:
            data = sock.recv(65536)
            if not data:
                return
            out = b""
            for ev in conn.receive_data(data):
                if isinstance(ev, spdy.PingAcknowledged):
                    seen["pong"] = ev.ping_id == ping_id
                elif isinstance(ev, spdy.StreamOpened):
                    kind = ev.header("streamtype")
                    streams[kind] = ev.stream_id
                    seen["order"].append(kind)
                    out += conn.syn_reply(ev.stream_id, {})
                elif isinstance(ev, spdy.DataReceived) and ev.stream_id == streams.get("stdin"):
                    if ev.data:
                        out += conn.data(streams["stdout"], ev.data)
                    if ev.fin:
                        out += conn.data(streams["stdout"], b"", fin=True)
                        out += conn.data(streams["stderr"], b"bye\n", fin=True)
                        out += conn.data(streams["error"], encode_exit_code(exit_code), fin=True)
            sock.sendall(out + conn.data_to_send())

    return handle


@pytest.mark.parametrize("exit_code", [0, 3])
def test_spdy_exec_roundtrip(serve, exit_code: int) -> None:
    seen: dict = {}
    base = serve(echo_server(exit_code, seen))
    with sc.SpdyRemoteCommand(f"{base}/exec/tok", stdin=True, timeout=5) as s:
        assert s.protocol == "v4.channel.k8s.io"
        s.write_stdin(b"abc")
        s.write_stdin(b"def\n")
        s.close_stdin()
        r = s.wait()
    assert (r.stdout, r.stderr) == (b"abcdef\n", b"bye\n")
    assert r.exit_code == exit_code and r.status.success == (exit_code == 0)
    # kubectl's order: the error stream first
    assert seen["order"] == ["error", "stdin", "stdout", "stderr"]
    assert seen["pong"] is True
    hdrs = headers_of(seen["request"])
    assert ("upgrade", "SPDY/3.1") in hdrs and ("connection", "Upgrade") in hdrs
    assert [v for k, v in hdrs if k == "x-stream-protocol-version"] == list(sc.SPDY_EXEC_PROTOCOLS)
    assert seen["request"].startswith(b"GET /exec/tok HTTP/1.1\r\n")


def test_refusal_carries_the_status(serve) -> None:
    def not_found(sock: socket.socket, head: bytes) -> None:
        sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
                     b"not found\n")  # fmt: skip

    base = serve(not_found)
    with pytest.raises(sc.UpgradeRefused) as info:
        sc.SpdyRemoteCommand(f"{base}/exec/gone", timeout=5)
    assert (info.value.status, info.value.body) == (404, b"not found\n")
    assert sc.http_status(serve(not_found) + "/x") == 404


def test_a_reset_stream_is_refused(serve) -> None:
    def reset_all(sock: socket.socket, head: bytes) -> None:
        conn = spdy.Connection(False, flow_control=False)
        sock.sendall(upgrade_head("portforward.k8s.io"))
        while data := sock.recv(65536):
            for ev in conn.receive_data(data):
                if isinstance(ev, spdy.StreamOpened):
                    sock.sendall(conn.rst_stream(ev.stream_id))

    pf = sc.SpdyPortForward(f"{serve(reset_all)}/portforward/t", timeout=5)
    with pf, pytest.raises(sc.StreamRefused):
        pf.connect(80)


def test_session_end_unblocks_waiters(serve) -> None:
    def hang_up(sock: socket.socket, head: bytes) -> None:
        conn = spdy.Connection(False, flow_control=False)
        sock.sendall(upgrade_head("v4.channel.k8s.io"))
        data = sock.recv(65536)  # the error stream
        (ev,) = conn.receive_data(data)
        sock.sendall(conn.syn_reply(ev.stream_id, {}))
        data = sock.recv(65536)  # the stdout stream: no reply, hang up
        sock.shutdown(socket.SHUT_RDWR)

    with pytest.raises(sc.StreamRefused):
        sc.SpdyRemoteCommand(f"{serve(hang_up)}/exec/t", stderr=False, timeout=5)


def test_http_helpers() -> None:
    raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhel"
    assert not sc.http_response_complete(raw)
    assert not sc.http_response_complete(b"HTTP/1.0 200 OK\r\nContent-Le")
    assert sc.http_response_complete(raw + b"lo")
    assert sc.http_body(raw + b"lo") == (200, b"hello")
    assert sc.ws_url("http://127.0.0.1:1234/exec/abc") == "ws://127.0.0.1:1234/exec/abc"
    assert sc.ws_url("https://h:1/portforward/x?port=80") == "wss://h:1/portforward/x?port=80"
    assert sc.http_get_request("/a") == b"GET /a HTTP/1.0\r\nHost: localhost\r\n\r\n"


def test_result_status_by_protocol() -> None:
    v4 = sc.Result("v4.channel.k8s.io", b"", b"", json.dumps({
        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}}).encode())  # fmt: skip
    assert v4.exit_code == 7 and not v4.status.success
    assert sc.Result("v2.channel.k8s.io", b"", b"", b"").status.success
    v1 = sc.Result("channel.k8s.io", b"", b"", b"command terminated")
    assert not v1.status.success and v1.exit_code is None
