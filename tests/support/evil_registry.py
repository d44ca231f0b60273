"""A registry that misbehaves on purpose, for the registry fuzz tests (issue 17).

It serves the distribution API (``/v2/``, manifests, blobs) for images held in
memory, and a test sets, per path, what goes wrong: a body that is not what
it claims, a wrong media type, a length that lies, a body that never ends or
stops short, a redirect loop, a huge header. Plain HTTP on 127.0.0.1; one
thread per connection.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from registry_env import MT_OCI_CONFIG, MT_OCI_MANIFEST, Blob, compress_layer, make_tar

#: ``misbehave(handler, path) -> True`` when it answered the request itself.
Misbehaviour = Callable[[BaseHTTPRequestHandler, str], bool]


@dataclass
class EvilImage:
    repo: str
    tag: str
    manifest: bytes
    config: Blob
    layers: list[Blob]

    @property
    def manifest_digest(self) -> str:
        import hashlib

        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def small_image(repo: str, tag: str = "v1", layer_tar: bytes | None = None) -> EvilImage:
    """A one-layer OCI image with a file in it: quick to pull and to tamper with."""
    # content unique to the repo: no layer or config is already in the store
    unique = make_tar({"hello": f"hi from {repo}\n".encode()})
    layer = compress_layer(layer_tar if layer_tar is not None else unique)
    cfg = {
        "author": repo,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
    }
    config = Blob(MT_OCI_CONFIG, json.dumps(cfg, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    }
    return EvilImage(repo, tag, json.dumps(manifest).encode(), config, [layer])


@dataclass(repr=False)
class EvilRegistry:
    images: dict[str, EvilImage] = field(default_factory=dict)
    #: path prefix -> misbehaviour; the longest matching prefix wins
    rules: dict[str, Misbehaviour] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def __repr__(self) -> str:
        return f"EvilRegistry({len(self.images)} images, rules for {sorted(self.rules)})"

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def add(self, image: EvilImage) -> str:
        self.images[image.repo] = image
        return f"{self.host}/{image.repo}:{image.tag}"

    def start(self) -> EvilRegistry:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self.do_GET()

            def do_GET(self) -> None:  # noqa: N802
                registry.requests.append(self.path)
                for prefix in sorted(registry.rules, key=len, reverse=True):
                    if self.path.startswith(prefix) and registry.rules[prefix](self, self.path):
                        return
                registry.serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        """The well-behaved answer."""
        path = h.path.split("?", 1)[0]
        if path in ("/v2/", "/v2"):
            return send(h, 200, b"{}", "application/json")
        for repo, img in self.images.items():
            base = f"/v2/{repo}/"
            if not path.startswith(base):
                continue
            rest = path[len(base) :]
            if rest in (f"manifests/{img.tag}", f"manifests/{img.manifest_digest}"):
                return send(
                    h,
                    200,
                    img.manifest,
                    MT_OCI_MANIFEST,
                    [("Docker-Content-Digest", img.manifest_digest)],
                )
            for blob in (img.config, *img.layers):
                if rest == f"blobs/{blob.digest}":
                    return send(h, 200, blob.data, "application/octet-stream")
        return send(h, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "application/json")


def send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    length: int | None = None,
) -> bool:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body) if length is None else length))
    for k, v in headers:
        h.send_header(k, v)
    h.end_headers()
    if h.command != "HEAD":
        try:
            h.wfile.write(body)
        except OSError:
            pass
    return True


# --- misbehaviours ----------------------------------------------------------------------


def body(data: bytes, content_type: str = MT_OCI_MANIFEST) -> Misbehaviour:
    return lambda h, _: send(h, 200, data, content_type)


def wrong_type(content_type: str, registry: EvilRegistry) -> Misbehaviour:
    """The right bytes under a wrong Content-Type."""

    def answer(h: BaseHTTPRequestHandler, path: str) -> bool:
        img = next(iter(registry.images.values()))
        return send(h, 200, img.manifest, content_type)

    return answer


def truncated(data: bytes, claimed: int) -> Misbehaviour:
    """Send part of ``data`` under a Content-Length of ``claimed``, then hang up."""

    def answer(h: BaseHTTPRequestHandler, _: str) -> bool:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(claimed))
        h.end_headers()
        try:
            h.wfile.write(data)
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        h.close_connection = True
        return True

    return answer


def endless(chunk: bytes = b"\x1f\x8b" + b"\x00" * 65534, seconds: float = 60) -> Misbehaviour:
    """A chunked body that goes on (until the client hangs up or ``seconds`` pass)."""

    def answer(h: BaseHTTPRequestHandler, _: str) -> bool:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass
        h.close_connection = True
        return True

    return answer


def redirect_to(location: str) -> Misbehaviour:
    def answer(h: BaseHTTPRequestHandler, path: str) -> bool:
        return send(h, 307, b"", "text/plain", [("Location", location)])

    return answer


def huge_headers(count: int = 200, size: int = 8000) -> Misbehaviour:
    def answer(h: BaseHTTPRequestHandler, _: str) -> bool:
        return send(
            h, 200, b"{}", MT_OCI_MANIFEST, [(f"X-Fill-{i}", "y" * size) for i in range(count)]
        )

    return answer


def status(code: int, data: bytes = b"", content_type: str = "text/html") -> Misbehaviour:
    return lambda h, _: send(h, code, data, content_type)
