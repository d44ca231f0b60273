"""A small NRI plugin for tests, speaking NRI's wire protocol over a real socket.

Its framing (the 8-byte mux header, the 10-byte ttrpc header) is written here
independently of pycrio_nri.mux and pycrio.ttrpc, from containerd/nri's
pkg/net/multiplex and containerd/ttrpc's channel.go, so that a mistake on the
daemon's side is not mirrored by the test. Only the protobuf messages are
shared (their field numbers are pinned by pycrio_nri's unit tests).

Use it in-process (``NRIStub(...).connect(path)``) as an external plugin, or
run this file as a pre-installed plugin: it then takes its socket from
NRI_PLUGIN_SOCKET, its name and index from the environment, and its
behaviour from the JSON configuration NRI hands it in Configure.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pycrio_nri import api

from pycrio.ttrpc.messages import Request, Response, Status

MUX = struct.Struct(">II")  # connection id, payload length
TTRPC = struct.Struct(">IIBB")  # payload length, stream id, type, flags
PLUGIN_CONN, RUNTIME_CONN = 1, 2
T_REQUEST, T_RESPONSE = 1, 2
PLUGIN_SVC = "nri.pkg.api.v1alpha1.Plugin"
RUNTIME_SVC = "nri.pkg.api.v1alpha1.Runtime"

Handler = Callable[[Any], Any]


class Refuse(Exception):
    """Raise from a handler to answer with this gRPC status code (2 = UNKNOWN)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def mask(*events: str) -> int:
    out = 0
    for name in events:
        out |= 1 << (api.Event.Value(name) - 1)
    return out


class NRIStub:
    def __init__(
        self,
        name: str = "stub",
        idx: str = "50",
        events: int = 0,
        handlers: dict[str, Handler] | None = None,
    ) -> None:
        self.name, self.idx, self.events = name, idx, events
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.received: list[tuple[str, Any]] = []
        self.configure_request: Any = None
        self.cond = threading.Condition()
        self.closed = False
        self._bufs = {PLUGIN_CONN: bytearray(), RUNTIME_CONN: bytearray()}
        self._send_lock = threading.Lock()
        self._next_id = 1
        self._waiters: dict[int, list[Any]] = {}

    # --- connecting ------------------------------------------------------------

    def connect(self, path: str, register: bool = True) -> NRIStub:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return self.attach(sock, register)

    def attach(self, sock: socket.socket, register: bool = True) -> NRIStub:
        self.sock = sock
        threading.Thread(target=self._read, daemon=True).start()
        if register:
            self.call_runtime(
                "RegisterPlugin",
                api.RegisterPluginRequest(
                    plugin_name=self.name, plugin_idx=self.idx, NRI_version="v0.12.0"
                ),
                api.Empty,
            )
        return self

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # --- framing ---------------------------------------------------------------

    def _send(self, conn: int, stream: int, msg_type: int, body: bytes) -> None:
        data = TTRPC.pack(len(body), stream, msg_type, 0) + body
        with self._send_lock:
            self.sock.sendall(MUX.pack(conn, len(data)) + data)

    def _read(self) -> None:
        trunk = bytearray()
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                trunk += chunk
                while len(trunk) >= MUX.size:
                    conn, length = MUX.unpack_from(trunk)
                    if len(trunk) < MUX.size + length:
                        break
                    self._bufs[conn] += trunk[MUX.size : MUX.size + length]
                    del trunk[: MUX.size + length]
                    self._frames(conn)
        except OSError:
            pass
        self.sock.close()
        with self.cond:
            self.closed = True
            for waiter in self._waiters.values():
                waiter.append(None)
            self.cond.notify_all()

    def _frames(self, conn: int) -> None:
        buf = self._bufs[conn]
        while len(buf) >= TTRPC.size:
            length, stream, msg_type, _flags = TTRPC.unpack_from(buf)
            if len(buf) < TTRPC.size + length:
                return
            body = bytes(buf[TTRPC.size : TTRPC.size + length])
            del buf[: TTRPC.size + length]
            if conn == PLUGIN_CONN and msg_type == T_REQUEST:
                threading.Thread(target=self._serve, args=(stream, body), daemon=True).start()
            elif conn == RUNTIME_CONN and msg_type == T_RESPONSE:
                with self.cond:
                    self._waiters.setdefault(stream, []).append(Response.FromString(body))
                    self.cond.notify_all()

    # --- the Plugin service ----------------------------------------------------

    def _serve(self, stream: int, body: bytes) -> None:
        req = Request.FromString(body)
        request_cls, response_cls = api.METHODS[req.service][req.method]
        msg = request_cls.FromString(req.payload)
        with self.cond:
            if req.method == "Configure":
                self.configure_request = msg
            self.received.append((req.method, msg))
            self.cond.notify_all()
        try:
            handler = self.handlers.get(req.method)
            out = handler(msg) if handler else None
            if out is None:
                out = self._default(req.method, msg, response_cls)
            reply = Response(payload=out.SerializeToString())
        except Refuse as e:
            reply = Response(status=Status(code=e.code, message=str(e)))
        if not self.closed:
            try:
                self._send(PLUGIN_CONN, stream, T_RESPONSE, reply.SerializeToString())
            except OSError:
                pass

    def _default(self, method: str, msg: Any, response_cls: Any) -> Any:
        if method == "Configure":
            return api.ConfigureResponse(events=self.events)
        if method == "Synchronize":
            return api.SynchronizeResponse(more=msg.more)
        return response_cls()

    # --- the Runtime service ---------------------------------------------------

    def call_runtime(self, method: str, msg: Any, response_cls: Any, timeout: float = 10) -> Any:
        with self.cond:
            stream = self._next_id
            self._next_id += 2
            self._waiters[stream] = []
        body = Request(service=RUNTIME_SVC, method=method, payload=msg.SerializeToString())
        self._send(RUNTIME_CONN, stream, T_REQUEST, body.SerializeToString())
        with self.cond:
            if not self.cond.wait_for(lambda: self._waiters[stream], timeout):
                raise TimeoutError(f"no answer to {method}")
            resp = self._waiters.pop(stream)[0]
        if resp is None:
            raise ConnectionError(f"{method}: connection closed")
        if resp.status.code:
            raise Refuse(resp.status.message, resp.status.code)
        return response_cls.FromString(resp.payload)

    # --- for assertions --------------------------------------------------------

    def wait_for(self, predicate: Callable[[list[tuple[str, Any]]], bool], timeout: float = 15):
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.received), timeout):
                names = [m for m, _ in self.received]
                raise AssertionError(f"NRI stub {self.name}: condition not met; got {names}")
            return list(self.received)

    def methods(self) -> list[str]:
        with self.cond:
            return [m for m, _ in self.received]

    def of(self, method: str) -> list[Any]:
        with self.cond:
            return [msg for m, msg in self.received if m == method]


