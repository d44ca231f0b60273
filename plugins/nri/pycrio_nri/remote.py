"""One connected NRI plugin, as the runtime sees it (containerd/nri adaptation's plugin).

Over the plugin's one socket the runtime is a ttrpc *client* of the plugin's
``Plugin`` service (mux connection 1) and a ttrpc *server* of the
``Runtime`` service (connection 2), where the plugin registers itself and
may ask for container updates at any time.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from pycrio.ttrpc import Client, Server, TtrpcError
from pycrio.ttrpc.errors import ConnectionClosed
from pycrio_nri import api
from pycrio_nri.mux import PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN, Mux

log = logging.getLogger("pycrio.nri")

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+")


def check_index(idx: str) -> None:
    if len(idx) != 2 or not idx.isdigit():
        raise ValueError(f"invalid plugin index {idx!r}, must be 2 digits")


def check_name(name: str) -> None:
    if not name:
        raise ValueError("invalid plugin name: name is empty")
    bad = set(name) - _NAME_CHARS
    if bad:
        raise ValueError(f"invalid plugin name {name!r}: contains {sorted(bad)[0]!r}")


class PluginGone(Exception):
    """The plugin was disconnected (timeout, crash, garbage); the call goes on without it."""


def is_fatal(err: TtrpcError) -> bool:
    """Errors after which NRI closes the plugin: closed connection, timeout, protocol."""
    return isinstance(err, ConnectionClosed) or err.code in (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
    )


#: Events an older plugin receives as StateChange (they carry no answer).
STATE_CHANGE_EVENTS = {
    "RunPodSandbox": "RUN_POD_SANDBOX",
    "PostUpdatePodSandbox": "POST_UPDATE_POD_SANDBOX",
    "StopPodSandbox": "STOP_POD_SANDBOX",
    "RemovePodSandbox": "REMOVE_POD_SANDBOX",
    "PostCreateContainer": "POST_CREATE_CONTAINER",
    "StartContainer": "START_CONTAINER",
    "PostStartContainer": "POST_START_CONTAINER",
    "PostUpdateContainer": "POST_UPDATE_CONTAINER",
    "RemoveContainer": "REMOVE_CONTAINER",
}

UpdateHandler = Callable[["RemotePlugin", Any], Any]


class RemotePlugin:
    def __init__(
        self,
        sock: socket.socket,
        on_update: UpdateHandler,
        on_close: Callable[[RemotePlugin, str], None],
        *,
        index: str = "",
        base: str = "",
        config: str = "",
        proc: Any = None,
    ) -> None:
        self.idx = index
        self.base = base
        self.config = config
        self.proc = proc
        self.events = 0
        self.legacy = False  # answers events through StateChange only
        self.request_timeout = 2.0
        self._on_update = on_update
        self._on_close = on_close
        self._registered = threading.Event()
        self._registration_error = ""
        self.closed = ""
        self._close_lock = threading.Lock()
        try:
            self.pid = socket_peer_pid(sock)
        except OSError:
            self.pid = proc.pid if proc else 0
        self.mux = Mux(sock, name=f"nri-plugin-{base or 'external'}")
        self.client = Client(
            self.mux.channel(
                PLUGIN_SERVICE_CONN,
                lambda data: self.client.feed(data),
                lambda reason: self.client.connection_lost(reason),
            ),
            on_close=lambda reason: self.close(reason),
        )
        server = Server(
            {
                (api.RUNTIME_SERVICE, "RegisterPlugin"): self._register,
                (api.RUNTIME_SERVICE, "UpdateContainers"): self._update_containers,
            }
        )
        self.session = server.session(
            self.mux.channel(
                RUNTIME_SERVICE_CONN,
                lambda data: self.session.feed(data),
                lambda reason: self.session.connection_lost(reason),
            )
        )

    @property
    def external(self) -> bool:
        return self.proc is None

    @property
    def name(self) -> str:
        return f"{self.idx or '??'}-{self.base or 'plugin'}"

    def describe(self) -> str:
        kind = "external" if self.external else "pre-installed"
        return f"{self.name} ({kind}, pid {self.pid})"

    # --- the Runtime service, served to the plugin -------------------------------

    def _register(self, payload: bytes, call: Any) -> bytes:
        req = api.RegisterPluginRequest.FromString(payload)
        if self.external:
            try:
                check_name(req.plugin_name)
                check_index(req.plugin_idx)
            except ValueError as e:
                self._registration_error = str(e)
                self._registered.set()
                raise TtrpcError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e
            self.base, self.idx = req.plugin_name, req.plugin_idx
        log.info("NRI plugin %s registered (NRI %s)", self.describe(), req.NRI_version or "?")
        self._registered.set()
        return api.Empty().SerializeToString()

    def _update_containers(self, payload: bytes, call: Any) -> bytes:
        req = api.UpdateContainersRequest.FromString(payload)
        log.info("NRI plugin %s requested %d container updates", self.name, len(req.update))
        failed = self._on_update(self, req)
        return api.UpdateContainersResponse(failed=failed).SerializeToString()

    # --- lifecycle ---------------------------------------------------------------

    def start(self, registration_timeout: float) -> None:
        """Serve until the plugin registers; raises on timeout or a bad registration."""
        self.mux.start()
        if not self._registered.wait(registration_timeout):
            self.close("registration timed out")
            raise PluginGone(
                f"NRI plugin {self.name}: no registration within {registration_timeout:g}s"
            )
        if self.closed and not self._registration_error:
            raise PluginGone(f"NRI plugin {self.name}: connection closed ({self.closed})")
        if self._registration_error:
            time.sleep(0.2)  # let the refusal reach the plugin before hanging up
            self.close("invalid registration")
            raise PluginGone(f"NRI plugin registration refused: {self._registration_error}")

    def event(self, method: str, request: Any) -> Any:
        """Deliver an event; plugins built before NRI had a call per event get StateChange.

        As containerd/nri does: an UNIMPLEMENTED answer to one of the
        data-less events switches the plugin to StateChange for good.
        """
        event = STATE_CHANGE_EVENTS.get(method)
        if event is not None and not self.legacy:
            try:
                return self.call(method, request)
            except TtrpcError as e:
                if e.code != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                log.info("NRI plugin %s predates %s: using StateChange", self.name, method)
                self.legacy = True
        if event is None:
            return self.call(method, request)
        change = api.StateChangeEvent(event=api.Event.Value(event), pod=request.pod)
        if "container" in request.DESCRIPTOR.fields_by_name:
            change.container.CopyFrom(request.container)
        self.call("StateChange", change)
        return api.METHODS[api.PLUGIN_SERVICE][method][1]()

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """Call the plugin; PluginGone (and the plugin closed) on fatal errors."""
        if self.closed:
            raise PluginGone(f"NRI plugin {self.name} is disconnected")
        _, response_cls = api.METHODS[api.PLUGIN_SERVICE][method]
        try:
            payload = self.client.call(
                api.PLUGIN_SERVICE,
                method,
                request.SerializeToString(),
                timeout=timeout if timeout is not None else self.request_timeout,
            )
        except TtrpcError as e:
            if is_fatal(e):
                reason = f"{method} failed: {e.message}"
                log.error("closing NRI plugin %s: %s", self.name, reason)
                self.close(reason)
                raise PluginGone(f"NRI plugin {self.name}: {reason}") from e
            raise
        try:
            return response_cls.FromString(payload)
        except Exception as e:  # noqa: BLE001 - a garbled reply ends the plugin
            reason = f"{method}: malformed response: {e}"
            log.error("closing NRI plugin %s: %s", self.name, reason)
            self.close(reason)
            raise PluginGone(f"NRI plugin {self.name}: {reason}") from e

    def close(self, reason: str) -> None:
        with self._close_lock:
            if self.closed:
                return
            self.closed = reason or "closed"
        self._registered.set()  # a start() waiting for registration gives up now
        self.mux.close()
        self.client.connection_lost(self.closed)
        self._on_close(self, self.closed)

    def stop(self) -> None:
        """Close the connection and end a process we launched."""
        self.close("stopped")
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def socket_peer_pid(sock: socket.socket) -> int:
    import struct

    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]
