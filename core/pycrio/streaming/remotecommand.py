"""Exec and attach sessions over SPDY or WebSocket, as the kubelet serves them.

Both transports end up in a :class:`SessionIO` for the runner; the exit code
(or failure) is reported on the error stream in the negotiated version's
format, then the connection closes.
"""

from __future__ import annotations

import logging
import threading
import time

from . import channels as ch
from . import status
from .channels import ResizeDecoder, SessionChannels, protocol_info
from .spdy_transport import SpdySession, SpdyStream
from .stdio import InStream, ResizeQueue, SessionIO, SessionRunner
from .ws_transport import CLOSE_PROTOCOL_ERROR, WebSocketConn

log = logging.getLogger("pycrio.streaming")

#: How long the client has to open the streams it asked for (the kubelet's
#: streamCreationTimeout).
STREAM_CREATION_TIMEOUT = 30.0


def _run(runner: SessionRunner, io: SessionIO, json_status: bool) -> bytes:
    """Run the session; the error-stream bytes that report how it ended."""
    try:
        code = runner(io)
    except Exception as e:  # noqa: BLE001 - reported to the client on its error stream
        log.info("streaming session failed: %s", e)
        return status.encode_failure(str(e), json_status)
    if code is None:
        return status.encode_success(json_status)
    return status.encode_exit_code(code, json_status)


# --- WebSocket ------------------------------------------------------------------


class _WSOut:
    def __init__(self, conn: WebSocketConn, channel: int, base64: bool) -> None:
        self.conn, self.channel, self.base64 = conn, channel, base64

    def write(self, data: bytes) -> None:
        if data:
            self.conn.send(ch.encode(self.channel, data, self.base64))

    def close(self) -> None:
        """Channels have no end of their own over WebSocket; the close frame ends all."""


def serve_websocket(
    conn: WebSocketConn, chans: SessionChannels, runner: SessionRunner, idle_timeout: float
) -> None:
    info = protocol_info(conn.protocol)
    io = SessionIO(
        stdin=InStream() if chans.stdin else None,
        stdout=_WSOut(conn, ch.STDOUT, info.base64) if chans.stdout else None,
        stderr=_WSOut(conn, ch.STDERR, info.base64) if chans.stderr else None,
        resize=ResizeQueue() if chans.tty else None,
    )
    done = threading.Event()

    def read() -> None:
        decoder = ResizeDecoder()
        try:
            for message in conn.messages(idle_timeout):
                if info.supports_close and isinstance(message, bytes) and ch.is_close(message):
                    if ch.decode_close(message) == ch.STDIN and io.stdin is not None:
                        io.stdin.close()
                    continue
                channel, data = ch.decode(message, info.base64)
                if channel == ch.STDIN and io.stdin is not None:
                    io.stdin.feed(data)
                elif channel == ch.RESIZE and io.resize is not None:
                    for size in decoder.feed(data):
                        io.resize.put(size)
        except ch.ProtocolError as e:
            log.info("WebSocket client broke the channel protocol: %s", e)
            conn.close(CLOSE_PROTOCOL_ERROR, str(e)[:100])
        except OSError as e:
            log.debug("WebSocket read ended: %s", e)
        finally:
            if not done.is_set():
                io.disconnected.set()
            io.end_input()

    reader = threading.Thread(target=read, name="ws-read", daemon=True)
    reader.start()
    try:
        conn.send(ch.encode(chans.first_writable, b"", info.base64))
        result = _run(runner, io, info.json_status)
        done.set()
        if result:
            conn.send(ch.encode(ch.ERROR, result, info.base64))
    except OSError as e:
        log.debug("WebSocket session ended early: %s", e)
    finally:
        done.set()
        io.end_input()  # a reader blocked feeding stdin nobody reads is let go
        conn.close()
        reader.join(timeout=5)


# --- SPDY -------------------------------------------------------------------------


def _expected_streams(chans: SessionChannels, resize_stream: bool) -> set[str]:
    wanted = {"error"}
    if chans.stdin:
        wanted.add("stdin")
    if chans.stdout:
        wanted.add("stdout")
    if chans.stderr:
        wanted.add("stderr")
    if chans.tty and resize_stream:
        wanted.add("resize")
    return wanted


def serve_spdy(
    session: SpdySession, chans: SessionChannels, runner: SessionRunner, idle_timeout: float
) -> None:
    info = protocol_info(session.protocol)
    wanted = _expected_streams(chans, info.supports_resize_spdy)
    streams: dict[str, SpdyStream] = {}
    arrived = threading.Condition()

    def on_stream(stream: SpdyStream) -> None:
        kind = (stream.header("streamtype") or "").lower()
        with arrived:
            if kind not in wanted or kind in streams:
                log.info("SPDY client opened an unexpected %r stream; resetting it", kind)
                stream.reset()
                return
            streams[kind] = stream
            arrived.notify_all()

    reader = threading.Thread(
        target=session.serve, args=(on_stream, idle_timeout), name="spdy-read", daemon=True
    )
    reader.start()
    io: SessionIO | None = None
    try:
        deadline = time.monotonic() + STREAM_CREATION_TIMEOUT
        with arrived:
            while set(streams) != wanted:
                left = deadline - time.monotonic()
                if left <= 0 or session.closed.is_set():
                    missing = sorted(wanted - set(streams))
                    log.info("SPDY client did not open the %s stream(s) in time", missing)
                    error = streams.get("error")
                    if error is not None:
                        error.write(
                            status.encode_failure(
                                f"timed out waiting for client streams {missing}",
                                info.json_status,
                            )
                        )
                    return
                arrived.wait(min(left, 0.5))
        io = SessionIO(
            stdin=streams["stdin"].input if chans.stdin else None,
            stdout=streams.get("stdout"),
            stderr=streams.get("stderr"),
            resize=ResizeQueue() if "resize" in streams else None,
        )
        resize_pump = None
        if io.resize is not None:
            resize_pump = threading.Thread(
                target=_pump_resize, args=(streams["resize"], io), daemon=True
            )
            resize_pump.start()
        watcher = threading.Thread(target=_watch_disconnect, args=(session, io), daemon=True)
        watcher.start()
        result = _run(runner, io, info.json_status)
        for kind in ("stdout", "stderr"):
            if kind in streams:
                streams[kind].close()
        if result:
            streams["error"].write(result)
        streams["error"].close()
    except OSError as e:
        log.debug("SPDY session ended early: %s", e)
    finally:
        if io is not None:
            io.end_input()  # a reader blocked feeding stdin nobody reads is let go
        session.close()
        reader.join(timeout=5)


def _pump_resize(stream: SpdyStream, io: SessionIO) -> None:
    decoder = ResizeDecoder()
    try:
        while (chunk := stream.input.read()) is not None and chunk:
            for size in decoder.feed(chunk):
                if io.resize is not None:
                    io.resize.put(size)
    except ch.ProtocolError as e:
        log.info("SPDY client sent a bad resize: %s", e)
    finally:
        if io.resize is not None:
            io.resize.put(None)


def _watch_disconnect(session: SpdySession, io: SessionIO) -> None:
    session.closed.wait()
    io.disconnected.set()
    io.end_input()
