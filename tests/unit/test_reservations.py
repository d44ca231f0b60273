from __future__ import annotations

import threading
import time

import pytest

from pycrio.errors import AlreadyExists, DeadlineExceeded
from pycrio.reservations import Reservations


def test_a_retry_waits_for_the_call_in_progress_and_gets_its_result() -> None:
    names: Reservations[str] = Reservations("pod sandbox")
    started = threading.Event()
    calls = []

    def slow() -> str:
        calls.append(1)
        started.set()
        time.sleep(0.3)
        return "id-1"

    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(names.create("pod", "id-1", slow)))
    first.start()
    started.wait(5)
    assert names.create("pod", "id-2", lambda: "id-2") == "id-1"  # the retry
    first.join(5)
    assert results == ["id-1"] and len(calls) == 1
    with pytest.raises(AlreadyExists, match="reserved by pod sandbox id-1"):
        names.create("pod", "id-3", lambda: "id-3")


def test_a_failed_creation_frees_the_name_and_waiters_see_the_error() -> None:
    names: Reservations[str] = Reservations("container")
    with pytest.raises(ValueError):
        names.create("c", "id-1", lambda: (_ for _ in ()).throw(ValueError("cni failed")))
    assert names.holder("c") is None
    assert names.create("c", "id-2", lambda: "id-2") == "id-2"
    names.release("c", "someone-else")
    assert names.holder("c") == "id-2"
    names.release("c", "id-2")
    assert names.holder("c") is None


def test_a_retry_that_runs_out_of_time_is_deadline_exceeded() -> None:
    names: Reservations[str] = Reservations("pod sandbox")
    gate = threading.Event()
    t = threading.Thread(target=lambda: names.create("p", "id-1", lambda: gate.wait(5) and "id-1"))
    t.start()
    while names.holder("p") is None:
        time.sleep(0.01)
    with pytest.raises(DeadlineExceeded, match="still being created"):
        names.create("p", "id-2", lambda: "id-2", timeout=0.1)
    gate.set()
    t.join(5)
