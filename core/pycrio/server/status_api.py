"""The status API: a small HTTP/1.1 server on its own unix socket, like CRI-O's.

Operators and tools (``pycrio status``, a node problem detector, curl
--unix-socket) get the daemon's facts without speaking gRPC: /info,
/config (TOML), /containers/<id>, /pause/<id> and /unpause/<id>, and
/debug/threads and /debug/heap to look at a daemon that misbehaves. It is
a unix socket with mode 0660, like the CRI socket, so the same people can use
it; errors name what went wrong but never echo internals (paths of
credentials, exception text) to the client.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import socketserver
import sys
import threading
import traceback
import tracemalloc
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

import pycrio
from pycrio.config import Config
from pycrio.errors import CRIError, FailedPrecondition, InvalidArgument, NotFound, Unimplemented
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.kernel import Kernel
from pycrio.server.grpc_server import SOCKET_MODE, SocketInUse, prepare_socket_path

log = logging.getLogger("pycrio.status")

SOCKET_NAME = "pycrio-status.sock"
REQUEST_TIMEOUT = 30.0
HEAP_TOP = 50


def status_socket_path(config: Config) -> str:
    """``[api] status_listen``, or pycrio-status.sock next to the CRI socket."""
    configured = config.data.get("api", {}).get("status_listen", "")
    return configured or os.path.join(os.path.dirname(config.listen), SOCKET_NAME)


class HTTPError(Exception):
    """An error answered with ``status`` and a JSON body ``{"error": message}``."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: str, api: StatusAPI) -> None:
        self.api = api
        super().__init__(path, _Handler, bind_and_activate=False)

    def server_bind(self) -> None:
        # Bind under a umask, so the socket is never reachable with looser modes.
        old = os.umask(0o117)
        try:
            super().server_bind()
        finally:
            os.umask(old)
        os.chmod(self.server_address, SOCKET_MODE)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    server_version = f"pycrio/{pycrio.version()}"

    def address_string(self) -> str:  # a unix peer has no host to print
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("status API: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            status, content_type, body = self.server.api.route(self.command, self.path)
        except HTTPError as e:
            status, content_type, body = e.status, "application/json", _json({"error": e.message})
        except Exception:  # noqa: BLE001 - logged here, never shown to the client
            log.exception("status API %s %s failed", self.command, urlsplit(self.path).path)
            status, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, "application/json"
            body = _json({"error": "internal error; see the daemon's log"})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


class StatusAPI:
    """Core plugin owning the status server: started and stopped with the daemon."""

    def __init__(self, kernel: Kernel, sandboxes: Any, containers: Any) -> None:
        self.kernel = kernel
        self.sandboxes = sandboxes
        self.containers = containers
        self.path = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._inode: int | None = None

    # --- lifecycle -------------------------------------------------------------

    @hookimpl
    def pycrio_startup(self, kernel: Kernel) -> None:
        if self._server is not None:
            return
        self.path = status_socket_path(kernel.config)
        server = _Server(self.path, self)
        try:
            prepare_socket_path(self.path)
            server.server_bind()
            server.server_activate()
        except (SocketInUse, OSError) as e:
            # A debugging aid must not keep the CRI from being served.
            server.server_close()
            log.error("status API disabled: cannot listen on %s: %s", self.path, e)
            return
        self._inode = os.stat(self.path).st_ino
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="status-api",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        log.info("status API listening on %s", self.path)

    @hookimpl
    def pycrio_shutdown(self, kernel: Kernel) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if os.stat(self.path).st_ino == self._inode:  # not a successor's socket
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._server = None
        self._thread = None

    # --- routing ---------------------------------------------------------------

    def route(self, method: str, raw_path: str) -> tuple[HTTPStatus, str, bytes]:
        """(status, content type, body) for one request; raises HTTPError."""
        if method not in ("GET", "POST", "HEAD"):
            raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"method {method} is not supported")
        path = urlsplit(raw_path).path
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        match parts:
            case ["info"]:
                return HTTPStatus.OK, "application/json", _json(self.info())
            case ["config"]:
                from pycrio.config.render import to_toml

                return HTTPStatus.OK, "application/toml", to_toml(self.kernel.config).encode()
            case ["containers", cid] if cid:
                return HTTPStatus.OK, "application/json", _json(self.container(cid))
            case ["pause", cid] if cid:
                return HTTPStatus.OK, "application/json", _json(self.pause(cid, True))
            case ["unpause", cid] if cid:
                return HTTPStatus.OK, "application/json", _json(self.pause(cid, False))
            case ["debug", "threads"]:
                return HTTPStatus.OK, "text/plain; charset=utf-8", thread_dump().encode()
            case ["debug", "heap"]:
                return HTTPStatus.OK, "application/json", _json(heap_summary())
        raise HTTPError(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")

    def info(self) -> dict[str, Any]:
        cfg = self.kernel.config
        cgroup = cfg.get("runtime.cgroup_manager")
        return {
            "version": pycrio.version(),
            "storage_driver": cfg.get("storage_driver"),
            "storage_root": cfg.root,
            "root": cfg.root,
            "runroot": cfg.runroot,
            "cgroup_driver": cgroup,
            "default_runtime": cfg.get("runtime.default_runtime"),
            "listen": cfg.listen,
        }

    def _record(self, cid: str) -> Any:
        try:
            return self.containers.lookup(cid)
        except NotFound as e:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"container {cid!r} not found") from e
        except InvalidArgument as e:
            raise HTTPError(HTTPStatus.BAD_REQUEST, e.message) from e

    def container(self, cid: str) -> dict[str, Any]:
        r = self._record(cid)
        sandbox = self.sandboxes.store.get(r.sandbox_id) if self.sandboxes.store else None
        return {
            "id": r.id,
            "name": r.name,
            "pid": r.pid,
            "image": r.image,
            "image_ref": r.image_ref,
            "image_id": r.image_id,
            "state": r.state,
            "created_time": r.created_at,
            "labels": r.labels,
            "annotations": r.annotations,
            "log_path": r.log_path,
            "root": r.rootfs,
            "sandbox": r.sandbox_id,
            "ip_addresses": list(getattr(sandbox, "ips", []) or []),
        }

    def pause(self, cid: str, pause: bool) -> dict[str, Any]:
        r = self._record(cid)
        if r.state != "running":
            raise HTTPError(HTTPStatus.CONFLICT, f"container {r.id} is {r.state}, not running")
        driver = self.kernel.runtime_driver(r.runtime_handler)
        if driver is None:
            raise HTTPError(
                HTTPStatus.SERVICE_UNAVAILABLE, f"runtime handler {r.runtime_handler!r} is missing"
            )
        try:
            (driver.pause if pause else driver.resume)(r.id)
        except (FailedPrecondition, NotFound) as e:
            raise HTTPError(HTTPStatus.CONFLICT, e.message) from e
        except Unimplemented as e:
            raise HTTPError(HTTPStatus.NOT_IMPLEMENTED, e.message) from e
        except CRIError as e:
            log.warning("%s of container %s failed: %s", "pause" if pause else "resume", r.id, e)
            raise HTTPError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"{'pause' if pause else 'resume'} of container {r.id} failed",
            ) from e
        return {"id": r.id, "paused": pause}


def thread_dump() -> str:
    """Every thread's stack, like a Go goroutine dump: for a daemon that hangs."""
    names = {t.ident: t for t in threading.enumerate()}
    chunks = []
    for ident, frame in sorted(sys._current_frames().items()):
        thread = names.get(ident)
        name = thread.name if thread else "?"
        daemon = " daemon" if thread is not None and thread.daemon else ""
        stack = "".join(traceback.format_stack(frame))
        chunks.append(f'Thread "{name}" (id {ident}{daemon}):\n{stack}')
    return "\n".join(chunks)


def heap_summary() -> dict[str, Any]:
    """Top allocations when tracemalloc traces, else live objects counted by type."""
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        stats = snapshot.statistics("lineno")[:HEAP_TOP]
        return {
            "mode": "tracemalloc",
            "top": [
                {"where": str(s.traceback), "size_bytes": s.size, "count": s.count} for s in stats
            ],
        }
    counts = Counter(type(o).__name__ for o in gc.get_objects())
    return {
        "mode": "gc",
        "objects": sum(counts.values()),
        "top": [{"type": t, "count": n} for t, n in counts.most_common(HEAP_TOP)],
    }
