"""A sans-IO SPDY/3.1 connection (no sockets, no threads), as spoken by spdystream.

Feed received bytes to :meth:`Connection.receive_data`, which returns events;
every sending method returns the bytes to write. Bytes the connection produces
by itself (ping answers, WINDOW_UPDATEs, data released by a peer's
WINDOW_UPDATE, RST_STREAMs for frames on unknown streams) are queued inside
and come out of :meth:`Connection.data_to_send` -- and are also prepended to
the return value of the next sending method, so writing every returned chunk
in order, plus ``data_to_send()`` after each ``receive_data``, keeps the wire
order right. The order matters: header compression is stateful across frames.

Stream ids: a client opens odd streams, a server even ones; pings follow the
same parity, and a ping with the peer's parity is answered automatically.

Flow control (SPDY/3.1: per stream and per session, 64 KiB initial windows):

* Sending: :meth:`Connection.data` emits what fits into the peer's stream and
  session windows, in DATA frames of at most ``max_data_frame`` bytes, and
  keeps the rest queued (``pending(stream_id)``); a FIN waits behind the queue.
  A WINDOW_UPDATE from the peer releases queued data into ``data_to_send()``.
* Receiving: with ``auto_ack=True`` (default) the connection counts each
  DataReceived as consumed and queues WINDOW_UPDATEs once half a window has
  been received; with ``auto_ack=False`` the application calls
  :meth:`Connection.acknowledge` as it consumes data. A stream that exceeds
  its window is reset with FLOW_CONTROL_ERROR.
* ``flow_control=False`` disables both sides: moby/spdystream, which kubectl
  and the kubelet use, neither sends WINDOW_UPDATE nor honours windows, so a
  server talking to it must not wait for window updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .spdy_frames import (
    DEFAULT_MAX_HEADER_BLOCK,
    DEFAULT_WINDOW,
    FLAG_FIN,
    FLAG_UNIDIRECTIONAL,
    GOAWAY_OK,
    HEADER_DICTIONARY,
    MAX_FRAME_LENGTH,
    MAX_STREAM_ID,
    MAX_WINDOW,
    RST_CANCEL,
    RST_FLOW_CONTROL_ERROR,
    RST_INVALID_STREAM,
    RST_STREAM_ALREADY_CLOSED,
    RST_STREAM_IN_USE,
    SETTINGS_INITIAL_WINDOW_SIZE,
    DataFrame,
    Frame,
    FrameDecoder,
    GoAwayFrame,
    HeaderCompressor,
    Headers,
    HeadersFrame,
    HeadersInput,
    PingFrame,
    ProtocolError,
    RstStreamFrame,
    SettingsFrame,
    SpdyError,
    StreamStateError,
    SynReplyFrame,
    SynStreamFrame,
    WindowUpdateFrame,
    encode_frame,
)
from .spdy_frames import (
    normalize_headers as _norm,
)

__all__ = [
    "Connection",
    "DataReceived",
    "Event",
    "GoAway",
    "HEADER_DICTIONARY",
    "HeadersReceived",
    "PingAcknowledged",
    "PingReceived",
    "ProtocolError",
    "ReplyReceived",
    "SettingsReceived",
    "SpdyError",
    "StreamOpened",
    "StreamReset",
    "StreamStateError",
    "WindowUpdated",
]

DEFAULT_MAX_DATA_FRAME = 32 * 1024


# --- events -------------------------------------------------------------------


class _HasHeaders:
    headers: Headers

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (names are lowercase), or ``default``."""
        values = self.headers.get(name.lower())
        return values[0] if values else default


@dataclass(frozen=True)
class StreamOpened(_HasHeaders):
    stream_id: int
    headers: Headers
    associated_id: int = 0
    fin: bool = False
    unidirectional: bool = False
    priority: int = 0


@dataclass(frozen=True)
class ReplyReceived(_HasHeaders):
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class HeadersReceived(_HasHeaders):
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class DataReceived:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True)
class StreamReset:
    """The stream is gone: reset by the peer, or by us (``local=True``) for a peer's error."""

    stream_id: int
    status: int
    local: bool = False


@dataclass(frozen=True)
class PingReceived:
    """A peer's ping; the answer is already queued."""

    ping_id: int


@dataclass(frozen=True)
class PingAcknowledged:
    """The peer's answer to one of our pings."""

    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int


