"""A tiny API server + kubelet in one, so the real ``kubectl`` can exec, attach and
port-forward into pycrio's containers.

kubectl never talks to a runtime: it asks the API server for the pod, then sends
``/api/v1/namespaces/<ns>/pods/<name>/{exec,attach,portforward}`` with an upgrade
(WebSocket or SPDY/3.1); the API server proxies that to the kubelet, which calls the
CRI ``Exec``/``Attach``/``PortForward`` RPC and proxies the connection on to the URL
the runtime returned. :class:`FakeApiServer` does all of that on 127.0.0.1 in plain
HTTP, with a thread per connection:

* the pod GET (and the discovery calls kubectl may make) get canned JSON built from
  the pods registered with :meth:`FakeApiServer.add_pod`;
* a streaming request becomes a CRI request with the options of its query
  (``command``, ``container``, ``stdin``, ``stdout``, ``stderr``, ``tty``; the ports of
  a port forward come in the SPDY stream headers, so the RPC has none, as the
  kubelet's); the request is then forwarded, method and headers as they came, to the
  URL's path on the streaming server, and bytes are copied both ways until either
  side closes (what the kubelet's UpgradeAwareHandler does).

Every request is recorded in :attr:`FakeApiServer.requests` (with the upgrade asked
for and the streaming server's answer) so tests can tell which transport was used.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import h11
from cri_api.v1 import api_pb2

#: gRPC codes the kubelet would turn into these HTTP statuses
_HTTP_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
}
_STREAMING = ("exec", "attach", "portforward")


@dataclass
class FakePod:
    """A pod as the API server shows it, backed by a pycrio sandbox and its containers."""

    namespace: str
    name: str
    sandbox_id: str
    #: container name -> pycrio container id
    containers: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        started = "2024-01-01T00:00:00Z"
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": f"uid-{self.sandbox_id[:12]}",
                "resourceVersion": "1",
                "creationTimestamp": started,
            },
            "spec": {
                "nodeName": "pycrio-node",
                "containers": [{"name": name, "image": "busybox"} for name in self.containers],
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": name,
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "image": "busybox",
                        "imageID": "",
                        "containerID": f"cri-o://{cid}",
                        "state": {"running": {"startedAt": started}},
                    }
                    for name, cid in self.containers.items()
                ],
            },
        }


@dataclass
class Seen:
    """One request kubectl made, and what became of it."""

    method: str
    target: str
    #: the Upgrade header ("" for none): "websocket" or "SPDY/3.1"
    upgrade: str = ""
    #: what the client offered: X-Stream-Protocol-Version or Sec-WebSocket-Protocol
    protocols: list[str] = field(default_factory=list)
    #: our status, or the streaming server's for a proxied request (0 until known)
    status: int = 0
    #: the protocol the streaming server chose (from its 101 answer)
    chosen: str = ""
    #: how the proxied connection ended, when a side broke it off
    pipe_errors: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def subresource(self) -> str:
        last = self.path.rsplit("/", 1)[-1]
        return last if last in _STREAMING else ""


class FakeApiServer:
    """API server and kubelet on ``127.0.0.1:<port>`` in front of a pycrio daemon.

    ``runtime`` returns a CRI RuntimeService stub (``DaemonProcess.runtime``).
    """

    def __init__(self, runtime: Callable[[], Any]) -> None:
        self.runtime = runtime
        self.pods: dict[tuple[str, str], FakePod] = {}
        self.requests: list[Seen] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="fake-apiserver", daemon=True)
        self._thread.start()

    # --- the test's side -------------------------------------------------------------------

    def add_pod(self, pod: FakePod) -> FakePod:
        with self._lock:
            self.pods[(pod.namespace, pod.name)] = pod
        return pod

    def remove_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            self.pods.pop((namespace, name), None)

    def kubeconfig(self, namespace: str = "default") -> str:
        """A kubeconfig (YAML is JSON) for this server: plain HTTP, no credentials."""
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "users": [{"name": "nobody", "user": {}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "nobody", "namespace": namespace},
                    }
                ],
                "current-context": "fake",
            }
        )

    def seen(self, subresource: str) -> list[Seen]:
        """The streaming requests for ``subresource`` so far, oldest first."""
        with self._lock:
            return [s for s in self.requests if s.subresource == subresource]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            socks = list(self._sockets)
        for s in socks:
            _close(s)
        self._thread.join(5)

    def __enter__(self) -> FakeApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- connections ------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self._track(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        _close(sock)

    def _serve(self, sock: socket.socket) -> None:
        """Requests on one keep-alive connection until it closes or is upgraded."""
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = _next(conn, sock, h11.Request)
                if request is None:
                    return
                while (event := _next(conn, sock)) is not None:  # a GET has no body
                    if isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                        break
                seen = self._record(request)
                if seen.subresource:
                    self._stream(sock, conn, request, seen)
                    return  # the connection belonged to the stream
                status, body = self._answer(seen)
                seen.status = status
                data = json.dumps(body).encode()
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
                sock.sendall(conn.send(h11.Response(status_code=status, headers=headers)))
                sock.sendall(conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage()))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except Exception as exc:  # noqa: BLE001 (kept for the test to report)
            if not self._closed:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._untrack(sock)

    def _record(self, request: h11.Request) -> Seen:
        headers = _headers(request)
        protocols = [
            p.strip()
            for name in ("x-stream-protocol-version", "sec-websocket-protocol")
            for value in headers.get(name, [])
            for p in value.split(",")
            if p.strip()
        ]
        seen = Seen(
            method=request.method.decode(),
            target=request.target.decode(),
            upgrade=",".join(headers.get("upgrade", [])),
            protocols=protocols,
        )
        with self._lock:
            self.requests.append(seen)
        return seen

    # --- plain API requests -----------------------------------------------------------------

    def _answer(self, seen: Seen) -> tuple[int, dict[str, Any]]:
        parts = seen.path.strip("/").split("/")
        if parts == ["version"]:
            return 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-pycrio-fake"}
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if parts == ["apis"]:
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if parts == ["api", "v1"]:
            return 200, _CORE_RESOURCES
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            pod = self._pod(parts[3], parts[5])
            if pod is None:
                return _status(404, "NotFound", f'pods "{parts[5]}" not found')
            return 200, pod.to_json()
        return _status(404, "NotFound", f"the fake API server has no {seen.path}")

    def _pod(self, namespace: str, name: str) -> FakePod | None:
        with self._lock:
            return self.pods.get((namespace, name))

    # --- streaming: the kubelet's part ------------------------------------------------------

    def _stream(
        self, sock: socket.socket, conn: h11.Connection, request: h11.Request, seen: Seen
    ) -> None:
        parts = seen.path.strip("/").split("/")
        pod = None
        if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            pod = self._pod(parts[3], parts[5])
        if pod is None:
            seen.status = 404
            sock.sendall(_raw_response(*_status(404, "NotFound", f"no pod for {seen.path}")))
            return
        try:
            url = self._runtime_url(pod, seen)
        except grpc.RpcError as exc:
            code = _HTTP_STATUS.get(exc.code(), 500)
            seen.status = code
            sock.sendall(_raw_response(*_status(code, "InternalError", exc.details() or "")))
            return
        except ValueError as exc:
            seen.status = 400
            sock.sendall(_raw_response(*_status(400, "BadRequest", str(exc))))
            return
        except Exception as exc:
            seen.status = 500
            sock.sendall(_raw_response(*_status(500, "InternalError", repr(exc))))
            raise
        self._proxy(sock, request, url, conn.trailing_data[0], seen)

    def _runtime_url(self, pod: FakePod, seen: Seen) -> str:
        rt = self.runtime()
        query = parse_qs(urlsplit(seen.target).query)
        if seen.subresource == "portforward":
            ports = [int(p) for v in query.get("port", []) for p in v.split(",") if p]
            req = api_pb2.PortForwardRequest(pod_sandbox_id=pod.sandbox_id, port=ports)
            return rt.PortForward(req, timeout=10).url
        names = query.get("container", [])
        if names:
            name = names[0]
        elif len(pod.containers) == 1:
            name = next(iter(pod.containers))
        else:
            raise ValueError("a container name must be given for a pod with several")
        if name not in pod.containers:
            raise ValueError(f"container {name} is not valid for pod {pod.name}")

        def flag(key: str) -> bool:
            return query.get(key, ["false"])[0].lower() in ("1", "true")

        streams = {k: flag(k) for k in ("stdin", "stdout", "stderr", "tty")}
        cid = pod.containers[name]
        if seen.subresource == "exec":
            cmd = query.get("command", [])
            return rt.Exec(
                api_pb2.ExecRequest(container_id=cid, cmd=cmd, **streams), timeout=10
            ).url
        return rt.Attach(api_pb2.AttachRequest(container_id=cid, **streams), timeout=10).url

    def _proxy(
        self, client: socket.socket, request: h11.Request, url: str, early: bytes, seen: Seen
    ) -> None:
        """Send ``request`` to ``url``'s path on the streaming server, then pipe both ways."""
        parts = urlsplit(url)
        backend = socket.create_connection((parts.hostname, parts.port or 80), timeout=10)
        backend.settimeout(None)
        self._track(backend)
        try:
            head = [f"{seen.method} {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
            for name, value in request.headers.raw_items():
                if name.lower() != b"host":
                    head.append(f"{name.decode()}: {value.decode()}")
            backend.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + early)
            self._pipe(client, backend, seen)
        finally:
            self._untrack(backend)

    def _pipe(self, client: socket.socket, backend: socket.socket, seen: Seen) -> None:
        """Copy both ways; when either direction ends, close both (as the kubelet does)."""
        done = threading.Event()
        response = bytearray()

        def copy(src: socket.socket, dst: socket.socket, watch: bool) -> None:
            try:
                while data := src.recv(65536):
                    if watch and not seen.status:
                        response.extend(data)
                        _note_response(bytes(response), seen)
                    dst.sendall(data)
            except OSError as exc:  # one side went away: the other is closed below
                seen.pipe_errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                done.set()

        up = threading.Thread(target=copy, args=(client, backend, False), daemon=True)
        up.start()
        copy(backend, client, True)
        done.wait()
        for s in (client, backend):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        up.join(5)


