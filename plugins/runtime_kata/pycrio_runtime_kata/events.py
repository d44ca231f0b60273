"""The ttrpc Events server a shim forwards its task events to (``TTRPC_ADDRESS``).

containerd serves ``containerd.services.events.ttrpc.v1.Events/Forward`` on
its ttrpc socket; a shim connects to the address in its environment and
forwards each event as an Envelope (topic, namespace, an Any naming
``containerd.events.TaskExit`` ...). The driver serves the same on a socket
in its run dir (mode 0600) so that exits and OOM kills arrive as they
happen, including after a daemon restart (the shim reconnects to the same
path). :func:`decode` is the sans-IO part: bytes in, a typed event out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pycrio.ttrpc import Server
from pycrio.ttrpc.protocol import CallReceived
from pycrio_runtime_kata import api

log = logging.getLogger("pycrio.kata.events")

TOPIC_EXIT = "/tasks/exit"
TOPIC_OOM = "/tasks/oom"


@dataclass(frozen=True)
class TaskEvent:
    """One forwarded event: ``kind`` is the message name (TaskExit, TaskOOM, ...)."""

    kind: str
    topic: str
    namespace: str
    container_id: str
    exec_id: str = ""
    pid: int = 0
    exit_status: int = 0
    exited_at: int = 0  # ns


_EVENT_TYPES = {
    f"containerd.events.{name}": getattr(api.events, name)
    for name in (
        "TaskCreate",
        "TaskStart",
        "TaskDelete",
        "TaskExit",
        "TaskOOM",
        "TaskExecAdded",
        "TaskExecStarted",
        "TaskPaused",
        "TaskResumed",
        "TaskCheckpointed",
    )
}


def decode(payload: bytes) -> TaskEvent | None:
    """The event in a ForwardRequest's bytes; None for an event type we do not know."""
    req = api.events_service.ForwardRequest()
    req.ParseFromString(payload)
    env = req.envelope
    name = api.type_name(env.event.type_url)
    cls = _EVENT_TYPES.get(name)
    if cls is None:
        return None
    msg = cls()
    msg.ParseFromString(env.event.value)
    kind = name.rsplit(".", 1)[-1]
    if kind == "TaskExit":
        return TaskEvent(
            kind,
            env.topic,
            env.namespace,
            msg.container_id,
            exec_id=msg.id,
            pid=msg.pid,
            exit_status=msg.exit_status,
            exited_at=api.timestamp_ns(msg.exited_at),
        )
    return TaskEvent(
        kind,
        env.topic,
        env.namespace,
        msg.container_id,
        exec_id=getattr(msg, "exec_id", ""),
        pid=getattr(msg, "pid", 0),
    )


class EventServer:
    """Serves Forward on a unix socket; hands each decoded event to ``on_event``."""

    def __init__(self, path: str, on_event: Callable[[TaskEvent], None]) -> None:
        self.path = path
        self._on_event = on_event
        self._server = Server()
        self._server.register(api.EVENTS_SERVICE, "Forward", self._forward)
        self._thread: threading.Thread | None = None

    def _forward(self, payload: bytes, call: CallReceived) -> bytes:
        event = decode(payload)
        if event is not None:
            try:
                self._on_event(event)
            except Exception:  # noqa: BLE001 - one bad event must not stop the stream
                log.exception("event %s for %s not handled", event.kind, event.container_id)
        return api.Empty().SerializeToString()

    def start(self) -> None:
        if len(self.path.encode()) > 107:
            raise ValueError(f"events socket path {self.path!r} is longer than 107 bytes")
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(64)
        self._thread = threading.Thread(
            target=self._server.serve, args=(sock,), name="kata-events", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class SharedEvents:
    """One EventServer per socket path in this process, shared by its subscribers.

    Two handlers of the ``vm`` driver get the same run dir (the kernel's
    directories are per driver, not per handler), so they share the events
    socket too; each subscriber ignores the tasks it does not own.
    """

    _lock = threading.Lock()
    _servers: dict[str, tuple[EventServer, list[Callable[[TaskEvent], None]]]] = {}

    @classmethod
    def subscribe(cls, path: str, on_event: Callable[[TaskEvent], None]) -> None:
        with cls._lock:
            entry = cls._servers.get(path)
            if entry is None:
                listeners: list[Callable[[TaskEvent], None]] = []

                def fan_out(event: TaskEvent) -> None:
                    for listener in list(listeners):
                        listener(event)

                server = EventServer(path, fan_out)
                server.start()
                entry = cls._servers[path] = (server, listeners)
            entry[1].append(on_event)

    @classmethod
    def unsubscribe(cls, path: str, on_event: Callable[[TaskEvent], None]) -> None:
        with cls._lock:
            entry = cls._servers.get(path)
            if entry is None:
                return
            server, listeners = entry
            if on_event in listeners:
                listeners.remove(on_event)
            if not listeners:
                del cls._servers[path]
                server.stop()
