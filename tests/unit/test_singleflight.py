from __future__ import annotations

import threading
import time

import pytest

from pycrio.singleflight import SingleFlight


def test_concurrent_callers_share_one_execution() -> None:
    flight = SingleFlight()
    calls = []
    release = threading.Event()

    def work() -> str:
        calls.append(1)
        release.wait(5)
        return "done"

    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(flight.do("k", work))) for _ in range(5)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while flight.in_flight() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    release.set()
    for t in threads:
        t.join(5)
    assert results == ["done"] * 5
    assert len(calls) == 1
    assert flight.in_flight() == 0


def test_errors_reach_every_waiter_and_the_key_is_freed() -> None:
    flight = SingleFlight()

    def fail() -> None:
        raise RuntimeError("registry down")

    with pytest.raises(RuntimeError, match="registry down"):
        flight.do("k", fail)
    assert flight.do("k", lambda: 42) == 42
