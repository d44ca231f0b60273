"""Container events for the kubelet's evented PLEG (GetContainerEvents).

The kubelet subscribes once and from then on relies on the stream instead of
relisting every second, so an event it misses is a pod whose state it never
learns. Hence:

* every subscriber has its own bounded queue, filled under one lock, so all
  subscribers see the same events in the same order;
* a subscriber that falls too far behind is disconnected with an error (the
  kubelet then falls back to relisting and resubscribes) rather than being
  handed a stream with a hole in it, or slowing the others down;
* each container's events are published at most once and in lifecycle order
  (created, started, stopped, deleted), even when two threads notice the same
  exit, or an exit is noticed before StartContainer got to announce the start;
* container exits are published the moment the runtime driver pushes them
  (see ``RuntimeDriver.set_exit_listener``), not at the next Status or List
  call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.cri.containers import STATES, container_status
from pycrio.errors import CRIError, ResourceExhausted
from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.kernel import Kernel

log = logging.getLogger("pycrio.events")

#: Events a subscriber may have waiting before it counts as too slow; CRI-O's
#: event channel holds 1000 too.
QUEUE_SIZE = 1000
#: How often a waiting stream wakes up to notice that its client went away.
WAKEUP = 1.0
#: How many deleted container ids are remembered to drop late duplicates.
DELETED_MEMORY = 4096

CREATED = "created"
STARTED = "started"
STOPPED = "stopped"
DELETED = "deleted"
STAGES = {CREATED: 1, STARTED: 2, STOPPED: 3, DELETED: 4}
EVENT_TYPES = {
    CREATED: api_pb2.CONTAINER_CREATED_EVENT,
    STARTED: api_pb2.CONTAINER_STARTED_EVENT,
    STOPPED: api_pb2.CONTAINER_STOPPED_EVENT,
    DELETED: api_pb2.CONTAINER_DELETED_EVENT,
}
CONTAINER_STATES = STATES  # record state -> CRI ContainerState


class SubscriberTooSlow(ResourceExhausted):
    """The subscriber's queue overflowed; its stream ends so it can resubscribe."""


class Subscription:
    """One subscriber's queue; ``overflowed`` is set once it missed an event."""

    def __init__(self, sid: int, size: int) -> None:
        self.id = sid
        self.queue: queue.Queue[api_pb2.ContainerEventResponse] = queue.Queue(maxsize=size)
        self.overflowed = threading.Event()


class EventBus:
    """Fan-out of events to subscribers, each with its own bounded queue."""

    def __init__(self, queue_size: int = QUEUE_SIZE, wakeup: float = WAKEUP) -> None:
        self.queue_size = queue_size
        self.wakeup = wakeup
        self._lock = threading.Lock()
        self._subscribers: dict[int, Subscription] = {}
        self._next_id = 0

    def subscribe(self) -> Subscription:
        with self._lock:
            self._next_id += 1
            sub = Subscription(self._next_id, self.queue_size)
            self._subscribers[sub.id] = sub
        log.debug("container event subscriber %d connected", sub.id)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            gone = self._subscribers.pop(sub.id, None) is not None
        if gone:
            log.debug("container event subscriber %d disconnected", sub.id)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: api_pb2.ContainerEventResponse) -> None:
        """Hand ``event`` to every subscriber; never blocks on a slow one."""
        with self._lock:
            self._publish_locked(event)

    def _publish_locked(self, event: api_pb2.ContainerEventResponse) -> None:
        for sub in list(self._subscribers.values()):
            try:
                sub.queue.put_nowait(event)
            except queue.Full:
                # Dropping just this event would hand the subscriber a stream with
                # a hole in it; ending the stream makes the kubelet relist instead.
                del self._subscribers[sub.id]
                sub.overflowed.set()
                log.warning(
                    "container event subscriber %d fell %d events behind; disconnecting it",
                    sub.id,
                    self.queue_size,
                )

    def stream(
        self, sub: Subscription, is_active: Callable[[], bool] = lambda: True
    ) -> Iterator[api_pb2.ContainerEventResponse]:
        """Yield ``sub``'s events until its client goes away or it overflows.

        Wakes up every ``wakeup`` seconds while idle, so a client that hung up
        is noticed and its queue released even when no event comes.
        """
        try:
            while True:
                if sub.overflowed.is_set():
                    raise SubscriberTooSlow(
                        f"container event subscriber fell more than {self.queue_size} events"
                        " behind and was disconnected; subscribe again"
                    )
                if not is_active():
                    return
                try:
                    event = sub.queue.get(timeout=self.wakeup)
                except queue.Empty:
                    continue
                yield event
        finally:
            self.unsubscribe(sub)


