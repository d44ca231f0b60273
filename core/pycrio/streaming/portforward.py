"""Port forwarding over SPDY (portforward.k8s.io) or WebSocket, as the kubelet serves it.

Each forwarded connection is a pair of streams (data and error) tied to one
TCP connection that ``dial`` opens to localhost:port inside the pod's network
namespace. Bytes are copied both ways; the client's half-close becomes a TCP
half-close, so request/response protocols work.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from . import portforward_ws as pfws
from .spdy_transport import SpdySession, SpdyStream
from .stdio import InStream, OutStream
from .ws_transport import WebSocketConn

log = logging.getLogger("pycrio.streaming")

#: Opens a TCP connection to localhost:port in the pod; raises with a reason.
Dialer = Callable[[int], socket.socket]
CHUNK = 64 * 1024


def _copy(source: InStream, sock: socket.socket) -> None:
    """Client bytes to the pod's port; the client's end becomes a TCP half-close."""
    try:
        while chunk := source.read():
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        log.debug("port-forward: writing to the pod ended: %s", e)


def _forward(
    port: int, dial: Dialer, data_in: InStream, data_out: OutStream, report: Callable[[str], None]
) -> None:
    try:
        sock = dial(port)
    except Exception as e:  # noqa: BLE001 - the reason goes to the client's error stream
        report(f"error forwarding port {port}: {e}")
        data_out.close()
        return
    upstream = threading.Thread(target=_copy, args=(data_in, sock), daemon=True)
    upstream.start()
    try:
        while chunk := sock.recv(CHUNK):
            data_out.write(chunk)
    except OSError as e:
        log.debug("port-forward: reading from the pod ended: %s", e)
    finally:
        data_out.close()
        data_in.abort()  # the pod's side is gone: what the client still sends goes nowhere
        upstream.join(timeout=5)
        sock.close()


def parse_port(value: str | None) -> int:
    """The ``port`` header of a SPDY stream, checked."""
    try:
        port = int(value or "")
    except ValueError:
        raise ValueError(f"invalid port {value!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid port {port}: must be in 1..65535")
    return port


def serve_spdy(session: SpdySession, dial: Dialer, idle_timeout: float) -> None:
    pairs: dict[str, dict[str, SpdyStream]] = {}
    workers: list[threading.Thread] = []

    def on_stream(stream: SpdyStream) -> None:
        kind = (stream.header("streamtype") or "").lower()
        request_id = stream.header("requestid")
        if request_id is None:  # old clients: the error stream comes right before data
            request_id = str(stream.id if kind == "error" else stream.id - 2)
        if kind not in ("data", "error"):
            log.info("port-forward client opened a %r stream; resetting it", kind)
            stream.reset()
            return
        pair = pairs.setdefault(request_id, {})
        if kind in pair:
            stream.reset()
            return
        pair[kind] = stream
        if len(pair) < 2:
            return
        del pairs[request_id]
        data, error = pair["data"], pair["error"]
        try:
            port = parse_port(data.header("port"))
        except ValueError as e:
            error.write(str(e).encode())
            error.close()
            data.close()
            return

        def report(message: str) -> None:
            try:
                error.write(message.encode())
            except OSError as e:
                log.debug("port-forward error for a client that left: %s (%s)", message, e)

        def run() -> None:
            _forward(port, dial, data.input, data, report)
            error.close()

        worker = threading.Thread(target=run, name=f"portforward-{port}", daemon=True)
        workers.append(worker)
        worker.start()

    try:
        session.serve(on_stream, idle_timeout)
    finally:
        session.close()
        for worker in workers:
            worker.join(timeout=5)


class _WSPortOut:
    def __init__(self, conn: WebSocketConn, pf: pfws.PortForwardSession, index: int) -> None:
        self.conn, self.pf, self.index = conn, pf, index

    def write(self, data: bytes) -> None:
        if data:
            self.conn.send(self.pf.encode_data(self.index, data))

    def close(self) -> None:
        """A WebSocket channel has no end of its own; the close frame ends all."""


def serve_websocket(
    conn: WebSocketConn, ports: list[int], dial: Dialer, idle_timeout: float
) -> None:
    pf = pfws.PortForwardSession(tuple(ports), base64=conn.protocol.startswith("v4.base64"))
    inputs = [InStream() for _ in ports]
    try:
        for message in pf.initial_messages():
            conn.send(message)
    except OSError:
        conn.close()
        return
    workers = []
    for index, port in enumerate(ports):

        def report(msg: str, index: int = index) -> None:
            try:
                conn.send(pf.encode_error(index, msg))
            except OSError as e:
                log.debug("port-forward error for a client that left: %s (%s)", msg, e)

        worker = threading.Thread(
            target=_forward,
            args=(port, dial, inputs[index], _WSPortOut(conn, pf, index), report),
            name=f"portforward-{port}",
            daemon=True,
        )
        workers.append(worker)
        worker.start()

    def watch() -> None:
        for worker in workers:
            worker.join()
        conn.close()  # every forward ended: so does the connection

    threading.Thread(target=watch, daemon=True).start()
    try:
        for message in conn.messages(idle_timeout):
            decoded = pf.decode_client(message)
            if decoded is not None:
                index, data = decoded
                inputs[index].feed(data)
    except (pfws.PortForwardError, OSError) as e:
        log.info("port-forward WebSocket client error: %s", e)
    finally:
        for stream in inputs:
            stream.abort()
        conn.close()
        for worker in workers:
            worker.join(timeout=5)
