"""Exec, Attach and PortForward: validate, hand out a one-time URL, serve it.

The RPCs only check the request and store it under a single-use token; the
kubelet then proxies the user's stream to the URL, where the streaming server
(pycrio.streaming) runs the exec, attaches through the runtime driver, or
dials into the pod.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.config.schema import parse_duration
from pycrio.container.record import RUNNING
from pycrio.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.interfaces import STDOUT, Attachment
from pycrio.kernel.kernel import Kernel
from pycrio.sandbox import netns
from pycrio.sandbox.record import READY
from pycrio.streaming import channels, process_io
from pycrio.streaming.router import PortForward, RemoteCommand, Router, Target
from pycrio.streaming.server import StreamServer
from pycrio.streaming.stdio import SessionIO, background
from pycrio.streaming.tokens import TokenCache, TooManyInFlightError

log = logging.getLogger("pycrio.streaming")

DIAL_TIMEOUT = 10.0


def url_host(address: str) -> str:
    """The host part of the URLs: a wildcard address becomes loopback (the kubelet is local)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # a host name
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return f"[{ip}]" if ip.version == 6 else str(ip)


def tls_context(api: dict[str, Any]) -> ssl.SSLContext | None:
    if not api["stream_enable_tls"]:
        return None
    if not api["stream_tls_cert"] or not api["stream_tls_key"]:
        raise ValueError("stream_enable_tls needs stream_tls_cert and stream_tls_key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(api["stream_tls_cert"], api["stream_tls_key"])
    if api["stream_tls_ca"]:
        ctx.load_verify_locations(api["stream_tls_ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
    if tty and stderr:
        raise InvalidArgument("tty and stderr cannot both be true")
    if not (stdin or stdout or stderr):
        raise InvalidArgument("one of stdin, stdout, or stderr must be set")


class StreamingService:
    def __init__(self, kernel: Kernel, sandboxes: Any, containers: Any) -> None:
        self.kernel = kernel
        self.sandboxes = sandboxes
        self.containers = containers
        self.tokens: TokenCache | None = None
        self.server: StreamServer | None = None
        self.base_url = ""

    # --- lifecycle -------------------------------------------------------------

    @hookimpl
    def pycrio_startup(self, kernel: Kernel) -> None:
        api = kernel.config.data["api"]
        try:
            port = int(api["stream_port"])
        except ValueError:
            raise ValueError(f"api.stream_port {api['stream_port']!r} is not a number") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"api.stream_port {port} is outside 0..65535")
        idle = parse_duration(api["stream_idle_timeout"]) or float("inf")
        self.tokens = TokenCache(ttl=parse_duration(api["stream_token_ttl"]) or 60.0)
        tls = tls_context(api)
        host = api["stream_address"] or "127.0.0.1"
        try:
            self.server = StreamServer(host, port, Router(self._resolve, idle), tls)
        except OSError as e:
            raise OSError(
                f"the streaming server cannot listen on {host}:{port}: {e.strerror}"
            ) from e
        self.server.start()
        scheme = "https" if tls else "http"
        self.base_url = f"{scheme}://{url_host(host)}:{self.server.port}"
        log.info("streaming server (exec, attach, port-forward) on %s", self.base_url)

    @hookimpl
    def pycrio_shutdown(self, kernel: Kernel) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _url(self, kind: str, request: Any) -> str:
        if self.tokens is None:
            raise FailedPrecondition("the streaming server is not running")
        try:
            token = self.tokens.insert((kind, request))
        except TooManyInFlightError as e:
            raise ResourceExhausted(str(e)) from None
        return f"{self.base_url}/{kind}/{token}"

    # --- the RPCs ----------------------------------------------------------------

    def _running(self, container_id: str) -> Any:
        r = self.containers.lookup(container_id)
        if r.state != RUNNING:
            raise FailedPrecondition(f"container {r.id} is not running")
        return r

    @hookimpl
    def cri_exec(self, request: api_pb2.ExecRequest, ctx: CallContext) -> api_pb2.ExecResponse:
        if not request.cmd:
            raise InvalidArgument("Exec cmd is empty")
        _check_streams(request.stdin, request.stdout, request.stderr, request.tty)
        r = self._running(request.container_id)
        return api_pb2.ExecResponse(url=self._url("exec", _with_full_id(request, r.id)))

    @hookimpl
    def cri_attach(
        self, request: api_pb2.AttachRequest, ctx: CallContext
    ) -> api_pb2.AttachResponse:
        _check_streams(request.stdin, request.stdout, request.stderr, request.tty)
        r = self._running(request.container_id)
        if request.tty and not r.tty:
            raise InvalidArgument(f"container {r.id} was not created with a TTY")
        return api_pb2.AttachResponse(url=self._url("attach", _with_full_id(request, r.id)))

    @hookimpl
    def cri_port_forward(
        self, request: api_pb2.PortForwardRequest, ctx: CallContext
    ) -> api_pb2.PortForwardResponse:
        s = self.sandboxes.lookup(request.pod_sandbox_id)
        if s.state != READY:
            raise FailedPrecondition(f"pod sandbox {s.id} is not ready")
        for port in request.port:
            if not 1 <= port <= 65535:
                raise InvalidArgument(f"invalid port {port}: must be in 1..65535")
        stored = api_pb2.PortForwardRequest(pod_sandbox_id=s.id, port=list(request.port))
        return api_pb2.PortForwardResponse(url=self._url("portforward", stored))

    # --- serving a URL ---------------------------------------------------------

    def _resolve(self, kind: str, token: str) -> Target | None:
        if self.tokens is None:
            return None
        entry = self.tokens.consume(token)
        if entry is None or entry[0] != kind:
            return None
        request = entry[1]
        if kind == "portforward":
            return PortForward(list(request.port), lambda port: self._dial(request, port))
        chans = channels.session_channels(
            request.stdin, request.stdout, request.stderr, request.tty
        )
        if kind == "exec":
            return RemoteCommand(chans, lambda io: self._exec(request, io))
        return RemoteCommand(chans, lambda io: self._attach(request, io))

    def _exec(self, request: api_pb2.ExecRequest, io: SessionIO) -> int:
        r = self._running(request.container_id)
        driver = self.containers.runtime(r.runtime_handler)
        proc = driver.exec_start(r.id, list(request.cmd), tty=request.tty, stdin=request.stdin)
        try:
            return process_io.run_process(proc, io)
        finally:
            proc.close()

    def _attach(self, request: api_pb2.AttachRequest, io: SessionIO) -> None:
        r = self._running(request.container_id)
        attachment = self.containers.runtime(r.runtime_handler).attach(r.id)
        if io.stdin is not None and r.stdin:
            background(_attach_input, attachment, io, r.stdin_once)
        if io.resize is not None:
            background(_attach_resizes, attachment, io)
        closer = background(_close_on_disconnect, attachment, io)
        try:
            while (chunk := attachment.recv()) is not None:
                stream, payload = chunk
                out = io.stdout if stream == STDOUT else io.stderr
                if out is not None:
                    out.write(payload)
        except OSError as e:
            if not io.disconnected.is_set():
                log.debug("attach to %s ended: %s", r.id, e)
        finally:
            io.disconnected.set()  # ends the closer; end_input the input and resize helpers
            io.end_input()
            closer.join(timeout=2)
            attachment.close()
        for stream in (io.stdout, io.stderr):
            if stream is not None:
                stream.close()
        return None

    def _dial(self, request: api_pb2.PortForwardRequest, port: int) -> socket.socket:
        s = self.sandboxes.lookup(request.pod_sandbox_id)
        if s.state != READY:
            raise FailedPrecondition(f"pod sandbox {s.id} is not ready")
        return netns.dial_localhost(s.netns_path(), port, DIAL_TIMEOUT)


def _with_full_id(request: Any, container_id: str) -> Any:
    """A copy of the request naming the container by its full id, not a prefix."""
    stored = type(request)()
    stored.CopyFrom(request)
    stored.container_id = container_id
    return stored


def _attach_input(attachment: Attachment, io: SessionIO, stdin_once: bool) -> None:
    assert io.stdin is not None
    try:
        while chunk := io.stdin.read():
            attachment.send(chunk)
    except OSError as e:
        log.debug("attach input ended: %s", e)
        return
    if stdin_once and not io.disconnected.is_set():
        attachment.close_input()


def _attach_resizes(attachment: Attachment, io: SessionIO) -> None:
    assert io.resize is not None
    while (size := io.resize.get()) is not None:
        try:
            attachment.resize(size.width, size.height)
        except (FailedPrecondition, OSError) as e:
            log.debug("attach resize failed: %s", e)
            return


def _close_on_disconnect(attachment: Attachment, io: SessionIO) -> None:
    io.disconnected.wait()
    attachment.close()
