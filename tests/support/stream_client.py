"""Clients of the streaming server (exec, attach, port-forward), as kubectl speaks to it.

Two transports, each the way the kubelet's clients use it:

* SPDY/3.1 (what ``kubectl`` and ``crictl`` use): an HTTP/1.1 upgrade, then a
  sans-IO :class:`pycrio.streaming.spdy.Connection` driven by one reader thread.
  Like moby/spdystream the client runs without flow control, creates the error
  stream first and waits for each SYN_REPLY before it opens the next stream.
* WebSocket (newer kubectl, and other clients) on the ``websocket-client``
  library: every message is a channel byte plus payload (or base64 text).

The framing itself lives in the core's sans-IO modules (``spdy``, ``channels``,
``status``, ``portforward_ws``); this module adds sockets, threads and waiting.

Exec and attach sessions of both transports share one interface
(:class:`RemoteCommand`): ``write_stdin``, ``close_stdin``, ``resize``,
``read_until`` and ``wait``, which returns a :class:`Result` with the output
and the parsed status from the error stream.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
import websocket

from pycrio.streaming import channels, portforward_ws, spdy
from pycrio.streaming.channels import TerminalSize
from pycrio.streaming.status import ParsedStatus, parse_status

#: What kubectl offers for exec/attach over SPDY, newest first.
SPDY_EXEC_PROTOCOLS = (
    channels.V4_CHANNEL_PROTOCOL,
    channels.V3_CHANNEL_PROTOCOL,
    channels.V2_CHANNEL_PROTOCOL,
    channels.CHANNEL_PROTOCOL,
)
SPDY_PORTFORWARD_PROTOCOL = portforward_ws.PORTFORWARD_SPDY_PROTOCOL
#: What a WebSocket client offers for exec/attach, newest first.
WS_EXEC_PROTOCOLS = channels.WEBSOCKET_PROTOCOLS
WS_PORTFORWARD_PROTOCOLS = portforward_ws.WEBSOCKET_PROTOCOLS

DEFAULT_TIMEOUT = 30.0


class UpgradeRefused(Exception):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


class StreamRefused(Exception):
    """The server reset a stream instead of replying to it, or the session ended."""


def http_status(url: str, headers: Iterable[tuple[str, str]] = (), timeout: float = 10) -> int:
    """The status of a plain GET (no upgrade) to ``url``."""
    client = _HttpUpgrade(url, list(headers), timeout)
    try:
        return client.status
    finally:
        client.sock.close()


def _wait(cond: threading.Condition, predicate: Callable[[], bool], timeout: float, what: str):
    """Wait on ``cond`` (held by the caller) until ``predicate``; raise TimeoutError if not."""
    if not cond.wait_for(predicate, timeout):
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


# --- HTTP/1.1 upgrade -----------------------------------------------------------------------


class _HttpUpgrade:
    """A GET on a fresh connection, read with h11 up to a 101 (or a whole refusal)."""

    def __init__(self, url: str, headers: list[tuple[str, str]], timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"only http:// URLs are supported here, not {url!r}")
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="GET", target=target, headers=[("Host", parts.netloc), *headers]
        )
        self.sock.sendall(conn.send(request) + conn.send(h11.EndOfMessage()))
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(self.sock.recv(65536))
                continue
            if event is h11.PAUSED:
                break
            if isinstance(event, h11.InformationalResponse | h11.Response):
                self.status = event.status_code
                self.headers = [(k.decode().lower(), v.decode()) for k, v in event.headers]
                if event.status_code == 101:
                    break
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        self.body = bytes(body)
        #: bytes after the 101 head: the first frames of the new protocol
        self.trailing = conn.trailing_data[0] if self.status == 101 else b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


# --- SPDY -----------------------------------------------------------------------------------


@dataclass
class SpdyStream:
    """A stream the client opened: what the server sent on it, and its state."""

    id: int
    headers: dict[str, str]
    data: bytearray = field(default_factory=bytearray)
    replied: bool = False
    remote_closed: bool = False  # FIN from the server (or the stream/session is gone)
    reset: int | None = None


class SpdyClient:
    """One SPDY/3.1 session over an upgraded HTTP/1.1 connection (client side)."""

    def __init__(self, url: str, protocols: Sequence[str], timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        headers += [("X-Stream-Protocol-Version", p) for p in protocols]
        up = _HttpUpgrade(url, headers, timeout)
        if up.status != 101:
            up.sock.close()
            raise UpgradeRefused(up.status, up.body)
        self.protocol = up.header("x-stream-protocol-version") or ""
        self.sock = up.sock
        self.sock.settimeout(None)
        self.conn = spdy.Connection(True, flow_control=False)
        self.cond = threading.Condition()
        self.streams: dict[int, SpdyStream] = {}
        self.closed = False  # the TCP connection ended
        self.goaway = False
        self.error: BaseException | None = None
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, args=(up.trailing,), daemon=True)
        self._reader.start()

    # the reader thread: bytes in, events out, queued frames (ping answers) back
    def _read_loop(self, first: bytes) -> None:
        data = first
        try:
            while True:
                if data:
                    with self._send_lock:
                        events = self.conn.receive_data(data)
                        out = self.conn.data_to_send()
                        if out:
                            self.sock.sendall(out)
                    self._dispatch(events)
                data = self.sock.recv(65536)
                if not data:
                    break
        except (OSError, spdy.SpdyError) as exc:
            self.error = exc
        finally:
            with self.cond:
                self.closed = True
                for st in self.streams.values():
                    st.remote_closed = True
                self.cond.notify_all()

    def _dispatch(self, events: list[spdy.Event]) -> None:
        with self.cond:
            for ev in events:
                st = self.streams.get(getattr(ev, "stream_id", 0))
                if isinstance(ev, spdy.ReplyReceived) and st:
                    st.replied = True
                    st.remote_closed |= ev.fin
                elif isinstance(ev, spdy.DataReceived) and st:
                    st.data += ev.data
                    st.remote_closed |= ev.fin
                elif isinstance(ev, spdy.HeadersReceived) and st:
                    st.remote_closed |= ev.fin
                elif isinstance(ev, spdy.StreamReset) and st:
                    st.reset = ev.status
                    st.remote_closed = True
                elif isinstance(ev, spdy.GoAway):
                    self.goaway = True
            self.cond.notify_all()

    def _send(self, make: Callable[[spdy.Connection], bytes]) -> None:
        with self._send_lock:
            self.sock.sendall(make(self.conn))

    def open_stream(self, headers: dict[str, str], wait_reply: bool = True) -> SpdyStream:
        """SYN_STREAM, then (like spdystream's CreateStream) wait for the SYN_REPLY."""
        with self._send_lock:
            sid, out = self.conn.syn_stream(headers)
            st = SpdyStream(sid, dict(headers))
            with self.cond:
                self.streams[sid] = st
            self.sock.sendall(out)
        if wait_reply:
            with self.cond:
                _wait(
                    self.cond,
                    lambda: st.replied or st.remote_closed,
                    self.timeout,
                    f"the reply to stream {headers}",
                )
                if not st.replied:
                    raise StreamRefused(f"stream {headers} reset ({st.reset}) or session ended")
        return st

    def write(self, st: SpdyStream, data: bytes, fin: bool = False) -> None:
        self._send(lambda c: c.data(st.id, data, fin=fin))

    def close_write(self, st: SpdyStream) -> None:
        """Half-close our side of a stream (FIN), as spdystream's Close does."""
        self._send(lambda c: c.data(st.id, b"", fin=True))

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float | None = None):
        with self.cond:
            _wait(self.cond, predicate, self.timeout if timeout is None else timeout, what)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the server may have closed first
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._reader.join(5)


