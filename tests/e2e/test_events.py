"""GetContainerEvents over the socket: every subscriber gets each container's
CREATED, STARTED, STOPPED and DELETED once and in order, and an exit shows up
at once (the exit-file watcher), not at the next Status call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import registry_env
from container_e2e import Pod, assert_nothing_left, module_daemon, pod_config
from cri_api.v1 import api_pb2
from daemon import DaemonProcess

pytestmark = pytest.mark.e2e

ORDER = [
    api_pb2.CONTAINER_CREATED_EVENT,
    api_pb2.CONTAINER_STARTED_EVENT,
    api_pb2.CONTAINER_STOPPED_EVENT,
    api_pb2.CONTAINER_DELETED_EVENT,
]


@pytest.fixture(scope="module")
def crio(
    tmp_path_factory: pytest.TempPathFactory, registry: Any, images: Any
) -> Iterator[DaemonProcess]:
    with module_daemon(
        tmp_path_factory.mktemp("events"), registry.host, [images.busybox.name]
    ) as d:
        yield d


class Subscriber:
    """A GetContainerEvents stream read on a thread; events with their arrival time."""

    def __init__(self, d: DaemonProcess) -> None:
        self.call = d.runtime().GetContainerEvents(api_pb2.GetEventsRequest())
        self.events: list[tuple[int, api_pb2.ContainerEventResponse]] = []
        self.error: grpc.RpcError | None = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                with self.changed:
                    self.events.append((time.time_ns(), event))
                    self.changed.notify_all()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.error = e

    def of(self, cid: str) -> list[tuple[int, api_pb2.ContainerEventResponse]]:
        with self.changed:
            return [(t, e) for t, e in self.events if e.container_id == cid]

    def wait_for(self, cid: str, kind: int, timeout: float) -> tuple[int, Any]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for t, e in self.events:
                    if e.container_id == cid and e.container_event_type == kind:
                        return t, e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no event {kind} for {cid}; got {self.events}")
                self.changed.wait(left)

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(timeout=5)


def test_two_subscribers_see_each_event_once_in_order(
    crio: DaemonProcess, tmp_path: Path, images: registry_env.TestImages
) -> None:
    subs = [Subscriber(crio), Subscriber(crio)]
    pod = Pod(crio, pod_config("events", tmp_path / "logs"))
    try:
        time.sleep(1)  # the streams are set up asynchronously
        cid = pod.create(
            pod.container_config(
                "quick", images.busybox.name, command=["sh", "-c", "sleep 1; exit 3"]
            )
        )
        pod.rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid), timeout=30)
        # No Status or List call until the exit has been announced.
        for sub in subs:
            arrived, stopped = sub.wait_for(cid, api_pb2.CONTAINER_STOPPED_EVENT, 10)
            mine = [s for s in stopped.containers_statuses if s.id == cid]
            assert mine and mine[0].state == api_pb2.CONTAINER_EXITED
            assert mine[0].exit_code == 3
            lag = (arrived - mine[0].finished_at) / 1e9
            assert lag < 1.0, f"the exit was announced {lag:.2f}s after it happened"
            assert stopped.pod_sandbox_status.id == pod.id
        pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=5), timeout=30)
        pod.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
        for sub in subs:
            sub.wait_for(cid, api_pb2.CONTAINER_DELETED_EVENT, 10)
        time.sleep(0.5)  # room for a (wrong) repeat to arrive
        for sub in subs:
            assert sub.error is None, sub.error
            got = sub.of(cid)
            assert [e.container_event_type for _, e in got] == ORDER
            for _, e in got:
                assert e.pod_sandbox_status.id == pod.id
                assert e.created_at > 0
            created = got[0][1]
            assert [s.id for s in created.containers_statuses] == [cid]
            assert created.containers_statuses[0].state == api_pb2.CONTAINER_CREATED
            assert all(s.id != cid for s in got[3][1].containers_statuses)
    finally:
        for sub in subs:
            sub.close()
        pod.remove()
    assert_nothing_left(crio, pod.containers)
    assert "inotify is unavailable" not in crio.stderr()


def test_a_subscriber_that_hangs_up_does_not_hold_the_daemon(
    crio: DaemonProcess, tmp_path: Path, images: registry_env.TestImages
) -> None:
    for _ in range(3):
        Subscriber(crio).close()
    sub = Subscriber(crio)
    pod = Pod(crio, pod_config("events2", tmp_path / "logs"))
    try:
        time.sleep(1)
        cid = pod.run("sleeper", images.busybox.name, command=["sleep", "3600"])
        sub.wait_for(cid, api_pb2.CONTAINER_STARTED_EVENT, 10)
        pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0), timeout=30)
        sub.wait_for(cid, api_pb2.CONTAINER_STOPPED_EVENT, 10)
    finally:
        sub.close()
        pod.remove()