def _main() -> int:
    """Run as a pre-installed plugin: log every event as a JSON line to the configured file."""
    sock = socket.socket(fileno=int(os.environ["NRI_PLUGIN_SOCKET"]))
    stub = NRIStub(os.environ["NRI_PLUGIN_NAME"], os.environ["NRI_PLUGIN_IDX"])
    state: dict[str, Any] = {}

    def configure(msg: Any) -> Any:
        config = json.loads(msg.config)
        state.update(config)
        with open(config["log"], "a") as f:
            f.write(json.dumps({"method": "Configure", "runtime": msg.runtime_name}) + "\n")
        return api.ConfigureResponse(events=mask(*config.get("events", [])))

    def log_event(method: str) -> Handler:
        def handle(msg: Any) -> Any:
            entry: dict[str, Any] = {"method": method}
            if getattr(msg, "container", None) is not None and msg.HasField("container"):
                entry["container"] = msg.container.name
            if getattr(msg, "pod", None) is not None and msg.HasField("pod"):
                entry["pod"] = msg.pod.name
            with open(state["log"], "a") as f:
                f.write(json.dumps(entry) + "\n")
            if method == "CreateContainer" and state.get("env"):
                env = [api.KeyValue(key=k, value=v) for k, v in state["env"].items()]
                return api.CreateContainerResponse(adjust=api.ContainerAdjustment(env=env))
            return None

        return handle

    stub.handlers["Configure"] = configure
    for method in api.METHODS[PLUGIN_SVC]:
        if method != "Configure":
            stub.handlers[method] = log_event(method)
    stub.attach(sock)
    while not stub.closed:
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