class ContainerEvents:
    """The core plugin: GetContainerEvents, lifecycle events and the exit watcher."""

    def __init__(self, kernel: Kernel, sandboxes: Any, containers: Any) -> None:
        self.kernel = kernel
        self.sandboxes = sandboxes
        self.containers = containers
        self.bus = EventBus()
        # Last lifecycle stage published per container id: the guard against
        # repeats and reordering. Entries go with the container's deleted event.
        self._stages: dict[str, int] = {}
        # Recently deleted ids (bounded), so a late duplicate cannot resurrect one.
        self._deleted: OrderedDict[str, None] = OrderedDict()
        self._stage_lock = threading.Lock()

    # --- events ----------------------------------------------------------------

    @hookimpl
    def pycrio_container_event(self, event: str, container: Any, sandbox: Any) -> None:
        stage = STAGES.get(event)
        if stage is None or getattr(container, "infra", False):
            return
        with self._stage_lock:
            last = self._stages.get(container.id, 0)
            if stage <= last or container.id in self._deleted:
                return  # already published (two threads saw the same exit)
            events = []
            if last and event in (STOPPED, DELETED) and last < STAGES[STARTED]:
                # The exit was noticed before StartContainer announced the start.
                if getattr(container, "started_at", 0):
                    events.append(STARTED)
            if event == DELETED and last and last < STAGES[STOPPED]:
                events.append(STOPPED)
            events.append(event)
            if event == DELETED:
                self._stages.pop(container.id, None)
                self._deleted[container.id] = None
                while len(self._deleted) > DELETED_MEMORY:
                    self._deleted.popitem(last=False)
            else:
                self._stages[container.id] = stage
            if not self.bus.subscriber_count:
                # Nobody listens (the kubelet subscribes only with EventedPLEG):
                # building the pod's status for nobody would slow every call.
                return
            # Built and published under the lock so that every subscriber sees
            # each container's events in lifecycle order.
            for name in events:
                self.bus.publish(self._response(name, container, sandbox))

    def _response(self, event: str, container: Any, sandbox: Any) -> api_pb2.ContainerEventResponse:
        response = api_pb2.ContainerEventResponse(
            container_id=container.id,
            container_event_type=EVENT_TYPES[event],
            created_at=time.time_ns(),
        )
        if sandbox is not None:
            pod_status = self._pod_status(sandbox)
            if pod_status is not None:
                response.pod_sandbox_status.CopyFrom(pod_status)
            response.containers_statuses.extend(self._container_statuses(sandbox.id, container))
        return response

    def _pod_status(self, sandbox: Any) -> api_pb2.PodSandboxStatus | None:
        try:
            return self.sandboxes.cri_pod_sandbox_status(
                request=api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox.id),
                ctx=CallContext(method="GetContainerEvents"),
            ).status
        except CRIError:
            # A pod on its way out: its id is what the kubelet needs to match it.
            return api_pb2.PodSandboxStatus(id=sandbox.id)

    def _container_statuses(self, sandbox_id: str, changed: Any) -> list[api_pb2.ContainerStatus]:
        """Statuses of the pod's containers as recorded, without refreshing them.

        Refreshing here could publish another event from inside this one.
        """
        store = self.containers.store
        records = [] if store is None else store.all()
        out = []
        for r in records:
            if r.sandbox_id != sandbox_id or r.state not in CONTAINER_STATES or r.infra:
                continue
            if r.id == changed.id and changed is not r:
                r = changed
            out.append(container_status(r))
        return out

    # --- GetContainerEvents ----------------------------------------------------

    @hookimpl
    def cri_get_container_events(
        self, request: api_pb2.GetEventsRequest, ctx: CallContext
    ) -> Iterator[api_pb2.ContainerEventResponse]:
        sub = self.bus.subscribe()  # now, so nothing between the call and the first next() is lost
        is_active = getattr(ctx, "is_active", None) or (lambda: True)
        return self.bus.stream(sub, is_active)
