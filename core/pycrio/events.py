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
* container exits are seen the moment conmon writes the exit file (inotify
  on ``<runroot>/exits``), not at the next Status or List call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import queue
import select
import struct
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
        self.watcher: ExitWatcher | None = None

    # --- lifecycle -------------------------------------------------------------

    @hookimpl
    def pycrio_startup(self, kernel: Kernel) -> None:
        self.watcher = ExitWatcher(self.containers.exit_dir, self._exit_seen)
        self.watcher.start()

    @hookimpl
    def pycrio_shutdown(self, kernel: Kernel) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    def _exit_seen(self, container_id: str) -> bool:
        """Refresh the container whose exit file appeared; False to retry later."""
        refresh = getattr(self.containers, "refresh_exited", None)
        if refresh is None:
            return True
        return bool(refresh(container_id))

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


IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")
POLL_INTERVAL = 1.0
RETRY_INTERVAL = 0.05


class ExitWatcher:
    """Calls ``on_exit(container_id)`` when conmon writes ``<exit_dir>/<id>``.

    inotify makes the exit visible at once; where inotify cannot be had the
    directory is polled every second instead (and that is logged). ``on_exit``
    returns False when the container is busy (being started or stopped); the
    id is then retried shortly, since the busy call may have looked already.
    """

    def __init__(self, exit_dir: str, on_exit: Callable[[str], bool]) -> None:
        self.exit_dir = exit_dir
        self.on_exit = on_exit
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self.mode = ""

    def start(self) -> None:
        os.makedirs(self.exit_dir, mode=0o700, exist_ok=True)
        try:
            self._fd = _inotify_watch(self.exit_dir, IN_CLOSE_WRITE | IN_MOVED_TO)
            self.mode = "inotify"
        except OSError as e:
            log.warning(
                "inotify is unavailable (%s); polling %s every %.0fs for container exits",
                e,
                self.exit_dir,
                POLL_INTERVAL,
            )
            self.mode = "poll"
        self._thread = threading.Thread(target=self._run, name="exit-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for fd in (self._fd, self._stop_r, self._stop_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = None

    def _run(self) -> None:
        seen: dict[str, float] = {}
        # Exits written before the watch existed (between the container
        # service's startup refresh and now) would otherwise wait for a poll.
        pending: set[str] = self._scan(seen)
        while True:
            timeout = RETRY_INTERVAL if pending else None
            if self._fd is None:
                timeout = POLL_INTERVAL if not pending else RETRY_INTERVAL
            fds = [self._stop_r] + ([self._fd] if self._fd is not None else [])
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                continue
            if self._stop_r in ready:
                return
            if self._fd is not None and self._fd in ready:
                pending |= self._read_inotify()
            elif self._fd is None:
                pending |= self._scan(seen)
            for cid in sorted(pending):
                try:
                    done = self.on_exit(cid)
                except Exception:  # noqa: BLE001 - one bad record must not stop the watcher
                    log.exception("handling the exit of container %s failed", cid)
                    done = True
                if done:
                    pending.discard(cid)

    def _read_inotify(self) -> set[str]:
        assert self._fd is not None
        names: set[str] = set()
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return names
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                log.warning("inotify queue overflowed; rescanning %s", self.exit_dir)
                names |= self._scan({})
                continue
            name = raw.split(b"\0", 1)[0].decode(errors="replace")
            if name and not name.startswith("."):
                names.add(name)
        return names

    def _scan(self, seen: dict[str, float]) -> set[str]:
        """Exit files new or changed since the last scan (the polling fallback)."""
        found: set[str] = set()
        current: dict[str, float] = {}
        try:
            entries = list(os.scandir(self.exit_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            current[entry.name] = mtime
            if seen.get(entry.name) != mtime:
                found.add(entry.name)
        seen.clear()
        seen.update(current)
        return found


def _inotify_watch(path: str, mask: int) -> int:
    """An inotify descriptor watching ``path``; OSError when inotify is unavailable."""
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "inotify_init1"):
        raise OSError(errno.ENOSYS, "libc has no inotify_init1")
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    wd = libc.inotify_add_watch(fd, os.fsencode(path), mask)
    if wd < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
    return fd