@dataclass(frozen=True)
class WindowUpdated:
    """Stream id 0 is the session window."""

    stream_id: int
    delta: int


@dataclass(frozen=True)
class SettingsReceived:
    settings: dict[int, int]
    flags: int = 0


Event = (
    StreamOpened
    | ReplyReceived
    | HeadersReceived
    | DataReceived
    | StreamReset
    | PingReceived
    | PingAcknowledged
    | GoAway
    | WindowUpdated
    | SettingsReceived
)


# --- stream state ---------------------------------------------------------------


@dataclass
class _Stream:
    stream_id: int
    local: bool  # opened by us
    send_window: int
    recv_window: int
    replied: bool = False
    local_fin_queued: bool = False  # no more data() calls accepted
    local_fin_sent: bool = False
    remote_closed: bool = False
    recv_unacked: int = 0
    pending: bytearray = field(default_factory=bytearray)


class Connection:
    """One side of a SPDY/3.1 session; see the module docstring."""

    def __init__(
        self,
        client_side: bool,
        *,
        flow_control: bool = True,
        auto_ack: bool = True,
        max_frame_size: int = MAX_FRAME_LENGTH,
        max_header_block: int = DEFAULT_MAX_HEADER_BLOCK,
        max_data_frame: int = DEFAULT_MAX_DATA_FRAME,
        initial_window: int = DEFAULT_WINDOW,
    ) -> None:
        if not 1 <= max_data_frame <= MAX_FRAME_LENGTH:
            raise ValueError("max_data_frame must be 1..2^24-1")
        self.client_side = client_side
        self.flow_control = flow_control
        self.auto_ack = auto_ack
        self.max_data_frame = max_data_frame
        self._decoder = FrameDecoder(max_frame_size, max_header_block)
        self._compressor = HeaderCompressor()
        self._out = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1 if client_side else 2
        self._next_ping_id = 1 if client_side else 2
        self._last_peer_stream_id = 0
        # our receive windows: what we announce (SETTINGS) and grant
        self._local_initial_window = initial_window
        # the peer's: the SPDY default until its SETTINGS says otherwise
        self._peer_initial_window = DEFAULT_WINDOW
        self._session_send_window = DEFAULT_WINDOW
        self._session_recv_window = DEFAULT_WINDOW
        self._session_recv_unacked = 0
        self.goaway_sent = False
        self.goaway_received = False
        self._goaway_last_good = 0

    # -- introspection --

    @property
    def open_streams(self) -> list[int]:
        return sorted(self._streams)

    def pending(self, stream_id: int) -> int:
        """Bytes queued on a stream waiting for send window."""
        st = self._streams.get(stream_id)
        return len(st.pending) if st else 0

    def send_window(self, stream_id: int = 0) -> int:
        """The peer's window for a stream, or (0) for the session."""
        if stream_id == 0:
            return self._session_send_window
        return self._stream(stream_id).send_window

    def _is_local_id(self, stream_id: int) -> bool:
        return stream_id % 2 == (1 if self.client_side else 0)

    # -- output plumbing --

    def data_to_send(self) -> bytes:
        """Drain the bytes the connection queued by itself."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _emit(self, frame: Frame) -> None:
        self._out += encode_frame(frame, self._compressor)

    def _stream(self, stream_id: int) -> _Stream:
        st = self._streams.get(stream_id)
        if st is None:
            raise StreamStateError(f"stream {stream_id} is not open")
        return st

    def _maybe_close(self, st: _Stream) -> None:
        if st.local_fin_sent and st.remote_closed and not st.pending:
            self._streams.pop(st.stream_id, None)

    # -- sending --

    def syn_stream(
        self,
        headers: HeadersInput | None,
        *,
        fin: bool = False,
        unidirectional: bool = False,
        associated_id: int = 0,
        priority: int = 0,
    ) -> tuple[int, bytes]:
        """Open a stream; returns its id and the bytes to send."""
        if self.goaway_received or self.goaway_sent:
            raise StreamStateError("connection is going away; no new streams")
        stream_id = self._next_stream_id
        if stream_id > MAX_STREAM_ID:
            raise StreamStateError("stream ids exhausted")
        self._next_stream_id += 2
        flags = (FLAG_FIN if fin else 0) | (FLAG_UNIDIRECTIONAL if unidirectional else 0)
        st = _Stream(
            stream_id,
            local=True,
            send_window=self._peer_initial_window,
            recv_window=self._local_initial_window,
            local_fin_queued=fin,
            local_fin_sent=fin,
            remote_closed=unidirectional,
        )
        self._streams[stream_id] = st
        self._emit(SynStreamFrame(stream_id, _norm(headers), associated_id, priority, 0, flags))
        self._maybe_close(st)
        return stream_id, self.data_to_send()

    def syn_reply(self, stream_id: int, headers: HeadersInput | None, fin: bool = False) -> bytes:
        st = self._stream(stream_id)
        if st.local:
            raise StreamStateError(f"stream {stream_id} was opened locally; cannot reply")
        if st.replied:
            raise StreamStateError(f"stream {stream_id} already replied")
        if st.local_fin_queued:
            raise StreamStateError(f"stream {stream_id} is closed for sending")
        st.replied = True
        if fin:
            st.local_fin_queued = st.local_fin_sent = True
        self._emit(SynReplyFrame(stream_id, _norm(headers), FLAG_FIN if fin else 0))
        self._maybe_close(st)
        return self.data_to_send()

    def send_headers(
        self, stream_id: int, headers: HeadersInput | None, fin: bool = False
    ) -> bytes:
        st = self._stream(stream_id)
        if st.local_fin_queued:
            raise StreamStateError(f"stream {stream_id} is closed for sending")
        if fin:
            if st.pending:
                raise StreamStateError("cannot FIN with HEADERS while data is queued")
            st.local_fin_queued = st.local_fin_sent = True
        self._emit(HeadersFrame(stream_id, _norm(headers), FLAG_FIN if fin else 0))
        self._maybe_close(st)
        return self.data_to_send()

    def data(self, stream_id: int, payload: bytes, fin: bool = False) -> bytes:
        """Send what the windows allow now; queue the rest (see ``pending``)."""
        st = self._stream(stream_id)
        if st.local_fin_queued:
            raise StreamStateError(f"stream {stream_id} is closed for sending")
        st.pending += payload
        st.local_fin_queued = fin
        self._flush_stream(st)
        return self.data_to_send()

    def _flush_stream(self, st: _Stream) -> None:
        while st.pending:
            n = min(len(st.pending), self.max_data_frame)
            if self.flow_control:
                n = min(n, st.send_window, self._session_send_window)
            if n <= 0:
                return
            chunk = bytes(st.pending[:n])
            del st.pending[:n]
            last = not st.pending and st.local_fin_queued
            self._emit(DataFrame(st.stream_id, chunk, FLAG_FIN if last else 0))
            if self.flow_control:
                st.send_window -= n
                self._session_send_window -= n
            if last:
                st.local_fin_sent = True
        if st.local_fin_queued and not st.local_fin_sent:
            self._emit(DataFrame(st.stream_id, b"", FLAG_FIN))
            st.local_fin_sent = True
        self._maybe_close(st)

    def _flush_all(self) -> None:
        for st in list(self._streams.values()):
            if st.pending or (st.local_fin_queued and not st.local_fin_sent):
                self._flush_stream(st)

    def rst_stream(self, stream_id: int, status: int = RST_CANCEL) -> bytes:
        """Reset a stream; queued data is dropped. Resetting a closed stream is allowed."""
        self._streams.pop(stream_id, None)
        self._emit(RstStreamFrame(stream_id, status))
        return self.data_to_send()

    def ping(self) -> tuple[int, bytes]:
        """Send a ping; returns its id (answered by PingAcknowledged) and the bytes."""
        ping_id = self._next_ping_id
        self._next_ping_id = ping_id + 2 if ping_id + 2 <= MAX_STREAM_ID else 2 - ping_id % 2
        self._emit(PingFrame(ping_id))
        return ping_id, self.data_to_send()

    def goaway(self, status: int = GOAWAY_OK, last_good_stream_id: int | None = None) -> bytes:
        """Announce shutdown; later SYN_STREAMs from the peer are ignored."""
        last = self._last_peer_stream_id if last_good_stream_id is None else last_good_stream_id
        self.goaway_sent = True
        self._goaway_last_good = last
        self._emit(GoAwayFrame(last, status))
        return self.data_to_send()

    def settings(self, settings: dict[int, int], flags: int = 0) -> bytes:
        """Send SETTINGS; an INITIAL_WINDOW_SIZE also applies to our receive windows."""
        if SETTINGS_INITIAL_WINDOW_SIZE in settings:
            new = settings[SETTINGS_INITIAL_WINDOW_SIZE]
            if not 1 <= new <= MAX_WINDOW:
                raise ValueError("initial window must be 1..2^31-1")
            delta = new - self._local_initial_window
            self._local_initial_window = new
            for st in self._streams.values():
                st.recv_window += delta
        self._emit(SettingsFrame([(0, k, v) for k, v in settings.items()], flags))
        return self.data_to_send()

    def window_update(self, stream_id: int, delta: int) -> bytes:
        """Grant the peer ``delta`` more bytes on a stream (0: the session)."""
        if stream_id == 0:
            self._session_recv_window += delta
        elif (st := self._streams.get(stream_id)) is not None:
            st.recv_window += delta
        self._emit(WindowUpdateFrame(stream_id, delta))
        return self.data_to_send()

    def acknowledge(self, stream_id: int, n: int) -> bytes:
        """Manual mode: the application consumed ``n`` bytes of a stream."""
        self._ack(stream_id, n, force=True)
        return self.data_to_send()

    def _ack(self, stream_id: int, n: int, force: bool = False) -> None:
        if not self.flow_control or n <= 0:
            return
        threshold = 1 if force else DEFAULT_WINDOW // 2
        self._session_recv_unacked += n
        if self._session_recv_unacked >= threshold:
            delta, self._session_recv_unacked = self._session_recv_unacked, 0
            self._session_recv_window += delta
            self._emit(WindowUpdateFrame(0, delta))
        st = self._streams.get(stream_id)
        if st is None or st.remote_closed:
            return
        st.recv_unacked += n
        if st.recv_unacked >= (1 if force else self._local_initial_window // 2):
            delta, st.recv_unacked = st.recv_unacked, 0
            st.recv_window += delta
            self._emit(WindowUpdateFrame(stream_id, delta))

    # -- receiving --

    def receive_data(self, data: bytes) -> list[Event]:
        """Process received bytes; afterwards send ``data_to_send()``."""
        events: list[Event] = []
        for frame in self._decoder.feed(data):
            self._handle(frame, events)
        return events

    def _handle(self, frame: Frame, events: list[Event]) -> None:
        if isinstance(frame, DataFrame):
            self._on_data(frame, events)
        elif isinstance(frame, SynStreamFrame):
            self._on_syn_stream(frame, events)
        elif isinstance(frame, SynReplyFrame | HeadersFrame):
            self._on_reply_or_headers(frame, events)
        elif isinstance(frame, RstStreamFrame):
            if frame.stream_id == 0:
                raise ProtocolError("RST_STREAM for stream 0")
            if self._streams.pop(frame.stream_id, None) is not None:
                events.append(StreamReset(frame.stream_id, frame.status))
        elif isinstance(frame, SettingsFrame):
            values = {i: v for _, i, v in frame.entries}
            new = values.get(SETTINGS_INITIAL_WINDOW_SIZE)
            if new is not None:
                if new > MAX_WINDOW:
                    raise ProtocolError("INITIAL_WINDOW_SIZE above 2^31-1")
                delta = new - self._peer_initial_window
                self._peer_initial_window = new
                for st in self._streams.values():
                    st.send_window += delta
            events.append(SettingsReceived(values, frame.flags))
            self._flush_all()
        elif isinstance(frame, PingFrame):
            if frame.ping_id % 2 == self._next_ping_id % 2:
                events.append(PingAcknowledged(frame.ping_id))
            else:
                self._emit(PingFrame(frame.ping_id))
                events.append(PingReceived(frame.ping_id))
        elif isinstance(frame, GoAwayFrame):
            self.goaway_received = True
            events.append(GoAway(frame.last_good_stream_id, frame.status))
        elif isinstance(frame, WindowUpdateFrame):
            self._on_window_update(frame, events)
        # unknown control frames (NOOP, CREDENTIAL, future types) are ignored

    def _known_closed(self, stream_id: int) -> bool:
        """A stream that existed once (its id is below what each side has used)."""
        if self._is_local_id(stream_id):
            return stream_id < self._next_stream_id
        return stream_id <= self._last_peer_stream_id

    def _reset(self, stream_id: int, status: int, events: list[Event]) -> None:
        self._streams.pop(stream_id, None)
        self._emit(RstStreamFrame(stream_id, status))
        events.append(StreamReset(stream_id, status, local=True))

    def _on_syn_stream(self, frame: SynStreamFrame, events: list[Event]) -> None:
        sid = frame.stream_id
        if sid == 0:
            raise ProtocolError("SYN_STREAM with stream id 0")
        if self._is_local_id(sid):
            side = "client" if self.client_side else "server"
            raise ProtocolError(f"peer opened stream {sid} with the {side}'s parity")
        if sid <= self._last_peer_stream_id:
            raise ProtocolError(
                f"stream id {sid} not above the last one opened ({self._last_peer_stream_id})"
            )
        self._last_peer_stream_id = sid
        if self.goaway_sent and sid > self._goaway_last_good:
            return  # spec: ignore new streams after GOAWAY
        fin = bool(frame.flags & FLAG_FIN)
        uni = bool(frame.flags & FLAG_UNIDIRECTIONAL)
        st = _Stream(
            sid,
            local=False,
            send_window=self._peer_initial_window,
            recv_window=self._local_initial_window,
            remote_closed=fin,
            replied=uni,
            local_fin_queued=uni,
            local_fin_sent=uni,
        )
        self._streams[sid] = st
        events.append(StreamOpened(sid, frame.headers, frame.associated_id, fin, uni,
                                   frame.priority))  # fmt: skip
        self._maybe_close(st)

    def _on_reply_or_headers(
        self, frame: SynReplyFrame | HeadersFrame, events: list[Event]
    ) -> None:
        sid = frame.stream_id
        if sid == 0:
            raise ProtocolError(f"{type(frame).__name__} for stream 0")
        st = self._streams.get(sid)
        if st is None:
            if not self._known_closed(sid):
                self._reset(sid, RST_INVALID_STREAM, events)
            return
        fin = bool(frame.flags & FLAG_FIN)
        if st.remote_closed:
            self._reset(sid, RST_STREAM_ALREADY_CLOSED, events)
            return
        if isinstance(frame, SynReplyFrame):
            if not st.local or st.replied:
                self._reset(sid, RST_STREAM_IN_USE, events)
                return
            st.replied = True
            events.append(ReplyReceived(sid, frame.headers, fin))
        else:
            events.append(HeadersReceived(sid, frame.headers, fin))
        if fin:
            st.remote_closed = True
            self._maybe_close(st)

    def _on_data(self, frame: DataFrame, events: list[Event]) -> None:
        sid = frame.stream_id
        if sid == 0:
            raise ProtocolError("DATA for stream 0")
        n = len(frame.data)
        if self.flow_control:
            self._session_recv_window -= n
            if self._session_recv_window < 0:
                raise ProtocolError("peer overran the session flow-control window")
        st = self._streams.get(sid)
        if st is None:
            if not self._known_closed(sid):
                self._reset(sid, RST_INVALID_STREAM, events)
            self._ack(sid, n)  # the session window still counts it
            return
        if st.remote_closed:
            self._reset(sid, RST_STREAM_ALREADY_CLOSED, events)
            self._ack(sid, n)
            return
        if self.flow_control:
            st.recv_window -= n
            if st.recv_window < 0:
                self._reset(sid, RST_FLOW_CONTROL_ERROR, events)
                self._ack(sid, n)
                return
        fin = frame.fin
        if fin:
            st.remote_closed = True
        events.append(DataReceived(sid, frame.data, fin))
        if self.auto_ack:
            self._ack(sid, n)
        self._maybe_close(st)

    def _on_window_update(self, frame: WindowUpdateFrame, events: list[Event]) -> None:
        if frame.delta == 0:
            return
        if frame.stream_id == 0:
            self._session_send_window += frame.delta
            if self._session_send_window > MAX_WINDOW:
                raise ProtocolError("session send window above 2^31-1")
        else:
            st = self._streams.get(frame.stream_id)
            if st is None:
                return
            st.send_window += frame.delta
            if st.send_window > MAX_WINDOW:
                self._reset(frame.stream_id, RST_FLOW_CONTROL_ERROR, events)
                return
        events.append(WindowUpdated(frame.stream_id, frame.delta))
        self._flush_all()
