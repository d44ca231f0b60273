"""The container event bus: fan-out, order, no loss, slow subscribers dropped,
and the lifecycle guard that keeps each container's events once and in order."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from pycrio.container.record import ContainerRecord
from pycrio.errors import ResourceExhausted
from pycrio.events import ContainerEvents, EventBus


def ev(cid: str, kind: int = api_pb2.CONTAINER_CREATED_EVENT) -> api_pb2.ContainerEventResponse:
    return api_pb2.ContainerEventResponse(container_id=cid, container_event_type=kind)


def collect(bus: EventBus, n: int, out: list, active: threading.Event) -> threading.Thread:
    sub = bus.subscribe()

    def run() -> None:
        for e in bus.stream(sub, active.is_set):
            out.append(e.container_id)
            if len(out) == n:
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_fan_out_keeps_order_and_loses_nothing() -> None:
    bus = EventBus(queue_size=10_000, wakeup=0.05)
    active = threading.Event()
    active.set()
    n = 2000
    outs: list[list[str]] = [[] for _ in range(4)]
    threads = [collect(bus, n, out, active) for out in outs]
    publishers = [
        threading.Thread(target=lambda k=k: [bus.publish(ev(f"{k}-{i}")) for i in range(n // 4)])
        for k in range(4)
    ]
    for p in publishers:
        p.start()
    for p in publishers:
        p.join()
    for t in threads:
        t.join(timeout=10)
    assert all(len(o) == n for o in outs)
    assert all(len(set(o)) == n for o in outs), "an event was repeated"
    assert all(o == outs[0] for o in outs), "subscribers saw different orders"
    for k in range(4):  # each publisher's own events stay in order
        mine = [x for x in outs[0] if x.startswith(f"{k}-")]
        assert mine == [f"{k}-{i}" for i in range(n // 4)]
    assert bus.subscriber_count == 0


def test_slow_subscriber_is_dropped_and_others_continue(caplog: Any) -> None:
    bus = EventBus(queue_size=5, wakeup=0.05)
    slow = bus.subscribe()
    fast_out: list[str] = []
    active = threading.Event()
    active.set()
    fast = collect(bus, 20, fast_out, active)
    with caplog.at_level(logging.WARNING, logger="pycrio.events"):
        for i in range(20):
            bus.publish(ev(str(i)))
            time.sleep(0.005)  # the fast one keeps up
    fast.join(timeout=5)
    assert fast_out == [str(i) for i in range(20)]
    assert "disconnecting" in caplog.text
    stream = bus.stream(slow)
    with pytest.raises(ResourceExhausted):
        next(stream)
    assert bus.subscriber_count == 0


def test_stream_ends_when_client_goes_away() -> None:
    bus = EventBus(wakeup=0.05)
    active = threading.Event()
    active.set()
    out: list[str] = []
    t = collect(bus, 100, out, active)
    deadline = time.monotonic() + 2
    while bus.subscriber_count != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    active.clear()
    t.join(timeout=2)
    assert not t.is_alive()
    assert bus.subscriber_count == 0


class FakeSandboxes:
    store = None

    def cri_pod_sandbox_status(self, request: Any, ctx: Any) -> Any:
        return api_pb2.PodSandboxStatusResponse(
            status=api_pb2.PodSandboxStatus(id=request.pod_sandbox_id)
        )


class FakeStore:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def all(self) -> list[Any]:
        return list(self.records)


def record(cid: str, state: str = "created", started_at: int = 0) -> Any:
    return ContainerRecord(
        id=cid, name=cid, attempt=0, sandbox_id="pod", reservation=cid, image="img",
        image_id="iid", image_ref="ref", runtime_handler="runc", created_at=1, state=state,
        started_at=started_at, log_path="/l",
    )  # fmt: skip


def plugin() -> tuple[ContainerEvents, Any]:
    containers = SimpleNamespace(store=FakeStore())
    kernel = SimpleNamespace()
    return ContainerEvents(kernel, FakeSandboxes(), containers), containers


def test_lifecycle_events_carry_pod_and_container_statuses() -> None:
    p, containers = plugin()
    sub = p.bus.subscribe()
    r = record("c1")
    containers.store.records.append(r)
    pod = SimpleNamespace(id="pod")
    p.pycrio_container_event(event="created", container=r, sandbox=pod)
    e = sub.queue.get_nowait()
    assert e.container_event_type == api_pb2.CONTAINER_CREATED_EVENT
    assert e.pod_sandbox_status.id == "pod"
    assert [s.id for s in e.containers_statuses] == ["c1"]
    assert e.containers_statuses[0].state == api_pb2.CONTAINER_CREATED
    assert e.created_at > 0


def test_repeats_are_dropped_and_gaps_filled_in_order() -> None:
    p, containers = plugin()
    sub = p.bus.subscribe()
    pod = SimpleNamespace(id="pod")
    r = record("c1")
    p.pycrio_container_event(event="created", container=r, sandbox=pod)
    # The exit was seen (by the watcher) before StartContainer announced the start.
    r.state, r.started_at = "exited", 5
    p.pycrio_container_event(event="stopped", container=r, sandbox=pod)
    p.pycrio_container_event(event="started", container=r, sandbox=pod)
    p.pycrio_container_event(event="stopped", container=r, sandbox=pod)
    p.pycrio_container_event(event="deleted", container=r, sandbox=pod)
    p.pycrio_container_event(event="deleted", container=r, sandbox=pod)
    kinds = []
    while not sub.queue.empty():
        kinds.append(sub.queue.get_nowait().container_event_type)
    assert kinds == [
        api_pb2.CONTAINER_CREATED_EVENT,
        api_pb2.CONTAINER_STARTED_EVENT,
        api_pb2.CONTAINER_STOPPED_EVENT,
        api_pb2.CONTAINER_DELETED_EVENT,
    ]


def test_infra_containers_publish_nothing() -> None:
    p, _ = plugin()
    sub = p.bus.subscribe()
    r = record("infra")
    r.infra = True
    p.pycrio_container_event(event="created", container=r, sandbox=None)
    assert sub.queue.empty()