# --- exec / attach --------------------------------------------------------------------------


@dataclass
class Result:
    """What an exec/attach session produced."""

    protocol: str
    stdout: bytes
    stderr: bytes
    error: bytes  # the raw error-stream payload

    @property
    def status(self) -> ParsedStatus:
        version = channels.protocol_info(self.protocol).version if self.protocol else 1
        return parse_status(self.error, json_status=version >= 4)

    @property
    def exit_code(self) -> int | None:
        return self.status.exit_code


class RemoteCommand:
    """An exec/attach session; the transports fill the buffers from a reader thread."""

    protocol: str
    cond: threading.Condition
    timeout: float

    def _buffers(self) -> dict[str, bytearray]:
        raise NotImplementedError

    def _finished(self) -> bool:
        raise NotImplementedError

    def write_stdin(self, data: bytes) -> None:
        raise NotImplementedError

    def close_stdin(self) -> None:
        raise NotImplementedError

    def resize(self, width: int, height: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def output(self, name: str = "stdout") -> bytes:
        with self.cond:
            return bytes(self._buffers()[name])

    def read_until(self, needle: bytes, name: str = "stdout", timeout: float | None = None):
        """Wait until ``needle`` shows up in the ``name`` stream; return the stream so far."""
        buf = self._buffers()[name]
        with self.cond:
            _wait(
                self.cond,
                lambda: needle in buf or self._finished(),
                self.timeout if timeout is None else timeout,
                f"{needle!r} on {name}",
            )
            if needle not in buf:
                raise AssertionError(f"session ended without {needle!r} on {name}: {bytes(buf)!r}")
            return bytes(buf)

    def wait(self, timeout: float | None = None) -> Result:
        """Wait until the server ends the session; the output and the error stream."""
        with self.cond:
            _wait(
                self.cond,
                self._finished,
                self.timeout if timeout is None else timeout,
                "the end of the session",
            )
            b = self._buffers()
            result = Result(
                self.protocol, bytes(b["stdout"]), bytes(b["stderr"]), bytes(b["error"])
            )
        self.close()
        return result

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SpdyRemoteCommand(RemoteCommand):
    """exec/attach over SPDY: the streams kubectl opens, error first."""

    def __init__(
        self,
        url: str,
        *,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        tty: bool = False,
        protocols: Sequence[str] = SPDY_EXEC_PROTOCOLS,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        self.client = SpdyClient(url, protocols, timeout)
        self.protocol = self.client.protocol
        self.cond = self.client.cond
        try:
            self.streams: dict[str, SpdyStream] = {}
            wanted = ["error"]
            wanted += ["stdin"] if stdin else []
            wanted += ["stdout"] if stdout else []
            wanted += ["stderr"] if stderr and not tty else []
            if tty and channels.protocol_info(self.protocol).supports_resize_spdy:
                wanted.append("resize")
            for kind in wanted:
                self.streams[kind] = self.client.open_stream({"streamType": kind})
        except BaseException:
            self.client.close()
            raise
        self._empty = bytearray()

    def _buffers(self) -> dict[str, bytearray]:
        return {
            k: (self.streams[k].data if k in self.streams else self._empty)
            for k in ("stdout", "stderr", "error")
        }

    def _finished(self) -> bool:
        if self.client.closed:
            return True
        return all(
            self.streams[k].remote_closed
            for k in ("error", "stdout", "stderr")
            if k in self.streams
        )

    def write_stdin(self, data: bytes) -> None:
        self.client.write(self.streams["stdin"], data)

    def close_stdin(self) -> None:
        self.client.close_write(self.streams["stdin"])

    def resize(self, width: int, height: int) -> None:
        # kubectl writes one JSON object per size (json.Encoder adds a newline)
        self.client.write(self.streams["resize"], TerminalSize(width, height).to_json() + b"\n")

    def close(self) -> None:
        self.client.close()


def ws_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}[parts.scheme]
    return parts._replace(scheme=scheme).geturl()


class WsRemoteCommand(RemoteCommand):
    """exec/attach over WebSocket (websocket-client) with the channel protocols."""

    def __init__(
        self,
        url: str,
        *,
        protocols: Sequence[str] = WS_EXEC_PROTOCOLS,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        self.ws = websocket.create_connection(
            ws_url(url), subprotocols=list(protocols), timeout=timeout
        )
        self.ws.settimeout(None)
        self.protocol = self.ws.getsubprotocol() or ""
        self.info = channels.protocol_info(self.protocol)
        self.cond = threading.Condition()
        self.bufs = {"stdout": bytearray(), "stderr": bytearray(), "error": bytearray()}
        #: (channel, payload) of every message, in order (the first one is the "ready" one)
        self.messages: list[tuple[int, bytes]] = []
        self.text_messages = 0  # how many came as text (base64) frames
        self.failure: BaseException | None = None
        self.ended_by: BaseException | None = None
        self.closed = False
        self.close_code: int | None = None
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        names = {channels.STDOUT: "stdout", channels.STDERR: "stderr", channels.ERROR: "error"}
        try:
            while True:
                opcode, data = self.ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    if len(data) >= 2:
                        self.close_code = int.from_bytes(data[:2], "big")
                    break
                if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    continue
                text = opcode == websocket.ABNF.OPCODE_TEXT
                msg = data.decode() if text and isinstance(data, bytes) else data
                channel, payload = channels.decode(msg, base64=self.info.base64)
                with self.cond:
                    self.messages.append((channel, payload))
                    self.text_messages += text
                    if channel in names:
                        self.bufs[names[channel]] += payload
                    self.cond.notify_all()
        except (OSError, websocket.WebSocketException) as exc:
            self.ended_by = exc  # the connection went away: the waiters see `closed`
        except channels.ProtocolError as exc:
            self.failure = exc
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def _buffers(self) -> dict[str, bytearray]:
        return self.bufs

    def _finished(self) -> bool:
        return self.closed

    def _send(self, channel: int, data: bytes) -> None:
        msg = channels.encode(channel, data, self.info.base64)
        if isinstance(msg, str):
            self.ws.send(msg)
        else:
            self.ws.send_binary(msg)

    def write_stdin(self, data: bytes) -> None:
        self._send(channels.STDIN, data)

    def close_stdin(self) -> None:
        """The v5 close signal for stdin (older versions have no way to say EOF)."""
        if not self.info.supports_close:
            raise ValueError(f"{self.protocol!r} cannot close stdin")
        self.ws.send_binary(channels.encode_close(channels.STDIN))

    def resize(self, width: int, height: int) -> None:
        self._send(channels.RESIZE, TerminalSize(width, height).to_json())

    def close(self) -> None:
        _ws_close(self.ws, self._reader)


def remote_command(
    transport: str,
    url: str,
    *,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
    protocols: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> RemoteCommand:
    """Open an exec/attach session over ``transport`` ("spdy" or "ws").

    Over WebSocket the streams are those of the CRI request (the URL knows
    them); over SPDY the client opens the streams it is told to, as kubectl
    does with the same flags it put in the request.
    """
    if transport == "spdy":
        return SpdyRemoteCommand(
            url,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            tty=tty,
            protocols=protocols or SPDY_EXEC_PROTOCOLS,
            timeout=timeout,
        )
    if transport == "ws":
        return WsRemoteCommand(url, protocols=protocols or WS_EXEC_PROTOCOLS, timeout=timeout)
    raise ValueError(f"unknown transport {transport!r}")


def _ws_close(ws: websocket.WebSocket, reader: threading.Thread) -> None:
    """Send a close frame, let the reader thread see the server's answer, drop the socket."""
    if reader.is_alive():
        with contextlib.suppress(OSError, websocket.WebSocketException):
            ws.send_close()  # the server may have closed first
        reader.join(3)
    ws.shutdown()
    reader.join(3)


# --- port forward ---------------------------------------------------------------------------


class SpdyPortForward:
    """Port forwarding over SPDY: per connection an error and a data stream, like kubectl."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.client = SpdyClient(url, [SPDY_PORTFORWARD_PROTOCOL], timeout)
        self.protocol = self.client.protocol
        self._next_request = 0
        self._lock = threading.Lock()

    def connect(self, port: int) -> SpdyForwardedConnection:
        with self._lock:
            request_id = str(self._next_request)
            self._next_request += 1
        base = {"port": str(port), "requestID": request_id}
        error = self.client.open_stream({"streamType": "error", **base})
        self.client.close_write(error)  # kubectl closes its side of the error stream at once
        data = self.client.open_stream({"streamType": "data", **base})
        return SpdyForwardedConnection(self.client, data, error)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> SpdyPortForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class SpdyForwardedConnection:
    client: SpdyClient
    data_stream: SpdyStream
    error_stream: SpdyStream

    def send(self, data: bytes) -> None:
        self.client.write(self.data_stream, data)

    def close_write(self) -> None:
        self.client.close_write(self.data_stream)

    def read_all(self, timeout: float | None = None) -> bytes:
        """Everything the pod sends until the server ends the data stream."""
        self.client.wait_for(
            lambda: self.data_stream.remote_closed,
            f"the end of data stream {self.data_stream.id}",
            timeout,
        )
        with self.client.cond:
            return bytes(self.data_stream.data)

    def errors(self) -> str:
        with self.client.cond:
            return self.error_stream.data.decode(errors="replace")

    def wait_error(self, timeout: float | None = None) -> str:
        """Wait for text on the error stream (or its end); return it."""
        st = self.error_stream
        self.client.wait_for(lambda: bool(st.data) or st.remote_closed, "the error stream", timeout)
        return self.errors()


class WsPortForward:
    """Port forwarding over WebSocket: channels 2*i (data) and 2*i+1 (error) per port."""

    def __init__(
        self,
        url: str,
        ports: Sequence[int],
        *,
        protocols: Sequence[str] = WS_PORTFORWARD_PROTOCOLS,
        query_ports: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        target = ws_url(url)
        if query_ports:
            sep = "&" if "?" in target else "?"
            target += sep + "&".join(f"port={p}" for p in ports)
        self.ws = websocket.create_connection(target, subprotocols=list(protocols), timeout=timeout)
        self.ws.settimeout(None)
        self.protocol = self.ws.getsubprotocol() or ""
        self.base64 = "base64" in self.protocol
        self.decoder = portforward_ws.ClientPortForwardDecoder(tuple(ports), self.base64)
        self.cond = threading.Condition()
        self.data = [bytearray() for _ in ports]
        self.error = [bytearray() for _ in ports]
        self.closed = False
        self.failure: BaseException | None = None
        self.ended_by: BaseException | None = None
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        try:
            while True:
                opcode, data = self.ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    continue
                text = opcode == websocket.ABNF.OPCODE_TEXT
                msg = data.decode() if text and isinstance(data, bytes) else data
                got = self.decoder.feed(msg)
                if got is None:
                    continue
                index, is_error, payload = got
                with self.cond:
                    (self.error if is_error else self.data)[index] += payload
                    self.cond.notify_all()
        except (OSError, websocket.WebSocketException) as exc:
            self.ended_by = exc  # the connection went away: the waiters see `closed`
        except portforward_ws.PortForwardError as exc:
            self.failure = exc
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def send(self, index: int, data: bytes) -> None:
        msg = portforward_ws.encode(portforward_ws.data_channel(index), data, self.base64)
        if isinstance(msg, str):
            self.ws.send(msg)
        else:
            self.ws.send_binary(msg)

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float | None = None):
        with self.cond:
            _wait(
                self.cond,
                lambda: predicate() or self.closed,
                self.timeout if timeout is None else timeout,
                what,
            )
            if not predicate():
                raise AssertionError(f"connection closed before {what}: {self.failure}")

    def received(self, index: int) -> bytes:
        with self.cond:
            return bytes(self.data[index])

    def errors(self, index: int) -> str:
        with self.cond:
            return self.error[index].decode(errors="replace")

    def close(self) -> None:
        _ws_close(self.ws, self._reader)

    def __enter__(self) -> WsPortForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- HTTP over a forwarded connection ------------------------------------------------------


def http_get_request(path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode()


def http_response_complete(raw: bytes) -> bool:
    """True once ``raw`` holds a whole HTTP response with a Content-Length body."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def http_body(raw: bytes) -> tuple[int, bytes]:
    """(status code, body) of an HTTP/1.x response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"not an HTTP response: {raw[:200]!r}"
    status_line = head.split(b"\r\n", 1)[0].split()
    return int(status_line[1]), body


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