def _note_response(data: bytes, seen: Seen) -> None:
    """Fill in ``seen.status``/``chosen`` once the streaming server's head is complete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return
    lines = data[:end].decode("latin-1").split("\r\n")
    try:
        seen.status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        seen.status = -1
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() in ("x-stream-protocol-version", "sec-websocket-protocol"):
            seen.chosen = value.strip()


def _next(conn: h11.Connection, sock: socket.socket, want: type | None = None) -> Any:
    """The next h11 event (reading as needed); None when the peer is gone."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = sock.recv(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        if want is not None and not isinstance(event, want):
            return None
        return event


def _headers(request: h11.Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in request.headers:
        out.setdefault(name.decode().lower(), []).append(value.decode())
    return out


def _status(code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _raw_response(code: int, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"HTTP/1.1 {code} {'Not Found' if code == 404 else 'Error'}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode() + data


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


_CORE_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {
            "name": "pods",
            "singularName": "pod",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get", "list"],
            "shortNames": ["po"],
        },
        {"name": "pods/attach", "singularName": "", "namespaced": True, "kind": "PodAttachOptions",
         "verbs": ["create", "get"]},
        {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions",
         "verbs": ["create", "get"]},
        {"name": "pods/portforward", "singularName": "", "namespaced": True,
         "kind": "PodPortForwardOptions", "verbs": ["create", "get"]},
    ],
}  # fmt: skip
