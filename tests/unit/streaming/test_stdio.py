"""The session's input stream: backpressure, a normal end, and an abort that lets go."""

from __future__ import annotations

import threading

from pycrio.streaming.stdio import MAX_QUEUED_CHUNKS, InStream


def test_close_keeps_what_was_sent_then_ends() -> None:
    s = InStream()
    s.feed(b"a")
    s.feed(b"b")
    s.close()
    s.abort()  # after a normal end, nothing sent is lost
    assert [s.read(1), s.read(1), s.read(1)] == [b"a", b"b", b""]


def test_abort_releases_a_feeder_blocked_on_a_full_queue() -> None:
    s = InStream()
    for _ in range(MAX_QUEUED_CHUNKS):
        s.feed(b"x")
    fed = threading.Event()

    def feed_more() -> None:
        s.feed(b"y")  # blocks: nobody reads
        s.close()
        fed.set()

    threading.Thread(target=feed_more, daemon=True).start()
    assert not fed.wait(0.5)
    s.abort()
    assert fed.wait(5)
    assert s.read(1) == b""  # the unread rest was dropped
