"""SPDY/3.1 sessions of the streaming server: the upgrade, a reader thread, streams.

kubectl and the kubelet use moby/spdystream, which ignores SPDY flow control,
so the connection runs with ``flow_control=False``: a slow client holds the
sender back through TCP instead. Every frame is written under one lock, in the
order the sans-IO connection produced it (header compression is stateful).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from . import spdy
from .channels import NegotiationError, choose_protocol
from .duplex import ByteStream, Duplex
from .server import Request, http_response
from .spdy_frames import GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, RST_CANCEL, SpdyError
from .stdio import InStream

log = logging.getLogger("pycrio.streaming")

UPGRADE = "SPDY/3.1"
PROTOCOL_HEADER = "x-stream-protocol-version"


class SpdyStream:
    """One stream the client opened: its headers, what it sends us, a writer back."""

    def __init__(self, session: SpdySession, opened: spdy.StreamOpened) -> None:
        self.session = session
        self.id = opened.stream_id
        self.headers = opened
        self.input = InStream()
        if opened.fin:
            self.input.close()

    def header(self, name: str) -> str | None:
        return self.headers.header(name)

    def write(self, data: bytes) -> None:
        if data:
            self.session.send(lambda c: c.data(self.id, data))

    def close(self) -> None:
        """Half-close our side (FIN); a stream already gone is fine."""
        self.session.send(lambda c: c.data(self.id, b"", fin=True), quiet=True)

    def reset(self) -> None:
        self.session.send(lambda c: c.rst_stream(self.id, RST_CANCEL), quiet=True)


class SpdySession:
    def __init__(self, duplex: ByteStream, protocol: str) -> None:
        self.duplex = duplex
        self.protocol = protocol
        self.conn = spdy.Connection(False, flow_control=False)
        self._lock = threading.Lock()
        self._streams: dict[int, SpdyStream] = {}
        self.closed = threading.Event()

    def send(self, produce: Callable[[spdy.Connection], bytes], quiet: bool = False) -> None:
        """Write the frames ``produce`` makes.

        The connection is locked only while frames are made, never while they
        are written: a client slow to read must not stop the reader thread
        from taking its input (stdin, resizes) meanwhile. Frames whose order
        matters keep it: compressed header blocks are only made by the reader
        thread, and one stream's data by one writer at a time.
        """
        with self._lock:
            try:
                data = produce(self.conn) + self.conn.data_to_send()
            except SpdyError:
                if quiet:
                    return
                raise ConnectionError("the stream is closed") from None
        try:
            self.duplex.sendall(data)
        except OSError:
            if not quiet:
                raise  # a closing frame to a client that hung up needs no error

    def serve(self, on_stream: Callable[[SpdyStream], None], idle_timeout: float) -> None:
        """Read frames until the client goes away; call ``on_stream`` for each new stream.

        Runs on the calling thread; ``on_stream`` must not block for long.
        """
        try:
            while True:
                data = self.duplex.recv(timeout=1.0)
                if data is None:
                    if time.monotonic() - self.duplex.last_activity > idle_timeout:
                        log.info("closing an idle streaming connection")
                        return
                    continue
                if not data:
                    return
                with self._lock:
                    try:
                        events = self.conn.receive_data(data)
                        broken = None
                    except SpdyError as e:
                        events, broken = [], e
                    out = self.conn.data_to_send()
                if broken is not None:
                    log.warning("SPDY protocol error from the client: %s", broken)
                    self.send(lambda c: c.goaway(GOAWAY_PROTOCOL_ERROR), quiet=True)
                    return
                if out:
                    self.duplex.sendall(out)
                for event in events:
                    if self._dispatch(event, on_stream):
                        return
        finally:
            self.closed.set()
            for stream in list(self._streams.values()):
                stream.input.abort()

    def _dispatch(self, event: spdy.Event, on_stream: Callable[[SpdyStream], None]) -> bool:
        """Handle one event; True when the session is over."""
        if isinstance(event, spdy.StreamOpened):
            stream = SpdyStream(self, event)
            self._streams[stream.id] = stream
            self.send(lambda c: c.syn_reply(stream.id, {}))
            on_stream(stream)
        elif isinstance(event, spdy.DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.input.feed(event.data)
                if event.fin:
                    stream.input.close()
        elif isinstance(event, spdy.HeadersReceived) and event.fin:
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.input.close()
        elif isinstance(event, spdy.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream.input.abort()
        elif isinstance(event, spdy.GoAway):
            return True
        return False

    def close(self) -> None:
        """Say goodbye (GOAWAY) and shut the connection."""
        self.send(lambda c: c.goaway(GOAWAY_OK), quiet=True)
        self.duplex.close()


def accept(request: Request, duplex: Duplex, supported: tuple[str, ...]) -> SpdySession | None:
    """Answer the SPDY/3.1 upgrade with the best protocol version; None if refused.

    A client that offers no version gets the oldest protocol, as the kubelet
    does for old clients.
    """
    offered = request.header_values(PROTOCOL_HEADER)
    try:
        chosen = choose_protocol(offered, supported) if offered else supported[-1]
    except NegotiationError as e:
        duplex.sendall(http_response(403, str(e)))
        return None
    duplex.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Connection: Upgrade\r\n"
        b"Upgrade: " + UPGRADE.encode() + b"\r\n"
        b"X-Stream-Protocol-Version: " + chosen.encode() + b"\r\n\r\n"
    )
    session = SpdySession(duplex, chosen)
    if request.trailing:
        # frames the client sent right behind its request
        duplex.push_back(request.trailing)
    return session
